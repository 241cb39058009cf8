import { fillGreedy } from './fill.js';
import { dynamicRulesFor, type VmRule } from './filters.js';
import { greedy, greedyOrder } from './greedy.js';
import { GuidePlanner, type FillGuide } from './guide.js';
import { atBounds, objectiveRefs, trivialBounds, weightedObjective, type ObjectiveRefs } from './objective.js';
import type { Problem } from './problem.js';
import { seededRandom } from './random.js';
import { LocalSearch } from './search.js';
import { SolverState } from './state.js';
import type { Weights } from './types.js';

/**
 * The solver: a greedy pass, local search, and repair.
 *
 * 1. Greedy. When the weights pack (cost, consolidation, no balance or headroom), hosts are
 *    filled one at a time, each with the VMs that best match the room it has left (fill.ts);
 *    otherwise VMs are placed one at a time, largest first, each on the host with the highest
 *    weighted score among those that meet every hard rule (greedy.ts). Groups that must run
 *    with others come after those others.
 * 2. Local search (search.ts), keeping a move only when it lowers the weighted objective
 *    (each objective relative to its greedy value, so weights compare like with like):
 *    reshape hosts' free room by swapping VMs between them, empty the lightest hosts (when
 *    packing only: by overfilling the others with their VMs and moving and swapping VMs
 *    until nothing is overfull; then by fitting them into free room, VMs that fit nowhere
 *    swapped into hosts for lighter ones), trade a host for a cheaper or bigger empty one,
 *    move VMs off the fullest hosts; in rounds, while a round lowers the objective.
 * 3. Repair: VMs that fit nowhere are tried again, then by moving one or two VMs aside,
 *    in rounds until one places nothing (see `settle`): a VM left unplaced is refused by
 *    every host of the final placement, which its explanation counts.
 *
 * Small instances get several starts (greedy passes perturbed by the seed), keeping the best.
 * The search's budget is a count of host evaluations, never a time, so a seed gives one
 * answer on every machine. Every move checks the same hard rules as the greedy pass; rules
 * that removing a VM can break (run-with, spread) are re-checked over everything a compound
 * move touched, and the move is undone when one fails.
 */
export interface SolveOutcome {
  readonly state: SolverState;
  readonly unplaced: readonly number[];
  /** Hosts that met every hard rule for each VM when it was placed. */
  readonly eligible: Int32Array;
  /** Why the local search moved a VM, by VM index. */
  readonly notes: ReadonlyMap<number, string>;
  readonly evaluations: number;
}

/** Above this many classes (group and shape) the host-by-host fill would be slow; VMs are placed one by one instead. */
const FILL_MAX_CLASSES = 2000;

/** Weights that only pack (cost, consolidation) and do not spread (balance, headroom). */
export function consolidating(w: Weights): boolean {
  return w.balance + w.headroom === 0 && w.cost + w.consolidation > 0;
}

/** The least budget any instance gets (small ones finish well within it). */
const MIN_BUDGET = 200_000;

/** Host evaluations the local search may spend at effort 1: about a quarter of a second at 10,000 VMs on this kind of machine. */
export const SEARCH_BUDGET = 6_000_000;

/**
 * @param planner the fill guide's relaxation, shared by the solves of one problem (the main
 *   one and the Pareto alternatives), so each later plan starts from the last one's basis.
 */
export function solve(p: Problem, w: Weights, effort = 1, oneStart = false, planner = new GuidePlanner(p)): SolveOutcome {
  // Ten evaluations per VM-host pair while instances are small (exact packings need them),
  // one more per pair above half a million: time grows slower than the instance.
  const pairs = p.V * p.H;
  const budget = Math.round(Math.min(SEARCH_BUDGET, Math.max(MIN_BUDGET, Math.min(10 * pairs, 500_000 + pairs))) * Math.max(0, effort));
  // Small instances can afford several starts (each greedy pass slightly perturbed, by the
  // seed): the best one is kept. Large ones spend the whole budget on one search.
  const size = p.V * p.H;
  const starts = effort <= 0 || oneStart ? 1 : size <= 2e4 ? 8 : size <= 5e4 ? 3 : size <= 2e5 ? 2 : 1;
  let best: SolveOutcome | undefined;
  let bestKey: [number, number] = [Infinity, Infinity];
  let refs: ObjectiveRefs | undefined;
  const fill = consolidating(w) && p.classes.length <= FILL_MAX_CLASSES;
  const bounds = trivialBounds(p);
  const guide = fill ? planner.plan(w) : undefined;
  for (let k = 0; k < starts; k++) {
    // With several starts, every other one goes unguided: on small inventories the
    // relaxation's mix is coarse, and the plain fill sometimes packs better.
    const guided = starts <= 2 || k % 2 === 0 ? guide : undefined;
    const outcome = solveOnce(p, w, effort, Math.floor(budget / starts), k === 0 ? undefined : seededRandom(p.seed * 7919 + k), guided, bounds);
    refs ??= objectiveRefs(outcome.state);
    const key: [number, number] = [outcome.unplaced.length, weightedObjective(outcome.state, w, refs)];
    if (key[0] < bestKey[0] || (key[0] === bestKey[0] && key[1] < bestKey[1] - 1e-9)) {
      best = outcome;
      bestKey = key;
    }
    // Nothing can beat a placement that meets the lower bounds: no more starts.
    if (atBounds(outcome.state, w, bounds)) break;
  }
  return best!;
}

function solveOnce(
  p: Problem,
  w: Weights,
  effort: number,
  budget: number,
  random: (() => number) | undefined,
  guide: FillGuide | undefined,
  bounds: ReturnType<typeof trivialBounds>,
): SolveOutcome {
  const state = new SolverState(p);
  const dynamic = p.groups.map((g) => dynamicRulesFor(g));
  const eligible = new Int32Array(p.V);
  const order = greedyOrder(p, random);
  let unplaced: number[];
  if (consolidating(w) && p.classes.length <= FILL_MAX_CLASSES) {
    // Filled host by host; the item-by-item pass then tries what is left (elastic hosts, say).
    eligible.fill(-1);
    const left = new Set(fillGreedy(state, w, dynamic, random, guide));
    unplaced = left.size ? greedy(state, order.filter((v) => left.has(v)), w, dynamic, eligible) : [];
  } else {
    unplaced = greedy(state, order, w, dynamic, eligible);
  }
  const notes = new Map<number, string>();
  const search = new LocalSearch(state, w, dynamic, budget, notes, p.seed + (random ? Math.floor(random() * 1e6) : 0));
  if (effort > 0 && p.V > 0 && !atBounds(state, w, bounds)) search.run();
  const still = settle(state, unplaced, w, dynamic, eligible, effort > 0 ? search : undefined);
  return { state, unplaced: still, eligible, notes, evaluations: search.spent };
}

/**
 * Places what it can of the VMs that fit nowhere: each is tried again as things stand, then
 * by moving VMs aside (repair). Placing one can make room for another (a VM moved aside
 * frees its host's room), raise a spread's minimum, or bring a group others must run with,
 * so this repeats until a round places nothing. It ends with every VM left over having been
 * tried, and refused, by every host in the final state: which is what an explanation of an
 * unplaced VM counts.
 */
function settle(state: SolverState, unplaced: readonly number[], w: Weights, dynamic: readonly (readonly VmRule[])[], eligible: Int32Array, repair: LocalSearch | undefined): number[] {
  let left = [...unplaced];
  while (left.length > 0) {
    const before = left.length;
    left = greedy(state, left, w, dynamic, eligible);
    if (left.length > 0 && repair) {
      const tried = new Set(left);
      left = repair.makeRoom(left);
      // Placed by repair: the note says how; no count of eligible hosts applies.
      const still = new Set(left);
      for (const v of tried) if (!still.has(v)) eligible[v] = -1;
    }
    if (left.length === before) break;
  }
  return left;
}

