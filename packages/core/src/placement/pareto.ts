import { objectivesOf } from './objectives.js';
import type { GuidePlanner } from './guide.js';
import type { Problem } from './problem.js';
import { resolveWeights } from './scorers.js';
import { solve } from './solver.js';
import type { PlacementAlternative, PlacementObjectives, PlacementResult, Weights } from './types.js';

const ALTERNATIVE_EFFORT = 1 / 8;

/** One extreme of the trade-off each: the placements a user most often weighs against each other. */
const PRESETS: readonly { readonly label: string; readonly weights: Partial<Weights> }[] = [
  // A small second weight breaks the primary objective's ties the sensible way.
  { label: 'cheapest', weights: { cost: 1, consolidation: 0.05 } },
  { label: 'fewest hosts', weights: { consolidation: 1, cost: 0.05 } },
  { label: 'most balanced', weights: { balance: 1 } },
  { label: 'most headroom', weights: { headroom: 1, balance: 0.25 } },
];

/** Objectives compared for dominance, all lower-is-better. Placing more VMs comes first. */
function vector(o: PlacementObjectives): number[] {
  return [o.unplaced ?? 0, o.costPerHour, o.activeHosts, o.imbalance, o.peakUtilisation ?? 0];
}

function dominates(a: number[], b: number[]): boolean {
  let strictly = false;
  for (let i = 0; i < a.length; i++) {
    if (a[i]! > b[i]! + 1e-9) return false;
    if (a[i]! < b[i]! - 1e-9) strictly = true;
  }
  return strictly;
}

/**
 * Solves again under each preset (keeping the user's preference and locality weights) and
 * returns the placements no other found placement beats in every objective, besides the
 * chosen one. The search effort of each is an eighth of the main solve's: alternatives show
 * the shape of the trade-off; the chosen placement gets the full budget.
 */
export function paretoAlternatives(p: Problem, weights: Weights, effort: number, chosen: Pick<PlacementResult, 'objectives'>, planner: GuidePlanner): PlacementAlternative[] {
  const found: { labels: string[]; weights: Weights; objectives: PlacementObjectives; assignments: Record<string, string>; instanceTypes: Record<string, string> }[] = [];
  for (const preset of PRESETS) {
    const w = resolveWeights({ ...preset.weights, preferLabels: weights.preferLabels, locality: weights.locality });
    // One start: an alternative shows where a trade-off lies; the chosen placement gets the restarts.
    const outcome = solve(p, w, effort * ALTERNATIVE_EFFORT, true, planner);
    const objectives = objectivesOf(outcome.state);
    const same = found.find((f) => vector(f.objectives).every((x, i) => Math.abs(x - vector(objectives)[i]!) < 1e-9));
    if (same) {
      same.labels.push(preset.label);
      continue;
    }
    const assignments: Record<string, string> = {};
    const instanceTypes: Record<string, string> = {};
    const s = outcome.state;
    for (const v of p.byId) {
      const h = s.assign[v]!;
      if (h < 0) continue;
      assignments[p.vms[v]!.id] = p.hosts[h]!.id;
      const type = p.classes[p.vmClass[v]!]!.elasticType.get(h);
      if (type) instanceTypes[p.vms[v]!.id] = type.name;
    }
    found.push({ labels: [preset.label], weights: w, objectives, assignments, instanceTypes });
  }
  const chosenVector = vector(chosen.objectives);
  const all = [chosenVector, ...found.map((f) => vector(f.objectives))];
  return found
    .filter((f) => {
      const mine = vector(f.objectives);
      if (mine.every((x, i) => Math.abs(x - chosenVector[i]!) < 1e-9)) return false; // the chosen placement itself
      return !all.some((other) => dominates(other, mine));
    })
    .map((f) => ({
      label: f.labels.join(', '),
      assignments: f.assignments,
      objectives: f.objectives,
      weights: f.weights,
      ...(Object.keys(f.instanceTypes).length ? { instanceTypes: f.instanceTypes } : {}),
    }));
}
