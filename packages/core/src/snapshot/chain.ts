import type { SnapshotKind, SnapshotRecord } from '../provider/Provider.js';
import type { SnapshotPolicy } from '../model/policies.js';

/** Epoch milliseconds of a record's point in time. */
export function timeOf(record: Pick<SnapshotRecord, 'takenAt'>): number {
  return Date.parse(record.takenAt);
}

/** The kinds a policy makes and prunes: backups form chains (full and incremental); `snapshot` makes disk snapshots. */
export function policyKinds(policy: Pick<SnapshotPolicy, 'kind'>): readonly SnapshotKind[] {
  return policy.kind === 'snapshot' ? ['disk'] : ['full', 'incremental'];
}

/** Records by VM name, each list oldest first. */
export function byVm(records: readonly SnapshotRecord[]): Map<string, SnapshotRecord[]> {
  const out = new Map<string, SnapshotRecord[]>();
  for (const record of records) {
    const list = out.get(record.vm);
    if (list) list.push(record);
    else out.set(record.vm, [record]);
  }
  for (const list of out.values()) list.sort((a, b) => timeOf(a) - timeOf(b) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return out;
}

/** The newest complete record among `records` of the given kinds. */
export function newestComplete(records: readonly SnapshotRecord[], kinds: readonly SnapshotKind[]): SnapshotRecord | undefined {
  let best: SnapshotRecord | undefined;
  for (const r of records) {
    if (r.state !== 'complete' || !kinds.includes(r.kind)) continue;
    if (!best || timeOf(r) > timeOf(best) || (timeOf(r) === timeOf(best) && r.id > best.id)) best = r;
  }
  return best;
}

/**
 * How many incrementals separate `record` from the full its chain starts at, or undefined
 * when the chain is broken (a parent missing or incomplete): then the next backup must be full.
 */
export function chainDepth(record: SnapshotRecord, byId: ReadonlyMap<string, SnapshotRecord>): number | undefined {
  let depth = 0;
  let current: SnapshotRecord | undefined = record;
  const seen = new Set<string>();
  while (current && current.kind === 'incremental') {
    if (seen.has(current.id) || current.parent === undefined) return undefined;
    seen.add(current.id);
    depth++;
    current = byId.get(current.parent);
    if (current && current.state !== 'complete') return undefined;
  }
  return current ? depth : undefined;
}

/** Every record's children (the incrementals built on it). */
export function childrenOf(records: readonly SnapshotRecord[]): Map<string, SnapshotRecord[]> {
  const out = new Map<string, SnapshotRecord[]>();
  for (const r of records) {
    if (r.parent === undefined) continue;
    const list = out.get(r.parent);
    if (list) list.push(r);
    else out.set(r.parent, [r]);
  }
  return out;
}

/**
 * Where a removed snapshot's data ends up once it is merged forward: its nearest
 * descendants that stay. Empty when nothing kept builds on it.
 */
export function mergeTargets(id: string, children: ReadonlyMap<string, readonly SnapshotRecord[]>, removed: ReadonlySet<string>): string[] {
  const out: string[] = [];
  const stack = [...(children.get(id) ?? [])];
  while (stack.length > 0) {
    const child = stack.pop()!;
    if (removed.has(child.id)) stack.push(...(children.get(child.id) ?? []));
    else if (child.state === 'complete') out.push(child.id);
  }
  return out.sort();
}
