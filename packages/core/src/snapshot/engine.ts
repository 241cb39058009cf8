import { NotFoundError, UnsupportedError } from '../errors/errors.js';
import { toNovaCronError, type NovaCronError } from '../errors/NovaCronError.js';
import type { FleetSpec } from '../model/fleet.js';
import type { VmRecord } from '../model/records.js';
import { defaultMiddlewareStack } from '../provider/defaultStack.js';
import type { MiddlewareStack } from '../provider/middleware.js';
import {
  supports,
  type Capabilities,
  type OperationContext,
  type Provider,
  type RestoreResult,
  type SnapshotRecord,
  type SnapshotVerification,
} from '../provider/Provider.js';
import type { ProviderSet } from '../provider/registry.js';
import { naturalCompare } from '../reconcile/plan.js';
import { formatBytes } from '../migration/model.js';
import { systemClock, type Clock } from '../util/clock.js';
import { CalendarCache } from './calendar.js';
import { byVm, timeOf } from './chain.js';
import { dueSnapshots, fleetSchedules, type DueSnapshot } from './due.js';
import type { SnapshotListener } from './events.js';
import { planPrune, type PrunePlan, type PruneRemoval } from './prune.js';

export interface SnapshotEngineOptions {
  readonly signal?: AbortSignal;
  /** Snapshots, prunes or verifications run at once across VMs. @default 8 */
  readonly concurrency?: number;
  readonly onEvent?: SnapshotListener;
  /** Retries, breakers and tracing around provider calls; `false` calls providers bare. @default defaultMiddlewareStack */
  readonly middleware?: MiddlewareStack | false;
  /** For durations, event times, verification times and backoff. */
  readonly clock?: Clock;
}

export interface TickOptions extends SnapshotEngineOptions {
  /** Verify the snapshots this tick takes; default: each group's `verify`. */
  readonly verify?: boolean;
  /** @default true */
  readonly prune?: boolean;
}

export interface TickFailure {
  readonly vm: string;
  readonly operation: 'snapshot' | 'prune' | 'verify';
  readonly snapshotId?: string;
  readonly error: NovaCronError;
}

export interface VerifyOutcome {
  readonly snapshot: SnapshotRecord;
  readonly verification: SnapshotVerification;
  /** False when the provider could not store the result (it is still reported here). */
  readonly recorded: boolean;
}

export interface TickResult {
  readonly fleet: string;
  /** The `now` the tick ran for (ISO 8601). */
  readonly at: string;
  /** True when every due snapshot was taken and every prune and verification succeeded. */
  readonly ok: boolean;
  readonly taken: readonly { readonly record: SnapshotRecord; readonly reason: string; readonly durationMs: number }[];
  readonly failed: readonly TickFailure[];
  readonly pruned: readonly PruneRemoval[];
  readonly blocked: readonly { readonly vm: string; readonly reason: string }[];
  readonly verified: readonly VerifyOutcome[];
  readonly skipped: readonly { readonly vm: string; readonly group: string; readonly reason: string }[];
  /** Each group's next slot after `at`. */
  readonly next: readonly { readonly group: string; readonly at: string }[];
  readonly durationMs: number;
}

/** The snapshot operations of one provider: through the middleware where it reaches, bare where it does not. */
interface SnapshotOps {
  readonly name: string;
  readonly capabilities: Capabilities;
  readonly provider: Provider;
  snapshot: NonNullable<Provider['snapshot']>;
  listSnapshots: NonNullable<Provider['listSnapshots']>;
  restore: NonNullable<Provider['restore']>;
  deleteSnapshot: NonNullable<Provider['deleteSnapshot']>;
  recordVerification: Provider['recordVerification'];
}

interface Observation {
  readonly vms: readonly VmRecord[];
  readonly records: readonly SnapshotRecord[];
  readonly ops: ReadonlyMap<string, SnapshotOps>;
  readonly capabilities: ReadonlyMap<string, Capabilities>;
}

/**
 * One pass of the snapshot engine: takes what is due for every VM of the fleet, prunes what
 * the retention no longer keeps, verifies new snapshots where asked. Idempotent and made for
 * cron: run it as often as you like; a second run at the same `now` finds nothing due and
 * nothing to prune. Failures are collected, never half-handled: a VM whose backup failed is
 * not pruned, an interrupted backup is completed by the next tick under the same id.
 */
export async function tick(fleet: FleetSpec, providers: ProviderSet, now: number | Date, options: TickOptions = {}): Promise<TickResult> {
  const clock = options.clock ?? systemClock;
  const started = clock.now();
  const at = typeof now === 'number' ? now : now.getTime();
  const emit = options.onEvent ?? (() => undefined);
  const observed = await observeSnapshots(fleet, providers, options);
  const schedules = fleetSchedules(fleet);
  const plan = dueSnapshots(fleet, observed.vms, observed.records, at, observed.capabilities, schedules);
  emit({ type: 'tick.start', fleet: fleet.name, due: plan.due.length, at: clock.now() });

  const taken: { record: SnapshotRecord; reason: string; durationMs: number }[] = [];
  const failed: TickFailure[] = [];
  const failedVms = new Map<string, string>();
  await pool(plan.due, options.concurrency ?? 8, options.signal, async (due) => {
    const t0 = clock.now();
    emit({ type: 'snapshot.start', due, at: t0 });
    try {
      const record = await takeSnapshot(observed.ops.get(due.vm.provider)!, due, options, emit, clock);
      const durationMs = clock.now() - t0;
      taken.push({ record, reason: due.reason, durationMs });
      emit({ type: 'snapshot.done', record, durationMs, at: clock.now() });
    } catch (thrown) {
      const error = toNovaCronError(thrown, { provider: due.vm.provider, vm: due.vm.name, operation: 'snapshot' });
      failed.push({ vm: due.vm.name, operation: 'snapshot', snapshotId: due.request.id, error });
      failedVms.set(due.vm.name, error.message);
      emit({ type: 'snapshot.failed', vm: due.vm.name, snapshotId: due.request.id, error, at: clock.now() });
    }
  });

  const records = mergeRecords(observed.records, taken.map((t) => t.record));
  const pruned: PruneRemoval[] = [];
  const blocked: { vm: string; reason: string }[] = [];
  const skipped = [...plan.skipped];
  if (options.prune !== false && !options.signal?.aborted) {
    const plans = prunePlans(fleet, records, failedVms, skipped);
    for (const p of plans) {
      if (p.blocked) {
        blocked.push({ vm: p.vm, reason: p.blocked });
        emit({ type: 'prune.blocked', vm: p.vm, reason: p.blocked, at: clock.now() });
      }
    }
    await pool(plans.filter((p) => p.remove.length > 0), options.concurrency ?? 8, options.signal, async (p) => {
      // One VM's deletions in order, oldest first: each merge moves data one link forward.
      for (const removal of p.remove) {
        if (options.signal?.aborted) return;
        const ops = observed.ops.get(removal.snapshot.provider);
        try {
          if (!ops) throw new NotFoundError(`provider "${removal.snapshot.provider}" is not in this fleet`);
          await ops.deleteSnapshot(removal.snapshot.id, ctxOf(options));
          pruned.push(removal);
          emit({ type: 'prune.removed', removal, at: clock.now() });
        } catch (thrown) {
          const error = toNovaCronError(thrown, { provider: removal.snapshot.provider, vm: p.vm, operation: 'deleteSnapshot' });
          failed.push({ vm: p.vm, operation: 'prune', snapshotId: removal.snapshot.id, error });
          emit({ type: 'prune.failed', removal, error, at: clock.now() });
        }
      }
    });
  }

  const verified: VerifyOutcome[] = [];
  const toVerify = taken.map((t) => t.record).filter((r) => options.verify ?? fleet.groups[r.group]?.snapshots?.verify ?? false);
  await runVerifications(toVerify, observed.ops, options, clock, verified, failed);

  const next = [...schedules].flatMap(([group, schedule]) => {
    const slot = schedule.nextAfter(at);
    return slot === undefined ? [] : [{ group, at: new Date(slot).toISOString() }];
  });
  const durationMs = clock.now() - started;
  const ok = failed.length === 0 && !options.signal?.aborted;
  emit({ type: 'tick.done', ok, taken: taken.length, failed: failed.length, pruned: pruned.length, durationMs, at: clock.now() });
  return { fleet: fleet.name, at: new Date(at).toISOString(), ok, taken, failed, pruned, blocked, verified, skipped, next, durationMs };
}

/** Every snapshot of the fleet, from every provider that keeps them, sorted by VM then time. */
export async function listFleetSnapshots(fleet: FleetSpec, providers: ProviderSet, options: SnapshotEngineOptions = {}): Promise<readonly SnapshotRecord[]> {
  const { records } = await observeSnapshots(fleet, providers, options, false);
  return [...records].sort((a, b) => naturalCompare(a.vm, b.vm) || timeOf(a) - timeOf(b));
}

export interface RestoreAtResult extends RestoreResult {
  readonly snapshot: SnapshotRecord;
}

/**
 * Restores a VM from its newest complete snapshot taken at or before `at`, in place or as a
 * new VM (`asName`). Reconstructing the chain is the provider's work; picking the snapshot is ours.
 */
export async function restoreAt(
  fleet: FleetSpec,
  providers: ProviderSet,
  vm: string,
  at: number | Date,
  options: SnapshotEngineOptions & { readonly asName?: string; readonly onProgress?: OperationContext['onProgress'] } = {},
): Promise<RestoreAtResult> {
  const when = typeof at === 'number' ? at : at.getTime();
  const observed = await observeSnapshots(fleet, providers, options, false);
  const own = byVm(observed.records).get(vm) ?? [];
  const complete = own.filter((r) => r.state === 'complete');
  if (complete.length === 0) {
    throw new NotFoundError(`VM "${vm}" has no complete snapshots`, {
      context: { vm, operation: 'restore' },
      hint: own.length > 0 ? 'its only snapshots are incomplete; run `novacron snapshot tick` to complete them' : 'check the name with `novacron snapshot list`',
    });
  }
  const chosen = complete.filter((r) => timeOf(r) <= when).at(-1);
  if (!chosen) {
    throw new NotFoundError(`VM "${vm}" has no snapshot at or before ${new Date(when).toISOString()}`, {
      context: { vm, operation: 'restore' },
      hint: `the oldest is ${complete[0]!.id} from ${complete[0]!.takenAt}`,
    });
  }
  const ops = observed.ops.get(chosen.provider);
  if (!ops) throw new NotFoundError(`snapshot ${chosen.id} is kept by provider "${chosen.provider}", which this fleet no longer declares`, { context: { vm } });
  const result = await ops.restore(
    { name: vm, fleet: fleet.name },
    { snapshot: chosen.id, ...(options.asName ? { asName: options.asName } : {}) },
    { ...ctxOf(options), ...(options.onProgress ? { onProgress: options.onProgress } : {}) },
  );
  return { ...result, snapshot: chosen };
}

export interface VerifyOptions extends SnapshotEngineOptions {
  /** Only this VM's snapshots. */
  readonly vm?: string;
  /** Exactly these snapshots. */
  readonly snapshots?: readonly string[];
  /** Every complete snapshot rather than each VM's newest. */
  readonly all?: boolean;
}

export interface VerifyResult {
  readonly ok: boolean;
  readonly results: readonly VerifyOutcome[];
  readonly failed: readonly TickFailure[];
}

/**
 * Restore tests: each chosen snapshot is restored into a scratch VM, the digest read back
 * from it is compared with the one recorded at backup time, the scratch VM is booted to its
 * guest's ready marker where the provider can (capability `bootCheck`: `method: boot`), the
 * result is stored with the snapshot and the scratch VM is removed. By default each VM's newest complete snapshot, the
 * one a restore would use.
 */
export async function verifySnapshots(fleet: FleetSpec, providers: ProviderSet, options: VerifyOptions = {}): Promise<VerifyResult> {
  const clock = options.clock ?? systemClock;
  const observed = await observeSnapshots(fleet, providers, options, false);
  let targets = observed.records.filter((r) => r.state === 'complete');
  if (options.vm !== undefined) {
    targets = targets.filter((r) => r.vm === options.vm);
    if (targets.length === 0) throw new NotFoundError(`VM "${options.vm}" has no complete snapshots to verify`, { context: { vm: options.vm, operation: 'verify' }, hint: 'check the name with `novacron snapshot list`' });
  }
  if (options.snapshots) {
    const wanted = new Set(options.snapshots);
    const found = targets.filter((r) => wanted.has(r.id));
    const missing = [...wanted].filter((id) => !found.some((r) => r.id === id));
    if (missing.length > 0) throw new NotFoundError(`no complete snapshot ${missing.map((m) => `"${m}"`).join(', ')}`, { context: { operation: 'verify' } });
    targets = found;
  } else if (!options.all) {
    targets = [...byVm(targets).values()].map((list) => list.at(-1)!);
  }
  const results: VerifyOutcome[] = [];
  const failed: TickFailure[] = [];
  await runVerifications(targets, observed.ops, options, clock, results, failed);
  return { ok: failed.length === 0 && results.every((r) => r.verification.ok), results, failed };
}

/** Each group's next slot after `now`, soonest first: what a daemon sleeps until. */
export function nextSlots(fleet: FleetSpec, now: number): { readonly group: string; readonly at: number }[] {
  return [...fleetSchedules(fleet)]
    .flatMap(([group, schedule]) => {
      const at = schedule.nextAfter(now);
      return at === undefined ? [] : [{ group, at }];
    })
    .sort((a, b) => a.at - b.at || a.group.localeCompare(b.group));
}

// ---- internals ------------------------------------------------------------------------

async function takeSnapshot(ops: SnapshotOps, due: DueSnapshot, options: TickOptions, emit: SnapshotListener, clock: Clock): Promise<SnapshotRecord> {
  const ref = { name: due.vm.name, fleet: due.vm.fleet, id: due.vm.id, host: due.vm.host };
  const record = await ops.snapshot(ref, due.request, {
    ...ctxOf(options),
    onProgress: (progress) => emit({ type: 'snapshot.progress', vm: due.vm.name, progress, at: clock.now() }),
  });
  if (record.state !== 'complete') {
    throw toNovaCronError(new Error(`snapshot ${record.id} ended incomplete${record.error ? `: ${record.error}` : ''}`), { vm: due.vm.name, operation: 'snapshot' });
  }
  return record;
}

async function runVerifications(
  targets: readonly SnapshotRecord[],
  ops: ReadonlyMap<string, SnapshotOps>,
  options: SnapshotEngineOptions,
  clock: Clock,
  results: VerifyOutcome[],
  failed: TickFailure[],
): Promise<void> {
  const emit = options.onEvent ?? (() => undefined);
  // One VM's snapshots one after another: they share the scratch VM's name.
  const perVm = [...byVm(targets).values()];
  await pool(perVm, options.concurrency ?? 8, options.signal, async (list) => {
    for (const snapshot of list) {
      if (options.signal?.aborted) return;
      emit({ type: 'verify.start', snapshot, at: clock.now() });
      try {
        const provider = ops.get(snapshot.provider);
        if (!provider) throw new NotFoundError(`provider "${snapshot.provider}" is not in this fleet`, { context: { vm: snapshot.vm } });
        const outcome = await verifyOne(provider, snapshot, options, clock);
        results.push(outcome);
        emit({ type: 'verify.done', snapshot, verification: outcome.verification, at: clock.now() });
      } catch (thrown) {
        const error = toNovaCronError(thrown, { provider: snapshot.provider, vm: snapshot.vm, operation: 'verify' });
        failed.push({ vm: snapshot.vm, operation: 'verify', snapshotId: snapshot.id, error });
        emit({ type: 'verify.failed', snapshot, error, at: clock.now() });
      }
    }
  });
}

/** The scratch VM a snapshot is restored into for a restore test. */
export function scratchVmName(vm: string): string {
  return `${vm}-verify`;
}

async function verifyOne(ops: SnapshotOps, snapshot: SnapshotRecord, options: SnapshotEngineOptions, clock: Clock): Promise<VerifyOutcome> {
  const ctx = ctxOf(options);
  let restored: RestoreResult | undefined;
  let verification: SnapshotVerification;
  const at = () => new Date(clock.now()).toISOString();
  let phase: 'restore' | 'boot' = 'restore';
  try {
    restored = await ops.restore({ name: snapshot.vm, fleet: snapshot.fleet }, { snapshot: snapshot.id, asName: scratchVmName(snapshot.vm), scratch: true }, ctx);
    verification =
      snapshot.digest === undefined
        ? { at: at(), ok: false, method: 'checksum', detail: 'the provider recorded no digest for this snapshot, so its restore cannot be checked' }
        : restored.digest === undefined
          ? { at: at(), ok: false, method: 'checksum', detail: 'the provider read no digest back from the restored disk' }
          : restored.digest === snapshot.digest
            ? { at: at(), ok: true, method: 'checksum', detail: `restored ${formatBytes(restored.bytesWritten)} into ${restored.vm.name}; digest matches (${short(snapshot.digest)})` }
            : { at: at(), ok: false, method: 'checksum', detail: `digest mismatch: recorded ${short(snapshot.digest)}, restored ${short(restored.digest)}` };
    // Where the provider can boot what it restored (KVM), the data must also boot: the
    // scratch VM is started and has to reach its guest's ready marker.
    if (verification.ok && supports(ops.provider, 'bootCheck')) {
      phase = 'boot';
      const boot = await ops.provider.bootCheck({ name: restored.vm.name, fleet: restored.vm.fleet, host: restored.vm.host }, {}, ctx);
      verification = { at: at(), ok: boot.ok, method: 'boot', detail: boot.ok ? `${verification.detail}; ${boot.detail}` : `digest matches, but the restored VM did not boot: ${boot.detail}` };
    }
  } catch (thrown) {
    const error = toNovaCronError(thrown, { provider: snapshot.provider, vm: snapshot.vm, operation: phase === 'boot' ? 'bootCheck' : 'restore' });
    // A host that did not answer says nothing about the backup: report it, record nothing.
    if (error.retryable || error.code === 'Aborted' || error.code === 'CircuitOpen') throw error;
    verification = { at: at(), ok: false, method: phase === 'boot' ? 'boot' : 'checksum', detail: `${phase === 'boot' ? 'boot check' : 'restore'} failed: ${error.message}` };
  } finally {
    if (restored) {
      await ops.provider.delete({ name: restored.vm.name, fleet: restored.vm.fleet }, ctx).catch(() => undefined);
    }
  }
  if (!ops.recordVerification) {
    return { snapshot: { ...snapshot, verified: verification }, verification, recorded: false };
  }
  const updated = await ops.recordVerification(snapshot.id, verification, ctx);
  return { snapshot: updated, verification, recorded: true };
}

function short(digest: string): string {
  return digest.length > 24 ? `${digest.slice(0, digest.lastIndexOf(':') + 1)}${digest.slice(digest.lastIndexOf(':') + 1, digest.lastIndexOf(':') + 13)}…` : digest;
}

async function observeSnapshots(fleet: FleetSpec, providers: ProviderSet, options: SnapshotEngineOptions, withVms = true): Promise<Observation> {
  const clock = options.clock ?? systemClock;
  const stack = options.middleware === false ? undefined : (options.middleware ?? defaultMiddlewareStack({ retry: { clock }, breaker: { clock } }));
  const ops = new Map<string, SnapshotOps>();
  const capabilities = new Map<string, Capabilities>();
  const listers: Provider[] = [];
  for (const name of Object.keys(fleet.providers)) {
    const raw = providers.get(name);
    capabilities.set(name, raw.capabilities);
    const wrapped = stack ? stack.wrap(raw) : raw;
    // VMs of every provider are listed, so a group on one without snapshots is reported, not silently passed over.
    listers.push(wrapped);
    if (!supports(raw, 'snapshots')) continue;
    if (!supports(wrapped, 'snapshots')) {
      throw new UnsupportedError(`provider "${name}" declares snapshots but lacks snapshot operations`, { context: { provider: name } });
    }
    // recordVerification is called bare when the stack does not pass it through (one built
    // before the operation existed drops it), rather than not at all.
    const through = (wrapped as Provider).recordVerification;
    const recordVerification = typeof through === 'function' ? through.bind(wrapped) : raw.recordVerification?.bind(raw);
    ops.set(name, {
      name,
      capabilities: raw.capabilities,
      provider: wrapped,
      snapshot: wrapped.snapshot.bind(wrapped),
      listSnapshots: wrapped.listSnapshots.bind(wrapped),
      restore: wrapped.restore.bind(wrapped),
      deleteSnapshot: wrapped.deleteSnapshot.bind(wrapped),
      recordVerification,
    });
  }
  const ctx = ctxOf(options);
  const [vms, records] = await Promise.all([
    withVms ? Promise.all(listers.map((p) => p.list(fleet.name, ctx))) : [],
    Promise.all([...ops.values()].map((o) => o.listSnapshots(fleet.name, ctx))),
  ]);
  return { vms: vms.flat(), records: records.flat(), ops, capabilities };
}

/**
 * One prune plan per VM that has snapshots and a policy. Snapshots of VMs deleted since are
 * pruned by their group's policy too (retention never removes the newest, so the last backup
 * of a deleted VM stays); those of groups no longer in the fleet are left alone.
 */
function prunePlans(fleet: FleetSpec, records: readonly SnapshotRecord[], failedVms: ReadonlyMap<string, string>, skipped: { vm: string; group: string; reason: string }[]): PrunePlan[] {
  const calendar = new CalendarCache();
  const plans: PrunePlan[] = [];
  for (const [vm, list] of byVm(records)) {
    const group = list.at(-1)!.group;
    const policy = fleet.groups[group]?.snapshots;
    if (!policy) {
      skipped.push({ vm, group, reason: `group "${group}" has no snapshot policy in this fleet: its snapshots are left alone` });
      continue;
    }
    const failedWith = failedVms.get(vm);
    plans.push(planPrune(vm, list, policy, { calendar, ...(failedWith !== undefined ? { newestAttemptFailed: failedWith } : {}) }));
  }
  return plans;
}

function mergeRecords(before: readonly SnapshotRecord[], taken: readonly SnapshotRecord[]): SnapshotRecord[] {
  const byId = new Map(before.map((r) => [r.id, r]));
  for (const r of taken) byId.set(r.id, r);
  return [...byId.values()];
}

function ctxOf(options: SnapshotEngineOptions): OperationContext {
  return options.signal ? { signal: options.signal } : {};
}

async function pool<T>(items: readonly T[], limit: number, signal: AbortSignal | undefined, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length && !signal?.aborted) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}
