/**
 * bench/cloud: plan and apply 500 VMs on a mocked EC2 that throttles as EC2 does, then
 * destroy them, against a naive loop over the same SDK client (one RunInstances per VM,
 * each VM polled on its own, throttled calls retried every second without backoff or
 * jitter). Both talk to the same stateful fake (aws-sdk-client-mock in front of FakeEc2) with
 * the same request-rate buckets and the same 50 operations in flight.
 *
 * Time is simulated: the fake, the provider's waiters and the core's backoff all run on one
 * clock that goes SCALE times faster than the wall clock, so EC2's rates (a mutating bucket of
 * 50 refilled at 5/s, a describe bucket of 100 refilled at 20/s, 10 s from pending to
 * running) play out in seconds. "sim s" is EC2 time; "wall ms" is what the run took here.
 *
 *     npm run build && node bench/cloud/index.ts        (BENCH_VMS, BENCH_SCALE to change)
 */
import { performance } from 'node:perf_hooks';
import { DescribeInstancesCommand, EC2Client, RunInstancesCommand, TerminateInstancesCommand, type _InstanceType } from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import { apply, defaultMiddlewareStack, observe, parseFleet, plan, ProviderSet, systemClock, type AwsProviderConfig, type Clock, type CreateStep } from '@novacron/core';
import { AwsProvider } from '@novacron/provider-aws';
import { FakeEc2 } from '@novacron/provider-aws/testing';
import { mockClient } from 'aws-sdk-client-mock';
import { printTable, ratio } from '../lib/harness.ts';

const VMS = Number(process.env['BENCH_VMS'] ?? 500);
const SCALE = Number(process.env['BENCH_SCALE'] ?? 25);
/** Operations in flight: the core's apply concurrency, and the naive loop's pool. */
const LEVELS = (process.env['BENCH_CONCURRENCY'] ?? '50,200').split(',').map(Number);
const ZONES = ['us-east-1a', 'us-east-1b', 'us-east-1c'];
const AMI = 'ami-0d3b1a9e5f0c2a001';

/** EC2's published default request-rate buckets (per account and region). */
const THROTTLE = { mutating: { capacity: 50, refillPerSec: 5 }, describe: { capacity: 100, refillPerSec: 20 } };

function scaledClock(scale: number): Clock {
  const t0 = performance.now();
  const base = Date.parse('2026-11-27T10:00:00Z');
  return { now: () => base + (performance.now() - t0) * scale, sleep: (ms, signal) => systemClock.sleep(ms / scale, signal) };
}

function world(clock: Clock) {
  const fake = new FakeEc2({
    zones: ZONES,
    now: () => clock.now(),
    transitionMs: 10_000,
    throttle: THROTTLE,
    images: [{ ImageId: AMI, Name: 'debian-12-amd64-20261101', OwnerId: '136693071363', RootDeviceName: '/dev/xvda', State: 'available', CreationDate: '2026-11-01T00:00:00.000Z' }],
  });
  const ec2 = new EC2Client({ region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } });
  mockClient(ec2).send.callsFake(fake.send);
  return { fake, ec2 };
}

const fleet = parseFleet({
  name: 'bench',
  providers: { aws: { type: 'aws', region: 'us-east-1', zones: ZONES, images: { 'debian-12': AMI } } },
  groups: {
    web: { count: Math.round(VMS * 0.6), cpu: 2, memory: '4GiB', disk: '20GiB', image: 'debian-12', placement: { spread: { key: 'zone', maxSkew: 1 } } },
    api: { count: Math.round(VMS * 0.3), cpu: 4, memory: '8GiB', disk: '40GiB', image: 'debian-12' },
    worker: { count: VMS - Math.round(VMS * 0.6) - Math.round(VMS * 0.3), cpu: 8, memory: '32GiB', disk: '100GiB', image: 'debian-12' },
  },
});

interface Run {
  readonly wallMs: number;
  readonly simSec: number;
  readonly calls: number;
  readonly throttled: number;
  readonly runInstances: number;
  readonly describes: number;
  readonly terminates: number;
  readonly done: number;
  readonly failed: number;
}

function snapshot(fake: FakeEc2): { calls: number; throttled: number; run: number; describe: number; terminate: number } {
  return { calls: fake.totalCalls, throttled: fake.throttled, run: fake.count('RunInstances'), describe: fake.count('DescribeInstances'), terminate: fake.count('TerminateInstances') };
}

async function timed(clock: Clock, fake: FakeEc2, fn: () => Promise<{ done: number; failed: number }>): Promise<Run> {
  const before = snapshot(fake);
  const t0 = performance.now();
  const s0 = clock.now();
  const { done, failed } = await fn();
  const after = snapshot(fake);
  return {
    wallMs: performance.now() - t0,
    simSec: (clock.now() - s0) / 1000,
    calls: after.calls - before.calls,
    throttled: after.throttled - before.throttled,
    runInstances: after.run - before.run,
    describes: after.describe - before.describe,
    terminates: after.terminate - before.terminate,
    done,
    failed,
  };
}

// ---- NovaCron: observe + plan + apply through the core, with the EC2 provider ----------------

async function novacron(concurrency: number) {
  const clock = scaledClock(SCALE);
  const { fake, ec2 } = world(clock);
  const provider = new AwsProvider({ name: 'aws', config: fleet.providers['aws'] as AwsProviderConfig, clock, clients: { ec2: () => ec2, s3: () => new S3Client({ region: 'us-east-1' }) } });
  const providers = new ProviderSet(new Map([['aws', provider]]));
  // The core's default stack: retry (backoff with full jitter; more attempts than the default
  // 4, as a fleet this size meets the rate limit for minutes), per-provider AIMD pacing and the
  // circuit breaker, which does not count Throttled (see the notes printed below the table).
  const middleware = defaultMiddlewareStack({ retry: { clock, maxAttempts: 12, baseDelayMs: 500, maxDelayMs: 20_000 }, breaker: { clock }, tracing: false });
  const wrapped = providers.map((p) => middleware.wrap(p));
  let planned = plan(fleet, await observe(fleet, wrapped));
  const planRun = await timed(clock, fake, async () => {
    planned = plan(fleet, await observe(fleet, wrapped));
    return { done: planned.steps.length, failed: planned.unplaced.length };
  });
  const applyRun = await timed(clock, fake, async () => {
    const result = await apply(planned, providers, { clock, middleware, concurrency });
    return { done: result.outcomes.filter((o) => o.status === 'done').length, failed: result.outcomes.filter((o) => o.status !== 'done').length };
  });
  // Steps that gave up (throttled on every attempt) are what a re-run is for: it plans only them.
  const rerun = applyRun.failed === 0
    ? undefined
    : await timed(clock, fake, async () => {
        const again = plan(fleet, await observe(fleet, wrapped));
        const result = await apply(again, providers, { clock, middleware, concurrency });
        return { done: result.outcomes.filter((o) => o.status === 'done').length, failed: result.outcomes.filter((o) => o.status !== 'done').length };
      });
  const running = fake.describe().filter((i) => i.State?.Name === 'running').length;
  const destroyRun = await timed(clock, fake, async () => {
    const teardown = plan(fleet, await observe(fleet, wrapped), { destroy: true });
    const result = await apply(teardown, providers, { clock, middleware, concurrency });
    return { done: result.outcomes.filter((o) => o.status === 'done').length, failed: result.outcomes.filter((o) => o.status !== 'done').length };
  });
  return { planRun, applyRun, rerun, destroyRun, running, polls: provider.waiterPolls, cost: planned.costPerHour, creates: planned.steps.filter((s): s is CreateStep => s.kind === 'create') };
}

// ---- the naive loop: same calls a hand-written script makes ----------------------------------

async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<{ done: number; failed: number }> {
  let next = 0;
  let done = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) {
        const item = items[next++]!;
        try {
          await fn(item);
          done++;
        } catch {
          failed++;
        }
      }
    }),
  );
  return { done, failed };
}

const isThrottled = (e: unknown) => (e as { name?: string }).name === 'RequestLimitExceeded';

async function naive(creates: readonly CreateStep[], concurrency: number) {
  const clock = scaledClock(SCALE);
  const { fake, ec2 } = world(clock);
  /** Calls until it is not throttled, waiting a flat second between tries. */
  const persist = async <T>(call: () => Promise<T>): Promise<T> => {
    for (;;) {
      try {
        return await call();
      } catch (e) {
        if (!isThrottled(e)) throw e;
        await clock.sleep(1000);
      }
    }
  };
  const waitFor = async (id: string, state: string) => {
    for (;;) {
      await clock.sleep(2000);
      const out = await persist(() => ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] })));
      if (out.Reservations?.[0]?.Instances?.[0]?.State?.Name === state) return;
    }
  };
  const ids: string[] = [];
  const applyRun = await timed(clock, fake, () =>
    pool(creates, concurrency, async (step) => {
      const zone = step.host.split('/')[1]!;
      const out = await persist(() =>
        ec2.send(
          new RunInstancesCommand({
            ImageId: AMI,
            InstanceType: step.request.instanceType as _InstanceType,
            MinCount: 1,
            MaxCount: 1,
            Placement: { AvailabilityZone: zone },
            ClientToken: `naive-${step.vm}`,
            TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'Name', Value: step.vm }] }],
          }),
        ),
      );
      const id = out.Instances![0]!.InstanceId!;
      ids.push(id);
      await waitFor(id, 'running');
    }),
  );
  const running = fake.describe().filter((i) => i.State?.Name === 'running').length;
  const destroyRun = await timed(clock, fake, () =>
    pool(ids, concurrency, async (id) => {
      await persist(() => ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] })));
      await waitFor(id, 'terminated');
    }),
  );
  return { applyRun, destroyRun, running };
}

const row = (name: string, r: Run, b?: Run, steps = `${r.done}/${r.done + r.failed}`): (string | number)[] => [
  name,
  steps,
  Math.round(r.wallMs),
  Math.round(r.simSec),
  r.calls,
  r.throttled,
  r.runInstances,
  r.describes,
  r.terminates,
  b ? ratio(r.calls, b.calls) : '-',
  b ? ratio(r.simSec, b.simSec) : '-',
];
const rows: (string | number)[][] = [];
const notes: string[] = [];
const gaveUp: string[] = [];
for (const concurrency of LEVELS) {
  const ours = await novacron(concurrency);
  const base = await naive(ours.creates, concurrency);
  if (rows.length === 0) rows.push(row('NovaCron plan (observe + plan)', ours.planRun, undefined, `${ours.planRun.done} steps`));
  rows.push(
    row(`NovaCron apply, ${concurrency} in flight`, ours.applyRun, base.applyRun),
    ...(ours.rerun ? [row(`NovaCron apply re-run (the steps that gave up)`, ours.rerun)] : []),
    row(`naive create loop, ${concurrency} in flight`, base.applyRun),
    row(`NovaCron destroy, ${concurrency} in flight`, ours.destroyRun, base.destroyRun),
    row(`naive terminate loop, ${concurrency} in flight`, base.destroyRun),
  );
  if (ours.applyRun.failed > 0) gaveUp.push(`${ours.applyRun.failed} at ${concurrency} in flight, ${ours.rerun?.failed ? `${ours.rerun.failed} still failing after` : 'all made by'} the re-run`);
  notes.push(`${concurrency} in flight: running after apply NovaCron ${ours.running}, naive ${base.running}; NovaCron waiter passes ${ours.polls}; plan cost $${ours.cost.toFixed(2)}/h`);
}
printTable(
  `cloud: ${VMS} VMs on mocked EC2 with EC2's request-rate limits (mutating 50 @ 5/s, describe 100 @ 20/s), 10 s pending → running, time ×${SCALE} (Node ${process.version})`,
  ['run', 'steps ok', 'wall ms', 'sim s', 'API calls', 'throttled', 'RunInstances', 'DescribeInstances', 'Terminate', 'calls vs naive', 'sim time vs naive'],
  rows,
);
console.log(`\n${notes.join('\n')}`);
console.log('NovaCron: the core\'s default middleware: retry (12 attempts, 500 ms base, full jitter, 20 s cap), per-provider pacing (16 operations in flight at first, slow start to 64 until the first Throttled, then halved once per burst of throttles and additive increase), and the circuit breaker, which ignores Throttled (a rate limit is the API pacing us, not a failing provider).');
if (gaveUp.length > 0) console.log(`Some creates still exhausted their 12 attempts: ${gaveUp.join('; ')}.`);
console.log('naive: one RunInstances per VM, each VM polled every 2 s with its own DescribeInstances, throttled calls retried every 1 s.');
