import { DIMS } from './dims.js';
import type { Problem } from './problem.js';
import { HEADROOM_TARGET } from './scorers.js';

const over = (u: number) => (u > HEADROOM_TARGET ? (u - HEADROOM_TARGET) ** 2 : 0);

/**
 * Counts of a group's VMs per spread domain, with the minimum and maximum over the eligible
 * domains kept up to date in O(1) per change (a histogram of counts), because the skew is
 * read for every candidate host.
 */
export class SpreadCounter {
  readonly cnt: Int32Array;
  readonly #eligible: Uint8Array;
  readonly #hist: number[] = [];
  min = 0;
  max = 0;

  constructor(eligible: Uint8Array, initial?: Int32Array) {
    this.#eligible = eligible;
    this.cnt = initial ? Int32Array.from(initial) : new Int32Array(eligible.length);
    let any = false;
    this.min = Infinity;
    this.max = 0;
    for (let d = 0; d < eligible.length; d++) {
      if (!eligible[d]) continue;
      any = true;
      const c = this.cnt[d]!;
      this.#hist[c] = (this.#hist[c] ?? 0) + 1;
      if (c < this.min) this.min = c;
      if (c > this.max) this.max = c;
    }
    if (!any) this.min = 0;
  }

  inc(d: number): void {
    const c = this.cnt[d]!++;
    if (!this.#eligible[d]) return;
    this.#hist[c]!--;
    this.#hist[c + 1] = (this.#hist[c + 1] ?? 0) + 1;
    if (c + 1 > this.max) this.max = c + 1;
    if (c === this.min && this.#hist[c] === 0) this.min = c + 1;
  }

  dec(d: number): void {
    const c = this.cnt[d]!--;
    if (!this.#eligible[d]) return;
    this.#hist[c]!--;
    this.#hist[c - 1] = (this.#hist[c - 1] ?? 0) + 1;
    if (c - 1 < this.min) this.min = c - 1;
    if (c === this.max && this.#hist[c] === 0) this.max = c - 1;
  }
}

/**
 * The allocation during one solve: what each host holds, per-group counts per host, zone
 * and spread domain, and the running totals of the objectives, all updated in O(1) per
 * add or remove so the local search can try many moves.
 */
export class SolverState {
  readonly p: Problem;
  readonly used: Float64Array;
  readonly assign: Int32Array;
  /** VMs of this solve on each host (not the existing ones). */
  readonly hostVms: number[][];
  readonly #pos: Int32Array;
  /** Per group: VMs (existing and placed) on each host / in each zone; undefined when no rule reads them. */
  readonly hostCount: (Int32Array | undefined)[];
  readonly zoneCount: (Int32Array | undefined)[];
  readonly total: Int32Array;
  readonly spread: (SpreadCounter | undefined)[];
  /** 1 when the host carries a VM or reported allocation (kept as an array: the inner loops read it per host). */
  readonly active: Uint8Array;
  /** Utilisation (fullest dimension) of each fixed host. */
  readonly util: Float64Array;
  activeFixed = 0;
  fixedCost = 0;
  elasticCost = 0;
  /** Sum and sum of squares of `util` over usable fixed hosts, for the imbalance. */
  s1 = 0;
  s2 = 0;
  /** Sum over usable fixed hosts of (utilisation above HEADROOM_TARGET)², the headroom the search minimises. */
  head = 0;
  readonly usableFixed: number;
  prefMiss = 0;
  placed = 0;
  /**
   * Locality, kept up to date like the other objectives: the sum over placed VMs of groups
   * with `near` of their locality (1 on a host with a VM of a group they are near, 0.5 in its
   * zone, else 0, counting VMs other than themselves), and how many such VMs are placed.
   */
  locSum = 0;
  nearPlaced = 0;
  /** Per group with `near`: VMs of its near groups (running or placed) per host / zone, and its own placed VMs per host / zone. */
  readonly #nearHost: (Int32Array | undefined)[];
  readonly #nearZone: (Int32Array | undefined)[];
  readonly #placedHost: (Int32Array | undefined)[];
  readonly #placedZone: (Int32Array | undefined)[];
  /** Per group: the groups whose `near` names it. */
  readonly #nearedBy: readonly (readonly number[])[];

  constructor(p: Problem) {
    this.p = p;
    this.used = Float64Array.from(p.base);
    this.assign = new Int32Array(p.V).fill(-1);
    this.hostVms = Array.from({ length: p.H }, () => []);
    this.#pos = new Int32Array(p.V);
    const G = p.groups.length;
    const needHost = new Uint8Array(G);
    const needZone = new Uint8Array(G);
    for (const g of p.groups) {
      if (g.antiHost || g.maxPerHost < Infinity || g.withHost.length || g.anchorsHost.length || g.avoidHost.length || g.near.length) needHost[g.index] = 1;
      if (g.antiZone || g.withZone.length || g.anchorsZone.length || g.avoidZone.length || g.near.length) needZone[g.index] = 1;
      for (const t of [...g.avoidHost, ...g.withHost, ...g.near]) needHost[t] = 1;
      for (const t of [...g.avoidZone, ...g.withZone, ...g.near]) needZone[t] = 1;
    }
    this.hostCount = p.groups.map((g) => (needHost[g.index] ? (p.existingHost[g.index] ? Int32Array.from(p.existingHost[g.index]!) : new Int32Array(p.H)) : undefined));
    this.zoneCount = p.groups.map((g) =>
      needZone[g.index] ? (p.existingZone[g.index] ? Int32Array.from(p.existingZone[g.index]!) : new Int32Array(p.zones.length)) : undefined,
    );
    this.total = Int32Array.from(p.existingTotal);
    this.spread = p.groups.map((g) => {
      if (!g.spread) return undefined;
      const initial = new Int32Array(g.spread.names.length);
      const existing = p.existingHost[g.index];
      if (existing) for (let h = 0; h < p.H; h++) if (existing[h] && g.spread.domainOf[h]! >= 0) initial[g.spread.domainOf[h]!]! += existing[h]!;
      return new SpreadCounter(g.spread.eligible, initial);
    });
    const nearedBy: number[][] = p.groups.map(() => []);
    for (const g of p.groups) for (const t of g.near) nearedBy[t]!.push(g.index);
    this.#nearedBy = nearedBy;
    this.#nearHost = p.groups.map((g) => {
      if (!g.near.length) return undefined;
      const a = new Int32Array(p.H);
      for (const t of g.near) if (this.hostCount[t]) for (let h = 0; h < p.H; h++) a[h]! += this.hostCount[t]![h]!;
      return a;
    });
    this.#nearZone = p.groups.map((g) => {
      if (!g.near.length) return undefined;
      const a = new Int32Array(p.zones.length);
      for (const t of g.near) if (this.zoneCount[t]) for (let z = 0; z < p.zones.length; z++) a[z]! += this.zoneCount[t]![z]!;
      return a;
    });
    this.#placedHost = p.groups.map((g) => (g.near.length ? new Int32Array(p.H) : undefined));
    this.#placedZone = p.groups.map((g) => (g.near.length ? new Int32Array(p.zones.length) : undefined));
    this.util = new Float64Array(p.H);
    this.active = Uint8Array.from(p.baseActive);
    let usable = 0;
    for (let h = 0; h < p.H; h++) {
      if (p.elastic[h]) continue;
      if (p.baseActive[h]) {
        this.activeFixed++;
        this.fixedCost += p.price[h]!;
      }
      if (!p.up[h]) continue;
      usable++;
      const u = this.#utilOf(h);
      this.util[h] = u;
      this.s1 += u;
      this.s2 += u * u;
      this.head += over(u);
    }
    this.usableFixed = usable;
  }

  isActive(h: number): boolean {
    return this.active[h] === 1;
  }

  /** True when no VM (existing or placed) and no reported allocation is on the host. */
  isEmpty(h: number): boolean {
    return this.active[h] === 0;
  }

  /** Whether the host has room for VM `v` in every dimension (elastic hosts always do). */
  fits(v: number, h: number): boolean {
    const p = this.p;
    if (p.elastic[h]) return true;
    const o = h * DIMS;
    const r = v * DIMS;
    const used = this.used;
    const cap = p.cap;
    const req = p.req;
    return (
      used[o]! + req[r]! <= cap[o]! + 1e-9 &&
      used[o + 1]! + req[r + 1]! <= cap[o + 1]! + 1e-9 &&
      used[o + 2]! + req[r + 2]! <= cap[o + 2]! + 1e-9 &&
      used[o + 3]! + req[r + 3]! <= cap[o + 3]! + 1e-9
    );
  }

  /** The instance-type price of `v` on elastic host `h`, or undefined when no type fits. */
  elasticPrice(v: number, h: number): number | undefined {
    return this.p.classes[this.p.vmClass[v]!]!.elasticType.get(h)?.pricePerHour;
  }

  add(v: number, h: number): void {
    const p = this.p;
    const g = p.vmGroup[v]!;
    const near = this.#nearedBy[g]!.length > 0 || p.groups[g]!.near.length > 0;
    const before = near ? this.#localityAround(g, h) : 0;
    const wasActive = this.isActive(h);
    this.assign[v] = h;
    const list = this.hostVms[h]!;
    this.#pos[v] = list.length;
    list.push(v);
    this.active[h] = 1;
    this.placed++;
    this.total[g]!++;
    const hc = this.hostCount[g];
    if (hc) hc[h]!++;
    const zc = this.zoneCount[g];
    if (zc) zc[p.zoneOf[h]!]!++;
    const spread = this.spread[g];
    if (spread) spread.inc(p.groups[g]!.spread!.domainOf[h]!);
    const prefer = p.groups[g]!.preferScore;
    if (prefer && prefer[h]! < 1) this.prefMiss++;
    if (near) this.#moveLocality(g, h, 1, before);
    if (p.elastic[h]) {
      this.elasticCost += this.elasticPrice(v, h) ?? 0;
      return;
    }
    const o = h * DIMS;
    const r = v * DIMS;
    for (let d = 0; d < DIMS; d++) this.used[o + d]! += p.req[r + d]!;
    if (!wasActive) {
      this.activeFixed++;
      this.fixedCost += p.price[h]!;
    }
    this.#refreshUtil(h);
  }

  remove(v: number): void {
    const p = this.p;
    const h = this.assign[v]!;
    const g = p.vmGroup[v]!;
    const near = this.#nearedBy[g]!.length > 0 || p.groups[g]!.near.length > 0;
    const before = near ? this.#localityAround(g, h) : 0;
    this.assign[v] = -1;
    const list = this.hostVms[h]!;
    const i = this.#pos[v]!;
    const last = list.pop()!;
    if (last !== v) {
      list[i] = last;
      this.#pos[last] = i;
    }
    if (list.length === 0 && !p.baseActive[h]) this.active[h] = 0;
    this.placed--;
    this.total[g]!--;
    const hc = this.hostCount[g];
    if (hc) hc[h]!--;
    const zc = this.zoneCount[g];
    if (zc) zc[p.zoneOf[h]!]!--;
    const spread = this.spread[g];
    if (spread) spread.dec(p.groups[g]!.spread!.domainOf[h]!);
    const prefer = p.groups[g]!.preferScore;
    if (prefer && prefer[h]! < 1) this.prefMiss--;
    if (near) this.#moveLocality(g, h, -1, before);
    if (p.elastic[h]) {
      this.elasticCost -= this.elasticPrice(v, h) ?? 0;
      return;
    }
    const o = h * DIMS;
    const r = v * DIMS;
    for (let d = 0; d < DIMS; d++) this.used[o + d]! -= p.req[r + d]!;
    if (!this.isActive(h)) {
      this.activeFixed--;
      this.fixedCost -= p.price[h]!;
      // Sums of floats drift; an empty host is exactly its reported allocation again.
      for (let d = 0; d < DIMS; d++) this.used[o + d] = p.base[o + d]!;
    }
    this.#refreshUtil(h);
  }

  /**
   * Runs `fn` as if VM v were not on its host (capacity and activity only; group counts
   * stay), without the bookkeeping of a remove and re-add. For explanations.
   * @returns fn's result, and whether the host would be empty without v.
   */
  without(v: number, fn: () => number): { total: number; alone: boolean } {
    const p = this.p;
    const h = this.assign[v]!;
    const o = h * DIMS;
    const r = v * DIMS;
    const alone = !p.elastic[h] && this.hostVms[h]!.length === 1 && !p.baseActive[h];
    if (!p.elastic[h]) for (let d = 0; d < DIMS; d++) this.used[o + d]! -= p.req[r + d]!;
    if (alone) this.active[h] = 0;
    try {
      return { total: fn(), alone };
    } finally {
      if (!p.elastic[h]) for (let d = 0; d < DIMS; d++) this.used[o + d]! += p.req[r + d]!;
      if (alone) this.active[h] = 1;
    }
  }

  /**
   * The locality of the placed VMs a change of group g's VMs on host h can touch: for every
   * group near g (and g itself, when it has `near`), its VMs on h, and the flag saying whether
   * its VMs elsewhere in h's zone have a near VM in the zone. Read before and after a change;
   * the difference is what the change did (see #moveLocality).
   */
  #localityAround(g: number, h: number): number {
    let sum = 0;
    const z = this.p.zoneOf[h]!;
    for (const x of this.#affected(g)) {
      const self = this.p.groups[x]!.near.includes(x) ? 1 : 0;
      const zoneHas = this.#nearZone[x]![z]! - self > 0;
      const onHost = this.#placedHost[x]![h]!;
      sum += onHost * (this.#nearHost[x]![h]! - self > 0 ? 1 : zoneHas ? 0.5 : 0);
      // The group's VMs elsewhere in the zone: with no near VM on their host, 0.5 while the zone has one.
      if (zoneHas) sum += 0.5 * (this.#placedZone[x]![z]! - onHost);
    }
    return sum;
  }

  /** Groups whose VMs' locality a VM of group g can change: those near g, and g itself when it has `near`. */
  #affected(g: number): readonly number[] {
    const by = this.#nearedBy[g]!;
    return this.p.groups[g]!.near.length > 0 && !by.includes(g) ? [...by, g] : by;
  }

  /**
   * Counts a VM of group g arriving on (delta 1) or leaving (-1) host h for locality, and moves
   * `locSum` by what changed. A VM elsewhere in the zone with a near VM on its own host has a
   * zone with one too, so only the zone flag moves the rest of the zone, by 0.5 each.
   */
  #moveLocality(g: number, h: number, delta: 1 | -1, before: number): void {
    const p = this.p;
    const z = p.zoneOf[h]!;
    for (const x of this.#nearedBy[g]!) {
      this.#nearHost[x]![h]! += delta;
      this.#nearZone[x]![z]! += delta;
    }
    if (p.groups[g]!.near.length > 0) {
      this.#placedHost[g]![h]! += delta;
      this.#placedZone[g]![z]! += delta;
      this.nearPlaced += delta;
    }
    this.locSum += this.#localityAround(g, h) - before;
  }

  /** Standard deviation of utilisation over the usable fixed hosts. */
  imbalance(): number {
    const n = this.usableFixed;
    if (n === 0) return 0;
    const mean = this.s1 / n;
    return Math.sqrt(Math.max(0, this.s2 / n - mean * mean));
  }

  cost(): number {
    return this.fixedCost + this.elasticCost;
  }

  #refreshUtil(h: number): void {
    if (!this.p.up[h]) return;
    const before = this.util[h]!;
    const after = this.#utilOf(h);
    this.util[h] = after;
    this.s1 += after - before;
    this.s2 += after * after - before * before;
    this.head += over(after) - over(before);
  }

  #utilOf(h: number): number {
    const o = h * DIMS;
    const inv = this.p.invCap;
    const u = this.used;
    return Math.max(u[o]! * inv[o]!, u[o + 1]! * inv[o + 1]!, u[o + 2]! * inv[o + 2]!, u[o + 3]! * inv[o + 3]!);
  }
}
