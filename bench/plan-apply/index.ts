/**
 * bench/plan-apply: plan and apply 10,000 VMs on 1,000 sim hosts with zero latency, then a
 * no-change re-plan. Targets on the reference machine (2 cores): plan < 0.5 s, re-plan
 * < 0.3 s, apply < 5 s, peak heap < 500 MB. Baselines in the same run: the bare read of the
 * providers (the floor under any plan) and a bare sequential loop of provider calls (the
 * floor under any apply), so the ratios show what the engine itself costs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { apply, observe, parseFleet, plan, ProviderSet, systemClock, type CreateStep, type SimProviderConfig } from '@novacron/core';
import { SimProvider } from '@novacron/provider-sim';
import { measure, printTable, ratio, verdict } from '../lib/harness.ts';

const HOSTS = Number(process.env['BENCH_HOSTS'] ?? 1000);
const VMS = Number(process.env['BENCH_VMS'] ?? 10_000);

const fleet = parseFleet({
  name: 'bench',
  providers: { dc: { type: 'sim', generate: { count: HOSTS, zones: ['z1', 'z2', 'z3', 'z4'], cpu: 64, memory: '256GiB', disk: '8TiB', pricePerHour: 1 } } },
  groups: {
    web: { count: VMS * 0.5, cpu: 2, memory: '4GiB', disk: '20GiB', image: 'img' },
    api: { count: VMS * 0.3, cpu: 4, memory: '8GiB', disk: '40GiB', image: 'img' },
    db: { count: VMS * 0.1, cpu: 8, memory: '32GiB', disk: '200GiB', image: 'img', placement: { antiAffinity: 'host' } },
    cache: { count: VMS * 0.1, cpu: 2, memory: '16GiB', disk: '10GiB', image: 'img' },
  },
});
const config = fleet.providers.dc as SimProviderConfig;

function open(stateDir: string): { sim: SimProvider; providers: ProviderSet } {
  const sim = SimProvider.open({ name: 'dc', config, stateDir, clock: systemClock });
  return { sim, providers: new ProviderSet(new Map([['dc', sim]])) };
}

const dir = mkdtempSync(join(tmpdir(), 'novacron-bench-'));
const baseDir = mkdtempSync(join(tmpdir(), 'novacron-bench-base-'));
try {
  let { sim, providers } = open(dir);
  const read = await measure(() => observe(fleet, providers));
  const planned = await measure(async () => plan(fleet, await observe(fleet, providers)));
  const applied = await measure((sample) => apply(planned.value, providers, { onEvent: sample }));
  if (!applied.value.ok) throw new Error('apply failed');
  const replanned = await measure(async () => plan(fleet, await observe(fleet, providers)));
  if (replanned.value.steps.length !== 0) throw new Error(`re-plan found ${replanned.value.steps.length} changes`);
  const reread = await measure(() => observe(fleet, providers));
  await sim.close();

  // Baseline: the same creates as a bare sequential loop, no scheduler, no middleware.
  ({ sim, providers } = open(baseDir));
  const creates = planned.value.steps.filter((s): s is CreateStep => s.kind === 'create');
  const loop = await measure(async () => {
    for (const step of creates) await sim.create(step.request);
  });
  await sim.close();

  const row = (phase: string, m: { ms: number; peakHeapMiB: number }, baseline: string, baseMs: number, targetMs: number) =>
    [phase, m.ms, m.peakHeapMiB, baseline, baseMs, ratio(m.ms, baseMs), `< ${targetMs} ms`, verdict(m.ms < targetMs && m.peakHeapMiB < 500)];
  printTable(
    `plan/apply: ${VMS.toLocaleString('en-US')} VMs on ${HOSTS.toLocaleString('en-US')} sim hosts, zero latency, persisted world (Node ${process.version})`,
    ['phase', 'ms', 'peak heap MiB', 'baseline', 'baseline ms', 'ratio', 'target', 'verdict'],
    [
      row('plan (observe + plan)', planned, 'observe only', read.ms, 500),
      row(`apply (${planned.value.steps.length} steps, concurrency 10)`, applied, 'bare sequential create loop', loop.ms, 5000),
      row('re-plan, no changes', replanned, 'observe only', reread.ms, 300),
    ],
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
  rmSync(baseDir, { recursive: true, force: true });
}
