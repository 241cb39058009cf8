import type { SnapshotPolicy } from '../model/policies.js';
import type { SnapshotRecord } from '../provider/Provider.js';
import type { CalendarCache } from './calendar.js';
import { childrenOf, mergeTargets, policyKinds, timeOf } from './chain.js';
import { applyRetention, type KeepReason } from './retention.js';

export interface PruneRemoval {
  readonly snapshot: SnapshotRecord;
  readonly reason: string;
  /** Kept snapshots that build on this one and receive its data before it goes. */
  readonly mergedInto: readonly string[];
}

/** What pruning one VM's snapshots would do. Pure: no provider is called. */
export interface PrunePlan {
  readonly vm: string;
  readonly keep: readonly { readonly snapshot: SnapshotRecord; readonly reasons: readonly KeepReason[] }[];
  /** Oldest first: the order to delete in, so data is merged forward one link at a time. */
  readonly remove: readonly PruneRemoval[];
  /** Set when nothing may be removed, with the reason. */
  readonly blocked?: string;
}

export interface PruneOptions {
  /** This run tried a backup of the VM and it failed. */
  readonly newestAttemptFailed?: string;
  readonly calendar?: CalendarCache;
}

/**
 * Applies a group's retention to one VM's snapshots (all records of that VM, any state).
 *
 * - Only complete snapshots of the policy's kinds take part; other kinds are left alone.
 * - Nothing is removed when the newest backup failed: when this run's attempt failed, or the
 *   newest record is incomplete. Retention counts periods that hold a backup, so pruning
 *   then could drop the last good copy of a period the failed backup should have replaced.
 * - Otherwise incomplete records are removed too: a complete backup has superseded them
 *   (Proxmox does the same with unfinished backups).
 * - A removed snapshot that kept ones build on is merged into them by the provider
 *   (`deleteSnapshot`); `mergedInto` names them. Chains are never cut: merging is chosen over
 *   keeping hidden parents because storage then shrinks as retention says, and a kept
 *   snapshot's restore chain only ever gets shorter.
 */
export function planPrune(vm: string, records: readonly SnapshotRecord[], policy: Pick<SnapshotPolicy, 'kind' | 'retention' | 'timezone'>, options: PruneOptions = {}): PrunePlan {
  const kinds = policyKinds(policy);
  const candidates = records.filter((r) => r.state === 'complete' && kinds.includes(r.kind));
  const incomplete = records.filter((r) => r.state === 'incomplete');
  const everything = { vm, keep: candidates.map((snapshot) => ({ snapshot, reasons: [] })), remove: [] };
  if (options.newestAttemptFailed) {
    return { ...everything, blocked: `the newest backup failed (${options.newestAttemptFailed}): nothing is pruned until one succeeds` };
  }
  const newestTime = Math.max(-Infinity, ...candidates.map(timeOf));
  const unfinished = incomplete.filter((r) => timeOf(r) >= newestTime).sort((a, b) => timeOf(b) - timeOf(a))[0];
  if (unfinished) {
    return { ...everything, blocked: `the newest backup ${unfinished.id} is incomplete${unfinished.error ? ` (${unfinished.error})` : ''}: nothing is pruned until one succeeds` };
  }

  const outcome = applyRetention(
    candidates.map((snapshot) => ({ id: snapshot.id, time: timeOf(snapshot), snapshot })),
    policy.retention,
    { semantics: policy.retention.semantics, timeZone: policy.timezone, ...(options.calendar ? { calendar: options.calendar } : {}) },
  );
  const rules = describeRules(policy.retention);
  const removed = new Set([...outcome.remove.map((r) => r.id), ...incomplete.map((r) => r.id)]);
  const children = childrenOf(records);
  const removals: PruneRemoval[] = [
    ...outcome.remove.map((r) => ({ snapshot: r.snapshot, reason: `not kept by retention (${rules})`, mergedInto: mergeTargets(r.id, children, removed) })),
    ...incomplete.map((snapshot) => ({ snapshot, reason: 'incomplete, superseded by a newer complete backup', mergedInto: [] })),
  ].sort((a, b) => timeOf(a.snapshot) - timeOf(b.snapshot) || (a.snapshot.id < b.snapshot.id ? -1 : 1));
  return {
    vm,
    keep: outcome.keep.map((r) => ({ snapshot: r.snapshot, reasons: outcome.reasons.get(r.id) ?? [] })),
    remove: removals,
  };
}

/** `restic: keepLast 3, daily 7` — for reasons people read. */
export function describeRules(retention: SnapshotPolicy['retention']): string {
  const parts = (['keepLast', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const).filter((k) => retention[k] > 0).map((k) => `${k} ${retention[k]}`);
  return `${retention.semantics}: ${parts.join(', ')}`;
}
