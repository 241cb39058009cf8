import { DIMS } from './dims.js';
import type { Problem } from './problem.js';
import type { SolverState } from './state.js';
import type { Weights } from './types.js';

export interface ObjectiveRefs {
  readonly cost: number;
  readonly active: number;
  readonly imbalance: number;
  readonly head: number;
  readonly prefer: number;
  readonly locality: number;
}

/** Each objective's scale: its value in a reference placement (floored), so weights compare like with like. */
export function objectiveRefs(s: SolverState): ObjectiveRefs {
  return {
    cost: Math.max(s.cost(), 1e-6),
    active: Math.max(s.activeFixed, 1),
    imbalance: Math.max(s.imbalance(), 0.01),
    head: Math.max(s.head, 0.01),
    prefer: Math.max(s.prefMiss, 1),
    locality: Math.max(s.nearPlaced - s.locSum, 1),
  };
}

/** The weighted objective (lower is better), each part relative to `refs`. */
export function weightedObjective(s: SolverState, w: Weights, r: ObjectiveRefs): number {
  return (
    (w.cost * s.cost()) / r.cost +
    (w.consolidation * s.activeFixed) / r.active +
    (w.balance * s.imbalance()) / r.imbalance +
    (w.headroom * s.head) / r.head +
    (w.preferLabels * s.prefMiss) / r.prefer +
    // Locality missed: VMs of groups with `near` away from every VM they are near (1 each), or only in its zone (0.5).
    (w.locality * (s.nearPlaced - s.locSum)) / r.locality
  );
}


/**
 * Lower bounds on active hosts and cost that need no solver: the fewest (cheapest) hosts whose
 * capacity covers the VMs' total demand in each dimension, and the hosts a group that keeps
 * its VMs apart (anti-affinity, maxPerHost) needs. Only when no host carries load
 * already and none is elastic (else undefined). A placement that meets them cannot be beaten
 * in those objectives, so the search has nothing to find.
 */
export function trivialBounds(p: Problem): { readonly hosts: number; readonly cost: number } | undefined {
  const fixed: number[] = [];
  for (let h = 0; h < p.H; h++) {
    if (p.elastic[h] || p.baseActive[h]) return undefined;
    if (p.up[h]) fixed.push(h);
  }
  if (fixed.length === 0) return undefined;
  let hosts = 0;
  let cost = 0;
  let minPrice = Infinity;
  for (const h of fixed) minPrice = Math.min(minPrice, p.price[h]!);
  for (let d = 0; d < DIMS; d++) {
    let demand = 0;
    for (let v = 0; v < p.V; v++) demand += p.req[v * DIMS + d]!;
    if (demand <= 0) continue;
    const bySize = fixed.map((h) => p.cap[h * DIMS + d]!).sort((a, b) => b - a);
    let n = 0;
    for (let left = demand; left > 1e-9 && n < bySize.length; n++) left -= bySize[n]!;
    hosts = Math.max(hosts, n);
    // The cheapest capacity first, fractionally.
    const byPrice = fixed.filter((h) => p.cap[h * DIMS + d]! > 0).sort((a, b) => p.price[a]! / p.cap[a * DIMS + d]! - p.price[b]! / p.cap[b * DIMS + d]!);
    let c = 0;
    for (let left = demand, i = 0; left > 1e-9 && i < byPrice.length; i++) {
      const h = byPrice[i]!;
      const take = Math.min(left, p.cap[h * DIMS + d]!);
      c += (p.price[h]! * take) / p.cap[h * DIMS + d]!;
      left -= take;
    }
    cost = Math.max(cost, c);
  }
  // A group that keeps its VMs apart needs a host for each (or for each maxPerHost of them):
  // a count no amount of searching can lower, and the cheapest that many hosts can cost.
  const perGroup = new Int32Array(p.groups.length);
  for (let v = 0; v < p.V; v++) perGroup[p.vmGroup[v]!]!++;
  const prices = fixed.map((h) => p.price[h]!).sort((a, b) => a - b);
  for (const g of p.groups) {
    const spread = g.antiHost ? perGroup[g.index]! : Math.ceil(perGroup[g.index]! / g.maxPerHost);
    if (spread > hosts) hosts = spread;
    if (spread > 0) cost = Math.max(cost, prices.slice(0, spread).reduce((sum, price) => sum + price, 0));
  }
  return { hosts, cost: Math.max(cost, hosts * minPrice) };
}

/** Whether a complete placement meets the bounds in every objective the weights count. */
export function atBounds(s: SolverState, w: Weights, bounds: { readonly hosts: number; readonly cost: number } | undefined): boolean {
  if (!bounds || s.placed < s.p.V || w.balance > 0 || w.headroom > 0) return false;
  if (w.preferLabels > 0 && s.prefMiss > 0) return false;
  if (w.locality > 0 && s.nearPlaced - s.locSum > 1e-9) return false;
  if (w.consolidation > 0 && s.activeFixed > bounds.hosts) return false;
  if (w.cost > 0 && s.cost() > bounds.cost + 1e-9) return false;
  return true;
}
