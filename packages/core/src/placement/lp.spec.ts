import { describe, expect, it } from 'vitest';
import { LinearProgram } from './lp.js';

describe('LinearProgram (the simplex of the fill guide)', () => {
  it('finds the optimum of a small program', () => {
    // maximise x + y subject to x + 2y ≤ 4, 3x + y ≤ 6: the corner (1.6, 1.2).
    const lp = new LinearProgram();
    const x = lp.variable(-1);
    const y = lp.variable(-1);
    lp.row([x, y], [1, 2], 4);
    lp.row([x, y], [3, 1], 6);
    const s = lp.solve();
    expect(s.status).toBe('optimal');
    expect(s.x[x]).toBeCloseTo(1.6, 9);
    expect(s.x[y]).toBeCloseTo(1.2, 9);
    expect(s.value).toBeCloseTo(-2.8, 9);
  });

  it('meets equality rows (two phases) and says when nothing can', () => {
    const lp = new LinearProgram();
    const a = lp.variable(2);
    const b = lp.variable(3);
    lp.row([a, b], [1, 1], 5, true); // a + b = 5, the cheaper first
    lp.row([a], [1], 2); // a ≤ 2
    const s = lp.solve();
    expect(s.status).toBe('optimal');
    expect([s.x[a], s.x[b], s.value]).toEqual([2, 3, 13]);

    const none = new LinearProgram();
    const c = none.variable(1);
    none.row([c], [1], 5, true);
    none.row([c], [1], 2);
    expect(none.solve().status).toBe('infeasible');
  });

  it('ends on degenerate programs (Bland after a run of pivots that move nothing)', () => {
    // Many ties at zero: every row binds at the origin.
    const lp = new LinearProgram();
    const v = Array.from({ length: 6 }, (_, i) => lp.variable(-1 - (i % 2)));
    for (let i = 0; i < 6; i++) lp.row([v[i]!, v[(i + 1) % 6]!], [1, -1], 0);
    lp.row(v, v.map(() => 1), 6);
    const s = lp.solve();
    expect(s.status).toBe('optimal');
    expect(s.value).toBeCloseTo(-9, 9);
  });

  it('reoptimizes for new costs from the last basis, to the optimum a fresh solve finds', () => {
    const build = (costs: readonly number[]) => {
      const lp = new LinearProgram();
      const v = costs.map((c) => lp.variable(c));
      lp.row(v, [1, 1, 1], 10, true); // x + y + z = 10
      lp.row([v[0]!, v[1]!], [2, 1], 12);
      lp.row([v[1]!, v[2]!], [1, 3], 18);
      return lp;
    };
    const lp = build([1, 2, 3]);
    expect(lp.solve().status).toBe('optimal');
    for (const costs of [[3, 1, 2], [2, 3, 1], [-1, -1, -1], [1, 2, 3]]) {
      const warm = lp.reoptimize(costs);
      const cold = build(costs).solve();
      expect(warm.status).toBe('optimal');
      expect(warm.value).toBeCloseTo(cold.value, 9);
      expect(warm.x[0]! + warm.x[1]! + warm.x[2]!).toBeCloseTo(10, 9);
    }
  });

  it('refuses a negative right-hand side', () => {
    expect(() => new LinearProgram().row([0], [1], -1)).toThrow(RangeError);
  });
});
