/**
 * Lower bounds for a placement instance, solved with HiGHS.
 *
 * The relaxation works on kinds, not individuals: VMs of one group and shape form a class
 * (n_k VMs), hosts alike in capacity, price, zone, state and the labels rules read form a
 * type (n_t hosts). Variables: x_kt, how many VMs of class k run on hosts of type t
 * (continuous), and y_t, how many hosts of type t are active (a whole number).
 *
 *   minimise   Σ_t y_t            (active hosts)   or   Σ_t price_t · y_t   (cost)
 *   subject to Σ_t x_kt = n_k                           every VM placed
 *              Σ_k x_kt · r_kd ≤ cap_td · y_t            capacity, every dimension
 *              Σ_{k in g} x_kt ≤ m_g · y_t               maxPerHost (m = 1 for anti-affinity)
 *              x_kt = 0 where the host rules exclude t    zones, labels, state, providers
 *              y_t ∈ {0, 1, …, n_t}
 *
 * Groups that avoid each other per host split each type by which side it keeps out (below).
 * Every real placement gives a feasible point (count what runs where), so the optimum
 * bounds each objective from below. Host counts are whole per type: a fraction of an
 * expensive host cannot stand in for a cheap one (the plain LP's cost bound on the bench's
 * 100-host instance is 59.89, this one 61.55, which HiGHS also reaches with a placement of
 * whole VMs per host, so it is the optimum there). The relaxation still drops the spread
 * rule and the VMs' granularity per host, so the true optimum can sit above it elsewhere:
 * "vs bound" measures the solver and that gap together.
 */
import type { Host, PlacementRequest, PlacementRules, PlacementVm } from '@novacron/core';
import highsImport from 'highs';

const DIMS = ['cpu', 'memoryMiB', 'diskGiB', 'gpu'] as const;

export interface LowerBounds {
  readonly activeHosts: number;
  readonly costPerHour: number;
}

// highs ships ESM under a CommonJS package: TypeScript types the default import as the module,
// while Node and vitest load the ESM build, whose default is the loader itself.
type Loader = (typeof highsImport)['default'];
const highsLoader: Loader = (highsImport as unknown as { default?: Loader }).default ?? (highsImport as unknown as Loader);
type Highs = Awaited<ReturnType<Loader>>;
let highs: Highs | undefined;

function capacity(h: Host): number[] {
  return [h.capacity.cpu * h.overcommit.cpu, h.capacity.memoryMiB * h.overcommit.memory, h.capacity.diskGiB * h.overcommit.disk, h.capacity.gpu];
}

/** Mirrors the host rules (a separate copy on purpose: the bound must not share the solver's code). */
function eligible(host: Host, rules: PlacementRules | undefined): boolean {
  if (host.state !== 'up' || host.instanceTypes) return false;
  if (!rules) return true;
  if (rules.providers && !rules.providers.includes(host.provider)) return false;
  if (rules.regions && (!host.region || !rules.regions.includes(host.region))) return false;
  if (rules.zones && !rules.zones.includes(host.zone)) return false;
  if (rules.hostLabels && Object.entries(rules.hostLabels).some(([k, v]) => host.labels[k] !== v)) return false;
  return true;
}

export async function lowerBounds(request: PlacementRequest): Promise<LowerBounds> {
  highs ??= await highsLoader();
  // Labels no rule reads (rack, say) do not tell hosts apart: fewer types, fewer whole-number variables.
  const read = new Set<string>();
  for (const vm of request.vms) for (const k of Object.keys((vm.rules ?? request.groupRules?.[vm.group])?.hostLabels ?? {})) read.add(k);
  for (const rules of Object.values(request.groupRules ?? {})) for (const k of Object.keys(rules.hostLabels ?? {})) read.add(k);
  const types = new Map<string, { host: Host; n: number }>();
  for (const h of request.hosts) {
    if (h.state !== 'up' || h.instanceTypes) continue;
    const key = JSON.stringify([capacity(h), h.pricePerHour, h.zone, h.region, h.provider, [...read].sort().map((k) => h.labels[k] ?? null)]);
    const t = types.get(key);
    if (t) t.n++;
    else types.set(key, { host: h, n: 1 });
  }
  const classes = new Map<string, { vm: PlacementVm; n: number }>();
  for (const vm of request.vms) {
    const key = JSON.stringify([vm.group, DIMS.map((d) => vm.resources[d])]);
    const c = classes.get(key);
    if (c) c.n++;
    else classes.set(key, { vm, n: 1 });
  }
  const T = [...types.values()];
  const K = [...classes.values()];
  const rulesOf = (vm: PlacementVm) => vm.rules ?? request.groupRules?.[vm.group];

  // Groups that avoid each other at host level can share no host: each host of a type is in
  // one mode per avoiding pair, keeping out one side or the other (2^pairs modes; a host with
  // neither fits any). Exact for the relaxation, and small: instances have a few such pairs.
  const pairs: [string, string][] = [];
  for (const c of K) {
    for (const a of rulesOf(c.vm)?.avoidGroups ?? []) {
      if ((a.scope ?? 'host') !== 'host' || a.group === c.vm.group) continue;
      const pair = [c.vm.group, a.group].sort() as [string, string];
      if (!pairs.some((p) => p[0] === pair[0] && p[1] === pair[1])) pairs.push(pair);
    }
  }
  if (pairs.length > 4) throw new Error('LP bound: more than 4 avoiding pairs');
  const modes = Array.from({ length: 2 ** pairs.length }, (_, m) => new Set(pairs.map((p, i) => p[(m >> i) & 1]!)));
  const allowed = (t: Host, c: { vm: PlacementVm }, m: number) => eligible(t, rulesOf(c.vm)) && !modes[m]!.has(c.vm.group);

  const solve = (objective: (t: Host) => number): number => {
    const rows: string[] = [];
    const x = (k: number, j: number, m: number) => `x${k}_${j}_${m}`;
    const y = (j: number, m: number) => `y${j}_${m}`;
    K.forEach((c, k) => {
      const terms = T.flatMap((t, j) => modes.map((_, m) => (allowed(t.host, c, m) ? x(k, j, m) : ''))).filter(Boolean);
      if (terms.length === 0) throw new Error(`no host type can take class ${k} (${c.vm.group})`);
      rows.push(` n${k}: ${terms.join(' + ')} = ${c.n}`);
    });
    T.forEach((t, j) => {
      const cap = capacity(t.host);
      rows.push(` t${j}: ${modes.map((_, m) => y(j, m)).join(' + ')} <= ${t.n}`);
      modes.forEach((_, m) => {
        DIMS.forEach((d, i) => {
          const terms = K.map((c, k) => (allowed(t.host, c, m) && c.vm.resources[d] > 0 ? `${c.vm.resources[d]} ${x(k, j, m)}` : '')).filter(Boolean);
          if (terms.length) rows.push(` c${j}_${m}_${i}: ${terms.join(' + ')} - ${cap[i]} ${y(j, m)} <= 0`);
        });
        const groups = new Map<string, string[]>();
        K.forEach((c, k) => {
          const rules = rulesOf(c.vm);
          const max = rules?.antiAffinity === 'host' ? 1 : rules?.maxPerHost;
          if (max === undefined || !allowed(t.host, c, m)) return;
          groups.set(c.vm.group, [...(groups.get(c.vm.group) ?? []), x(k, j, m)]);
        });
        for (const [g, terms] of groups) {
          const rules = rulesOf(K.find((c) => c.vm.group === g)!.vm);
          const max = rules?.antiAffinity === 'host' ? 1 : rules!.maxPerHost!;
          rows.push(` m${j}_${m}_${g}: ${terms.join(' + ')} - ${max} ${y(j, m)} <= 0`);
        }
      });
    });
    const whole = T.flatMap((_, j) => modes.map((__, m) => ` ${y(j, m)}`));
    const model = (integer: boolean) =>
      ['Minimize', ` obj: ${T.flatMap((t, j) => modes.map((_, m) => `${objective(t.host)} ${y(j, m)}`)).join(' + ')}`, 'Subject To', ...rows, ...(integer ? ['General', ...whole] : []), 'End'].join('\n');
    // "Optimal" within a relative gap: the optimum is at least the incumbent less that gap.
    const GAP = 1e-4;
    const result = highs!.solve(model(true), { output_flag: false, mip_rel_gap: GAP, time_limit: 30 });
    if (result.Status === 'Optimal') return result.ObjectiveValue * (1 - GAP);
    // Out of time: the plain relaxation still bounds it.
    const relaxed = highs!.solve(model(false), { output_flag: false });
    if (relaxed.Status !== 'Optimal') throw new Error(`bound: ${relaxed.Status}`);
    return relaxed.ObjectiveValue;
  };
  return { activeHosts: Math.ceil(solve(() => 1) - 1e-6), costPerHour: solve((h) => h.pricePerHour) };
}
