import type { PlacementWeights } from '../model/fleet.js';
import type { InstanceType } from '../model/records.js';
import { DIMS } from './dims.js';
import type { SolverState } from './state.js';
import { SCORER_NAMES, type ScorerName, type Weights } from './types.js';

/**
 * The soft rules. Each scores a VM on a host from 0 (worst) to 1 (best); the solver picks the
 * host with the highest weighted sum. Scores are relative, so weights mean the same on any
 * inventory: `cost=1,balance=0.5` values a host's cost twice as much as its balance.
 *
 * - cost: what the VM adds to the bill. An active host adds nothing (it is paid for); an
 *   empty host adds its price times the VM's share of it (so hosts cheap for their size are
 *   opened first); an elastic host adds the cheapest instance type the VM fits.
 * - consolidation: fewer active hosts. Active hosts score 0.5..1 by how full they are
 *   afterwards (best fit); empty hosts 0..0.5 by their size (big hosts hold more later).
 * - balance: even load. 1 minus the host's utilisation afterwards (least loaded first).
 * - headroom: room for growth. 1 up to HEADROOM_TARGET utilisation, then falling to 0 when full.
 * - preferLabels: the fraction of the group's preferred host labels the host carries.
 * - locality: 1 on a host holding a VM of a `near` group, 0.5 in such a zone, else 0.
 */
export const HEADROOM_TARGET = 0.8;

/** When a request gives no weights: cheap and consolidated, honouring preferences. */
export const DEFAULT_WEIGHTS: Weights = Object.freeze({ cost: 1, consolidation: 1, balance: 0, headroom: 0, preferLabels: 0.5, locality: 0.5 });

/** The weights given are the whole objective; with none given, the defaults. */
export function resolveWeights(weights: PlacementWeights | undefined): Weights {
  const given = Object.entries(weights ?? {}).filter(([, w]) => w !== undefined);
  if (given.length === 0) return DEFAULT_WEIGHTS;
  return Object.freeze(Object.fromEntries(SCORER_NAMES.map((name) => [name, weights?.[name] ?? 0])) as Record<ScorerName, number>);
}

const relCap = (p: SolverState['p'], h: number, d: number) => (p.maxCap[d]! > 0 ? p.cap[h * DIMS + d]! / p.maxCap[d]! : 0);

/** Score components in SCORER_NAMES order, for explanations. */
export type ScoreParts = Float64Array;

/**
 * Scores hosts for one VM at a time: `prepare(v)` reads what is the same for every host, so
 * `score(h)` (called for every candidate host in the solver's inner loop) is a few loads
 * and multiplications.
 */
export class HostScorer {
  readonly #s: SolverState;
  readonly #w: Weights;
  #v = 0;
  #r0 = 0;
  #r1 = 0;
  #r2 = 0;
  #r3 = 0;
  #maxMarginal = 0;
  #prefer: Float64Array | undefined;
  #near: readonly number[] = [];
  #elastic: ReadonlyMap<number, InstanceType> = new Map();
  /** The part of the total that is the same on every host (no preferred labels: all score 1). */
  #constant = 0;

  constructor(s: SolverState, w: Weights) {
    this.#s = s;
    this.#w = w;
  }

  prepare(v: number): void {
    const p = this.#s.p;
    const cls = p.classes[p.vmClass[v]!]!;
    const group = p.groups[p.vmGroup[v]!]!;
    this.#v = v;
    const r = v * DIMS;
    this.#r0 = p.req[r]!;
    this.#r1 = p.req[r + 1]!;
    this.#r2 = p.req[r + 2]!;
    this.#r3 = p.req[r + 3]!;
    this.#maxMarginal = cls.maxMarginal;
    this.#prefer = group.preferScore;
    this.#near = group.near;
    this.#elastic = cls.elasticType;
    this.#constant = group.preferScore ? 0 : this.#w.preferLabels;
  }

  /** The weighted score of the prepared VM on host h, which must have room for it. */
  score(h: number, parts?: ScoreParts): number {
    const s = this.#s;
    const p = s.p;
    const w = this.#w;
    let marginal: number;
    let consolidation: number;
    let load: number;
    if (p.elastic[h]) {
      const type = this.#elastic.get(h)!;
      marginal = type.pricePerHour;
      load = Math.max(type.cpu > 0 ? this.#r0 / type.cpu : 0, type.memoryMiB > 0 ? this.#r1 / type.memoryMiB : 0);
      consolidation = 0.5 * load;
    } else {
      const o = h * DIMS;
      const used = s.used;
      const inv = p.invCap;
      const i0 = inv[o]!;
      const i1 = inv[o + 1]!;
      const i2 = inv[o + 2]!;
      const i3 = inv[o + 3]!;
      const u0 = (used[o]! + this.#r0) * i0;
      const u1 = (used[o + 1]! + this.#r1) * i1;
      const u2 = (used[o + 2]! + this.#r2) * i2;
      const u3 = (used[o + 3]! + this.#r3) * i3;
      load = u0 > u1 ? u0 : u1;
      if (u2 > load) load = u2;
      if (u3 > load) load = u3;
      if (s.active[h] === 1) {
        marginal = 0;
        const n = (i0 > 0 ? 1 : 0) + (i1 > 0 ? 1 : 0) + (i2 > 0 ? 1 : 0) + (i3 > 0 ? 1 : 0);
        // Best fit: the smaller the room left (as a vector, so a host left with room in one
        // dimension only scores low), the better.
        const f0 = i0 > 0 ? 1 - u0 : 0;
        const f1 = i1 > 0 ? 1 - u1 : 0;
        const f2 = i2 > 0 ? 1 - u2 : 0;
        const f3 = i3 > 0 ? 1 - u3 : 0;
        consolidation = 0.5 + 0.5 * (1 - Math.sqrt((f0 * f0 + f1 * f1 + f2 * f2 + f3 * f3) / (n || 1)));
      } else {
        let shareOfHost = this.#r0 * i0;
        if (this.#r1 * i1 > shareOfHost) shareOfHost = this.#r1 * i1;
        if (this.#r2 * i2 > shareOfHost) shareOfHost = this.#r2 * i2;
        if (this.#r3 * i3 > shareOfHost) shareOfHost = this.#r3 * i3;
        marginal = p.price[h]! * shareOfHost;
        // Open big hosts first (fewer in the end), and ones shaped like the VM (cosine of the
        // two vectors): a cpu-heavy VM on a memory-rich host strands memory.
        const m = p.maxCap;
        const a0 = this.#r0 / (m[0]! || 1);
        const a1 = this.#r1 / (m[1]! || 1);
        const a2 = this.#r2 / (m[2]! || 1);
        const a3 = this.#r3 / (m[3]! || 1);
        const b0 = relCap(p, h, 0);
        const b1 = relCap(p, h, 1);
        const b2 = relCap(p, h, 2);
        const b3 = relCap(p, h, 3);
        const norms = Math.sqrt(a0 * a0 + a1 * a1 + a2 * a2 + a3 * a3) * Math.sqrt(b0 * b0 + b1 * b1 + b2 * b2 + b3 * b3);
        consolidation = 0.5 * p.sizeRel[h]! * (norms > 0 ? (a0 * b0 + a1 * b1 + a2 * b2 + a3 * b3) / norms : 1);
      }
    }
    const cost = this.#maxMarginal > 0 ? 1 - marginal / this.#maxMarginal : 1;
    const balance = load >= 1 ? 0 : 1 - load;
    const headroom = load <= HEADROOM_TARGET ? 1 : load >= 1 ? 0 : (1 - load) / (1 - HEADROOM_TARGET);
    let total = w.cost * cost + w.consolidation * consolidation + w.balance * balance + w.headroom * headroom + this.#constant;
    const prefer = this.#prefer ? this.#prefer[h]! : 1;
    if (this.#prefer) total += w.preferLabels * prefer;
    let locality = 0;
    if (this.#near.length > 0) {
      const z = p.zoneOf[h]!;
      for (const n of this.#near) {
        if (s.hostCount[n]![h]! > 0) {
          locality = 1;
          break;
        }
        if (s.zoneCount[n]![z]! > 0) locality = 0.5;
      }
      total += w.locality * locality;
    }
    if (parts) {
      parts[0] = cost;
      parts[1] = consolidation;
      parts[2] = balance;
      parts[3] = headroom;
      parts[4] = prefer;
      parts[5] = locality;
    }
    return total;
  }

  /** The VM last prepared. */
  get vm(): number {
    return this.#v;
  }
}
