import { NovaCronError, toNovaCronError } from '../errors/NovaCronError.js';
import { InvalidInputError } from '../errors/errors.js';
import type { ApplyEvent, ApplyListener } from '../events/events.js';
import type { VmRecord } from '../model/records.js';
import { defaultMiddlewareStack } from '../provider/defaultStack.js';
import type { MiddlewareStack } from '../provider/middleware.js';
import type { MigrationResult, OperationContext, Provider } from '../provider/Provider.js';
import type { ProviderSet } from '../provider/registry.js';
import { supports } from '../provider/Provider.js';
import { UnsupportedError } from '../errors/errors.js';
import { systemClock, type Clock } from '../util/clock.js';
import type { MigrateStep, Plan, PlanStep, UpdateStep } from './types.js';
import { moveAcrossProviders } from '../migration/crossProvider.js';
import { splitHostId } from '../model/records.js';

export interface ApplyOptions {
  /** Steps run at once. @default 10 */
  readonly concurrency?: number;
  readonly signal?: AbortSignal;
  readonly onEvent?: ApplyListener;
  /** Retries, circuit breakers and tracing around every provider call. @default defaultMiddlewareStack() */
  readonly middleware?: MiddlewareStack;
  readonly clock?: Clock;
  /** Apply a plan that leaves some VMs unplaced (they are reported, not created). @default false */
  readonly allowUnplaced?: boolean;
}

export interface StepOutcome {
  readonly step: PlanStep;
  readonly status: 'done' | 'failed' | 'skipped';
  readonly durationMs: number;
  readonly error?: NovaCronError;
  readonly vm?: VmRecord;
  readonly migration?: MigrationResult;
}

export interface ApplyResult {
  readonly ok: boolean;
  readonly aborted: boolean;
  readonly outcomes: readonly StepOutcome[];
  readonly durationMs: number;
}

/**
 * Runs a plan's steps, each once its dependencies are done, at most `concurrency` at a
 * time. A failed step skips the steps that depend on it; independent steps go on. Every
 * step is idempotent on its VM's name, so after a crash or an abort a fresh plan and apply
 * converge.
 */
export async function apply(plan: Plan, providers: ProviderSet, options: ApplyOptions = {}): Promise<ApplyResult> {
  if (plan.unplaced.length > 0 && !options.allowUnplaced) {
    throw new InvalidInputError(`${plan.unplaced.length} VM(s) fit nowhere (${plan.unplaced.slice(0, 3).map((u) => u.id).join(', ')}${plan.unplaced.length > 3 ? ', …' : ''}); nothing was changed`, {
      hint: 'add capacity, relax the placement rules or lower the count',
    });
  }
  const concurrency = Math.max(1, options.concurrency ?? 10);
  const clock = options.clock ?? systemClock;
  const stack = options.middleware ?? defaultMiddlewareStack({ retry: { clock }, breaker: { clock } });
  const wrapped = providers.map((p) => stack.wrap(p));
  const emit = (event: ApplyEvent) => options.onEvent?.(event);
  const started = clock.now();

  const byId = new Map(plan.steps.map((s) => [s.id, s]));
  const waiting = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  for (const step of plan.steps) {
    const deps = step.dependsOn.filter((d) => byId.has(d));
    waiting.set(step.id, deps.length);
    for (const dep of deps) dependents.set(dep, [...(dependents.get(dep) ?? []), step.id]);
  }
  const ready: PlanStep[] = plan.steps.filter((s) => waiting.get(s.id) === 0);
  const outcomes = new Map<string, StepOutcome>();

  emit({ type: 'apply.start', fleet: plan.fleet, steps: plan.steps.length, at: started });

  // Migrations load both ends: at most `perHostConcurrency` of them leave or enter a host at once.
  const busy = new Map<string, number>();
  const hostsOf = (step: PlanStep) => (step.kind === 'migrate' ? [step.from, step.to] : []);
  const admits = (step: PlanStep) => step.kind !== 'migrate' || hostsOf(step).every((h) => (busy.get(h) ?? 0) < step.policy.perHostConcurrency);
  const hold = (step: PlanStep, delta: number) => {
    for (const h of hostsOf(step)) busy.set(h, (busy.get(h) ?? 0) + delta);
  };

  const skip = (id: string, reason: string) => {
    if (outcomes.has(id)) return;
    const step = byId.get(id)!;
    outcomes.set(id, { step, status: 'skipped', durationMs: 0 });
    emit({ type: 'step.skipped', step, reason, at: clock.now() });
    for (const next of dependents.get(id) ?? []) skip(next, `depends on ${id}, which did not complete`);
  };

  await new Promise<void>((resolve) => {
    let running = 0;
    const pump = () => {
      while (running < concurrency && ready.length > 0 && !options.signal?.aborted) {
        const index = ready.findIndex(admits);
        if (index < 0) break; // every ready step waits for a busy host
        const step = ready.splice(index, 1)[0]!;
        if (outcomes.has(step.id)) continue;
        if (step.kind === 'update' && step.held) {
          skip(step.id, `held: ${step.held}`);
          continue;
        }
        running++;
        hold(step, 1);
        void runStep(step).then((outcome) => {
          running--;
          hold(step, -1);
          outcomes.set(step.id, outcome);
          if (outcome.status === 'done') {
            for (const next of dependents.get(step.id) ?? []) {
              const left = waiting.get(next)! - 1;
              waiting.set(next, left);
              if (left === 0) ready.push(byId.get(next)!);
            }
          } else {
            for (const next of dependents.get(step.id) ?? []) skip(next, `depends on ${step.id}, which failed`);
          }
          pump();
        });
      }
      if (running === 0 && (ready.length === 0 || options.signal?.aborted)) resolve();
    };
    pump();
  });

  for (const step of plan.steps) if (!outcomes.has(step.id)) skip(step.id, options.signal?.aborted ? 'the apply was aborted' : 'never became ready');
  const list = plan.steps.map((s) => outcomes.get(s.id)!);
  const failed = list.filter((o) => o.status === 'failed').length;
  const skipped = list.filter((o) => o.status === 'skipped').length;
  const result: ApplyResult = {
    ok: failed === 0 && skipped === 0,
    aborted: options.signal?.aborted ?? false,
    outcomes: list,
    durationMs: clock.now() - started,
  };
  emit({ type: 'apply.done', ok: result.ok, done: list.length - failed - skipped, failed, skipped, durationMs: result.durationMs, at: clock.now() });
  return result;

  async function runStep(step: PlanStep): Promise<StepOutcome> {
    const t0 = clock.now();
    emit({ type: 'step.start', step, at: t0 });
    const ctx: OperationContext = {
      ...(options.signal ? { signal: options.signal } : {}),
      onProgress: (progress) => emit({ type: 'step.progress', step, progress, at: clock.now() }),
      onRetry: ({ attempt, delayMs, error }) => emit({ type: 'step.retry', step, attempt, delayMs, error: toNovaCronError(error), at: clock.now() }),
    };
    try {
      const value = await execute(step, wrapped, ctx, clock);
      const durationMs = clock.now() - t0;
      emit({ type: 'step.done', step, durationMs, ...value, at: clock.now() });
      return { step, status: 'done', durationMs, ...value };
    } catch (thrown) {
      const error = toNovaCronError(thrown, { provider: step.provider, vm: step.vm, operation: step.kind });
      emit({ type: 'step.failed', step, error, at: clock.now() });
      return { step, status: 'failed', durationMs: clock.now() - t0, error };
    }
  }
}

async function execute(step: PlanStep, providers: ProviderSet, ctx: OperationContext, clock: Clock): Promise<{ vm?: VmRecord; migration?: MigrationResult }> {
  const provider = providers.get(step.provider);
  switch (step.kind) {
    case 'create':
    case 'replace':
      return { vm: await provider.create(step.request, ctx) };
    case 'delete':
      await provider.delete(step.ref, ctx);
      return {};
    case 'start':
      return { vm: await provider.start(step.ref, ctx) };
    case 'update':
      return updateOrFallBack(step, provider, ctx);
    case 'migrate': {
      const migration = step.create
        ? await moveAcrossProviders({ ...crossEnds(step, provider, providers.get(splitHostId(step.to).provider)), ref: step.ref, create: step.create, clock, ctx })
        : await need(provider, step.mode === 'live' ? 'liveMigration' : 'coldMigration', step).migrate(step.ref, { toHost: step.to, mode: step.mode, policy: step.policy }, ctx);
      return { vm: migration.vm, migration };
    }
  }
}

/**
 * The cheap path first. When it fails, the VM is replaced only if the group allows it;
 * otherwise the step fails and says what failed and how to allow the fallback.
 */
async function updateOrFallBack(step: UpdateStep, provider: Provider, ctx: OperationContext): Promise<{ vm?: VmRecord }> {
  const request = {
    resources: step.to,
    specHash: step.specHash,
    // A reboot only where the plan said so: a hot-plug that turns out to need one is a failed
    // cheap path (reported, or replaced when allowed), never a silent reboot.
    allowReboot: step.allowReboot && step.changeClass === 'reboot',
    ...(step.labels ? { labels: step.labels } : {}),
    ...(step.cloudInit ? { cloudInit: step.cloudInit } : {}),
    ...(step.reboot ? { reboot: true } : {}),
    ...(step.instanceType ? { instanceType: step.instanceType } : {}),
    ...(step.nics ? { nics: step.nics } : {}),
  };
  try {
    return { vm: await need(provider, 'resize', step).resize(step.ref, request, ctx) };
  } catch (thrown) {
    const error = toNovaCronError(thrown, { provider: step.provider, vm: step.vm, operation: step.changeClass });
    if (error.code === 'Aborted' || error.retryable) throw error;
    if (!step.fallback) {
      throw new NovaCronError(error.code, error.fault, `${step.changeClass} change failed (${error.message}); the VM was not replaced`, {
        context: error.context,
        hint: `set groups.${step.group}.changes.fallbackToReplace: true to replace the VM when this happens`,
        cause: error,
      });
    }
    await provider.delete(step.ref, ctx);
    return { vm: await provider.create(step.fallback, ctx) };
  }
}

function crossEnds(step: MigrateStep, source: Provider, target: Provider) {
  if (!supports(source, 'imageExport')) throw new UnsupportedError(`provider "${source.name}" cannot export disks`, { context: { provider: source.name, vm: step.vm } });
  if (!supports(target, 'imageImport')) throw new UnsupportedError(`provider "${target.name}" cannot import disks`, { context: { provider: target.name, vm: step.vm } });
  return { source, target };
}

function need<C extends 'resize' | 'liveMigration' | 'coldMigration'>(provider: Provider, capability: C, step: PlanStep) {
  if (!supports(provider, capability)) {
    throw new UnsupportedError(`provider "${provider.name}" cannot ${step.kind} (capability ${capability} not offered)`, {
      context: { provider: provider.name, vm: step.vm, operation: step.kind },
    });
  }
  return provider;
}
