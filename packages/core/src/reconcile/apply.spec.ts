import { describe, expect, it } from 'vitest';
import {
  apply,
  circuitBreakerMiddleware,
  defaultMiddlewareStack,
  MiddlewareStack,
  NO_CAPABILITIES,
  ProviderSet,
  retryMiddleware,
  ThrottledError,
  NovaCronError,
  type ApplyEvent,
  type Clock,
  type CreateVmRequest,
  type Plan,
  type PlanStep,
  type Provider,
  type VmRecord,
} from '../index.js';

/** A clock driven by the test: sleeps advance it at once and are recorded. */
function fakeClock(): Clock & { slept: number[] } {
  let now = 0;
  const slept: number[] = [];
  return { slept, now: () => now, sleep: async (ms) => { slept.push(ms); now += ms; } };
}

function record(request: CreateVmRequest): VmRecord {
  return { ...request.ownership, name: request.name, id: request.name, provider: 'p', host: request.host, zone: 'z', state: 'running', resources: request.resources, image: request.image, labels: {}, addresses: [] };
}

function provider(overrides: Partial<Provider> = {}): Provider {
  return {
    name: 'p',
    kind: 'test',
    capabilities: NO_CAPABILITIES,
    inventory: async () => [],
    list: async () => [],
    create: async (r) => record(r),
    start: async () => { throw new Error('unused'); },
    stop: async () => { throw new Error('unused'); },
    delete: async () => undefined,
    ...overrides,
  };
}

function createStep(i: number, dependsOn: string[] = []): PlanStep {
  const name = `f-web-${i}`;
  return {
    id: `create:${name}`, kind: 'create', vm: name, group: 'web', provider: 'p', host: 'p/h1', reason: 'test', dependsOn,
    request: { name, ownership: { fleet: 'f', group: 'web', index: i, specHash: 'h' }, host: 'p/h1', resources: { cpu: 1, memoryMiB: 512, diskGiB: 1, gpu: 0 }, image: 'img', labels: {} },
  };
}

function planOf(steps: PlanStep[]): Plan {
  return {
    fleet: 'f', steps, unplaced: [], costPerHour: 0,
    placement: { assignments: {}, instanceTypes: {}, unplaced: [], explanations: {}, objectives: { activeHosts: 0, costPerHour: 0, imbalance: 0 }, alternatives: [] },
    summary: { create: steps.length, delete: 0, start: 0, update: 0, replace: 0, migrate: 0, unchanged: 0 },
  };
}

const set = (p: Provider) => new ProviderSet(new Map([[p.name, p]]));

describe('apply', () => {
  it('never runs more steps at once than the concurrency limit', async () => {
    let running = 0;
    let peak = 0;
    const p = provider({
      create: async (r) => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((resolve) => setTimeout(resolve, 2));
        running--;
        return record(r);
      },
    });
    const result = await apply(planOf(Array.from({ length: 40 }, (_, i) => createStep(i))), set(p), { concurrency: 7 });
    expect(result.ok).toBe(true);
    expect(peak).toBe(7);
  });

  it('runs 10 steps at once when no concurrency is given', async () => {
    let running = 0;
    let peak = 0;
    const p = provider({
      create: async (r) => {
        peak = Math.max(peak, ++running);
        await new Promise((resolve) => setTimeout(resolve, 2));
        running--;
        return record(r);
      },
    });
    const steps = () => Array.from({ length: 40 }, (_, i) => createStep(i));
    // Without middleware, only the apply's own limit counts; with the default stack (no options at all) too.
    const bare = await apply(planOf(steps()), set(p), { middleware: new MiddlewareStack() });
    expect(bare.ok).toBe(true);
    expect(peak).toBe(10);
    peak = 0;
    const defaults = await apply(planOf(steps()), set(p));
    expect(defaults.ok).toBe(true);
    expect(peak).toBe(10);
  });

  it('runs a step only after its dependencies, and skips the dependents of a failed step', async () => {
    const order: string[] = [];
    const p = provider({
      create: async (r) => {
        order.push(r.name);
        if (r.name === 'f-web-1') throw new NovaCronError('Provider', 'server', 'boom');
        return record(r);
      },
    });
    const steps = [createStep(0), createStep(1), createStep(2, ['create:f-web-0']), createStep(3, ['create:f-web-1']), createStep(4, ['create:f-web-3'])];
    const events: ApplyEvent['type'][] = [];
    const result = await apply(planOf(steps), set(p), { concurrency: 1, middleware: new MiddlewareStack(), onEvent: (e) => events.push(e.type) });
    expect(order).toEqual(['f-web-0', 'f-web-1', 'f-web-2']);
    expect(result.outcomes.map((o) => o.status)).toEqual(['done', 'failed', 'done', 'skipped', 'skipped']);
    expect(result.ok).toBe(false);
    expect(events.filter((e) => e === 'step.skipped')).toHaveLength(2);
    expect(events.at(0)).toBe('apply.start');
    expect(events.at(-1)).toBe('apply.done');
  });

  it('retries retryable errors with capped exponential backoff and reports each retry', async () => {
    const clock = fakeClock();
    let calls = 0;
    const p = provider({
      create: async (r) => {
        if (++calls < 4) throw new ThrottledError('slow down');
        return record(r);
      },
    });
    const retries: number[] = [];
    const stack = new MiddlewareStack().add('retry', retryMiddleware({ clock, maxAttempts: 5, baseDelayMs: 100, random: () => 1 }));
    const result = await apply(planOf([createStep(0)]), set(p), { middleware: stack, clock, onEvent: (e) => e.type === 'step.retry' && retries.push(e.delayMs) });
    expect(result.ok).toBe(true);
    expect(calls).toBe(4);
    expect(clock.slept).toEqual([100, 200, 400]);
    expect(retries).toEqual([100, 200, 400]);
  });

  it('does not retry errors that retrying cannot mend', async () => {
    let calls = 0;
    const p = provider({ create: async () => { calls++; throw new NovaCronError('CapacityExceeded', 'server', 'full'); } });
    const result = await apply(planOf([createStep(0)]), set(p), { middleware: defaultMiddlewareStack({ retry: { clock: fakeClock() }, tracing: false }) });
    expect(calls).toBe(1);
    expect(result.outcomes[0]!.error!.code).toBe('CapacityExceeded');
  });

  it('opens the circuit after repeated server failures and fails fast until the cooldown passes', async () => {
    const clock = fakeClock();
    let calls = 0;
    const p = provider({ create: async () => { calls++; throw new NovaCronError('Provider', 'server', 'down'); } });
    const stack = new MiddlewareStack().add('breaker', circuitBreakerMiddleware({ threshold: 3, cooldownMs: 1000, clock }));
    const result = await apply(planOf(Array.from({ length: 10 }, (_, i) => createStep(i))), set(p), { middleware: stack, concurrency: 1 });
    expect(calls).toBe(3);
    expect(result.outcomes.slice(3).every((o) => o.error?.code === 'CircuitOpen')).toBe(true);
    // after the cooldown one trial call goes through
    await clock.sleep(1000);
    const trial = createStep(11);
    if (trial.kind !== 'create') throw new Error('unreachable');
    await expect(stack.wrap(p).create(trial.request)).rejects.toThrow('down');
    expect(calls).toBe(4);
  });

  it('keeps a breaker per provider: one provider failing does not stop calls to another', async () => {
    const calls = { a: 0, b: 0 };
    const a = provider({ name: 'a', create: async () => { calls.a++; throw new NovaCronError('Provider', 'server', 'a is down'); } });
    const b = provider({ name: 'b', create: async (r) => { calls.b++; return record(r); } });
    const on = (name: string, step: PlanStep): PlanStep => ({ ...step, id: `${step.id}@${name}`, provider: name });
    // a's failures come first, so one breaker shared by both would be open before b's first step.
    const steps = [...Array.from({ length: 8 }, (_, i) => on('a', createStep(i))), ...Array.from({ length: 6 }, (_, i) => on('b', createStep(10 + i)))];
    const providers = new ProviderSet(new Map([['a', a], ['b', b]]));
    // The default stack (breaker threshold 5), as the CLI applies with.
    const result = await apply(planOf(steps), providers, { concurrency: 1, clock: fakeClock() });
    const codes = (name: string) => result.outcomes.filter((o) => o.step.provider === name).map((o) => o.error?.code ?? o.status);
    expect(codes('a')).toEqual(['Provider', 'Provider', 'Provider', 'Provider', 'Provider', 'CircuitOpen', 'CircuitOpen', 'CircuitOpen']);
    expect(calls.a).toBe(5);
    expect(codes('b')).toEqual(['done', 'done', 'done', 'done', 'done', 'done']);
    expect(calls.b).toBe(6);
  });

  it('refuses a plan that leaves VMs unplaced, before calling any provider', async () => {
    let calls = 0;
    const p = provider({ create: async (r) => { calls++; return record(r); } });
    const plan = { ...planOf([createStep(0)]), unplaced: [{ id: 'f-web-9', reasons: { memory: 3 }, message: 'no room' }] };
    await expect(apply(plan, set(p))).rejects.toThrow(/fit nowhere.*nothing was changed/);
    expect(calls).toBe(0);
  });

  it('stops starting steps when aborted and reports the rest as skipped', async () => {
    const controller = new AbortController();
    const p = provider({
      create: async (r) => {
        if (r.name === 'f-web-2') controller.abort();
        return record(r);
      },
    });
    const result = await apply(planOf(Array.from({ length: 6 }, (_, i) => createStep(i))), set(p), { concurrency: 1, signal: controller.signal, middleware: new MiddlewareStack() });
    expect(result.aborted).toBe(true);
    expect(result.outcomes.map((o) => o.status)).toEqual(['done', 'done', 'done', 'skipped', 'skipped', 'skipped']);
  });
});

describe('MiddlewareStack', () => {
  it('refuses the same middleware twice', () => {
    const stack = new MiddlewareStack().add('retry', retryMiddleware());
    expect(() => stack.add('retry', retryMiddleware())).toThrow(/already in the stack/);
  });

  it('runs higher priority outermost', async () => {
    const seen: string[] = [];
    const stack = new MiddlewareStack()
      .add('inner', async (_c, next) => { seen.push('inner'); return next(); }, { priority: 1 })
      .add('outer', async (_c, next) => { seen.push('outer'); return next(); }, { priority: 9 });
    await stack.wrap(provider()).inventory();
    expect(seen).toEqual(['outer', 'inner']);
    expect(stack.names()).toEqual(['outer', 'inner']);
  });
});

describe('apply: updates', () => {
  const update = (patch: Partial<Extract<PlanStep, { kind: 'update' }>> = {}): PlanStep => ({
    id: 'update:f-web-0', kind: 'update', vm: 'f-web-0', group: 'web', provider: 'p', host: 'p/h1', reason: 'memory', dependsOn: [],
    ref: { name: 'f-web-0', fleet: 'f' }, from: { cpu: 1, memoryMiB: 512, diskGiB: 1, gpu: 0 }, to: { cpu: 1, memoryMiB: 1024, diskGiB: 1, gpu: 0 },
    specHash: 'h2', changeClass: 'hot-plug', changes: [], allowReboot: true, ...patch,
  });
  const caps = { ...NO_CAPABILITIES, resize: true };

  it('stops and says so when the cheap path fails and the group does not allow a replace', async () => {
    const calls: string[] = [];
    const p = provider({ capabilities: caps, resize: async () => { calls.push('resize'); throw new NovaCronError('Unsupported', 'client', 'memory hot-plug refused by the guest'); }, delete: async () => { calls.push('delete'); } });
    const result = await apply(planOf([update()]), set(p), { middleware: new MiddlewareStack() });
    expect(calls).toEqual(['resize']);
    expect(result.outcomes[0]!.error!.message).toBe('hot-plug change failed (memory hot-plug refused by the guest); the VM was not replaced');
    expect(result.outcomes[0]!.error!.hint).toMatch(/groups\.web\.changes\.fallbackToReplace: true/);
  });

  it('replaces when the cheap path fails and the group allows it', async () => {
    const calls: string[] = [];
    const fallback = (createStep(0) as Extract<PlanStep, { kind: 'create' }>).request;
    const p = provider({
      capabilities: caps,
      resize: async () => { calls.push('resize'); throw new NovaCronError('Unsupported', 'client', 'no'); },
      delete: async () => { calls.push('delete'); },
      create: async (r) => { calls.push('create'); return record(r); },
    });
    const result = await apply(planOf([update({ fallback })]), set(p), { middleware: new MiddlewareStack() });
    expect(result.ok).toBe(true);
    expect(calls).toEqual(['resize', 'delete', 'create']);
  });

  it('does not run a held change, and reports it', async () => {
    let called = false;
    const p = provider({ capabilities: caps, resize: async () => { called = true; throw new Error('unreachable'); } });
    const result = await apply(planOf([update({ changeClass: 'reboot', held: 'needs a reboot and groups.web.changes.allowReboot is false' })]), set(p));
    expect(called).toBe(false);
    expect(result.ok).toBe(false);
    expect(result.outcomes[0]!.status).toBe('skipped');
  });
});

describe('pacing', () => {
  /** A provider that throttles whatever goes beyond 4 calls in flight. */
  function busyProvider() {
    let inFlight = 0;
    const stats = { calls: 0, throttled: 0 };
    const p = provider({
      create: async (r) => {
        stats.calls++;
        if (inFlight >= 4) {
          stats.throttled++;
          throw new ThrottledError('Request limit exceeded');
        }
        inFlight++;
        await new Promise((resolve) => setTimeout(resolve, 2));
        inFlight--;
        return record(r);
      },
    });
    return { p, stats };
  }
  const steps = () => Array.from({ length: 60 }, (_, i) => createStep(i));
  const instant: Clock = { now: () => Date.now(), sleep: async () => undefined };

  it('cuts the calls in flight when throttled, so retries succeed with far fewer throttles', async () => {
    const paced = busyProvider();
    const withPacing = await apply(planOf(steps()), set(paced.p), { concurrency: 20, middleware: defaultMiddlewareStack({ retry: { clock: instant, maxAttempts: 20 }, breaker: false, tracing: false }) });
    const unpaced = busyProvider();
    await apply(planOf(steps()), set(unpaced.p), { concurrency: 20, middleware: defaultMiddlewareStack({ retry: { clock: instant, maxAttempts: 20 }, pacing: false, breaker: false, tracing: false }) });
    expect(withPacing.ok).toBe(true);
    expect(paced.stats.throttled).toBeLessThan(unpaced.stats.throttled / 2);
  });

  it('is soon limited only by the apply\'s concurrency when the provider never throttles (slow start)', async () => {
    let inFlight = 0;
    let peak = 0;
    const p = provider({
      create: async (r) => {
        peak = Math.max(peak, ++inFlight);
        await new Promise((resolve) => setTimeout(resolve, 2));
        inFlight--;
        return record(r);
      },
    });
    const many = Array.from({ length: 200 }, (_, i) => createStep(i));
    await apply(planOf(many), set(p), { concurrency: 50, middleware: defaultMiddlewareStack({ retry: { clock: instant }, breaker: false, tracing: false }) });
    expect(peak).toBe(50);
  });

  it('does not let throttling open the circuit breaker', async () => {
    const { p } = busyProvider();
    const result = await apply(planOf(steps()), set(p), { concurrency: 20, middleware: defaultMiddlewareStack({ retry: { clock: instant, maxAttempts: 20 }, pacing: false, breaker: { threshold: 2 }, tracing: false }) });
    expect(result.outcomes.filter((o) => o.error?.code === 'CircuitOpen')).toEqual([]);
  });
});
