import { DIMS, EPS } from './dims.js';
import type { VmRule } from './filters.js';
import { greedyOrder } from './greedy.js';
import { allowedOn, currentSkews, rulesHold } from './moves.js';
import type { Problem } from './problem.js';
import { seededRandom } from './random.js';
import { HostScorer } from './scorers.js';
import type { SolverState } from './state.js';
import type { Weights } from './types.js';
import { objectiveRefs, weightedObjective, type ObjectiveRefs } from './objective.js';

/** Host evaluations one attempt to empty a host into free room may spend on swaps (overfilling, #dissolve, does the heavy emptying). */
const ATTEMPT_BUDGET = 10_000;

/** Swaps of pairs are tried where a host (or the pool) holds at most this many VMs. */
const PAIR_LIMIT = 16;

/** Rounds of the search's passes, at most (they end sooner when one lowers nothing). */
const MAX_ROUNDS = 4;

/** Failed attempts in a row after which emptying hosts stops for the round. */
const EMPTY_MISSES = 24;

/** Hosts a badly shaped host looks at for a swap partner, per reshaping pass. */
const RESHAPE_PARTNERS = 48;

/**
 * Emptying a host by overfilling the others (see #dissolve): steps without a new least
 * overfill after which an attempt gives up, steps a moved VM stays put, the moves kept to try
 * in order when the best breaks a rule, and hosts tried per pass.
 */
const DISSOLVE_STALL = 80;
const DISSOLVE_TABU = 7;
const DISSOLVE_SHORTLIST = 6;
const DISSOLVE_HOSTS = 4;
/** Host evaluations one attempt to empty a host by overfilling may spend. */
const DISSOLVE_BUDGET = 100_000;
/** Hosts an overfull host looks at to move or swap a VM to, per step (those with the most room). */
const DISSOLVE_PARTNERS = 32;

/** One entry per state change, so a compound move can be undone: VM `v` was on `from` (-1: nowhere) before it. */
interface LogEntry {
  readonly v: number;
  readonly from: number;
}

/** The local search of the solver (see solver.ts): moves kept only when they lower the weighted objective. */
export class LocalSearch {
  readonly #s: SolverState;
  readonly #p: Problem;
  readonly #w: Weights;
  readonly #dynamic: readonly (readonly VmRule[])[];
  readonly #budget: number;
  readonly #notes: Map<number, string>;
  readonly #random: () => number;
  readonly #scorer: HostScorer;
  spent = 0;
  /** Objective scales: each objective's value after the greedy pass (floored), so they weigh alike. */
  #ref: ObjectiveRefs = { cost: 1, active: 1, imbalance: 0.01, head: 0.01, prefer: 1, locality: 1 };
  readonly #size: Float64Array;
  /** Each VM's volume: the sum over dimensions of its share of an average usable host. */
  readonly #vol: Float64Array;
  /** 1 for each dimension some VM asks for. */
  readonly #demanded: Uint8Array;
  /** Whether locality is weighted and some group has `near`: the search then brings VMs to those they are near. */
  readonly #nearby: boolean;
  #log: LogEntry[] = [];
  #allowedSkew: (group: number) => number = () => Infinity;
  readonly #touchedHosts = new Set<number>();
  /** Scratch for #oneOfEachClass: the call that last saw each VM class. */
  readonly #classSeen: Int32Array;
  #classStamp = 0;
  /** The two hosts of one step of #dissolve, for its rule check. */
  readonly #pair = new Set<number>();

  constructor(s: SolverState, w: Weights, dynamic: readonly (readonly VmRule[])[], budget: number, notes: Map<number, string>, seed: number) {
    this.#s = s;
    this.#p = s.p;
    this.#w = w;
    this.#dynamic = dynamic;
    this.#budget = budget;
    this.#notes = notes;
    this.#random = seededRandom(seed + 1);
    this.#scorer = new HostScorer(s, w);
    const p = s.p;
    this.#classSeen = new Int32Array(p.classes.length);
    this.#size = new Float64Array(p.V);
    const order = greedyOrder(p);
    order.forEach((v, rank) => (this.#size[v] = p.V - rank)); // larger VMs rank first
    const avg = [0, 0, 0, 0];
    let usable = 0;
    for (let h = 0; h < p.H; h++) {
      if (p.elastic[h] || !p.up[h]) continue;
      usable++;
      for (let d = 0; d < DIMS; d++) avg[d]! += p.cap[h * DIMS + d]!;
    }
    this.#vol = new Float64Array(p.V);
    for (let v = 0; v < p.V; v++) for (let d = 0; d < DIMS; d++) if (avg[d]! > 0) this.#vol[v]! += (p.req[v * DIMS + d]! * usable) / avg[d]!;
    this.#demanded = new Uint8Array(DIMS);
    for (let v = 0; v < p.V; v++) for (let d = 0; d < DIMS; d++) if (p.req[v * DIMS + d]! > 0) this.#demanded[d] = 1;
    this.#nearby = w.locality > 0 && p.groups.some((g) => g.near.length > 0 && g.size > 0);
    // Every VM may move: locality is part of the objective every move is judged by (state.ts
    // keeps it up to date), so a move that parts a VM from the VMs it is near pays for it.
  }

  run(): void {
    const s = this.#s;
    // Greedy placement keeps every spread within its maxSkew unless the VMs already running skew it more.
    this.#allowedSkew = currentSkews(s);
    this.#ref = objectiveRefs(s);
    const w = this.#w;
    const consolidating = w.cost + w.consolidation > 0;
    const evening = w.balance + w.headroom > 0;
    // Rounds go on while one lowers the objective: a round that only reshapes (swaps that
    // leave it as it is) gave the next nothing it can use.
    for (let round = 0; round < MAX_ROUNDS && this.spent < this.#budget; round++) {
      const before = this.#objective();
      if (consolidating) this.#reshape();
      // Overfilling and repairing empties hosts where moving VMs only into free room cannot;
      // it only packs, so weights that also spread load skip it.
      if (consolidating && !evening) this.#dissolveLightest();
      if (consolidating) this.#emptyHosts();
      if (consolidating) this.#tradeHosts();
      if (evening) this.#evenOut();
      if (this.#nearby) this.#localize();
      if (this.#objective() >= before - 1e-9) break;
    }
  }

  /**
   * Brings VMs next to the VMs they are near: each VM of a group with `near` that is not on a
   * host with one moves to such a host, or trades places there with a VM that fits where it
   * was, when that lowers the objective (locality is part of it, against what the move costs
   * in hosts, price or balance). True when any VM moved.
   */
  #localize(): boolean {
    const p = this.#p;
    const s = this.#s;
    let any = false;
    const nearHere = (v: number, h: number) => {
      for (const t of p.groups[p.vmGroup[v]!]!.near) if (s.hostCount[t]![h]! - (t === p.vmGroup[v] ? 1 : 0) > 0) return true;
      return false;
    };
    for (const v of p.byId) {
      if (this.spent >= this.#budget) break;
      const group = p.groups[p.vmGroup[v]!]!;
      const from = s.assign[v]!;
      if (!group.near.length || from < 0 || p.elastic[from] || nearHere(v, from)) continue;
      const cands = p.classes[p.vmClass[v]!]!.candidates;
      let moved = false;
      for (let c = 0; c < cands.length && !moved && this.spent < this.#budget; c++) {
        const h = cands[c]!;
        this.spent++;
        if (h === from || p.elastic[h] || !s.active[h]) continue;
        let holds = false;
        for (const t of group.near) if (s.hostCount[t]![h]! > 0) holds = true;
        if (!holds) continue;
        const before = this.#objective();
        const at = this.#begin();
        this.#remove(v);
        if (this.#allowed(v, h)) {
          this.#add(v, h);
          if (this.#stillValid() && this.#objective() < before - 1e-9) {
            this.#notes.set(v, `moved by the local search next to a VM it is near, on ${p.hosts[h]!.id}`);
            this.#commit(at);
            moved = true;
            break;
          }
          this.#undo(at);
          continue;
        }
        // No room: trade places with a VM there that fits where v was.
        for (const j of this.#oneOfEachClass(s.hostVms[h]!)) {
          if (p.vmClass[j] === p.vmClass[v] || !this.#fitsAfterSwap(h, j, v) || !this.#fitsAfterSwap(from, v, j)) continue;
          const inner = this.#begin();
          this.#remove(j);
          if (this.#allowed(v, h)) {
            this.#add(v, h);
            if (this.#allowed(j, from)) {
              this.#add(j, from);
              if (this.#stillValid() && this.#objective() < before - 1e-9) {
                this.#notes.set(v, `moved by the local search next to a VM it is near, on ${p.hosts[h]!.id}`);
                this.#notes.set(j, `moved by the local search to ${p.hosts[from]!.id}, making room for ${p.vms[v]!.id} next to a VM it is near`);
                this.#commit(at);
                moved = true;
                break;
              }
            }
          }
          this.#undo(inner);
        }
        if (!moved) this.#undo(at);
      }
      if (moved) any = true;
    }
    return any;
  }

  /** The first VM of each class in a list, in list order: VMs of a class are interchangeable. */
  #oneOfEachClass(vms: readonly number[]): number[] {
    const stamp = ++this.#classStamp;
    const vmClass = this.#p.vmClass;
    const out: number[] = [];
    for (const v of vms) {
      if (this.#classSeen[vmClass[v]!] === stamp) continue;
      this.#classSeen[vmClass[v]!] = stamp;
      out.push(v);
    }
    return out;
  }

  /** Sum of host h's used fraction over the dimensions VMs ask for. */
  #fullness(h: number): number {
    const p = this.#p;
    let sum = 0;
    for (let d = 0; d < DIMS; d++) if (this.#demanded[d] && p.invCap[h * DIMS + d]! > 0) sum += this.#s.used[h * DIMS + d]! * p.invCap[h * DIMS + d]!;
    return sum;
  }

  /**
   * For VMs that fit nowhere: find a host where moving one VM elsewhere (to any host that
   * may take it, empty or not) makes room, and place the VM there. A placed VM is worth more
   * than any objective, so these moves are kept whatever they cost. Returns the VMs still
   * without a host.
   */
  makeRoom(unplaced: readonly number[]): number[] {
    const p = this.#p;
    const s = this.#s;
    const left: number[] = [];
    for (const v of unplaced) {
      // Room made for an earlier VM (a VM moved off a host it shares with this one) may be
      // room for this one too: try it as things stand first.
      const direct = this.#anyHost(v, -1);
      if (direct >= 0) {
        this.#s.add(v, direct);
        this.#notes.set(v, `placed on ${p.hosts[direct]!.id}, the best-scoring host that took it when VMs that fitted nowhere were tried again after room was made`);
        continue;
      }
      let done = false;
      const cands = p.classes[p.vmClass[v]!]!.candidates;
      for (let c = 0; c < cands.length && !done && this.spent < this.#budget; c++) {
        const h = cands[c]!;
        if (p.elastic[h]) continue;
        for (const j of [...s.hostVms[h]!]) {
          if (!this.#fitsAfterSwap(h, j, v)) continue;
          const at = this.#begin();
          this.#remove(j);
          if (this.#allowed(v, h)) {
            this.#add(v, h);
            const to = this.#anyHost(j, h);
            if (to >= 0) {
              this.#add(j, to);
              if (this.#stillValid()) {
                this.#notes.set(j, `moved by the local search off ${p.hosts[h]!.id} to make room for ${p.vms[v]!.id}`);
                this.#notes.set(v, `placed on ${p.hosts[h]!.id} after ${p.vms[j]!.id} was moved off it to make room (it fitted nowhere as things stood)`);
                this.#commit(at);
                done = true;
                break;
              }
            }
          }
          this.#undo(at);
        }
      }
      for (let c = 0; c < cands.length && !done && this.spent < this.#budget; c++) done = this.#ejectTwo(v, cands[c]!);
      if (!done) left.push(v);
    }
    return left;
  }

  /** Makes room for v on host h by moving two of its VMs elsewhere. */
  #ejectTwo(v: number, h: number): boolean {
    const p = this.#p;
    const s = this.#s;
    if (p.elastic[h]) return false;
    const on = [...s.hostVms[h]!]; // a copy: the moves below change the host's list
    for (let a = 0; a < on.length; a++) {
      for (let b = a + 1; b < on.length; b++) {
        this.spent++;
        let fits = true;
        for (let d = 0; d < DIMS && fits; d++) {
          fits = s.used[h * DIMS + d]! - p.req[on[a]! * DIMS + d]! - p.req[on[b]! * DIMS + d]! + p.req[v * DIMS + d]! <= p.cap[h * DIMS + d]! + EPS;
        }
        if (!fits) continue;
        const at = this.#begin();
        this.#remove(on[a]!);
        this.#remove(on[b]!);
        let ok = this.#allowed(v, h);
        if (ok) {
          this.#add(v, h);
          for (const j of [on[a]!, on[b]!]) {
            const to = this.#anyHost(j, h);
            if (to < 0) {
              ok = false;
              break;
            }
            this.#add(j, to);
          }
        }
        if (ok && this.#stillValid()) {
          for (const j of [on[a]!, on[b]!]) this.#notes.set(j, `moved by the local search off ${p.hosts[h]!.id} to make room for ${p.vms[v]!.id}`);
          this.#notes.set(v, `placed on ${p.hosts[h]!.id} after ${p.vms[on[a]!]!.id} and ${p.vms[on[b]!]!.id} were moved off it to make room (it fitted nowhere as things stood)`);
          this.#commit(at);
          return true;
        }
        this.#undo(at);
      }
    }
    return false;
  }

  /** The best-scoring host of any kind (active, empty or elastic) other than `exclude` that may take v, or -1. */
  #anyHost(v: number, exclude: number): number {
    const p = this.#p;
    const cands = p.classes[p.vmClass[v]!]!.candidates;
    let best = -Infinity;
    let bestHost = -1;
    this.#scorer.prepare(v);
    for (let c = 0; c < cands.length; c++) {
      const h = cands[c]!;
      if (h === exclude || !this.#allowed(v, h)) continue;
      const score = this.#scorer.score(h);
      if (score > best + 1e-12) {
        best = score;
        bestHost = h;
      }
    }
    return bestHost;
  }

  /** The weighted objective the search lowers. */
  #objective(): number {
    return weightedObjective(this.#s, this.#w, this.#ref);
  }

  // ── moves ───────────────────────────────────────────────────────────────────

  #add(v: number, h: number): void {
    this.#log.push({ v, from: -1 });
    this.#s.add(v, h);
    this.#touchedHosts.add(h);
  }

  #remove(v: number): void {
    const h = this.#s.assign[v]!;
    this.#log.push({ v, from: h });
    this.#s.remove(v);
    this.#touchedHosts.add(h);
  }

  /** Starts a (possibly nested) compound move; returns the point to undo to. */
  #begin(): number {
    if (this.#log.length === 0) this.#touchedHosts.clear();
    return this.#log.length;
  }

  #undo(to = 0): void {
    const s = this.#s;
    for (let i = this.#log.length - 1; i >= to; i--) {
      const { v, from } = this.#log[i]!;
      if (s.assign[v]! >= 0) s.remove(v);
      if (from >= 0) s.add(v, from);
    }
    this.#log.length = to;
  }

  /** Keeps a compound move: an outer one may still undo it. */
  #commit(at: number): void {
    if (at === 0) this.#log = [];
  }

  #allowed(v: number, h: number): boolean {
    this.spent++;
    return allowedOn(this.#s, this.#dynamic, v, h);
  }

  /** The best-scoring active fixed host other than `exclude` that may take v, or -1. */
  #bestActive(v: number, exclude: number, exclude2 = -1): number {
    const p = this.#p;
    const s = this.#s;
    const cands = p.classes[p.vmClass[v]!]!.candidates;
    let best = -Infinity;
    let bestHost = -1;
    this.#scorer.prepare(v);
    for (let c = 0; c < cands.length; c++) {
      const h = cands[c]!;
      if (h === exclude || h === exclude2 || p.elastic[h] || s.active[h] === 0) continue;
      if (!this.#allowed(v, h)) continue;
      const score = this.#scorer.score(h);
      if (score > best + 1e-12) {
        best = score;
        bestHost = h;
      }
    }
    return bestHost;
  }

  #stillValid(): boolean {
    return rulesHold(this.#s, this.#touchedHosts, this.#allowedSkew);
  }

  #movable(h: number): boolean {
    const p = this.#p;
    if (p.elastic[h] || p.baseActive[h]) return false;
    return true;
  }

  /** Sum over dimensions of a host's used fraction: how loaded it is. */
  #load(h: number): number {
    const o = h * DIMS;
    let sum = 0;
    for (let d = 0; d < DIMS; d++) sum += this.#s.used[o + d]! * this.#p.invCap[o + d]!;
    return sum;
  }

  /**
   * Empties the lightest hosts by overfilling: see #dissolve. Tries up to DISSOLVE_HOSTS
   * hosts of distinct kinds, lightest first, again after every success; true when any emptied.
   */
  #dissolveLightest(): boolean {
    const p = this.#p;
    const s = this.#s;
    let any = false;
    const failed = new Set<number>();
    for (;;) {
      const hosts: number[] = [];
      for (let h = 0; h < p.H; h++) if (s.hostVms[h]!.length > 0 && !failed.has(h) && this.#movable(h)) hosts.push(h);
      hosts.sort((a, b) => this.#fullness(a) - this.#fullness(b) || a - b);
      const total = this.#freeRoom();
      const kinds = new Set<number>();
      let emptied = false;
      for (const e of hosts) {
        if (this.spent >= this.#budget || kinds.size >= DISSOLVE_HOSTS) return any;
        if (kinds.has(p.hostClass[e]!)) continue;
        kinds.add(p.hostClass[e]!);
        if (!this.#roomElsewhere(e, total)) continue;
        if (this.#dissolve(e)) {
          any = emptied = true;
          break;
        }
        failed.add(e);
      }
      if (!emptied) return any;
    }
  }

  /**
   * Empties host e by overfilling the others, then repairing: each of its VMs goes to the
   * active host it overfills least (every rule but capacity checked), then VMs move and swap
   * between hosts to shrink the total overfill (relative to each host's capacity), taking
   * the best step even when it does not shrink it (a VM just moved stays put a few steps, so
   * the walk does not go back), until nothing is overfull. Where the pairwise moves need a
   * host to get fuller at every step, this walks across placements equally full, which is how
   * a packing one host short of optimal, its slack spread thin over many hosts, becomes
   * optimal. Kept when nothing is overfull, every rule holds and the objective is lower.
   */
  #dissolve(e: number): boolean {
    const p = this.#p;
    const s = this.#s;
    const before = this.#objective();
    const at = this.#begin();
    const bins: number[] = [];
    for (let h = 0; h < p.H; h++) if (h !== e && s.active[h] && !p.elastic[h] && p.up[h]) bins.push(h);
    const stop = Math.min(this.#budget, this.spent + DISSOLVE_BUDGET);
    const pool = [...s.hostVms[e]!].sort((a, b) => this.#vol[b]! - this.#vol[a]! || p.idRank[a]! - p.idRank[b]!);
    for (const v of pool) this.#remove(v);
    for (const v of pool) {
      let best = -1;
      let bestDelta = Infinity;
      for (const b of bins) {
        this.spent++;
        if (!this.#ruleOk(v, b)) continue;
        const delta = this.#overWith(b, -1, v) - this.#over(b);
        if (delta < bestDelta - 1e-12) {
          bestDelta = delta;
          best = b;
        }
      }
      if (best < 0) {
        this.#undo(at);
        return false;
      }
      this.#add(v, best);
    }
    const tabu = new Int32Array(p.V).fill(-1);
    const overfull: number[] = [];
    let total = 0;
    for (const b of bins) total += this.#over(b);
    let least = total;
    let stall = 0;
    // Candidate steps: [delta, v, u (-1: a move), to], the best few, in order.
    const list: number[][] = [];
    for (let step = 0; total > 1e-9 && stall < DISSOLVE_STALL && this.spent < stop; step++) {
      overfull.length = 0;
      for (const b of bins) if (this.#over(b) > 1e-12) overfull.push(b);
      const a = overfull[Math.floor(this.#random() * overfull.length)]!;
      const overA = this.#over(a);
      list.length = 0;
      const consider = (delta: number, v: number, u: number, to: number) => {
        if (list.length === DISSOLVE_SHORTLIST && delta >= list[list.length - 1]![0]! - 1e-12) return;
        let i = list.length;
        while (i > 0 && list[i - 1]![0]! > delta + 1e-12) i--;
        list.splice(i, 0, [delta, v, u, to]);
        if (list.length > DISSOLVE_SHORTLIST) list.pop();
      };
      // Rules are checked as things stand (a swap's partner still in place): stricter than
      // after the step at times, never looser but for what #step checks again.
      const partners = this.#roomiest(bins, a);
      for (const v of this.#oneOfEachClass(s.hostVms[a]!)) {
        if (tabu[v]! > step) continue;
        for (const b of partners) {
          this.spent++;
          if (!this.#ruleOk(v, b)) continue;
          const overB = this.#over(b);
          consider(this.#overWith(a, v, -1) + this.#overWith(b, -1, v) - overA - overB, v, -1, b);
          for (const u of this.#oneOfEachClass(s.hostVms[b]!)) {
            if (tabu[u]! > step || p.vmClass[u] === p.vmClass[v]) continue;
            this.spent++;
            const delta = this.#overWith(a, v, u) + this.#overWith(b, u, v) - overA - overB;
            if (list.length < DISSOLVE_SHORTLIST || delta < list[list.length - 1]![0]! - 1e-12) if (this.#ruleOk(u, a)) consider(delta, v, u, b);
          }
        }
      }
      let moved = false;
      for (const [delta, v, u, b] of list) {
        if (this.#step(v!, u!, a, b!)) {
          total += delta!;
          tabu[v!] = step + DISSOLVE_TABU;
          if (u! >= 0) tabu[u!] = step + DISSOLVE_TABU;
          moved = true;
          break;
        }
      }
      if (!moved) break;
      if (total < least - 1e-9) {
        least = total;
        stall = 0;
      } else stall++;
    }
    total = 0;
    for (const b of bins) total += this.#over(b);
    if (total > 1e-9 || !this.#stillValid() || this.#objective() >= before - 1e-9) {
      this.#undo(at);
      return false;
    }
    const name = p.hosts[e]!.id;
    for (const v of pool) this.#notes.set(v, `moved by the local search to empty ${name}`);
    this.#commit(at);
    return true;
  }

  /**
   * The DISSOLVE_PARTNERS hosts of `bins` (not a) with the most free room, relative to their
   * capacity, in the dimension host a overfills most: where a's VMs can go, or be traded for
   * smaller ones.
   */
  #roomiest(bins: readonly number[], a: number): number[] {
    const p = this.#p;
    const used = this.#s.used;
    let dim = 0;
    let worst = -Infinity;
    for (let d = 0; d < DIMS; d++) {
      const x = (used[a * DIMS + d]! - p.cap[a * DIMS + d]!) * (p.invCap[a * DIMS + d]! || 1);
      if (x > worst) {
        worst = x;
        dim = d;
      }
    }
    this.spent += bins.length >> 4; // a pass over the hosts
    const free = (h: number) => (p.cap[h * DIMS + dim]! - used[h * DIMS + dim]!) * (p.invCap[h * DIMS + dim]! || 1);
    const others = bins.filter((b) => b !== a);
    if (others.length <= DISSOLVE_PARTNERS) return others;
    return others.sort((x, y) => free(y) - free(x) || x - y).slice(0, DISSOLVE_PARTNERS);
  }

  /** Moves v from a to b, and u (when ≥ 0) from b to a, if every rule but capacity allows; true when done. */
  #step(v: number, u: number, a: number, b: number): boolean {
    const at = this.#log.length;
    this.#remove(v);
    if (u >= 0) this.#remove(u);
    if (this.#ruleOk(v, b)) {
      this.#add(v, b);
      if (u < 0 || this.#ruleOk(u, a)) {
        if (u >= 0) this.#add(u, a);
        this.#pair.clear();
        this.#pair.add(a).add(b);
        if (rulesHold(this.#s, this.#pair, this.#allowedSkew)) return true;
      }
    }
    this.#undo(at);
    return false;
  }

  /** Every rule but capacity: the host rules and the group's rules between VMs. */
  #ruleOk(v: number, h: number): boolean {
    const s = this.#s;
    if (!this.#p.classes[this.#p.vmClass[v]!]!.isCandidate[h]) return false;
    const rules = this.#dynamic[this.#p.vmGroup[v]!]!;
    for (let k = 0; k < rules.length; k++) if (rules[k]!.rejects(s, v, h)) return false;
    return true;
  }

  /** How far host h is over its capacity, summed over dimensions relative to it. */
  #over(h: number): number {
    return this.#overWith(h, -1, -1);
  }

  /** #over with VM `out` taken off host h and VM `into` put on it (-1: none). */
  #overWith(h: number, out: number, into: number): number {
    const p = this.#p;
    const used = this.#s.used;
    const o = h * DIMS;
    let sum = 0;
    for (let d = 0; d < DIMS; d++) {
      const x = used[o + d]! - (out >= 0 ? p.req[out * DIMS + d]! : 0) + (into >= 0 ? p.req[into * DIMS + d]! : 0) - p.cap[o + d]!;
      if (x > EPS) sum += x * (p.invCap[o + d]! || 1);
    }
    return sum;
  }

  /** Tries to empty the lightest active hosts, one at a time; true when any was emptied. */
  #emptyHosts(): boolean {
    const p = this.#p;
    const s = this.#s;
    let any = false;
    const failed = new Set<number>();
    for (;;) {
      if (this.spent >= this.#budget) return any;
      const hosts: number[] = [];
      for (let h = 0; h < p.H; h++) if (s.hostVms[h]!.length > 0 && !failed.has(h) && this.#movable(h)) hosts.push(h);
      if (hosts.length < 2) return any;
      const load = new Map(hosts.map((h) => [h, this.#load(h)]));
      hosts.sort((a, b) => load.get(a)! - load.get(b)! || p.price[b]! - p.price[a]! || a - b);
      let emptied = false;
      let misses = 0;
      const total = this.#freeRoom(); // unchanged until a host empties (failed attempts are undone)
      for (const e of hosts) {
        if (this.spent >= this.#budget) return any;
        if (!this.#roomElsewhere(e, total)) {
          failed.add(e);
          continue;
        }
        if (this.#tryEmpty(e)) {
          any = emptied = true;
          break;
        }
        failed.add(e);
        // The lightest hosts are the likeliest to empty; after a run of failures the rest are fuller still.
        if (++misses >= EMPTY_MISSES) return any;
      }
      if (!emptied) return any;
    }
  }

  /** A quick necessary test: the other active hosts have as much free room in total as host e holds. */
  #roomElsewhere(e: number, total = this.#freeRoom()): boolean {
    const p = this.#p;
    const s = this.#s;
    const need = [0, 0, 0, 0];
    for (const v of s.hostVms[e]!) for (let d = 0; d < DIMS; d++) need[d]! += p.req[v * DIMS + d]!;
    const own = !p.elastic[e] && p.up[e] && s.isActive(e);
    return need.every((n, d) => n <= total[d]! - (own ? Math.max(0, p.cap[e * DIMS + d]! - s.used[e * DIMS + d]!) : 0) + EPS);
  }

  /** Free room summed over the active usable fixed hosts, per dimension (see #roomElsewhere). */
  #freeRoom(): number[] {
    const p = this.#p;
    const s = this.#s;
    const free = [0, 0, 0, 0];
    for (let h = 0; h < p.H; h++) {
      if (p.elastic[h] || !p.up[h] || !s.isActive(h)) continue;
      for (let d = 0; d < DIMS; d++) free[d]! += Math.max(0, p.cap[h * DIMS + d]! - s.used[h * DIMS + d]!);
    }
    this.spent += p.H >> 4; // a pass over the hosts
    return free;
  }

  /** Empties host e into the other active hosts (best fit, then, with `swaps`, #swapIn); kept when the objective is lower. */
  #tryEmpty(e: number, swaps = true): boolean {
    const s = this.#s;
    const before = this.#objective();
    const at = this.#begin();
    const pool = [...s.hostVms[e]!].sort((a, b) => this.#size[b]! - this.#size[a]!);
    for (const v of pool) this.#remove(v);
    const left: number[] = [];
    for (const v of pool) {
      const h = this.#bestActive(v, e);
      if (h >= 0) this.#add(v, h);
      else left.push(v);
    }
    if (left.length > 0 && swaps) this.#swapIn(left, e);
    if (left.length > 0 || !this.#stillValid() || this.#objective() >= before - 1e-9) {
      this.#undo(at);
      return false;
    }
    const name = this.#p.hosts[e]!.id;
    for (let i = at; i < this.#log.length; i++) if (this.#log[i]!.from === e) this.#notes.set(this.#log[i]!.v, `moved by the local search to empty ${name}`);
    this.#commit(at);
    return true;
  }

  /**
   * Places the VMs left over from emptying host e (the pool). Each round first tries each
   * pool VM on an active host as it is; then, host by host, swaps one or two of its VMs for
   * one or two pool VMs of more volume that fit in their place (what comes out joins the
   * pool). Every swap packs the hosts fuller, or trades a pool VM for smaller ones, so this
   * ends; big VMs settle into hosts and small ones, easier to fit, are left to place. This is what
   * turns a packing one host short of optimal into an optimal one.
   */
  #swapIn(pool: number[], e: number): void {
    const p = this.#p;
    const s = this.#s;
    const stop = Math.min(this.#budget, this.spent + ATTEMPT_BUDGET);
    for (let round = 0; pool.length > 0 && this.spent < stop; round++) {
      let progress = false;
      pool.sort((a, b) => this.#vol[b]! - this.#vol[a]!);
      for (let k = 0; k < pool.length; k++) {
        const h = this.#bestActive(pool[k]!, e);
        if (h < 0) continue;
        this.#add(pool[k]!, h);
        pool.splice(k--, 1);
        progress = true;
      }
      if (pool.length === 0) return;
      const bins: number[] = [];
      for (let h = 0; h < p.H; h++) if (h !== e && s.active[h] && !p.elastic[h] && s.hostVms[h]!.length > 0) bins.push(h);
      const start = Math.floor(this.#random() * bins.length);
      // Shifts: a VM moves to another host's free room so that, with its own, its host takes a pool VM.
      if (this.#shiftIn(pool, bins, e, stop)) continue;
      // Swaps that pack fuller first; only when none is left, ones that trade a pool VM for smaller ones.
      for (const relaxed of [false, true]) {
        for (let i = 0; i < bins.length && pool.length > 0 && this.spent < stop; i++) {
          if (this.#swapOnHost(bins[(start + i) % bins.length]!, pool, relaxed)) progress = true;
          if (progress && relaxed) break;
        }
        if (progress) break;
      }
      if (!progress) return;
    }
  }

  /**
   * Places a pool VM on host a after moving one of a's VMs to the free room of another
   * active host: two hosts' slack joined where neither alone fits the VM. True when one was.
   */
  #shiftIn(pool: number[], bins: readonly number[], e: number, stop: number): boolean {
    const p = this.#p;
    const s = this.#s;
    for (let k = 0; k < pool.length; k++) {
      const v = pool[k]!;
      for (const a of bins) {
        if (this.spent >= stop) return false;
        const seen = new Set<number>();
        for (const j of s.hostVms[a]!) {
          if (seen.has(p.vmClass[j]!)) continue;
          seen.add(p.vmClass[j]!); // alike VMs move alike
          this.spent++;
          if (!this.#fitsAfterSwap(a, j, v)) continue;
          const at = this.#begin();
          this.#remove(j);
          if (this.#allowed(v, a)) {
            this.#add(v, a);
            const b = this.#bestActive(j, a, e);
            if (b >= 0) {
              this.#add(j, b);
              pool.splice(k, 1);
              return true;
            }
          }
          this.#undo(at);
        }
      }
    }
    return false;
  }

  /** One improving swap on host b between its VMs and the pool (1–1, 2–1, 1–2, then 2–2); true when made. */
  #swapOnHost(b: number, pool: number[], relaxed: boolean): boolean {
    const p = this.#p;
    const s = this.#s;
    const on = [...s.hostVms[b]!];
    const n = on.length;
    const m = pool.length;
    if (n === 0 || m === 0) return false;
    const o = b * DIMS;
    const req = p.req;
    const vol = this.#vol;
    const f0 = p.cap[o]! - s.used[o]! + EPS;
    const f1 = p.cap[o + 1]! - s.used[o + 1]! + EPS;
    const f2 = p.cap[o + 2]! - s.used[o + 2]! + EPS;
    const f3 = p.cap[o + 3]! - s.used[o + 3]! + EPS;
    // Indexes into `on` (i, j) and `pool` (k, l); -1 when the shape has one VM on that side.
    const attempt = (i: number, j: number, k: number, l: number): boolean => {
      this.spent++;
      const a = on[i]!;
      const bb = j >= 0 ? on[j]! : -1;
      const c = pool[k]!;
      const d = l >= 0 ? pool[l]! : -1;
      const outVol = vol[a]! + (bb >= 0 ? vol[bb]! : 0);
      const inVol = vol[c]! + (d >= 0 ? vol[d]! : 0);
      // Progress: the hosts get fuller, or (relaxed) every VM sent to the pool is smaller than
      // the largest taken from it; the pool's multiset of sizes falls either way, so swaps end.
      if (!(inVol > outVol + 1e-9 || (relaxed && Math.max(vol[a]!, bb >= 0 ? vol[bb]! : 0) < Math.max(vol[c]!, d >= 0 ? vol[d]! : 0) - 1e-9))) return false;
      const ra = a * DIMS;
      const rb = bb * DIMS;
      const rc = c * DIMS;
      const rd = d * DIMS;
      const delta = (x: number) => req[rc + x]! + (d >= 0 ? req[rd + x]! : 0) - req[ra + x]! - (bb >= 0 ? req[rb + x]! : 0);
      if (delta(0) > f0 || delta(1) > f1 || delta(2) > f2 || delta(3) > f3) return false;
      const at = this.#begin();
      this.#remove(a);
      if (bb >= 0) this.#remove(bb);
      for (const v of d >= 0 ? [c, d] : [c]) {
        if (!this.#allowed(v, b)) {
          this.#undo(at);
          return false;
        }
        this.#add(v, b);
      }
      // Take the larger index first so the smaller stays valid.
      for (const x of (l > k ? [l, k] : l >= 0 ? [k, l] : [k])) pool.splice(x, 1);
      pool.push(a);
      if (bb >= 0) pool.push(bb);
      return true;
    };
    const pairsOn = n <= PAIR_LIMIT;
    const pairsPool = m <= PAIR_LIMIT;
    for (let i = 0; i < n; i++) for (let k = 0; k < m; k++) if (attempt(i, -1, k, -1)) return true;
    if (pairsOn) for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) for (let k = 0; k < m; k++) if (attempt(i, j, k, -1)) return true;
    if (pairsPool) for (let i = 0; i < n; i++) for (let k = 0; k < m; k++) for (let l = k + 1; l < m; l++) if (attempt(i, -1, k, l)) return true;
    if (pairsOn && pairsPool) {
      for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) for (let k = 0; k < m; k++) for (let l = k + 1; l < m; l++) if (attempt(i, j, k, l)) return true;
    }
    return false;
  }

  #fitsAfterSwap(b: number, out: number, into: number): boolean {
    const p = this.#p;
    const o = b * DIMS;
    for (let d = 0; d < DIMS; d++) {
      if (this.#s.used[o + d]! - p.req[out * DIMS + d]! + p.req[into * DIMS + d]! > p.cap[o + d]! + EPS) return false;
    }
    return true;
  }

  /**
   * Trades an active host for an empty one that holds all its VMs: a cheaper one (cost), or
   * a bigger one whose extra room then lets the lightest hosts be emptied (hosts). The trade
   * is kept only when the whole compound move lowers the objective.
   */
  #tradeHosts(): boolean {
    const p = this.#p;
    const s = this.#s;
    let any = false;
    const hosts: number[] = [];
    for (let h = 0; h < p.H; h++) if (s.hostVms[h]!.length > 0 && this.#movable(h)) hosts.push(h);
    // Expensive first (cost), then small first (the ones worth trading up).
    hosts.sort((a, b) => p.price[b]! - p.price[a]! || p.sizeRel[a]! - p.sizeRel[b]! || a - b);
    const seen = new Set<number>();
    // Trades up that made no room, by host class from and to: the lightest hosts they would
    // empty are the same whichever host of the class trades, so one try per pair and pass.
    const failedUp = new Set<number>();
    let misses = 0;
    for (const e of hosts) {
      if (this.spent >= this.#budget) break;
      if (s.hostVms[e]!.length === 0) continue;
      // The likeliest trades come first (expensive, small hosts); after a run of hosts with none, stop.
      if (misses >= EMPTY_MISSES * 2) break;
      misses++;
      seen.clear();
      const vms = [...s.hostVms[e]!].sort((a, b) => this.#size[b]! - this.#size[a]!);
      const cands = p.classes[p.vmClass[vms[0]!]!]!.candidates;
      for (let c = 0; c < cands.length; c++) {
        const g = cands[c]!;
        if (g === e || p.elastic[g] || !s.isEmpty(g)) continue;
        const cheaper = p.price[g]! < p.price[e]!;
        const bigger = this.#dominates(g, e);
        if (!cheaper && !bigger) continue;
        const cls = p.hostClass[g]!;
        const pair = p.hostClass[e]! * p.hostClasses + cls;
        if (seen.has(cls) || (!cheaper && failedUp.has(pair))) continue;
        seen.add(cls);
        if (this.spent >= this.#budget) break;
        const before = this.#objective();
        const at = this.#begin();
        let ok = true;
        for (const v of vms) {
          this.#remove(v);
          if (!this.#allowed(v, g)) {
            ok = false;
            break;
          }
          this.#add(v, g);
        }
        if (ok && bigger) this.#emptyLightest(3, g);
        if (ok && this.#stillValid() && this.#objective() < before - 1e-9) {
          const name = p.hosts[e]!.id;
          for (const v of vms) this.#notes.set(v, `moved by the local search off ${name} to ${cheaper ? 'a cheaper' : 'a bigger'} host`);
          this.#commit(at);
          any = true;
          misses = 0;
          break;
        }
        if (!cheaper) failedUp.add(pair);
        this.#undo(at);
      }
    }
    return any;
  }

  /** Tries to empty up to `count` of the lightest active hosts (not `keep`). */
  #emptyLightest(count: number, keep: number): void {
    const p = this.#p;
    const s = this.#s;
    const hosts: number[] = [];
    for (let h = 0; h < p.H; h++) if (h !== keep && s.hostVms[h]!.length > 0 && this.#movable(h)) hosts.push(h);
    const load = new Map(hosts.map((h) => [h, this.#load(h)]));
    hosts.sort((a, b) => load.get(a)! - load.get(b)! || a - b);
    this.spent += hosts.length; // the pass and the sort are work the budget must see
    let tried = 0;
    let total = this.#freeRoom();
    for (const h of hosts) {
      if (tried >= count || this.spent >= this.#budget) break;
      if (!this.#roomElsewhere(h, total)) continue;
      tried++;
      if (this.#tryEmpty(h, false)) total = this.#freeRoom();
    }
  }

  /** Host a has at least host b's capacity in cpu, memory and disk, and more in one. */
  #dominates(a: number, b: number): boolean {
    const p = this.#p;
    let more = false;
    for (let d = 0; d < 3; d++) {
      const ca = p.cap[a * DIMS + d]!;
      const cb = p.cap[b * DIMS + d]!;
      if (ca < cb - EPS) return false;
      if (ca > cb + EPS) more = true;
    }
    return more;
  }

  /**
   * Swaps VMs between active hosts so each host's free room has a usable shape: a host with
   * free memory but no free cpu can take nothing. A swap is kept when the room both hosts
   * can offer a typical VM grows (the smaller of free / typical over the dimensions), which
   * leaves the host count as it is but lets the next round empty hosts. True when any swap
   * was made.
   */
  #reshape(): boolean {
    const p = this.#p;
    const s = this.#s;
    const typical = [0, 0, 0, 0];
    for (let v = 0; v < p.V; v++) for (let d = 0; d < DIMS; d++) typical[d]! += p.req[v * DIMS + d]! / p.V;
    const room = (h: number, outV: number, inV: number): number => {
      let min = Infinity;
      for (let d = 0; d < DIMS; d++) {
        if (typical[d]! <= 0 || p.cap[h * DIMS + d]! <= 0) continue;
        const free = p.cap[h * DIMS + d]! - s.used[h * DIMS + d]! + (outV >= 0 ? p.req[outV * DIMS + d]! : 0) - (inV >= 0 ? p.req[inV * DIMS + d]! : 0);
        min = Math.min(min, free / typical[d]!);
      }
      return min;
    };
    const hosts: number[] = [];
    for (let h = 0; h < p.H; h++) if (s.hostVms[h]!.length > 0 && this.#movable(h)) hosts.push(h);
    let swaps = 0;
    for (const a of hosts) {
      if (this.spent >= this.#budget) break;
      const roomA = room(a, -1, -1);
      // Only hosts whose free room is badly shaped: plenty in some dimension, little in another.
      let slack = 0;
      for (let d = 0; d < DIMS; d++) if (typical[d]! > 0 && p.cap[a * DIMS + d]! > 0) slack = Math.max(slack, (p.cap[a * DIMS + d]! - s.used[a * DIMS + d]!) / typical[d]!);
      if (slack < roomA + 2) continue;
      const start = Math.floor(this.#random() * hosts.length);
      let done = false;
      // VMs of one class on a host are interchangeable: try one of each.
      const outs = this.#oneOfEachClass(s.hostVms[a]!);
      for (let t = 0; t < Math.min(hosts.length, RESHAPE_PARTNERS) && !done; t++) {
        const b = hosts[(start + t) % hosts.length]!;
        if (b === a) continue;
        const roomB = room(b, -1, -1);
        const ins = this.#oneOfEachClass(s.hostVms[b]!);
        for (const i of outs) {
          if (done) break;
          for (const j of ins) {
            if (p.vmClass[i] === p.vmClass[j]) continue;
            this.spent++;
            if (!this.#fitsAfterSwap(a, i, j) || !this.#fitsAfterSwap(b, j, i)) continue;
            const gain = Math.min(room(a, i, j), 1e6) + Math.min(room(b, j, i), 1e6) - Math.min(roomA, 1e6) - Math.min(roomB, 1e6);
            if (gain <= 1e-9) continue;
            const before = this.#objective();
            const at = this.#begin();
            this.#remove(i);
            this.#remove(j);
            if (this.#allowed(j, a)) {
              this.#add(j, a);
              if (this.#allowed(i, b)) {
                this.#add(i, b);
                if (this.#stillValid() && this.#objective() <= before + 1e-9) {
                  this.#commit(at);
                  swaps++;
                  done = true;
                  break;
                }
              }
            }
            this.#undo(at);
          }
        }
      }
    }
    return swaps > 0;
  }

  /** Moves VMs off the fullest hosts while that lowers the objective. */
  #evenOut(): boolean {
    const p = this.#p;
    const s = this.#s;
    let any = false;
    let misses = 0;
    const stuck = new Uint8Array(p.H);
    for (;;) {
      if (this.spent >= this.#budget) return any;
      let hot = -1;
      for (let h = 0; h < p.H; h++) {
        if (stuck[h] || p.elastic[h] || !p.up[h] || s.hostVms[h]!.length === 0) continue;
        if (hot < 0 || s.util[h]! > s.util[hot]!) hot = h;
      }
      if (hot < 0) return any;
      let moved = false;
      const vms = [...s.hostVms[hot]!].sort((a, b) => this.#size[b]! - this.#size[a]!);
      for (const v of vms) {
        const target = this.#coolest(v, hot);
        if (target < 0) continue;
        const before = this.#objective();
        const at = this.#begin();
        this.#remove(v);
        this.#add(v, target);
        if (this.#stillValid() && this.#objective() < before - 1e-9) {
          this.#notes.set(v, `moved by the local search off ${p.hosts[hot]!.id}, the fullest host, to even out load`);
          this.#commit(at);
          moved = any = true;
          break;
        }
        this.#undo(at);
      }
      if (!moved) {
        stuck[hot] = 1;
        // The fullest hosts are the likeliest to gain from a move; after a run of them, stop.
        if (++misses >= EMPTY_MISSES) return any;
      } else misses = 0;
    }
  }

  /** The usable fixed host with the lowest utilisation after taking v, other than `from`. */
  #coolest(v: number, from: number): number {
    const p = this.#p;
    const s = this.#s;
    const cands = p.classes[p.vmClass[v]!]!.candidates;
    let best = Infinity;
    let bestHost = -1;
    const r = v * DIMS;
    for (let c = 0; c < cands.length; c++) {
      const h = cands[c]!;
      if (h === from || p.elastic[h]) continue;
      if (!this.#allowed(v, h)) continue;
      const o = h * DIMS;
      let u = 0;
      for (let d = 0; d < DIMS; d++) u = Math.max(u, (s.used[o + d]! + p.req[r + d]!) * p.invCap[o + d]!);
      if (u < best - 1e-12) {
        best = u;
        bestHost = h;
      }
    }
    return best < s.util[from]! ? bestHost : -1;
  }
}
