/**
 * bench/placement: the placement engine against two baselines measured in the same run —
 * first-fit (input order, first host that takes it) and the spread-style default of common
 * VM schedulers (each VM on the least-loaded host) — on seeded heterogeneous instances (four
 * host sizes, gpus, overcommit, hosts in maintenance, spread / label / per-host / avoid /
 * zone / anti-affinity rules) and on instances whose optimum is known by construction
 * (VMs cut to fill hosts exactly).
 *
 * Targets (issue 4): 10,000 VMs on 1,000 hosts in < 1 s, 1,000 on 100 in < 100 ms; active
 * hosts and cost within 2% of the lower bound; the optimum on ≥ 90% of known-optimum
 * instances; ≥ 30% fewer active hosts than the spread baseline when consolidation is
 * weighted; zero hard-rule violations (the independent validator checks every result).
 *
 * The bound (lowerBound.ts) is the relaxation per host type and VM class with whole host
 * counts per type, solved by HiGHS; on the 100-host instance it is the optimum (HiGHS reaches
 * it with whole VMs per host), so what remains there is the solver's gap.
 *
 * Times are the median of 7 runs after one warm-up run (a median of 3 on a shared 2-core
 * machine swung by a third from one run of the bench to the next; the first run pays
 * for the JIT; its time is in `cold ms`). Run `npm run build` first: this imports the build.
 */
import { place, validatePlacement, type PlacementRequest, type PlacementWeights } from '@novacron/core';
import { performance } from 'node:perf_hooks';
import { printTable, verdict, type Cell } from '../lib/harness.ts';
import { baseline, objectives } from './baselines.ts';
import { heterogeneous, knownOptimum, type Instance } from './instances.ts';
import { lowerBounds } from './lowerBound.ts';

interface Run {
  readonly ms: number;
  readonly coldMs: number;
  readonly activeHosts: number;
  readonly costPerHour: number;
  readonly violations: number;
  readonly unplaced: number;
}

type Scheduler = { readonly name: string; readonly weights?: PlacementWeights; readonly alternatives?: boolean } | { readonly name: string; readonly baseline: 'first-fit' | 'least-loaded' };

const SCHEDULERS: readonly Scheduler[] = [
  { name: 'engine, default weights (cost 1, consolidation 1)' },
  { name: 'engine, default weights + Pareto alternatives', alternatives: true },
  { name: 'engine, consolidation weighted', weights: { consolidation: 1 } },
  { name: 'engine, cost weighted', weights: { cost: 1 } },
  { name: 'baseline: first-fit', baseline: 'first-fit' },
  { name: 'baseline: least-loaded (spread)', baseline: 'least-loaded' },
];

function timed<T>(fn: () => T, repeats: number): { value: T; ms: number; coldMs: number } {
  let t = performance.now();
  let value = fn();
  const coldMs = performance.now() - t;
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    t = performance.now();
    value = fn();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return { value, ms: times.length ? times[Math.floor(times.length / 2)]! : coldMs, coldMs };
}

function runOne(instance: Instance, scheduler: Scheduler, repeats: number): Run {
  const request: PlacementRequest = instance.request;
  if ('baseline' in scheduler) {
    const { value, ms, coldMs } = timed(() => baseline(request, scheduler.baseline), repeats);
    const o = objectives(request, value);
    return { ms, coldMs, ...o, violations: validatePlacement(request, value).length, unplaced: value.unplaced.length };
  }
  const ask: PlacementRequest = { ...request, alternatives: scheduler.alternatives === true, ...(scheduler.weights ? { weights: scheduler.weights } : {}) };
  const { value, ms, coldMs } = timed(() => place(ask), repeats);
  return {
    ms,
    coldMs,
    activeHosts: value.objectives.activeHosts,
    costPerHour: value.objectives.costPerHour,
    violations: validatePlacement(ask, value).length,
    unplaced: value.unplaced.length,
  };
}

const rows: Cell[][] = [];
const fmtRatio = (x: number) => `${x.toFixed(3)}`;

for (const [hosts, vms, targetMs] of [
  [100, 1000, 100],
  [1000, 10_000, 1000],
] as const) {
  const instance = heterogeneous(hosts, vms, 1);
  const bound = await lowerBounds(instance.request);
  const runs = SCHEDULERS.map((s) => ({ s, r: runOne(instance, s, 7) }));
  const spread = runs.find((x) => 'baseline' in x.s && x.s.baseline === 'least-loaded')!.r;
  for (const { s, r } of runs) {
    const engine = !('baseline' in s);
    const hostsVsLb = r.activeHosts / bound.activeHosts;
    const costVsLb = r.costPerHour / bound.costPerHour;
    const vsSpread = r.activeHosts / spread.activeHosts;
    const checks: [string, boolean][] = [['violations 0', r.violations === 0]];
    if (engine) checks.push([`< ${targetMs} ms`, r.ms < targetMs]);
    if (engine && 'weights' in s && s.weights?.consolidation) checks.push(['hosts ≤ 1.02 bound', hostsVsLb <= 1.02], ['≥ 30% fewer hosts than spread', vsSpread <= 0.7]);
    if (engine && 'weights' in s && s.weights?.cost) checks.push(['cost ≤ 1.02 bound', costVsLb <= 1.02]);
    const failed = checks.filter(([, ok]) => !ok).map(([t]) => t);
    rows.push([
      instance.name,
      s.name,
      Math.round(r.ms),
      Math.round(r.coldMs),
      r.activeHosts,
      r.costPerHour.toFixed(2),
      `${bound.activeHosts} / ${bound.costPerHour.toFixed(2)}`,
      fmtRatio(hostsVsLb),
      fmtRatio(costVsLb),
      '-',
      r.violations,
      r.unplaced,
      fmtRatio(vsSpread),
      engine || r.violations > 0 ? (failed.length ? `FAIL: ${failed.join(', ')}` : verdict(true)) : '(baseline)',
    ]);
  }
}

// Known optimum: 20 instances filling 10 hosts exactly, 10 filling 50; as many spare hosts again.
const known = [...Array.from({ length: 20 }, (_, i) => knownOptimum(10, i + 1)), ...Array.from({ length: 10 }, (_, i) => knownOptimum(50, i + 1))];
for (const s of [SCHEDULERS[2]!, SCHEDULERS[0]!, SCHEDULERS[4]!, SCHEDULERS[5]!]) {
  let ms = 0;
  let coldMs = 0;
  let hosts = 0;
  let optimum = 0;
  let hits = 0;
  let violations = 0;
  let unplaced = 0;
  for (const instance of known) {
    const r = runOne(instance, s, 1);
    ms += r.ms;
    coldMs += r.coldMs;
    hosts += r.activeHosts;
    optimum += instance.optimum!.activeHosts;
    if (r.activeHosts === instance.optimum!.activeHosts && r.unplaced === 0) hits++;
    violations += r.violations;
    unplaced += r.unplaced;
  }
  const engine = !('baseline' in s);
  const rate = hits / known.length;
  rows.push([
    `known optimum (${known.length} instances, 10 or 50 hosts filled exactly)`,
    s.name,
    Math.round(ms / known.length),
    Math.round(coldMs / known.length),
    hosts,
    hosts.toFixed(2),
    `${optimum} / ${optimum.toFixed(2)} (exact)`,
    fmtRatio(hosts / optimum),
    fmtRatio(hosts / optimum),
    `${hits}/${known.length} (${Math.round(rate * 100)}%)`,
    violations,
    unplaced,
    '-',
    engine ? (rate >= 0.9 && violations === 0 ? verdict(true) : `FAIL: ${rate < 0.9 ? 'optimum < 90%' : ''}${violations ? ' violations' : ''}`) : '(baseline)',
  ]);
}

printTable(
  `placement: engine vs baselines, same run (Node ${process.version}, ${(await import('node:os')).cpus().length} cpus)`,
  ['instance', 'scheduler', 'ms', 'cold ms', 'active hosts', 'cost $/h', 'bound hosts / $', 'hosts / bound', 'cost / bound', 'optimum found', 'violations', 'unplaced', 'hosts vs spread', 'verdict'],
  rows,
);
