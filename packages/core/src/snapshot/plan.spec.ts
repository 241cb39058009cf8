import { describe, expect, it } from 'vitest';
import { NO_CAPABILITIES, parseFleet, type Capabilities, type SnapshotRecord, type VmRecord } from '../index.js';
import { dueSnapshots, snapshotId } from './due.js';
import { planPrune } from './prune.js';

const fleet = parseFleet({
  name: 'shop',
  providers: { lab: { type: 'sim', generate: { count: 1, cpu: 8, memory: '16GiB' } } },
  groups: {
    db: { count: 1, cpu: 1, memory: '1GiB', image: 'debian-12', snapshots: { schedule: '0 3 * * *', timezone: 'Europe/Berlin', fullEvery: 2, retention: { keepLast: 2 } } },
    web: { count: 1, cpu: 1, memory: '1GiB', image: 'debian-12' },
    cache: { count: 1, cpu: 1, memory: '1GiB', image: 'debian-12', snapshots: { schedule: '*/30 * * * *', kind: 'snapshot', retention: { keepLast: 1 } } },
  },
});
const policy = fleet.groups.db!.snapshots!;

const vm = (name: string, group: string): VmRecord => ({
  name, id: name, provider: 'lab', fleet: 'shop', group, index: 0, specHash: 'h', host: 'lab/h', zone: 'z', state: 'running',
  resources: { cpu: 1, memoryMiB: 1024, diskGiB: 10, gpu: 0 }, image: 'debian-12', labels: {}, addresses: [],
});
const rec = (id: string, takenAt: string, patch: Partial<SnapshotRecord> = {}): SnapshotRecord => ({
  id, provider: 'lab', vm: 'shop-db-0', fleet: 'shop', group: 'db', takenAt, kind: 'full', consistency: 'quiesced', state: 'complete', sizeBytes: 1, diskBytes: 1, ...patch,
});
const caps = (c: Partial<Capabilities>) => new Map([['lab', { ...NO_CAPABILITIES, ...c }]]);
const ALL = caps({ snapshots: true, incrementalSnapshots: true });
// 03:00 Berlin in winter is 02:00Z.
const SLOT = '2025-01-10T02:00:00.000Z';
const NOW = Date.parse('2025-01-10T09:00:00Z');

describe('due snapshots', () => {
  it('makes a VM never backed up due at once, with a full; groups without a policy are not looked at', () => {
    const out = dueSnapshots(fleet, [vm('shop-db-0', 'db'), vm('shop-web-0', 'web')], [], NOW, ALL);
    expect(out.due).toHaveLength(1);
    expect(out.due[0]!.request).toEqual({ id: snapshotId('shop-db-0', Date.parse(SLOT)), kind: 'full', quiesce: true, scheduledFor: SLOT });
    expect(out.due[0]!.request.id).toBe('shop-db-0@20250110T0200Z');
    expect(out.due[0]!.reason).toMatch(/no snapshot yet.*full \(first backup\)/);
  });

  it('is not due once a snapshot covers the latest slot, and is idempotent', () => {
    const records = [rec('x', '2025-01-10T02:00:05Z')];
    const a = dueSnapshots(fleet, [vm('shop-db-0', 'db')], records, NOW, ALL);
    expect(a.due).toEqual([]);
    expect(new Date(a.notDue[0]!.next!).toISOString()).toBe('2025-01-11T02:00:00.000Z');
    expect(dueSnapshots(fleet, [vm('shop-db-0', 'db')], records, NOW, ALL)).toEqual(a);
  });

  it('builds incrementals on the newest backup until fullEvery, then takes a full', () => {
    const one = [rec('f', '2025-01-08T02:00:00Z')];
    expect(dueSnapshots(fleet, [vm('shop-db-0', 'db')], one, NOW, ALL).due[0]!.request).toMatchObject({ kind: 'incremental', parent: 'f' });
    const two = [...one, rec('i1', '2025-01-09T02:00:00Z', { kind: 'incremental', parent: 'f' })];
    expect(dueSnapshots(fleet, [vm('shop-db-0', 'db')], two, NOW, ALL).due[0]!.request).toMatchObject({ kind: 'incremental', parent: 'i1' });
    const three = [...two, rec('i2', '2025-01-09T12:00:00Z', { kind: 'incremental', parent: 'i1' })];
    const due = dueSnapshots(fleet, [vm('shop-db-0', 'db')], three, NOW, ALL).due[0]!;
    expect(due.request.kind).toBe('full');
    expect(due.reason).toMatch(/2 incrementals since the last full; fullEvery 2/);
  });

  it('takes a full when the chain is broken or the provider takes no incrementals', () => {
    const broken = [rec('i1', '2025-01-09T02:00:00Z', { kind: 'incremental', parent: 'gone' })];
    expect(dueSnapshots(fleet, [vm('shop-db-0', 'db')], broken, NOW, ALL).due[0]!.reason).toMatch(/chain of i1 is broken/);
    const full = [rec('f', '2025-01-08T02:00:00Z')];
    expect(dueSnapshots(fleet, [vm('shop-db-0', 'db')], full, NOW, caps({ snapshots: true })).due[0]!.request.kind).toBe('full');
    expect(dueSnapshots(fleet, [vm('shop-db-0', 'db')], full, NOW, caps({})).skipped).toEqual([{ vm: 'shop-db-0', group: 'db', reason: 'provider "lab" does not offer snapshots' }]);
  });

  it('completes an interrupted snapshot of the same slot under its own id', () => {
    const records = [rec('f', '2025-01-09T02:00:00Z'), rec('shop-db-0@20250110T0200Z', '2025-01-10T02:00:00Z', { state: 'incomplete', scheduledFor: SLOT })];
    const due = dueSnapshots(fleet, [vm('shop-db-0', 'db')], records, NOW, ALL).due[0]!;
    expect(due.request).toMatchObject({ id: 'shop-db-0@20250110T0200Z', kind: 'incremental', parent: 'f' });
    expect(due.reason).toMatch(/^completing interrupted/);
  });

  it('makes disk snapshots for kind: snapshot', () => {
    const out = dueSnapshots(fleet, [vm('shop-cache-0', 'cache')], [], NOW, ALL);
    expect(out.due[0]!.request).toMatchObject({ kind: 'disk', scheduledFor: '2025-01-10T09:00:00.000Z' });
  });
});

describe('prune plans', () => {
  it('keeps what the retention names and merges removed links into the kept ones that build on them', () => {
    const records = [
      rec('f', '2025-01-01T02:00:00Z'),
      rec('i1', '2025-01-02T02:00:00Z', { kind: 'incremental', parent: 'f' }),
      rec('i2', '2025-01-03T02:00:00Z', { kind: 'incremental', parent: 'i1' }),
      rec('i3', '2025-01-04T02:00:00Z', { kind: 'incremental', parent: 'i2' }),
    ];
    const plan = planPrune('shop-db-0', records, policy);
    expect(plan.blocked).toBeUndefined();
    expect(plan.keep.map((k) => k.snapshot.id)).toEqual(['i3', 'i2']);
    expect(plan.remove.map((r) => [r.snapshot.id, r.mergedInto])).toEqual([
      ['f', ['i2']],
      ['i1', ['i2']],
    ]);
    expect(plan.remove[0]!.reason).toBe('not kept by retention (restic: keepLast 2)');
  });

  it('prunes nothing when the newest backup failed, in this run or before', () => {
    const records = [rec('a', '2025-01-01T02:00:00Z'), rec('b', '2025-01-02T02:00:00Z'), rec('c', '2025-01-03T02:00:00Z')];
    expect(planPrune('shop-db-0', records, policy, { newestAttemptFailed: 'host unreachable' })).toMatchObject({ remove: [], blocked: expect.stringMatching(/newest backup failed \(host unreachable\)/) });
    const withIncomplete = [...records, rec('d', '2025-01-04T02:00:00Z', { state: 'incomplete', error: 'disk full' })];
    expect(planPrune('shop-db-0', withIncomplete, policy)).toMatchObject({ remove: [], blocked: expect.stringMatching(/newest backup d is incomplete \(disk full\)/) });
  });

  it('removes incomplete snapshots once a newer one completed, and leaves other kinds alone', () => {
    const records = [rec('a', '2025-01-01T02:00:00Z', { state: 'incomplete' }), rec('b', '2025-01-02T02:00:00Z'), rec('c', '2025-01-03T02:00:00Z'), rec('d', '2025-01-03T05:00:00Z', { kind: 'disk' })];
    const plan = planPrune('shop-db-0', records, policy);
    expect(plan.remove.map((r) => [r.snapshot.id, r.reason])).toEqual([['a', 'incomplete, superseded by a newer complete backup']]);
    expect(plan.keep.map((k) => k.snapshot.id)).toEqual(['c', 'b']);
  });

  it('is idempotent: planning again over what it keeps removes nothing', () => {
    const records = Array.from({ length: 30 }, (_, i) => rec(`s${i}`, new Date(Date.UTC(2025, 0, 1) + i * 86_400_000).toISOString(), i % 3 === 0 ? {} : { kind: 'incremental', parent: `s${i - 1}` }));
    const gfs = { ...policy, retention: { ...policy.retention, keepLast: 2, daily: 5, weekly: 3, monthly: 2 } };
    const first = planPrune('shop-db-0', records, gfs);
    const kept = first.keep.map((k) => k.snapshot);
    expect(planPrune('shop-db-0', kept, gfs).remove).toEqual([]);
  });
});
