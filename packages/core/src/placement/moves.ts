import type { VmRule } from './filters.js';
import type { SolverState } from './state.js';

/**
 * Checks shared by every search that moves VMs (the local search, rebalance). Adding a VM
 * can only break the rules checked by `allowedOn`; removing one can break the rules checked
 * by `rulesHold` (a group that must run with another losing it, a spread skewing).
 */

/** Whether host h may take VM v now: the host rules, capacity, instance type, and every VM rule of its group. */
export function allowedOn(s: SolverState, dynamic: readonly (readonly VmRule[])[], v: number, h: number): boolean {
  if (!s.p.classes[s.p.vmClass[v]!]!.isCandidate[h]) return false; // the host rules
  if (s.p.elastic[h]) {
    if (s.elasticPrice(v, h) === undefined) return false;
  } else if (!s.fits(v, h)) return false;
  const rules = dynamic[s.p.vmGroup[v]!]!;
  for (let k = 0; k < rules.length; k++) if (rules[k]!.rejects(s, v, h)) return false;
  return true;
}

/**
 * Whether the rules a removal can break still hold on the touched hosts (and their zones),
 * and every spread is within its allowed skew.
 */
export function rulesHold(s: SolverState, touched: ReadonlySet<number>, allowedSkew: (group: number) => number): boolean {
  const p = s.p;
  const zones = new Set<number>();
  for (const h of touched) zones.add(p.zoneOf[h]!);
  for (const g of p.groups) {
    if (g.withHost.length) {
      for (const h of touched) {
        const mine = s.hostCount[g.index]![h]!;
        if (mine === 0) continue;
        for (const t of g.withHost) if (t === g.index ? mine === 1 && s.total[t]! > 1 : s.hostCount[t]![h] === 0) return false;
      }
    }
    if (g.withZone.length) {
      for (const z of zones) {
        const mine = s.zoneCount[g.index]![z]!;
        if (mine === 0) continue;
        for (const t of g.withZone) if (t === g.index ? mine === 1 && s.total[t]! > 1 : s.zoneCount[t]![z] === 0) return false;
      }
    }
    const counter = s.spread[g.index];
    if (counter && counter.max - counter.min > allowedSkew(g.index)) return false;
  }
  return true;
}

/** The skew of each group's spread right now: a search may keep a skew it started with, never widen it. */
export function currentSkews(s: SolverState): (group: number) => number {
  const skews = s.p.groups.map((g) => {
    const counter = s.spread[g.index];
    return counter && g.spread ? Math.max(g.spread.maxSkew, counter.max - counter.min) : Infinity;
  });
  return (g) => skews[g]!;
}
