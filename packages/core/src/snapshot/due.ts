import type { FleetSpec } from '../model/fleet.js';
import type { SnapshotPolicy } from '../model/policies.js';
import type { VmRecord } from '../model/records.js';
import type { Capabilities, SnapshotKind, SnapshotRecord, SnapshotRequest } from '../provider/Provider.js';
import { byVm, chainDepth, newestComplete, policyKinds, timeOf } from './chain.js';
import { parseSchedule, type SnapshotSchedule } from './schedule.js';

/** A snapshot to take now, and why. */
export interface DueSnapshot {
  readonly vm: VmRecord;
  readonly policy: SnapshotPolicy;
  /** The schedule slot it is for (epoch ms). */
  readonly slot: number;
  readonly request: SnapshotRequest & { readonly id: string; readonly kind: SnapshotKind };
  readonly reason: string;
}

export interface NotDue {
  readonly vm: VmRecord;
  /** The next slot (epoch ms), or undefined when the schedule never fires again. */
  readonly next: number | undefined;
  readonly reason: string;
}

export interface DueResult {
  readonly due: readonly DueSnapshot[];
  readonly notDue: readonly NotDue[];
  /** VMs with a policy that cannot be snapshotted, and why. */
  readonly skipped: readonly { readonly vm: string; readonly group: string; readonly reason: string }[];
}

/** The group schedules of a fleet, compiled once (the model already checked them). */
export function fleetSchedules(fleet: FleetSpec): Map<string, SnapshotSchedule> {
  const out = new Map<string, SnapshotSchedule>();
  for (const [group, spec] of Object.entries(fleet.groups)) {
    if (spec.snapshots) out.set(group, parseSchedule(spec.snapshots.schedule, spec.snapshots.timezone, `groups.${group}.snapshots.schedule`));
  }
  return out;
}

/** `shop-db-0@20250102T0200Z`: one id per VM and slot, so a retried tick names the same snapshot. */
export function snapshotId(vm: string, slot: number): string {
  return `${vm}@${new Date(slot).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z').replace(/00Z$/, 'Z')}`;
}

/**
 * What is due at `now`: a VM is due when its schedule had a slot at or before `now` and no
 * complete snapshot of the policy's kind is from that slot or later. A VM never snapshotted is
 * due at once (a missed slot is caught up, as Proxmox's repeat-missed does). Pure, so asking
 * twice gives the same answer, and once the snapshots are taken nothing is due.
 *
 * The kind: a disk snapshot for `kind: snapshot`; otherwise an incremental on the newest
 * complete backup, unless incrementals are off or unsupported, the chain is broken, or it
 * already holds `fullEvery` incrementals, when a full is due. An incomplete snapshot for the
 * same slot is taken again under its own id, which completes it.
 */
export function dueSnapshots(
  fleet: FleetSpec,
  vms: readonly VmRecord[],
  records: readonly SnapshotRecord[],
  now: number,
  capabilities: ReadonlyMap<string, Capabilities>,
  schedules: ReadonlyMap<string, SnapshotSchedule> = fleetSchedules(fleet),
): DueResult {
  const recordsByVm = byVm(records);
  const byId = new Map(records.map((r) => [r.id, r]));
  const due: DueSnapshot[] = [];
  const notDue: NotDue[] = [];
  const skipped: { vm: string; group: string; reason: string }[] = [];
  // Slots depend on the group only: asked of croner once per group, not per VM.
  const slots = new Map<string, { slot: number | undefined; next: number | undefined }>();
  for (const vm of vms) {
    const policy = fleet.groups[vm.group]?.snapshots;
    const schedule = schedules.get(vm.group);
    if (!policy || !schedule) continue;
    const caps = capabilities.get(vm.provider);
    if (!caps?.snapshots) {
      skipped.push({ vm: vm.name, group: vm.group, reason: `provider "${vm.provider}" does not offer snapshots` });
      continue;
    }
    let cached = slots.get(vm.group);
    if (!cached) slots.set(vm.group, (cached = { slot: schedule.latestAtOrBefore(now), next: schedule.nextAfter(now) }));
    const { slot, next } = cached;
    if (slot === undefined) {
      notDue.push({ vm, next, reason: 'the schedule has not fired yet' });
      continue;
    }
    const own = recordsByVm.get(vm.name) ?? [];
    const kinds = policyKinds(policy);
    const newest = newestComplete(own, kinds);
    const covers = (r: SnapshotRecord) => Math.max(timeOf(r), r.scheduledFor ? Date.parse(r.scheduledFor) : -Infinity) >= slot;
    if (newest && own.some((r) => r.state === 'complete' && kinds.includes(r.kind) && covers(r))) {
      notDue.push({ vm, next, reason: `${newest.id} covers the slot of ${new Date(slot).toISOString()}` });
      continue;
    }
    const pending = own.filter((r) => r.state === 'incomplete' && r.scheduledFor !== undefined && Date.parse(r.scheduledFor) === slot).at(-1);
    const id = pending?.id ?? snapshotId(vm.name, slot);
    const { kind, parent, why } = chooseKind(policy, newest, byId, caps);
    due.push({
      vm,
      policy,
      slot,
      request: {
        id,
        kind,
        ...(parent ? { parent } : {}),
        ...(policy.target ? { target: policy.target } : {}),
        quiesce: policy.quiesce,
        scheduledFor: new Date(slot).toISOString(),
      },
      reason: `${pending ? `completing interrupted ${pending.id}; ` : ''}${newest ? `newest is ${newest.id}` : 'no snapshot yet'}; slot ${new Date(slot).toISOString()}; ${why}`,
    });
  }
  return { due, notDue, skipped };
}

function chooseKind(
  policy: SnapshotPolicy,
  newest: SnapshotRecord | undefined,
  byId: ReadonlyMap<string, SnapshotRecord>,
  caps: Capabilities,
): { kind: SnapshotKind; parent?: string; why: string } {
  if (policy.kind === 'snapshot') return { kind: 'disk', why: 'disk snapshot' };
  if (!policy.incremental) return { kind: 'full', why: 'full (incremental: false)' };
  if (!caps.incrementalSnapshots) return { kind: 'full', why: 'full (the provider takes no incrementals)' };
  if (!newest) return { kind: 'full', why: 'full (first backup)' };
  const depth = chainDepth(newest, byId);
  if (depth === undefined) return { kind: 'full', why: `full (the chain of ${newest.id} is broken)` };
  if (depth >= policy.fullEvery) return { kind: 'full', why: `full (${depth} incrementals since the last full; fullEvery ${policy.fullEvery})` };
  return { kind: 'incremental', parent: newest.id, why: `incremental ${depth + 1} of ${policy.fullEvery} on ${newest.id}` };
}
