import { DIMS, EPS } from './dims.js';
import type { VmRule } from './filters.js';
import type { SolverState } from './state.js';
import type { Weights } from './types.js';

/**
 * The greedy pass when the weights consolidate (cost and consolidation, no balance or
 * headroom): fill one host at a time.
 *
 * Placing VMs one by one, largest first, fills each host with whatever shape comes next: a
 * run of cpu-heavy VMs exhausts a memory-rich host's cpu and strands its memory. Filling a
 * host at a time lets each host pick, from every kind of VM still waiting, the one whose
 * shape best matches the room it has left (the largest dot product of the VM's size and
 * the host's free capacity, both relative to the host), which packs vectors far tighter.
 *
 * Which host to open next is decided by trying each kind of empty host (hosts alike in
 * capacity, price, zone and the labels rules read are tried once) and keeping the one that
 * packs the most per unit of what the weights count: a host, or its price. Hosts that
 * already carry load are filled first, since they are paid for.
 *
 * VMs are taken per class (same group and shape), so each fill step looks at a handful of
 * classes, not at every VM: the pass costs O(hosts opened × host kinds × VMs per host ×
 * classes). Callers use it only when the classes are few.
 */
/** How much worse than the best of the last full round the last kind of host may pack and still be opened again untried. */
const REUSE_TOLERANCE = 0.01;
/** How strongly a fill avoids skewing a host's use of its dimensions (see `pickClass`). */
const SKEW_PENALTY = 2;

export function fillGreedy(s: SolverState, w: Weights, dynamic: readonly (readonly VmRule[])[], random?: () => number): number[] {
  const p = s.p;
  const K = p.classes.length;
  const queue: number[][] = Array.from({ length: K }, () => []);
  for (let v = 0; v < p.V; v++) queue[p.vmClass[v]!]!.push(v);
  for (const q of queue) q.sort((a, b) => p.idRank[a]! - p.idRank[b]!);
  const next = new Int32Array(K);
  let waiting = p.V;

  // Volume of each class relative to an average usable host, to compare what hosts pack.
  const avg = [0, 0, 0, 0];
  let usable = 0;
  let priceSum = 0;
  for (let h = 0; h < p.H; h++) {
    if (p.elastic[h] || !p.up[h]) continue;
    usable++;
    priceSum += p.price[h]!;
    for (let d = 0; d < DIMS; d++) avg[d]! += p.cap[h * DIMS + d]!;
  }
  const volume = p.classes.map((c) => c.req.reduce((sum, r, d) => sum + (avg[d]! > 0 ? (r * usable) / avg[d]! : 0), 0));
  const demand = [0, 0, 0, 0];
  for (let v = 0; v < p.V; v++) for (let d = 0; d < DIMS; d++) demand[d]! += p.req[v * DIMS + d]!;
  // How scarce each dimension is overall. Utilisation is read relative to it, so a host is
  // filled evenly in the dimensions that bind, and plentiful ones (disk, often) do not steer.
  const scarcity = avg.map((a, d) => (a > 0 ? demand[d]! / a : 0));
  const meanPrice = usable > 0 && priceSum > 0 ? priceSum / usable : 1;
  const preferShare = w.preferLabels / (w.preferLabels + w.cost + w.consolidation || 1);

  const scarce = p.classes.map((c) => 1 + 0.5 * (1 - Math.min(1, c.candidates.length / Math.max(1, usable))));
  const dead = new Int32Array(K).fill(-1);
  // Set by pickClass when a rule (not room) turned a class away: a later refill may then help.
  let ruleBlocked = false;
  // Hosts whose last fill ended for want of room alone: room only shrinks, so no refill can help.
  const closed = new Uint8Array(p.H);
  let stamp = 0;

  /**
   * The class whose next VM host h should take: the one that fills the host most (sum of
   * its relative utilisations afterwards) without skewing it (minus SKEW_PENALTY times the
   * gap between its most and least used dimension). A host that runs out of cpu with
   * memory left has stranded that memory; keeping dimensions level is what avoids it.
   */
  const pickClass = (h: number): number => {
    ruleBlocked = false;
    let best = -1;
    let bestValue = -Infinity;
    const o = h * DIMS;
    for (let k = 0; k < K; k++) {
      const q = queue[k]!;
      if (next[k]! >= q.length || dead[k] === stamp) continue;
      const cls = p.classes[k]!;
      if (!cls.isCandidate[h]) {
        dead[k] = stamp;
        continue;
      }
      let fits = true;
      let low = Infinity;
      let high = 0;
      let sum = 0;
      for (let d = 0; d < DIMS; d++) {
        const r = cls.req[d]!;
        if (s.used[o + d]! + r > p.cap[o + d]! + EPS) {
          fits = false;
          break;
        }
        // Gpus count only for VMs that ask for them: a gpu host's idle gpus are no reason to skip it.
        if (p.invCap[o + d]! > 0 && scarcity[d]! > 0 && (d < 3 || r > 0)) {
          const u = ((s.used[o + d]! + r) * p.invCap[o + d]!) / scarcity[d]!;
          if (u < low) low = u;
          if (u > high) high = u;
          sum += u;
        }
      }
      if (!fits) {
        dead[k] = stamp; // a host only fills up during one fill: this class will not fit again
        continue;
      }
      const v = q[next[k]!]!;
      const rules = dynamic[cls.group]!;
      let rejected = false;
      for (let i = 0; i < rules.length && !rejected; i++) rejected = rules[i]!.rejects(s, v, h);
      if (rejected) {
        ruleBlocked = true;
        continue;
      }
      // VMs with few hosts to go to are worth more where they can go: the rest can go elsewhere.
      let value = (sum - SKEW_PENALTY * (high - low)) * scarce[k]!;
      if (random) value *= 0.9 + 0.2 * random(); // another start of a multi-start search
      const prefer = p.groups[cls.group]!.preferScore;
      if (prefer && w.preferLabels > 0 && prefer[h]! < 1) value -= Math.abs(value) * 0.5 * (1 - prefer[h]!);
      if (value > bestValue + 1e-12) {
        bestValue = value;
        best = k;
      }
    }
    return best;
  };

  /** Fills host h; returns the volume packed. When `keep` is false, undoes it (a trial). */
  const fill = (h: number, keep: boolean): number => {
    stamp++;
    const placed: number[] = [];
    let packed = 0;
    for (;;) {
      const k = pickClass(h);
      if (k < 0) break;
      const v = queue[k]![next[k]!]!;
      next[k]!++;
      waiting--;
      s.add(v, h);
      placed.push(v);
      // A VM on a host without its preferred labels counts for less, as much less as the
      // weights value preferences against packing.
      const prefer = p.groups[p.classes[k]!.group]!.preferScore;
      packed += prefer ? volume[k]! * (1 - preferShare * (1 - prefer[h]!)) : volume[k]!;
    }
    if (keep && !ruleBlocked) closed[h] = 1;
    if (!keep) {
      for (let i = placed.length - 1; i >= 0; i--) {
        const v = placed[i]!;
        s.remove(v);
        next[p.vmClass[v]!]!--;
        waiting++;
      }
    }
    return packed;
  };

  // Hosts that carry load already: paid for, so filled first, fullest first.
  const loaded: number[] = [];
  for (let h = 0; h < p.H; h++) if (!p.elastic[h] && p.up[h] && s.active[h]) loaded.push(h);
  loaded.sort((a, b) => s.util[b]! - s.util[a]! || a - b);
  for (const h of loaded) if (waiting > 0) fill(h, true);

  // Empty hosts, one per kind (hosts alike in all a rule or score reads), in search order.
  const per = (h: number) => w.consolidation + (w.cost * p.price[h]!) / meanPrice + 1e-9;
  const kinds: number[] = [];
  const kindOf = new Map<number, number>();
  for (const h of p.order) {
    if (p.elastic[h] || !p.up[h] || s.active[h] || kindOf.has(p.hostClass[h]!)) continue;
    kindOf.set(p.hostClass[h]!, h);
    kinds.push(p.hostClass[h]!);
  }
  const firstEmpty = (kind: number): number => {
    // The first empty host of the kind in search order (the one remembered may have been opened).
    let h = kindOf.get(kind)!;
    if (!s.active[h]) return h;
    h = -1;
    for (const x of p.order) {
      if (p.hostClass[x] === kind && !s.active[x] && !p.elastic[x] && p.up[x]) {
        h = x;
        break;
      }
    }
    if (h >= 0) kindOf.set(kind, h);
    return h;
  };
  const opened: number[] = [];
  // Trying every kind of host before each opening is the pass's main cost. The kind chosen
  // last is tried first: while it packs nearly as well as the best did in the last full
  // round, it is opened again without trying the others.
  let lastKind = -1;
  let lastBest = 0;
  while (waiting > 0) {
    let best = -1;
    let bestValue = 0;
    if (lastKind >= 0) {
      const h = firstEmpty(lastKind);
      if (h >= 0) {
        const value = (fill(h, false) / per(h)) * (random ? 0.95 + 0.1 * random() : 1);
        if (value >= lastBest * (1 - REUSE_TOLERANCE) && value > 0) {
          best = h;
          bestValue = value;
        }
      }
    }
    if (best < 0) {
      for (const kind of kinds) {
        const h = firstEmpty(kind);
        if (h < 0) continue;
        const packed = fill(h, false);
        const value = (packed / per(h)) * (random ? 0.95 + 0.1 * random() : 1);
        if (packed > 0 && value > bestValue * (1 + 1e-12)) {
          bestValue = value;
          best = h;
        }
      }
      if (best < 0) break;
      lastKind = p.hostClass[best]!;
      lastBest = bestValue;
    }
    fill(best, true);
    opened.push(best);
    // Hosts whose fill stopped on a rule rather than on room (a spread's skew, a group that
    // had to come first) may take more now. (Full hosts cost one pass over the classes.)
    for (const h of opened) if (waiting > 0 && h !== best && !closed[h]) fill(h, true);
  }

  const unplaced: number[] = [];
  for (let k = 0; k < K; k++) for (let i = next[k]!; i < queue[k]!.length; i++) unplaced.push(queue[k]![i]!);
  return unplaced;
}
