/**
 * A small dense two-phase simplex, enough for the placement guide (guide.ts): a few hundred
 * rows and columns, solved in milliseconds. Minimises c·x subject to rows a·x ≤ b or a·x = b
 * (b ≥ 0) and x ≥ 0.
 *
 * Pivots by the most negative reduced cost, ties and the ratio test broken by the lowest
 * index (so a run is deterministic), updating only the rows and columns the pivot touches
 * (the guide's rows are sparse). Iterations are capped: a capped or infeasible run reports
 * so and the caller goes without.
 */
export type LpStatus = 'optimal' | 'infeasible' | 'limit';

export interface LpSolution {
  readonly status: LpStatus;
  /** Value of each variable (0 for all unless optimal). */
  readonly x: Float64Array;
  readonly value: number;
  readonly iterations: number;
}

const EPS = 1e-9;
/** Smallest pivot element taken (the caller scales rows to about 1). */
const PIVOT_EPS = 1e-7;
/** Degenerate pivots in a row after which Bland's rule takes over. */
const DEGENERATE_RUN = 50;

export class LinearProgram {
  readonly #cost: number[] = [];
  readonly #rows: { idx: number[]; val: number[]; eq: boolean; rhs: number }[] = [];

  get variables(): number {
    return this.#cost.length;
  }

  get rows(): number {
    return this.#rows.length;
  }

  /** A new variable x ≥ 0 with cost `cost` in the objective; returns its index. */
  variable(cost: number): number {
    return this.#cost.push(cost) - 1;
  }

  /** Σ val[i]·x[idx[i]] ≤ rhs (or = rhs when `eq`), rhs ≥ 0. */
  row(idx: readonly number[], val: readonly number[], rhs: number, eq = false): void {
    if (!(rhs >= 0)) throw new RangeError(`LP row: right-hand side ${rhs} must be 0 or more`);
    this.#rows.push({ idx: [...idx], val: [...val], eq, rhs });
  }

  /** The tableau of the last optimal solve, kept so `reoptimize` can start from its basis. */
  #last: Tableau | undefined;

  solve(maxIterations = 20_000): LpSolution {
    const n = this.#cost.length;
    const m = this.#rows.length;
    const slacks = this.#rows.filter((r) => !r.eq).length;
    const artificials = m - slacks;
    const N = n + slacks + artificials;
    const W = N + 1; // + right-hand side
    const tb: Tableau = { t: new Float64Array((m + 2) * W), basis: new Int32Array(m), m, n, cols: n + slacks, N, W, iterations: 0, maxIterations };
    const { t, basis } = tb;
    const z1 = (m + 1) * W;
    let s = n;
    let a = n + slacks;
    this.#rows.forEach((row, i) => {
      const o = i * W;
      for (let k = 0; k < row.idx.length; k++) t[o + row.idx[k]!]! += row.val[k]!;
      t[o + N] = row.rhs;
      if (row.eq) {
        t[o + a] = 1;
        basis[i] = a++;
        // Phase 1 minimises the artificials: express their sum in the non-basic columns.
        for (let j = 0; j <= N; j++) if (j < n + slacks || j === N) t[z1 + j]! -= t[o + j]!;
      } else {
        t[o + s] = 1;
        basis[i] = s++;
      }
    });
    for (let j = 0; j < n; j++) t[m * W + j] = this.#cost[j]!;
    this.#last = undefined;
    const zero = new Float64Array(n);
    if (artificials > 0) {
      const phase1 = run(tb, z1);
      if (phase1 !== 'optimal') return { status: 'limit', x: zero, value: 0, iterations: tb.iterations };
      if (-t[z1 + N]! > 1e-6 * Math.max(1, ...this.#rows.map((r) => r.rhs))) return { status: 'infeasible', x: zero, value: 0, iterations: tb.iterations };
      // Artificials still basic (at 0) are pivoted out where a real column can take their row.
      for (let i = 0; i < m; i++) {
        if (basis[i]! < n + slacks) continue;
        for (let j = 0; j < n + slacks; j++) {
          if (Math.abs(t[i * W + j]!) > 1e-7) {
            pivot(tb, i, j);
            break;
          }
        }
      }
    }
    return this.#finish(tb);
  }

  /**
   * Solves again with new costs (one per variable), from the optimal basis of the last solve:
   * it stays feasible, so only the pivots the new costs ask for are made. Solves from scratch
   * when there is no such basis.
   */
  reoptimize(costs: readonly number[]): LpSolution {
    for (let j = 0; j < this.#cost.length; j++) this.#cost[j] = costs[j]!;
    const tb = this.#last;
    if (!tb) return this.solve();
    const { t, basis, m, W, N } = tb;
    // Reduced costs of every column for the new costs: c_j − Σ_i c_basis(i) · t_ij.
    const z = m * W;
    t.fill(0, z, z + W);
    for (let j = 0; j < tb.n; j++) t[z + j] = this.#cost[j]!;
    for (let i = 0; i < m; i++) {
      const c = basis[i]! < tb.n ? this.#cost[basis[i]!]! : 0;
      if (c === 0) continue;
      for (let j = 0; j <= N; j++) if (t[i * W + j] !== 0) t[z + j]! -= c * t[i * W + j]!;
    }
    tb.iterations = 0;
    return this.#finish(tb);
  }

  /** Phase 2 from a feasible basis, and the solution it ends at. */
  #finish(tb: Tableau): LpSolution {
    const { t, basis, m, n, W, N } = tb;
    const zero = new Float64Array(n);
    const phase2 = run(tb, m * W);
    if (phase2 !== 'optimal') {
      this.#last = undefined;
      return { status: 'limit', x: zero, value: 0, iterations: tb.iterations };
    }
    this.#last = tb;
    const x = new Float64Array(n);
    for (let i = 0; i < m; i++) if (basis[i]! < n) x[basis[i]!] = Math.max(0, t[i * W + N]!);
    let value = 0;
    for (let j = 0; j < n; j++) value += this.#cost[j]! * x[j]!;
    return { status: 'optimal', x, value, iterations: tb.iterations };
  }
}

/** A simplex tableau: m rows, then the phase-2 and phase-1 objectives; `cols` columns may enter (not the artificials). */
interface Tableau {
  readonly t: Float64Array;
  readonly basis: Int32Array;
  readonly m: number;
  readonly n: number;
  readonly cols: number;
  readonly N: number;
  readonly W: number;
  iterations: number;
  readonly maxIterations: number;
}

function pivot(tb: Tableau, r: number, c: number): void {
  const { t, basis, m, N, W } = tb;
  const ro = r * W;
  const inv = 1 / t[ro + c]!;
  const rowCols: number[] = [];
  for (let j = 0; j <= N; j++) {
    if (t[ro + j] !== 0) {
      t[ro + j]! *= inv;
      rowCols.push(j);
    }
  }
  t[ro + c] = 1;
  for (let i = 0; i < m + 2; i++) {
    if (i === r || t[i * W + c] === 0) continue;
    const o = i * W;
    const f = t[o + c]!;
    for (const j of rowCols) {
      const v = t[o + j]! - f * t[ro + j]!;
      t[o + j] = Math.abs(v) < 1e-12 ? 0 : v; // keep rows sparse: drop what rounding leaves
    }
    t[o + c] = 0;
  }
  basis[r] = c;
}

/**
 * One phase: pivots on the objective row at offset `z` until optimal. After a run of
 * degenerate pivots (the objective not moving), Bland's rule (the lowest improving column)
 * until one moves it: it cannot cycle.
 */
function run(tb: Tableau, z: number): 'optimal' | 'limit' | 'unbounded' {
  const { t, basis, m, N, W, cols } = tb;
  let degenerate = 0;
  for (;;) {
    if (tb.iterations >= tb.maxIterations) return 'limit';
    let c = -1;
    let best = -EPS;
    const bland = degenerate > DEGENERATE_RUN;
    for (let j = 0; j < cols; j++) {
      const d = t[z + j]!;
      if (d < best) {
        best = d;
        c = j;
        if (bland) break;
      }
    }
    if (c < 0) return 'optimal';
    // Ratio test: the row that blocks first; of rows blocking together, the largest pivot
    // (numerically safest), or under Bland's rule the lowest basic index.
    let r = -1;
    let ratio = Infinity;
    for (let i = 0; i < m; i++) {
      const v = t[i * W + c]!;
      if (v <= PIVOT_EPS) continue;
      const q = Math.max(0, t[i * W + N]!) / v;
      if (q < ratio - 1e-12) {
        ratio = q;
        r = i;
      } else if (q <= ratio + 1e-12 && r >= 0 && (bland ? basis[i]! < basis[r]! : v > t[r * W + c]!)) {
        r = i;
      }
    }
    if (r < 0) return 'unbounded';
    degenerate = ratio * -best <= 1e-9 ? degenerate + 1 : 0; // the objective hardly moves
    pivot(tb, r, c);
    tb.iterations++;
  }
}
