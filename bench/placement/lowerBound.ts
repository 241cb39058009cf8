/**
 * LP lower bounds for a placement instance, solved with HiGHS.
 *
 * The relaxation works on kinds, not individuals: VMs of one group and shape form a class
 * (n_k VMs), hosts alike in capacity, price, zone, state and labels form a type (n_t hosts).
 * Variables: x_kt, how many VMs of class k run on hosts of type t, and y_t, how many hosts
 * of type t are active, both continuous.
 *
 *   minimise   Σ_t y_t            (active hosts)   or   Σ_t price_t · y_t   (cost)
 *   subject to Σ_t x_kt = n_k                           every VM placed
 *              Σ_k x_kt · r_kd ≤ cap_td · y_t            capacity, every dimension
 *              Σ_{k in g} x_kt ≤ m_g · y_t               maxPerHost (m = 1 for anti-affinity)
 *              x_kt = 0 where the host rules exclude t    zones, labels, state, providers
 *              0 ≤ y_t ≤ n_t
 *
 * Every real placement gives a feasible point (count what runs where), so the optimum
 * bounds each objective from below; the host count is rounded up. The relaxation drops
 * integrality, the spread and avoid rules and the VMs' granularity, so the true optimum can
 * sit above it: "vs LP bound" measures the solver and that gap together.
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
  const types = new Map<string, { host: Host; n: number }>();
  for (const h of request.hosts) {
    if (h.state !== 'up' || h.instanceTypes) continue;
    const key = JSON.stringify([capacity(h), h.pricePerHour, h.zone, h.region, h.provider, Object.entries(h.labels).sort()]);
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

  const solve = (objective: (t: Host) => number): number => {
    const rows: string[] = [];
    K.forEach((c, k) => {
      const terms = T.map((t, j) => (eligible(t.host, rulesOf(c.vm)) ? `x${k}_${j}` : '')).filter(Boolean);
      if (terms.length === 0) throw new Error(`no host type can take class ${k} (${c.vm.group})`);
      rows.push(` n${k}: ${terms.join(' + ')} = ${c.n}`);
    });
    T.forEach((t, j) => {
      const cap = capacity(t.host);
      DIMS.forEach((d, i) => {
        const terms = K.map((c, k) => (eligible(t.host, rulesOf(c.vm)) && c.vm.resources[d] > 0 ? `${c.vm.resources[d]} x${k}_${j}` : '')).filter(Boolean);
        if (terms.length) rows.push(` c${j}_${i}: ${terms.join(' + ')} - ${cap[i]} y${j} <= 0`);
      });
      const groups = new Map<string, string[]>();
      K.forEach((c, k) => {
        const rules = rulesOf(c.vm);
        const max = rules?.antiAffinity === 'host' ? 1 : rules?.maxPerHost;
        if (max === undefined || !eligible(t.host, rules)) return;
        groups.set(c.vm.group, [...(groups.get(c.vm.group) ?? []), `x${k}_${j}`]);
      });
      for (const [g, terms] of groups) {
        const rules = rulesOf(K.find((c) => c.vm.group === g)!.vm);
        const max = rules?.antiAffinity === 'host' ? 1 : rules!.maxPerHost!;
        rows.push(` m${j}_${g}: ${terms.join(' + ')} - ${max} y${j} <= 0`);
      }
    });
    const lp = [
      'Minimize',
      ` obj: ${T.map((t, j) => `${objective(t.host)} y${j}`).join(' + ')}`,
      'Subject To',
      ...rows,
      'Bounds',
      ...T.map((t, j) => ` 0 <= y${j} <= ${t.n}`),
      'End',
    ].join('\n');
    const result = highs!.solve(lp, { output_flag: false });
    if (result.Status !== 'Optimal') throw new Error(`LP bound: ${result.Status}`);
    return result.ObjectiveValue;
  };
  return { activeHosts: Math.ceil(solve(() => 1) - 1e-6), costPerHour: solve((h) => h.pricePerHour) };
}
