import { DIMS, EPS } from './dims.js';
import type { VmRule } from './filters.js';
import type { FillGuide } from './guide.js';
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
 * With a guide (guide.ts: the linear relaxation's plan of how many hosts of each kind to
 * open and which VMs each kind takes), the planned kinds are opened, those furthest behind
 * their plan first, and each host takes its kind's mix, class by class as far behind as it
 * is; the rest of its room takes only VMs no planned host waits for. Once every planned host
 * is open, the plan is let go and the pass goes on as without one. Every rule is checked as
 * always: the plan orders choices, it never overrides a rule.
 *
 * Without a guide, each opened host is then tightened: a bounded search over the waiting VMs
 * for a set that fills it fuller than one-at-a-time did (minimum bin slack).
 *
 * VMs are taken per class (same group and shape), so each fill step looks at a handful of
 * classes, not at every VM: the pass costs O(hosts opened × host kinds × VMs per host ×
 * classes). Callers use it only when the classes are few.
 */
/** How much worse than the best of the last full round the last kind of host may pack and still be opened again untried. */
const REUSE_TOLERANCE = 0.01;
/** How strongly a fill avoids skewing a host's use of its dimensions (see `pickClass`). */
const SKEW_PENALTY = 2;
/** Nodes the search for a fuller set of VMs may visit per host, and per fill pass. */
const TIGHTEN_NODES = 500;
const TIGHTEN_BUDGET = 100_000;
/** Steps in which planned kinds of host progress together (see the fill's loop). */
const PROGRESS_STEPS = 4;

export function fillGreedy(s: SolverState, w: Weights, dynamic: readonly (readonly VmRule[])[], random?: () => number, guide?: FillGuide): number[] {
  const p = s.p;
  const K = p.classes.length;
  // What the relaxation planned and is not placed yet: VMs of each class per kind of host, hosts of each kind.
  const T = guide?.kinds ?? 0;
  const quota = guide ? Float64Array.from(guide.quota) : new Float64Array(0);
  const openLeft = guide ? Float64Array.from(guide.open) : new Float64Array(0);
  // The kind each host is filled as: a loaded host's own, or the kind an empty one is opened as (-1: none).
  const hostKind = new Int32Array(p.H).fill(-1);
  if (guide) for (let t = 0; t < T; t++) if (guide.kindHost[t]! >= 0) hostKind[guide.kindHost[t]!] = t;
  // What one host of each kind should take of each class: the relaxation's mix per host.
  const target = guide ? guide.quota.map((q, i) => (guide.open[i % T]! > 1e-9 ? q / guide.open[i % T]! : 0)) : new Float64Array(0);
  const onHost = new Int32Array(K);
  // VMs of each class the plan still gives some kind of host (their positive quota left):
  // until every planned host is open, other hosts' leftover room takes only the rest.
  const reserved = new Float64Array(K);
  let released = false;
  let planOnly = false;
  const isPlanned = (t: number) => openLeft[t]! > 0.5;
  for (let t = 0; t < T; t++) for (let k = 0; k < K; k++) reserved[k]! += Math.max(0, quota[k * T + t]!);
  const takeQuota = (k: number, t: number, delta: number) => {
    const before = quota[k * T + t]!;
    quota[k * T + t] = before + delta;
    if (!released) reserved[k]! += Math.max(0, before + delta) - Math.max(0, before);
  };
  const openOne = (t: number) => {
    openLeft[t]!--;
  };
  const release = () => {
    for (let t = 0; t < T; t++) openLeft[t] = 0;
    reserved.fill(0);
    parked.fill(0);
    released = true;
  };
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
  // Set when only the plan's reservations turned classes away: the room waits for the plan's end.
  let reserveBlocked = false;
  // Hosts whose last fill ended on reservations alone: no refill helps before the plan ends.
  const parked = new Uint8Array(p.H);
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
    reserveBlocked = false;
    const t = hostKind[h]!;
    if (t < 0) return pickFrom(h, -1, 0);
    // The relaxation's mix for this kind of host, class by class as far behind as it is on
    // this host; then more of the classes it planned here; then what no other planned host
    // waits for, to fill the room left.
    // A planned class turned away by a rule (a spread waiting for other domains to catch up)
    // may fit later: its room is kept for it while the plan lasts, not given to more of another.
    const k = pickFrom(h, t, 1);
    if (k >= 0) return k;
    if (ruleBlocked && !released) return -1;
    const j = pickFrom(h, t, 2);
    if (j >= 0) return j;
    if ((ruleBlocked && !released) || planOnly) return -1;
    return pickFrom(h, t, 3);
  };

  /**
   * pickClass over the classes phase allows on host h of kind t: 1, behind the kind's mix on
   * this host; 2, with quota left on the kind; 3, not reserved for other planned hosts; 0, any.
   */
  const pickFrom = (h: number, t: number, phase: number): number => {
    let best = -1;
    let bestValue = -Infinity;
    const o = h * DIMS;
    for (let k = 0; k < K; k++) {
      const q = queue[k]!;
      if (next[k]! >= q.length || dead[k] === stamp) continue;
      if (phase === 1 && target[k * T + t]! - onHost[k]! < 0.5) continue;
      if (phase <= 2 && phase > 0 && quota[k * T + t]! < 0.5) continue;
      if (phase === 3 && q.length - next[k]! - (reserved[k]! - Math.max(0, quota[k * T + t]!)) < 0.5) {
        reserveBlocked = true; // kept for planned hosts, which may not take it all: the room may be wanted once the plan ends
        continue;
      }
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
      let value = phase === 1 ? (target[k * T + t]! - onHost[k]!) * (1 + 1e-3 * sum) : (sum - SKEW_PENALTY * (high - low)) * scarce[k]!;
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
  const fill = (h: number, keep: boolean, tightening = false): number => {
    stamp++;
    const placed: number[] = [];
    let packed = 0;
    // What the host holds of each class already (a refill continues the host's mix).
    onHost.fill(0);
    if (hostKind[h]! >= 0) for (const v of s.hostVms[h]!) onHost[p.vmClass[v]!]!++;
    for (;;) {
      const k = pickClass(h);
      if (k < 0) break;
      const v = queue[k]![next[k]!]!;
      next[k]!++;
      waiting--;
      s.add(v, h);
      placed.push(v);
      onHost[k]!++;
      if (hostKind[h]! >= 0) takeQuota(k, hostKind[h]!, -1);
      // A VM on a host without its preferred labels counts for less, as much less as the
      // weights value preferences against packing.
      const prefer = p.groups[p.classes[k]!.group]!.preferScore;
      packed += prefer ? volume[k]! * (1 - preferShare * (1 - prefer[h]!)) : volume[k]!;
    }
    // (Guided fills follow the relaxation's mix, which a fullest-set search would undo.)
    if (keep && tightening && !guide) tighten(h, placed);
    if (keep) {
      if (!ruleBlocked && !reserveBlocked) closed[h] = 1;
      parked[h] = !ruleBlocked && reserveBlocked ? 1 : 0;
    }
    if (!keep) {
      for (let i = placed.length - 1; i >= 0; i--) {
        const v = placed[i]!;
        s.remove(v);
        next[p.vmClass[v]!]!--;
        waiting++;
        if (hostKind[h]! >= 0) takeQuota(p.vmClass[v]!, hostKind[h]!, 1);
      }
    }
    return packed;
  };

  /** Sum of host h's used fraction over the dimensions the VMs ask for: how full it is. */
  const fullness = (h: number): number => {
    let sum = 0;
    for (let d = 0; d < DIMS; d++) if (scarcity[d]! > 0 && p.invCap[h * DIMS + d]! > 0) sum += s.used[h * DIMS + d]! * p.invCap[h * DIMS + d]!;
    return sum;
  };
  const fullAt = (h: number) => {
    let n = 0;
    for (let d = 0; d < DIMS; d++) if (scarcity[d]! > 0 && p.invCap[h * DIMS + d]! > 0) n++;
    return n;
  };
  // Fuller hosts are fewer hosts only while every VM fits somewhere: when room is short, the
  // fullest hosts hold the biggest VMs and leave more of them without a host.
  let tightenLeft = demand.every((x, d) => x <= avg[d]! + EPS) ? TIGHTEN_BUDGET : 0;

  /**
   * Minimum bin slack: after host h is filled one VM at a time (`placed`, in order), search
   * the combinations of waiting VMs (by class, largest first, each class's VMs alike) for one
   * that fills it fuller, and keep the fullest found. The greedy fill stops at the first VM
   * that does not fit; the search finds the sets that fill a host exactly, which is what an
   * optimal packing is made of. Bounded by a count of nodes, per host and per pass.
   */
  const tighten = (h: number, placed: number[]): void => {
    if (placed.length < 2 || tightenLeft <= 0) return;
    const target = fullAt(h) - 1e-9;
    let best = fullness(h);
    if (best >= target) return;
    const t = hostKind[h]!;
    const before = [...placed];
    const unplace = (v: number) => {
      s.remove(v);
      const k = p.vmClass[v]!;
      next[k]!--;
      waiting++;
      if (t >= 0) takeQuota(k, t, 1);
    };
    const put = (k: number): number => {
      const v = queue[k]![next[k]!]!;
      next[k]!++;
      waiting--;
      s.add(v, h);
      if (t >= 0) takeQuota(k, t, -1);
      return v;
    };
    for (let i = placed.length - 1; i >= 0; i--) unplace(placed[i]!);
    // Classes this host may take: what the plan allows it (before every planned host is open), largest first.
    const classes: number[] = [];
    for (let k = 0; k < K; k++) {
      if (next[k]! >= queue[k]!.length || !p.classes[k]!.isCandidate[h]) continue;
      if (t >= 0 && !released && quota[k * T + t]! < 0.5 && queue[k]!.length - next[k]! - (reserved[k]! - Math.max(0, quota[k * T + t]!)) < 0.5) continue;
      classes.push(k);
    }
    classes.sort((a, b) => volume[b]! - volume[a]! || a - b);
    let nodes = Math.min(TIGHTEN_NODES, tightenLeft);
    let bestSet: number[] = [];
    const stack: number[] = [];
    const o = h * DIMS;
    const dfs = (from: number): boolean => {
      const value = fullness(h);
      if (value > best + 1e-9) {
        best = value;
        bestSet = [...stack];
        if (best >= target) return true;
      }
      for (let i = from; i < classes.length; i++) {
        if (--nodes <= 0) return true;
        const k = classes[i]!;
        if (next[k]! >= queue[k]!.length) continue;
        const cls = p.classes[k]!;
        let fits = true;
        for (let d = 0; d < DIMS && fits; d++) fits = s.used[o + d]! + cls.req[d]! <= p.cap[o + d]! + EPS;
        if (!fits) continue;
        const v = queue[k]![next[k]!]!;
        const rules = dynamic[cls.group]!;
        let rejected = false;
        for (let r = 0; r < rules.length && !rejected; r++) rejected = rules[r]!.rejects(s, v, h);
        if (rejected) continue;
        put(k);
        stack.push(k);
        const done = dfs(i);
        stack.pop();
        unplace(v);
        if (done) return true;
      }
      return false;
    };
    dfs(0);
    tightenLeft -= Math.min(TIGHTEN_NODES, tightenLeft) - Math.max(0, nodes);
    placed.length = 0;
    if (bestSet.length === 0) {
      // Nothing fuller: the greedy fill stands.
      for (const v of before) {
        const k = p.vmClass[v]!;
        placed.push(put(k));
      }
      return;
    }
    for (const k of bestSet) placed.push(put(k));
  };

  // Hosts that carry load already: paid for, so filled first, fullest first.
  const loaded: number[] = [];
  for (let h = 0; h < p.H; h++) if (!p.elastic[h] && p.up[h] && s.active[h]) loaded.push(h);
  loaded.sort((a, b) => s.util[b]! - s.util[a]! || a - b);
  for (const h of loaded) {
    if (waiting > 0) fill(h, true);
    if (hostKind[h]! >= 0) openOne(hostKind[h]!);
  }

  // Empty hosts, one per kind (hosts alike in all a rule or score reads), in search order.
  const per = (h: number) => w.consolidation + (w.cost * p.price[h]!) / meanPrice + 1e-9;
  const kinds: number[] = [];
  const firstOfKind = new Map<number, number>();
  for (const h of p.order) {
    if (p.elastic[h] || !p.up[h] || s.active[h] || firstOfKind.has(p.hostClass[h]!)) continue;
    firstOfKind.set(p.hostClass[h]!, h);
    kinds.push(p.hostClass[h]!);
  }
  const firstEmpty = (kind: number): number => {
    // The first empty host of the kind in search order (the one remembered may have been opened).
    let h = firstOfKind.get(kind)!;
    if (!s.active[h]) return h;
    h = -1;
    for (const x of p.order) {
      if (p.hostClass[x] === kind && !s.active[x] && !p.elastic[x] && p.up[x]) {
        h = x;
        break;
      }
    }
    if (h >= 0) firstOfKind.set(kind, h);
    return h;
  };
  const opened: number[] = [];
  // Trying every kind of host before each opening is the pass's main cost. The kind chosen
  // last is tried first: while it packs nearly as well as the best did in the last full
  // round, it is opened again without trying the others.
  let lastKind: number | undefined;
  let lastBest = 0;
  /**
   * The empty host to open next and the kind it opens as: among the kinds the relaxation
   * still opens when guided (`planned`), else among the host classes, unguided (-1). Host
   * -1 when none packs anything.
   */
  const choose = (planned: readonly number[] | undefined): [host: number, kind: number] => {
    let best = -1;
    let bestKind = -1;
    let bestValue = 0;
    const trial = (h: number, t: number): number => {
      hostKind[h] = t;
      const packed = fill(h, false);
      hostKind[h] = -1;
      return packed;
    };
    const options: [kind: number, host: number][] = [];
    if (planned) {
      for (const t of planned) options.push([t, firstEmpty(guide!.kindClass[t]!)]);
    } else {
      for (const kind of kinds) options.push([-1 - kind, firstEmpty(kind)]);
    }
    const last = lastKind === undefined ? undefined : options.find(([k]) => k === lastKind);
    if (last && last[1] >= 0) {
      const [k, h] = last;
      const value = (trial(h, Math.max(-1, k)) / per(h)) * (random ? 0.95 + 0.1 * random() : 1);
      if (value >= lastBest * (1 - REUSE_TOLERANCE) && value > 0) return [h, Math.max(-1, k)];
    }
    for (const [k, h] of options) {
      if (h < 0) continue;
      const packed = trial(h, Math.max(-1, k));
      const value = (packed / per(h)) * (random ? 0.95 + 0.1 * random() : 1);
      if (packed > 0 && value > bestValue * (1 + 1e-12)) {
        bestValue = value;
        best = h;
        bestKind = k;
      }
    }
    if (best >= 0) {
      lastKind = bestKind;
      lastBest = bestValue;
    }
    return [best, Math.max(-1, bestKind)];
  };
  /** Fills the open hosts again until none takes more (one VM placed can let another in: a spread's minimum rises). */
  const refill = () => {
    for (let progress = true; progress && waiting > 0; ) {
      progress = false;
      for (const h of opened) if (waiting > 0 && !closed[h] && !parked[h] && fill(h, true) > 0) progress = true;
    }
  };
  /** Ends the plan: each open host takes what the plan gave it and it has room for now (a spread may have caught up); then what is left may take any room, first on them. */
  const finishPlan = () => {
    planOnly = true;
    refill();
    planOnly = false;
    release();
    refill();
  };
  while (waiting > 0) {
    // The kinds of host the relaxation opens while it opens more (and has a host for); then any.
    const planned = guide && !released ? Array.from({ length: T }, (_, t) => t).filter((t) => guide.kindHost[t]! < 0 && isPlanned(t) && firstEmpty(guide.kindClass[t]!) >= 0) : undefined;
    if (guide && !released && planned!.length === 0) {
      // Every planned host is open.
      finishPlan();
      if (waiting === 0) break;
    }
    // Planned kinds progress together (those furthest behind their plan first), so rules
    // read across hosts, a spread over zones above all, are not held back by one kind
    // opened long before another.
    let best: number;
    let kind: number;
    if (planned?.length) {
      const behind = (t: number) => Math.floor((PROGRESS_STEPS * openLeft[t]!) / guide!.open[t]!);
      const most = Math.max(...planned.map(behind));
      const first = planned.filter((t) => behind(t) === most);
      [best, kind] = choose(first);
      if (best < 0 && first.length < planned.length) [best, kind] = choose(planned);
      if (best < 0) {
        // No planned host takes anything (what it was planned for went elsewhere).
        finishPlan();
        continue;
      }
    } else {
      [best, kind] = choose(undefined);
    }
    if (best < 0) break;
    hostKind[best] = kind;
    fill(best, true, true);
    if (kind >= 0) openOne(kind);
    opened.push(best);
    // Hosts whose fill stopped on a rule rather than on room (a spread's skew, a group that
    // had to come first) may take more now. (Full hosts cost one pass over the classes.)
    refill();
  }

  const unplaced: number[] = [];
  for (let k = 0; k < K; k++) for (let i = next[k]!; i < queue[k]!.length; i++) unplaced.push(queue[k]![i]!);
  return unplaced;
}
