import { DIMS } from './dims.js';
import type { SolverState } from './state.js';
import type { PlacementObjectives } from './types.js';

/**
 * The objectives of a placement, recomputed from scratch (the solver's running sums drift
 * by float rounding over many moves; reported numbers must not).
 */
export function objectivesOf(s: SolverState): PlacementObjectives {
  const p = s.p;
  let activeHosts = 0;
  let cost = 0;
  let n = 0;
  let sum = 0;
  let sumSq = 0;
  let peak = 0;
  for (let h = 0; h < p.H; h++) {
    if (p.elastic[h]) {
      for (const v of s.hostVms[h]!) cost += s.elasticPrice(v, h) ?? 0;
      continue;
    }
    if (s.isActive(h)) {
      activeHosts++;
      cost += p.price[h]!;
    }
    if (!p.up[h]) continue;
    let u = 0;
    const o = h * DIMS;
    for (let d = 0; d < DIMS; d++) u = Math.max(u, s.used[o + d]! * p.invCap[o + d]!);
    n++;
    sum += u;
    sumSq += u * u;
    if (u > peak) peak = u;
  }
  const mean = n ? sum / n : 0;
  const imbalance = n ? Math.sqrt(Math.max(0, sumSq / n - mean * mean)) : 0;
  return {
    activeHosts,
    costPerHour: round(cost),
    imbalance: round(imbalance),
    peakUtilisation: round(peak),
    preferenceMisses: s.prefMiss,
    placed: s.placed,
    unplaced: p.V - s.placed,
  };
}

const round = (n: number) => Math.round(n * 10_000) / 10_000;
