import type { Resources } from '../model/records.js';

/** Resource dimensions, in the order of every typed array of the solver (`host * DIMS + d`). */
export const DIMS = 4;
export const DIM_KEYS = ['cpu', 'memoryMiB', 'diskGiB', 'gpu'] as const satisfies readonly (keyof Resources)[];
/** The name each dimension's capacity rule has in explanations. */
export const DIM_RULES = ['cpu', 'memory', 'disk', 'gpu'] as const;
/** Floating-point slack for capacity sums (overcommit ratios make capacities fractional). */
export const EPS = 1e-9;
