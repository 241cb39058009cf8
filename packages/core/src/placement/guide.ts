import { DIMS } from './dims.js';
import { LinearProgram } from './lp.js';
import type { Problem } from './problem.js';
import type { Weights } from './types.js';

/**
 * The plan the host-by-host fill follows (fill.ts): how many hosts of each kind to open and
 * which VMs each kind should take, from the linear relaxation of the placement.
 *
 * Filling one host at a time is short-sighted: the first big hosts take the VMs that suit
 * them, and the VMs that suited them better are gone when later hosts open (on the bench,
 * memory-rich hosts ended full of cpu-heavy VMs with 40% of their memory stranded, and the
 * cpu-rich ones short of memory). The relaxation sees every host kind and VM class at once:
 *
 *   minimise   Σ_t c_t · y_t + Σ_{k,e} c_ke · x_ke + penalties
 *   subject to Σ_t x_kt + u_k = n_k                   every VM of class k (u_k: left over, at a high price)
 *              Σ_k r_kd · x_kt ≤ cap_td · y_t          capacity of the y_t hosts of kind t opened, each dimension
 *              Σ_{k in g} x_kt ≤ m_g · y_t             maxPerHost (1 for host anti-affinity)
 *              Σ_{in a} x_gt - Σ_{in b} x_gt ≤ maxSkew     spread, every pair of domains (a, b)
 *              Σ_modes y_t ≤ hosts of the class
 *
 * with x_kt the VMs of class k on hosts of kind t and c_t what a host of the kind counts
 * against the weights (a host, its price). A kind is a host class (hosts alike in all a rule
 * or score reads) in a mode: for each pair of groups that avoid each other per host (up to
 * three pairs), which side the host keeps out; each loaded host is a kind of its own, already
 * paid for. Elastic hosts sell an instance per VM at the type's price. Run-with rules are left
 * to the fill, which checks every rule as it places: the guide only orders its choices, so a
 * wrong guess costs packing, never a rule.
 */
export interface FillGuide {
  readonly kinds: number;
  /** Host class (Problem.hostClass) of each kind of empty host; -1 for a loaded host's own kind. */
  readonly kindClass: Int32Array;
  /** The loaded host of each kind of its own; -1 for kinds of empty hosts. */
  readonly kindHost: Int32Array;
  /** Hosts of each kind the relaxation opens (fractional). */
  readonly open: Float64Array;
  /** VMs of class k the relaxation puts on kind t: `quota[k * kinds + t]` (fractional). */
  readonly quota: Float64Array;
  readonly iterations: number;
}

/** Above this many (class, kind) columns the relaxation would cost more than the fill saves; the fill goes unguided. */
const MAX_COLUMNS = 4000;
/** Pairs of groups that avoid each other per host the relaxation models (2^pairs modes of each host class); more are left to the fill. */
const MAX_AVOID_PAIRS = 3;
/** Spreads over at most this many domains are modelled pair by pair (else by an upper bound per domain). */
const MAX_PAIRWISE_DOMAINS = 8;
/** Cost of a VM left out of the relaxation, in hosts. */
const LEFT_OUT = 1000;

/**
 * The relaxation of one problem, built once and solved for any weights: only the costs
 * depend on them, so a second plan starts from the first one's optimal basis (the LP's
 * `reoptimize`) and takes a few pivots instead of a whole solve. The main solve and the
 * Pareto alternatives of one `place` share it.
 */
export class GuidePlanner {
  readonly #p: Problem;
  #model: GuideModel | null | undefined;

  constructor(p: Problem) {
    this.#p = p;
  }

  plan(w: Weights): FillGuide | undefined {
    if (this.#model === undefined) this.#model = buildModel(this.#p) ?? null;
    const model = this.#model;
    if (!model) return undefined;
    const costs = model.costs.map((c) => c.fixed + c.consolidation * w.consolidation + c.cost * w.cost + c.preferLabels * w.preferLabels);
    const solution = model.lp.reoptimize(costs);
    if (solution.status !== 'optimal') return undefined;
    const { T, K, loaded, x, y } = model;
    const open = new Float64Array(T);
    for (let t = 0; t < T; t++) open[t] = loaded[t] ? 1 : solution.x[y[t]!]!;
    const quota = new Float64Array(K * T);
    for (let i = 0; i < K * T; i++) if (x[i]! >= 0) quota[i] = solution.x[x[i]!]!;
    return { kinds: T, kindClass: model.kindClass, kindHost: model.kindHost, open, quota, iterations: solution.iterations };
  }
}

/** A variable's cost: a constant plus a coefficient per weight. */
interface CostTerms {
  readonly fixed: number;
  readonly consolidation: number;
  readonly cost: number;
  readonly preferLabels: number;
}

interface GuideModel {
  readonly lp: LinearProgram;
  readonly costs: readonly CostTerms[];
  readonly T: number;
  readonly K: number;
  readonly loaded: readonly boolean[];
  readonly x: Int32Array;
  readonly y: Int32Array;
  readonly kindClass: Int32Array;
  readonly kindHost: Int32Array;
}

function buildModel(p: Problem): GuideModel | undefined {
  const K = p.classes.length;
  if (K === 0) return undefined;
  // Groups that may not share a host, both with VMs to place: a host of a kind keeps out one
  // side of each such pair (2^pairs modes; a host with neither fits either mode).
  const pairs: [number, number][] = [];
  for (const g of p.groups) for (const a of g.avoidHost) if (a > g.index && g.size > 0 && p.groups[a]!.size > 0) pairs.push([g.index, a]);
  const modes = pairs.length <= MAX_AVOID_PAIRS ? 1 << pairs.length : 1;
  const keepsOut = (mode: number, group: number) => modes > 1 && pairs.some(([a, b], i) => ((mode >> i) & 1 ? b : a) === group);
  // Kinds: empty usable fixed hosts by host class and mode; loaded ones each on their own.
  const rep: number[] = [];
  const count: number[] = [];
  const loaded: boolean[] = [];
  const modeOf: number[] = [];
  const kindClass: number[] = [];
  const kindHost: number[] = [];
  const byClass = new Map<number, number[]>();
  for (const h of p.order) {
    if (p.elastic[h] || !p.up[h]) continue;
    if (p.baseActive[h]) {
      rep.push(h);
      count.push(1);
      loaded.push(true);
      modeOf.push(-1);
      kindClass.push(-1);
      kindHost.push(h);
      continue;
    }
    let ts = byClass.get(p.hostClass[h]!);
    if (ts === undefined) {
      ts = [];
      for (let m = 0; m < modes; m++) {
        ts.push(rep.push(h) - 1);
        count.push(0);
        loaded.push(false);
        modeOf.push(m);
        kindClass.push(p.hostClass[h]!);
        kindHost.push(-1);
      }
      byClass.set(p.hostClass[h]!, ts);
    }
    for (const t of ts) count[t]!++;
  }
  const T = rep.length;
  // Hosts all alike (in capacity and price) leave nothing to plan: which VMs go together on a
  // host is the fill's own question, and it answers it better without quotas.
  const differ = (a: number, b: number) => p.price[a] !== p.price[b] || [0, 1, 2, 3].some((d) => p.cap[a * DIMS + d] !== p.cap[b * DIMS + d]);
  if (!rep.some((h) => p.baseActive[h] || differ(h, rep[0]!))) return undefined;
  let columns = 0;
  for (const cls of p.classes) for (let t = 0; t < T; t++) if (cls.isCandidate[rep[t]!]) columns++;
  if (columns > MAX_COLUMNS) return undefined;

  let priceSum = 0;
  let usable = 0;
  for (let t = 0; t < T; t++) {
    if (modeOf[t]! > 0) continue; // a host class counted once, not per mode
    priceSum += p.price[rep[t]!]! * count[t]!;
    usable += count[t]!;
  }
  const meanPrice = usable > 0 && priceSum > 0 ? priceSum / usable : 1;
  const hostCost = (h: number): CostTerms => ({ fixed: 0, consolidation: 1, cost: p.price[h]! / meanPrice, preferLabels: 0 });
  const avg = [0, 0, 0, 0];
  for (let t = 0; t < T; t++) if (modeOf[t]! <= 0) for (let d = 0; d < DIMS; d++) avg[d]! += (p.cap[rep[t]! * DIMS + d]! * count[t]!) / Math.max(1, usable);

  const lp = new LinearProgram();
  const costs: CostTerms[] = [];
  const variable = (c: CostTerms) => {
    costs.push(c);
    return lp.variable(0);
  };
  const x = new Int32Array(K * T).fill(-1);
  const y = new Int32Array(T).fill(-1);
  for (let t = 0; t < T; t++) if (!loaded[t]) y[t] = variable(hostCost(rep[t]!));
  const classRows: { idx: number[]; val: number[] }[] = [];
  for (let k = 0; k < K; k++) {
    const cls = p.classes[k]!;
    const group = p.groups[cls.group]!;
    // A VM's share of an average host: preference misses cost a part of it.
    let share = 0;
    for (let d = 0; d < DIMS; d++) if (avg[d]! > 0) share = Math.max(share, cls.req[d]! / avg[d]!);
    const idx: number[] = [];
    for (let t = 0; t < T; t++) {
      const h = rep[t]!;
      if (!cls.isCandidate[h] || !fitsEmpty(p, k, h) || keepsOut(modeOf[t]!, cls.group)) continue;
      const miss = group.preferScore ? 1 - group.preferScore[h]! : 0;
      x[k * T + t] = variable({ fixed: 0, consolidation: 0, cost: 0, preferLabels: 0.5 * miss * share });
      idx.push(x[k * T + t]!);
    }
    for (const type of cls.elasticType.values()) idx.push(variable({ fixed: 1e-6, consolidation: 0, cost: type.pricePerHour / meanPrice, preferLabels: 0 }));
    idx.push(variable({ fixed: LEFT_OUT, consolidation: LEFT_OUT, cost: LEFT_OUT, preferLabels: 0 }));
    classRows.push({ idx, val: idx.map(() => 1) });
  }
  const sizes = new Int32Array(K);
  for (let v = 0; v < p.V; v++) sizes[p.vmClass[v]!]!++;
  classRows.forEach((row, k) => lp.row(row.idx, row.val, sizes[k]!, true));

  for (let t = 0; t < T; t++) {
    const h = rep[t]!;
    const room = (d: number) => (loaded[t] ? p.cap[h * DIMS + d]! - p.base[h * DIMS + d]! : p.cap[h * DIMS + d]!);
    for (let d = 0; d < DIMS; d++) {
      // A dimension no VM here fills faster than it fills another needs no row of its own.
      if (dominated(d, room, (k) => (x[k * T + t]! >= 0 ? p.classes[k]!.req : undefined), K)) continue;
      const idx: number[] = [];
      const val: number[] = [];
      for (let k = 0; k < K; k++) {
        const r = p.classes[k]!.req[d]!;
        if (x[k * T + t]! < 0 || r <= 0) continue;
        idx.push(x[k * T + t]!);
        val.push(r);
      }
      if (idx.length === 0) continue;
      // Rows in units of an average host's capacity, so the simplex sees numbers near 1.
      const unit = avg[d]! > 0 ? avg[d]! : 1;
      const cap = p.cap[h * DIMS + d]! / unit;
      const scaled = val.map((r) => r / unit);
      if (loaded[t]) lp.row(idx, scaled, Math.max(0, cap - p.base[h * DIMS + d]! / unit));
      else lp.row([...idx, y[t]!], [...scaled, -cap], 0);
    }
    // The hosts of a class, whatever mode each is opened in.
    if (modeOf[t] === 0) lp.row(Array.from({ length: modes }, (_, m) => y[t + m]!), new Array<number>(modes).fill(1), count[t]!);
    // At most m of a group per host.
    for (const group of p.groups) {
      const m = group.antiHost ? 1 : group.maxPerHost;
      if (!(m < Infinity)) continue;
      const idx: number[] = [];
      for (let k = 0; k < K; k++) if (p.classes[k]!.group === group.index && x[k * T + t]! >= 0) idx.push(x[k * T + t]!);
      if (idx.length === 0) continue;
      if (loaded[t]) lp.row(idx, idx.map(() => 1), Math.max(0, m - (p.existingHost[group.index]?.[h] ?? 0)));
      else lp.row([...idx, y[t]!], [...idx.map(() => 1), -m], 0);
    }
  }
  // Spread: no domain more than maxSkew ahead of another (pairwise while domains are few;
  // else each domain at most maxSkew above an even share). Zone anti-affinity: one per zone.
  for (const group of p.groups) {
    if (group.size === 0 || !(group.spread || group.antiZone)) continue;
    const domainOf = group.spread ? group.spread.domainOf : p.zoneOf;
    const domains = group.spread ? group.spread.names.length : p.zones.length;
    const eligible = group.spread ? group.spread.eligible : new Uint8Array(domains).fill(1);
    const existing = new Float64Array(domains);
    const hostCounts = p.existingHost[group.index];
    if (hostCounts) for (let h = 0; h < p.H; h++) if (hostCounts[h]! > 0 && domainOf[h]! >= 0) existing[domainOf[h]!]! += hostCounts[h]!;
    const vars: number[][] = Array.from({ length: domains }, () => []);
    for (let k = 0; k < K; k++) {
      if (p.classes[k]!.group !== group.index) continue;
      for (let t = 0; t < T; t++) if (x[k * T + t]! >= 0 && domainOf[rep[t]!]! >= 0) vars[domainOf[rep[t]!]!]!.push(x[k * T + t]!);
    }
    const used = Array.from({ length: domains }, (_, d) => d).filter((d) => eligible[d]);
    if (group.antiZone) {
      for (const d of used) if (vars[d]!.length) lp.row(vars[d]!, vars[d]!.map(() => 1), Math.max(0, 1 - existing[d]!));
      continue;
    }
    const skew = group.spread!.maxSkew;
    if (used.length <= MAX_PAIRWISE_DOMAINS) {
      for (const a of used) {
        for (const b of used) {
          if (a === b || vars[a]!.length === 0) continue;
          lp.row([...vars[a]!, ...vars[b]!], [...vars[a]!.map(() => 1), ...vars[b]!.map(() => -1)], Math.max(0, skew - existing[a]! + existing[b]!));
        }
      }
    } else {
      const total = group.size + p.existingTotal[group.index]!;
      for (const d of used) if (vars[d]!.length) lp.row(vars[d]!, vars[d]!.map(() => 1), Math.max(0, total / used.length + skew - existing[d]!));
    }
  }

  return { lp, costs, T, K, loaded, x, y, kindClass: Int32Array.from(kindClass), kindHost: Int32Array.from(kindHost) };
}

/**
 * Whether every class's share of dimension d is at most its share of another dimension e,
 * so e's capacity row implies d's (of dimensions equal for every class, the first keeps its row).
 */
function dominated(d: number, room: (d: number) => number, req: (k: number) => Float64Array | undefined, classes: number): boolean {
  const cd = room(d);
  if (!(cd > 0)) return false;
  for (let e = 0; e < DIMS; e++) {
    const ce = room(e);
    if (e === d || !(ce > 0)) continue;
    let holds = true;
    let strictly = false;
    for (let k = 0; k < classes && holds; k++) {
      const r = req(k);
      if (!r) continue;
      const a = r[d]! / cd;
      const b = r[e]! / ce;
      if (a > b + 1e-12) holds = false;
      else if (a < b - 1e-12) strictly = true;
    }
    if (holds && (strictly || e < d)) return true;
  }
  return false;
}

/** Whether a VM of class k fits host h when empty (what it reports allocated aside). */
function fitsEmpty(p: Problem, k: number, h: number): boolean {
  const r = p.classes[k]!.req;
  for (let d = 0; d < DIMS; d++) if (p.base[h * DIMS + d]! + r[d]! > p.cap[h * DIMS + d]! + 1e-9) return false;
  return true;
}
