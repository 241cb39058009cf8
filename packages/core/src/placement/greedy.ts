import { DIMS, EPS } from './dims.js';
import type { VmRule } from './filters.js';
import type { Problem } from './problem.js';
import { HostScorer } from './scorers.js';
import type { SolverState } from './state.js';
import type { Weights } from './types.js';

/** Largest first by dominant share of an average usable host; groups after the groups they must run with. */
export function greedyOrder(p: Problem, random?: () => number): number[] {
  const avg = [0, 0, 0, 0];
  let n = 0;
  for (let h = 0; h < p.H; h++) {
    if (p.elastic[h] || !p.up[h]) continue;
    n++;
    for (let d = 0; d < DIMS; d++) avg[d]! += p.cap[h * DIMS + d]!;
  }
  const inv = avg.map((a) => (n > 0 && a > 0 ? n / a : 0));
  const size = new Float64Array(p.V);
  // Another start of a multi-start search shuffles sizes a little, per class (so alike VMs
  // stay together), in class order (so the input's order does not matter).
  const noise = p.classes.map(() => (random ? 0.85 + 0.3 * random() : 1));
  for (let v = 0; v < p.V; v++) {
    let max = 0;
    let sum = 0;
    for (let d = 0; d < DIMS; d++) {
      const s = p.req[v * DIMS + d]! * inv[d]!;
      if (s > max) max = s;
      sum += s;
    }
    // Largest first, and VMs with few hosts to go to before those that can go anywhere.
    const scarce = 1 + 0.5 * (1 - Math.min(1, p.classes[p.vmClass[v]!]!.candidates.length / Math.max(1, n)));
    size[v] = (max + 0.1 * sum) * scarce * noise[p.vmClass[v]!]!;
  }
  const order = Array.from({ length: p.V }, (_, v) => v);
  order.sort((a, b) => {
    const la = p.groups[p.vmGroup[a]!]!.layer;
    const lb = p.groups[p.vmGroup[b]!]!.layer;
    if (la !== lb) return la - lb;
    if (size[a] !== size[b]) return size[b]! - size[a]!;
    return p.vmClass[a]! - p.vmClass[b]! || p.idRank[a]! - p.idRank[b]!;
  });
  return order;
}

/**
 * Places VMs in the given order on their best-scoring feasible host; returns those that fit
 * nowhere.
 *
 * VMs of one class (group and shape) come in runs, and while a run lasts only the host that
 * took the last VM changes (and, for rules read per zone, its zone), so the scores of all
 * other hosts are kept from the run's first VM: each further VM costs one scan of a float
 * array. The spread rule is checked during the scan, since a skew's minimum can rise and
 * make a host acceptable again.
 */
export function greedy(s: SolverState, order: readonly number[], w: Weights, dynamic: readonly (readonly VmRule[])[], eligibleOut: Int32Array): number[] {
  const p = s.p;
  const seen = new Int32Array(p.hostClasses).fill(-1);
  const classScore = new Float64Array(p.hostClasses);
  const used = s.used;
  const cap = p.cap;
  const req = p.req;
  const active = s.active;
  const scorer = new HostScorer(s, w);
  const cached = dynamic.map((rules) => rules.filter((rule) => rule.name !== 'spread'));
  // A group that keeps itself together rules out every other host (or zone) once its first VM
  // lands, and one near itself rescores every host: their runs rescore every host each time.
  const volatile = p.groups.map((g) => g.withHost.includes(g.index) || g.withZone.includes(g.index) || g.near.includes(g.index));
  const zoneSensitive = p.groups.map((g) => g.antiZone || g.avoidZone.includes(g.index));
  const cache = new Float64Array(p.H).fill(-Infinity);
  const unplaced: number[] = [];
  let runClass = -1;
  let last = -1;
  let stamp = 0;

  // The score of the VM the scorer is prepared for on host h, or -Infinity when h may not take it.
  const evaluate = (v: number, h: number, rules: readonly VmRule[]): number => {
    if (p.elastic[h]) {
      if (!p.classes[p.vmClass[v]!]!.elasticType.has(h)) return -Infinity;
    } else {
      const o = h * DIMS;
      const r = v * DIMS;
      if (
        used[o]! + req[r]! > cap[o]! + EPS ||
        used[o + 1]! + req[r + 1]! > cap[o + 1]! + EPS ||
        used[o + 2]! + req[r + 2]! > cap[o + 2]! + EPS ||
        used[o + 3]! + req[r + 3]! > cap[o + 3]! + EPS
      ) {
        return -Infinity;
      }
    }
    if (rules.length > 0 && rejectedBy(rules, s, v, h)) return -Infinity;
    return scorer.score(h);
  };

  for (let i = 0; i < order.length; i++) {
    const v = order[i]!;
    const g = p.vmGroup[v]!;
    const group = p.groups[g]!;
    const rules = cached[g]!;
    const cls = p.vmClass[v]!;
    const cands = p.classes[cls]!.candidates;
    scorer.prepare(v);
    if (cls !== runClass || volatile[g]) {
      // A new run: score every candidate; empty hosts that are alike are scored once.
      runClass = cls;
      stamp++;
      for (let c = 0; c < cands.length; c++) {
        const h = cands[c]!;
        if (active[h] === 0) {
          const k = p.hostClass[h]!;
          if (seen[k] !== stamp) {
            seen[k] = stamp;
            classScore[k] = evaluate(v, h, rules);
          }
          cache[h] = classScore[k]!;
        } else cache[h] = evaluate(v, h, rules);
      }
    } else if (last >= 0) {
      if (zoneSensitive[g]) {
        const z = p.zoneOf[last]!;
        for (let c = 0; c < cands.length; c++) if (p.zoneOf[cands[c]!] === z) cache[cands[c]!] = evaluate(v, cands[c]!, rules);
      } else cache[last] = evaluate(v, last, rules);
    }
    const counter = group.spread ? s.spread[g]! : undefined;
    const domainOf = group.spread?.domainOf;
    const limit = (group.spread?.maxSkew ?? 0) + (counter?.min ?? 0) - 1;
    let best = -Infinity;
    let bestHost = -1;
    let eligible = 0;
    for (let c = 0; c < cands.length; c++) {
      const h = cands[c]!;
      const score = cache[h]!;
      if (score === -Infinity) continue;
      if (counter && counter.cnt[domainOf![h]!]! > limit) continue;
      eligible++;
      if (score > best + 1e-12) {
        best = score;
        bestHost = h;
      }
    }
    eligibleOut[v] = eligible;
    if (bestHost < 0) {
      unplaced.push(v);
      last = -1;
    } else {
      s.add(v, bestHost);
      last = bestHost;
    }
  }
  return unplaced;
}

export function rejectedBy(rules: readonly VmRule[], s: SolverState, v: number, h: number): boolean {
  for (let k = 0; k < rules.length; k++) if (rules[k]!.rejects(s, v, h)) return true;
  return false;
}

