import { describe, expect, it } from 'vitest';
import {
  applyRetention,
  defaultMiddlewareStack,
  listFleetSnapshots,
  restoreAt,
  tick,
  timeOf,
  verifySnapshots,
  type Clock,
  type SnapshotEvent,
  type SnapshotRecord,
} from '@novacron/core';
import { FaultInjector, type SimProvider } from '@novacron/provider-sim';
import { fleetOf, instantClock, openSim, reconcile, setOf, tempDir } from './support/sim.js';

const fleet = fleetOf({
  name: 'shop',
  providers: { lab: { type: 'sim', generate: { count: 2, cpu: 32, memory: '128GiB' } } },
  groups: {
    db: {
      count: 3,
      cpu: 2,
      memory: '4GiB',
      disk: '2GiB',
      image: 'debian-12',
      snapshots: { schedule: '0 3 * * *', timezone: 'Europe/Berlin', fullEvery: 3, retention: { keepLast: 2, daily: 4, weekly: 2 } },
    },
    web: { count: 1, cpu: 1, memory: '1GiB', image: 'debian-12' },
  },
});
const policy = fleet.groups.db!.snapshots!;

function testClock(iso: string): Clock & { set(iso: string): void } {
  let now = Date.parse(iso);
  return { now: () => now, sleep: async (ms) => void (now += ms), set: (s) => void (now = Date.parse(s)) };
}

const middleware = defaultMiddlewareStack({ retry: { clock: instantClock, maxAttempts: 2 }, breaker: { clock: instantClock, threshold: 1000 }, tracing: false });
const day = (n: number) => new Date(Date.UTC(2025, 0, n, 5)).toISOString(); // 05:00Z, after the 03:00 Berlin slot

async function setup(faults?: FaultInjector) {
  const clock = testClock(day(1));
  const sim = openSim(fleet, tempDir(), faults, clock);
  expect((await reconcile(fleet, sim)).result.ok).toBe(true);
  const providers = setOf(sim);
  const run = (options: { verify?: boolean; onEvent?: (e: SnapshotEvent) => void } = {}) => tick(fleet, providers, clock.now(), { clock, middleware, ...options });
  return { clock, sim, providers, run };
}

/** Every kept incremental's chain reaches a complete full. */
function chainsIntact(records: readonly SnapshotRecord[]): boolean {
  const byId = new Map(records.map((r) => [r.id, r]));
  return records.every((r) => {
    let current: SnapshotRecord | undefined = r;
    while (current?.kind === 'incremental') current = byId.get(current.parent!);
    return current !== undefined && current.state === 'complete';
  });
}

const of = (records: readonly SnapshotRecord[], vm: string) => records.filter((r) => r.vm === vm);

describe('snapshot engine on the sim', () => {
  it('takes what is due, is idempotent, builds chains with fullEvery, prunes by retention without breaking chains, and every kept snapshot restores to its recorded digest', async () => {
    const { clock, sim, providers, run } = await setup();
    const first = await run();
    expect(first).toMatchObject({ ok: true, pruned: [], failed: [] });
    expect(first.taken.map((t) => [t.record.vm, t.record.kind])).toEqual(expect.arrayContaining([['shop-db-0', 'full'], ['shop-db-1', 'full'], ['shop-db-2', 'full']]));
    expect(first.taken).toHaveLength(3);
    expect(first.next).toEqual([{ group: 'db', at: '2025-01-02T02:00:00.000Z' }]);
    const again = await run();
    expect(again).toMatchObject({ ok: true, taken: [], pruned: [] });

    const everTaken: SnapshotRecord[] = first.taken.map((t) => t.record);
    const kinds: string[] = [first.taken.find((t) => t.record.vm === 'shop-db-0')!.record.kind];
    for (let d = 2; d <= 40; d++) {
      clock.set(day(d));
      const result = await run();
      expect(result.ok).toBe(true);
      expect(result.taken).toHaveLength(3);
      everTaken.push(...result.taken.map((t) => t.record));
      kinds.push(result.taken.find((t) => t.record.vm === 'shop-db-0')!.record.kind);
      const now = await listFleetSnapshots(fleet, providers, { middleware: false });
      expect(chainsIntact(now)).toBe(true);
      expect((await run()).pruned).toEqual([]); // a second run the same day prunes nothing more
    }
    // Never more than fullEvery incrementals in a row.
    expect(kinds.join('').split('full').every((run) => run.split('incremental').length - 1 <= policy.fullEvery)).toBe(true);
    expect(kinds.filter((k) => k === 'full').length).toBeGreaterThan(1);

    const records = await listFleetSnapshots(fleet, providers, { middleware: false });
    for (const vm of ['shop-db-0', 'shop-db-1', 'shop-db-2']) {
      // What is kept is exactly what the retention names over everything ever taken.
      const all = of(everTaken, vm).map((r) => ({ id: r.id, time: timeOf(r) }));
      const expected = applyRetention(all, policy.retention, { timeZone: policy.timezone }).keep.map((r) => r.id).sort();
      expect(of(records, vm).map((r) => r.id).sort()).toEqual(expected);
    }
    const verified = await verifySnapshots(fleet, providers, { all: true, clock, middleware: false });
    expect(verified.ok).toBe(true);
    expect(verified.results).toHaveLength(records.length);
    expect(verified.results.every((r) => r.recorded && r.snapshot.verified?.ok === true)).toBe(true);
    expect((await sim.list('')).filter((v) => v.name.endsWith('-verify'))).toEqual([]); // scratch VMs are gone
  });

  it('an interrupted backup leaves the chain usable, blocks pruning of that VM only, and the next tick completes it', async () => {
    const faults = new FaultInjector();
    const { clock, providers, run } = await setup(faults);
    for (let d = 1; d <= 12; d++) {
      clock.set(day(d));
      expect((await run()).ok).toBe(true);
    }
    // Monday 13 January: a new ISO week and a new day, so retention drops something of every VM.
    clock.set(day(13));
    faults.add({ operation: 'snapshot', stage: 'copy', action: 'crash', vm: 'shop-db-1', times: 1 });
    const events: SnapshotEvent[] = [];
    const interrupted = await run({ onEvent: (e) => events.push(e) });
    expect(interrupted.ok).toBe(false);
    expect(interrupted.failed).toMatchObject([{ vm: 'shop-db-1', operation: 'snapshot', snapshotId: 'shop-db-1@20250113T0200Z' }]);
    expect(interrupted.blocked).toEqual([{ vm: 'shop-db-1', reason: expect.stringMatching(/the newest backup failed/) }]);
    expect(interrupted.pruned.some((p) => p.snapshot.vm === 'shop-db-0')).toBe(true);
    expect(interrupted.pruned.some((p) => p.snapshot.vm === 'shop-db-1')).toBe(false);
    expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['tick.start', 'snapshot.failed', 'prune.blocked', 'prune.removed', 'tick.done']));

    const listed = of(await listFleetSnapshots(fleet, providers, { middleware: false }), 'shop-db-1');
    expect(listed.at(-1)).toMatchObject({ id: 'shop-db-1@20250113T0200Z', state: 'incomplete' });
    expect(chainsIntact(listed.filter((r) => r.state === 'complete'))).toBe(true);
    const restored = await restoreAt(fleet, providers, 'shop-db-1', clock.now(), { asName: 'rescue', middleware: false });
    expect(restored.snapshot.id).toBe('shop-db-1@20250112T0200Z');
    expect(restored.digest).toBe(restored.snapshot.digest);

    // A later run (still day 13) completes the same snapshot, then prunes.
    const resumed = await run();
    expect(resumed.ok).toBe(true);
    expect(resumed.taken.map((t) => t.record.id)).toEqual(['shop-db-1@20250113T0200Z']);
    expect(resumed.taken[0]!.reason).toMatch(/^completing interrupted/);
    expect(resumed.pruned.some((p) => p.snapshot.vm === 'shop-db-1')).toBe(true);
  });

  it('prunes nothing of a VM whose newest backup failed, until one succeeds', async () => {
    const faults = new FaultInjector();
    const { clock, providers, run } = await setup(faults);
    for (let d = 1; d <= 6; d++) {
      clock.set(day(d));
      await run();
    }
    const before = of(await listFleetSnapshots(fleet, providers, { middleware: false }), 'shop-db-2').map((r) => r.id);
    faults.add({ operation: 'snapshot', action: 'unreachable', vm: 'shop-db-2' });
    for (let d = 7; d <= 20; d++) {
      clock.set(day(d));
      const result = await run();
      expect(result.failed.map((f) => f.vm)).toEqual(['shop-db-2']);
      expect(result.failed[0]!.error.code).toBe('Unreachable');
    }
    // Two weeks of failures: its backups are all still there, though retention would have dropped some.
    expect(of(await listFleetSnapshots(fleet, providers, { middleware: false }), 'shop-db-2').map((r) => r.id)).toEqual(before);
    faults.clear();
    clock.set(day(21));
    const healed = await run();
    expect(healed.ok).toBe(true);
    expect(healed.pruned.filter((p) => p.snapshot.vm === 'shop-db-2').length).toBeGreaterThan(0);
  });

  it('verifies on schedule when the policy asks, and records a corrupted backup as failed', async () => {
    const { clock, sim, providers, run } = await setup();
    const first = await run({ verify: true });
    expect(first.verified).toHaveLength(3);
    expect(first.verified.every((v) => v.verification.ok && v.recorded)).toBe(true);
    clock.set(day(2));
    const second = await run();
    const victim = second.taken.find((t) => t.record.vm === 'shop-db-0')!.record;
    sim.disks.corrupt(victim.id);
    const result = await verifySnapshots(fleet, providers, { vm: 'shop-db-0', clock, middleware: false });
    expect(result.ok).toBe(false);
    expect(result.results).toMatchObject([{ snapshot: { id: victim.id, verified: { ok: false, method: 'checksum' } }, verification: { detail: expect.stringMatching(/digest mismatch/) } }]);
    const listed = (await listFleetSnapshots(fleet, providers, { middleware: false })).find((r) => r.id === victim.id);
    expect(listed?.verified).toMatchObject({ ok: false, at: new Date(clock.now()).toISOString() });
  });

  it('restores the newest snapshot at or before a time, in place, and says when there is none', async () => {
    const { clock, sim, providers, run } = await setup();
    const digests: string[] = [];
    for (let d = 1; d <= 3; d++) {
      clock.set(day(d));
      const r = await run();
      digests.push(r.taken.find((t) => t.record.vm === 'shop-db-0')!.record.digest!);
    }
    clock.set(day(4));
    expect(sim.disks.digest('shop-db-0')).not.toBe(digests[1]);
    const restored = await restoreAt(fleet, providers, 'shop-db-0', Date.parse('2025-01-02T12:00:00Z'), { middleware: false });
    expect(restored.snapshot.takenAt).toBe(day(2));
    expect(restored.vm).toMatchObject({ name: 'shop-db-0', fleet: 'shop', state: 'running' });
    expect(sim.disks.digest('shop-db-0')).toBe(digests[1]);
    await expect(restoreAt(fleet, providers, 'shop-db-0', Date.parse('2024-12-01T00:00:00Z'), { middleware: false })).rejects.toThrow(/no snapshot at or before 2024-12-01T00:00:00.000Z/);
    await expect(restoreAt(fleet, providers, 'shop-web-0', clock.now(), { middleware: false })).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('keeps the newest backup of a deleted VM and prunes the rest by its group policy', async () => {
    const { clock, sim, providers, run } = await setup();
    for (let d = 1; d <= 10; d++) {
      clock.set(day(d));
      await run();
    }
    await sim.delete({ name: 'shop-db-2', fleet: 'shop' });
    clock.set(day(60));
    await run();
    const left = of(await listFleetSnapshots(fleet, providers, { middleware: false }), 'shop-db-2');
    expect(left.length).toBeGreaterThan(0);
    expect(left.at(-1)!.takenAt).toBe(day(10));
    expect(chainsIntact(left)).toBe(true);
    expect((await run()).pruned).toEqual([]);
  });
});

describe('snapshot engine at scale', () => {
  it('backs up, prunes and keeps chains for 2,000 VMs', async () => {
    const big = fleetOf({
      name: 'big',
      providers: { dc: { type: 'sim', generate: { count: 40, cpu: 256, memory: '1TiB' } } },
      groups: { app: { count: 2000, cpu: 2, memory: '4GiB', disk: '20GiB', image: 'img', snapshots: { schedule: '0 * * * *', fullEvery: 4, retention: { keepLast: 3 } } } },
    });
    const clock = testClock('2025-01-01T00:30:00Z');
    const sim: SimProvider = openSim(big, tempDir(), undefined, clock);
    expect((await reconcile(big, sim)).result.ok).toBe(true);
    const providers = setOf(sim);
    for (let h = 1; h <= 6; h++) {
      clock.set(`2025-01-01T${String(h).padStart(2, '0')}:10:00Z`);
      const result = await tick(big, providers, clock.now(), { clock, middleware: false, concurrency: 32 });
      expect(result.ok).toBe(true);
      expect(result.taken).toHaveLength(2000);
      expect(result.pruned).toHaveLength(h > 3 ? 2000 : 0);
    }
    const records = await listFleetSnapshots(big, providers, { middleware: false });
    expect(records).toHaveLength(6000);
    expect(chainsIntact(records)).toBe(true);
    await sim.close();
  }, 120_000);
});
