import type { SolverState } from './state.js';
import type { Weights } from './types.js';

export interface ObjectiveRefs {
  readonly cost: number;
  readonly active: number;
  readonly imbalance: number;
  readonly head: number;
  readonly prefer: number;
}

/** Each objective's scale: its value in a reference placement (floored), so weights compare like with like. */
export function objectiveRefs(s: SolverState): ObjectiveRefs {
  return {
    cost: Math.max(s.cost(), 1e-6),
    active: Math.max(s.activeFixed, 1),
    imbalance: Math.max(s.imbalance(), 0.01),
    head: Math.max(s.head, 0.01),
    prefer: Math.max(s.prefMiss, 1),
  };
}

/** The weighted objective (lower is better), each part relative to `refs`. */
export function weightedObjective(s: SolverState, w: Weights, r: ObjectiveRefs): number {
  return (
    (w.cost * s.cost()) / r.cost +
    (w.consolidation * s.activeFixed) / r.active +
    (w.balance * s.imbalance()) / r.imbalance +
    (w.headroom * s.head) / r.head +
    (w.preferLabels * s.prefMiss) / r.prefer
  );
}

