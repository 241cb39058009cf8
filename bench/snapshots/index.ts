/**
 * bench/snapshots: incremental backups on the sim's block model, against full-only backups of
 * the same workload in the same run.
 *
 * For K = 1, 16, 128 MiB of new guest data between backups: a full, then a chain of 10
 * incrementals. Reported: bytes stored per incremental against the target 1.1 × K + 64 KiB
 * (the manifest), the time of an incremental against a full, the time to restore the last
 * link of the 10-link chain against restoring a full, and whether that restore equals the
 * source disk byte for byte (every block materialised and compared). A second table runs the
 * engine's `tick` over 2,000 VMs against a bare loop of provider calls.
 *
 * Sim timings measure the engine and the block model, not disks or networks. The KVM rows
 * (kvm.ts: libvirt push-mode backups of a guest on the testbed) follow; they need the testbed
 * up and take a few minutes (a TCG guest writes about 8 MiB/s). BENCH_SNAPSHOT_KVM=0 leaves
 * them out.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { apply, observe, parseFleet, plan, ProviderSet, tick, type SimProviderConfig, type SnapshotRecord } from '@novacron/core';
import { SimProvider } from '@novacron/provider-sim';
import { measure, printTable, ratio, verdict } from '../lib/harness.ts';
import { KVM_OVERHEAD, kvmRows } from './kvm.ts';

const MiB = 1024 * 1024;
const KS = (process.env['BENCH_SNAPSHOT_K'] ?? '1,16,128').split(',').map(Number);
const LINKS = 10;
const FLEET_VMS = Number(process.env['BENCH_SNAPSHOT_VMS'] ?? 2000);
const OVERHEAD = 64 * 1024;

const fleet = parseFleet({
  name: 'bench',
  providers: { lab: { type: 'sim', generate: { count: 40, cpu: 256, memory: '1TiB', disk: '64TiB' } } },
  groups: {
    app: { count: FLEET_VMS, cpu: 2, memory: '4GiB', disk: '20GiB', image: 'img', snapshots: { schedule: '0 * * * *', fullEvery: 6, retention: { keepLast: 3 } } },
  },
});
const config = fleet.providers.lab as SimProviderConfig;

/** A clock the benchmark moves: an hour between backups, so each incremental is its own slot. */
function benchClock(start = Date.parse('2025-01-01T00:30:00Z')) {
  let now = start;
  return { now: () => now, sleep: async (ms: number) => void (now += ms), set: (t: number) => void (now = t) };
}

interface ChainRun {
  readonly incrementalBytes: number;
  readonly fullBytes: number;
  readonly incrementalMs: number;
  readonly fullMs: number;
  readonly restoreMs: number;
  readonly byteEqual: boolean;
}

/** One VM (1 GiB disk), K MiB written between backups; incrementals or fulls only. */
async function chain(k: number, mode: 'incremental' | 'full', dir: string): Promise<ChainRun> {
  const clock = benchClock();
  const sim = SimProvider.open({ name: 'lab', config, stateDir: dir, clock });
  const ref = { name: 'bench-app-0', fleet: 'bench' };
  await sim.create({ name: ref.name, ownership: { fleet: 'bench', group: 'app', index: 0, specHash: 'h' }, host: 'lab/host-01', resources: { cpu: 2, memoryMiB: 4096, diskGiB: 1, gpu: 0 }, image: 'img', labels: {}, workload: { dirtyRateMiBps: 0 } });
  sim.disks.setWorkload(ref.name, { hotSetMiB: 512 }); // the whole data area behind the 512 MiB image
  const full = await measure(() => sim.snapshot(ref, { kind: 'full', id: 's0' }));
  let parent: SnapshotRecord = full.value;
  const links: { ms: number; bytes: number }[] = [];
  for (let i = 1; i <= LINKS; i++) {
    sim.disks.write(ref.name, { lengthMiB: k });
    const taken = await measure(() => sim.snapshot(ref, mode === 'incremental' ? { kind: 'incremental', parent: parent.id, id: `s${i}` } : { kind: 'full', id: `s${i}` }));
    if (taken.value.kind !== mode) throw new Error(`asked for ${mode}, got ${taken.value.kind}`);
    links.push({ ms: taken.ms, bytes: taken.value.sizeBytes });
    parent = taken.value;
  }
  const restored = await measure(() => sim.restore(ref, { snapshot: parent.id, asName: 'restored' }));
  if (restored.value.digest !== parent.digest) throw new Error('restored digest differs from the recorded one');
  const byteEqual = sim.disks.firstDifference(ref.name, 'restored') === -1;
  await sim.close();
  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    incrementalBytes: avg(links.map((l) => l.bytes)),
    fullBytes: full.value.sizeBytes,
    incrementalMs: avg(links.map((l) => l.ms)),
    fullMs: full.ms,
    restoreMs: restored.ms,
    byteEqual,
  };
}

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'novacron-bench-snap-'));
  dirs.push(d);
  return d;
};

try {
  const rows = [];
  for (const k of KS) {
    const inc = await chain(k, 'incremental', tmp());
    const base = await chain(k, 'full', tmp());
    const target = 1.1 * k * MiB + OVERHEAD;
    const ok = inc.incrementalBytes <= target && inc.byteEqual && base.byteEqual;
    rows.push([
      k,
      inc.incrementalBytes / MiB,
      target / MiB,
      base.incrementalBytes / MiB,
      ratio(inc.incrementalBytes, base.incrementalBytes),
      inc.incrementalMs,
      base.incrementalMs,
      ratio(inc.incrementalMs, base.incrementalMs),
      inc.restoreMs,
      base.restoreMs,
      ratio(inc.restoreMs, base.restoreMs),
      inc.byteEqual ? 'yes' : 'NO',
      verdict(ok),
    ]);
  }
  printTable(
    `snapshots: ${LINKS} backups of a 1 GiB sim disk (512 MiB image) with K MiB of new data before each; incremental chain vs full-only baseline (Node ${process.version})`,
    ['K MiB', 'incr stored MiB', 'target ≤ MiB', 'full stored MiB', 'ratio', 'incr ms', 'full ms', 'ratio', `restore link ${LINKS} ms`, 'restore full ms', 'ratio', 'byte-equal', 'verdict'],
    rows,
  );

  if (process.env['BENCH_SNAPSHOT_KVM'] !== '0') {
    const kvm = await kvmRows(KS, LINKS);
    printTable(
      `snapshots on KVM: ${LINKS} libvirt push-mode incrementals of a 1 GiB disk (TCG guest on testbed host ${kvm.host}, SSH command round trip ${kvm.roundTripMs.toFixed(0)} ms) with K MiB written in the guest before each; baseline: a full of the same disk after the chain (target 1.1 × K + ${KVM_OVERHEAD / 1024} KiB)`,
      ['K MiB', 'incr stored MiB', 'target ≤ MiB', 'full stored MiB', 'ratio', 'incr ms', 'full ms', 'ratio', `restore link ${LINKS} ms`, 'restore full ms', 'ratio', 'byte-equal', 'verdict'],
      kvm.rows,
    );
  }

  // The engine over a fleet: a first tick takes fulls, the next ones incrementals and prune.
  const clock = benchClock();
  const sim = SimProvider.open({ name: 'lab', config, stateDir: tmp(), clock });
  const set = new ProviderSet(new Map([['lab', sim]]));
  const created = await apply(plan(fleet, await observe(fleet, set)), set, { concurrency: 32 });
  if (!created.ok) throw new Error('could not create the fleet');
  const at = (hour: number) => Date.parse('2025-01-01T00:10:00Z') + hour * 3_600_000;
  const ticks = [];
  for (let h = 1; h <= 5; h++) {
    clock.set(at(h));
    const m = await measure((sample) => tick(fleet, set, clock.now(), { clock, middleware: false, concurrency: 32, onEvent: sample }));
    if (!m.value.ok) throw new Error(`tick ${h} failed: ${m.value.failed[0]?.error.message}`);
    ticks.push(m);
  }
  // Baseline: the same snapshots as a bare loop of provider calls (no schedule, no retention).
  const vms = await sim.list('bench');
  clock.set(at(6));
  const loop = await measure(async () => {
    for (const vm of vms) await sim.snapshot({ name: vm.name, fleet: 'bench' }, { kind: 'full', id: `${vm.name}-loop` });
  });
  await sim.close();
  const fleetRow = (phase: string, m: { ms: number; peakHeapMiB: number; value: { taken: readonly unknown[]; pruned: readonly unknown[] } }) => [
    phase,
    m.value.taken.length,
    m.value.pruned.length,
    m.ms,
    m.peakHeapMiB,
    loop.ms,
    ratio(m.ms, loop.ms),
  ];
  printTable(
    `snapshot engine: tick over ${FLEET_VMS.toLocaleString('en-US')} sim VMs (20 GiB disks), keepLast 3, fullEvery 6, persisted world`,
    ['tick', 'taken', 'pruned', 'ms', 'peak heap MiB', 'baseline: bare snapshot loop ms', 'ratio'],
    [fleetRow('1: all fulls', ticks[0]!), fleetRow('2: incrementals', ticks[1]!), fleetRow('4: incrementals + prune (merge)', ticks[3]!), fleetRow('5: incrementals + prune (merge)', ticks[4]!)],
  );
} finally {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
