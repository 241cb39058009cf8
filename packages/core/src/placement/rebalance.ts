import { InvalidInputError } from '../errors/errors.js';
import type { Labels } from '../model/common.js';
import type { PlacementRules, PlacementWeights } from '../model/fleet.js';
import type { Host, Resources } from '../model/records.js';
import { DIMS } from './dims.js';
import { describeReasons, dynamicRulesFor, explainRejection } from './filters.js';
import { allowedOn, currentSkews, rulesHold } from './moves.js';
import { objectivesOf } from './objectives.js';
import { compileProblem } from './problem.js';
import { HostScorer, resolveWeights } from './scorers.js';
import { SolverState } from './state.js';
import type { PlacementObjectives, UnplacedVm } from './types.js';

/** A VM running on a host, as rebalance sees it. Its resources are part of its host's `allocated`. */
export interface RunningVm {
  readonly id: string;
  readonly group: string;
  readonly host: string;
  readonly resources: Resources;
  readonly labels?: Labels;
  readonly rules?: PlacementRules;
  /** False for VMs that must stay (their provider cannot migrate them, say). @default true */
  readonly movable?: boolean;
}

/**
 * What to reach:
 * - `drain`: no VM left on these hosts (for maintenance);
 * - `consolidate`: at most `maxActiveHosts` active hosts (default: as few as moves allow);
 * - `balance`: utilisation imbalance (standard deviation, 0..1) at most `maxImbalance`
 *   (default: as even as single moves make it).
 */
export type RebalanceTarget =
  | { readonly kind: 'drain'; readonly hosts: readonly string[] }
  | { readonly kind: 'consolidate'; readonly maxActiveHosts?: number }
  | { readonly kind: 'balance'; readonly maxImbalance?: number };

export interface RebalanceRequest {
  readonly hosts: readonly Host[];
  readonly vms: readonly RunningVm[];
  readonly target: RebalanceTarget;
  readonly groupRules?: Readonly<Record<string, PlacementRules>>;
  /** Weights for choosing destinations (drain); see PlacementRequest.weights. */
  readonly weights?: PlacementWeights;
  readonly seed?: number;
  /** Stop after this many migrations. @default no limit */
  readonly maxMigrations?: number;
}

/** One live or cold move, in the order the moves must run (each counts on the ones before it). */
export interface Migration {
  readonly vm: string;
  readonly group: string;
  readonly from: string;
  readonly to: string;
  readonly memoryMiB: number;
  readonly reason: string;
}

export interface RebalanceResult {
  readonly migrations: readonly Migration[];
  /** Memory the migrations copy, the measure of their weight. */
  readonly memoryMovedMiB: number;
  /** Whether the target was reached. */
  readonly reached: boolean;
  readonly message: string;
  readonly before: PlacementObjectives;
  readonly after: PlacementObjectives;
  /** Where every VM runs afterwards. */
  readonly assignments: Readonly<Record<string, string>>;
  /** VMs a drain could not move anywhere, with the rules that ruled each host out. */
  readonly stuck: readonly UnplacedVm[];
}

/**
 * Proposes the fewest, lightest migrations that reach a target. Moves stay within a VM's
 * provider (a move between providers is a replace, not a migration) and off elastic hosts,
 * every destination meets every hard rule, and each move is checked in the state the moves
 * before it leave, so the list can run in order.
 *
 * - drain: each VM on the drained hosts, groups others run with first and then largest
 *   first, to the host the weights score best. Nothing else moves.
 * - consolidate: empties hosts, the one holding the least memory first (the cheapest host to
 *   free), into the other active hosts, until the target count is met or no host empties.
 * - balance: moves one VM at a time off the fullest host, the move that evens load most
 *   (of moves nearly as good, the one with the least memory), until the target is met or no
 *   move helps.
 */
export function rebalance(request: RebalanceRequest): RebalanceResult {
  const known = new Map(request.hosts.map((h) => [h.id, h]));
  for (const vm of request.vms) {
    if (!known.has(vm.host)) throw new InvalidInputError(`VM "${vm.id}" runs on host "${vm.host}", which is not in the inventory`, { context: { vm: vm.id, host: vm.host } });
  }
  const target = request.target;
  const drained = new Set<string>();
  if (target.kind === 'drain') {
    for (const id of target.hosts) {
      if (!known.has(id)) throw new InvalidInputError(`cannot drain host "${id}": it is not in the inventory`, { context: { host: id } });
      drained.add(id);
    }
  } else if (target.kind === 'consolidate' && target.maxActiveHosts !== undefined && !(target.maxActiveHosts >= 0)) {
    throw new InvalidInputError(`maxActiveHosts must be 0 or more, got ${target.maxActiveHosts}`);
  } else if (target.kind === 'balance' && target.maxImbalance !== undefined && !(target.maxImbalance >= 0 && target.maxImbalance <= 1)) {
    throw new InvalidInputError(`maxImbalance must be between 0 and 1, got ${target.maxImbalance}`);
  }

  // Movable VMs become the request's VMs (placed where they run); the rest stay in `allocated`.
  const movable = request.vms.filter((vm) => vm.movable !== false && !known.get(vm.host)!.instanceTypes);
  const pinned = request.vms.filter((vm) => !movable.includes(vm));
  const freed = new Map<string, Resources>();
  for (const vm of movable) {
    const sum = freed.get(vm.host) ?? { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 };
    freed.set(vm.host, { cpu: sum.cpu + vm.resources.cpu, memoryMiB: sum.memoryMiB + vm.resources.memoryMiB, diskGiB: sum.diskGiB + vm.resources.diskGiB, gpu: sum.gpu + vm.resources.gpu });
  }
  const hosts: Host[] = request.hosts.map((h) => {
    const f = freed.get(h.id);
    const allocated = f
      ? { cpu: Math.max(0, h.allocated.cpu - f.cpu), memoryMiB: Math.max(0, h.allocated.memoryMiB - f.memoryMiB), diskGiB: Math.max(0, h.allocated.diskGiB - f.diskGiB), gpu: Math.max(0, h.allocated.gpu - f.gpu) }
      : h.allocated;
    return { ...h, allocated, ...(drained.has(h.id) ? { state: 'draining' as const } : {}) };
  });
  // A migration stays within the VM's provider: as a host rule, so hosts of other providers
  // are ruled out, and counted, like any other (the same rules object for VMs alike).
  const withinProvider = new Map<string, PlacementRules>();
  const rulesFor = (vm: RunningVm): PlacementRules => {
    const provider = known.get(vm.host)!.provider;
    const own = vm.rules ?? request.groupRules?.[vm.group] ?? {};
    const key = `${vm.rules ? `vm:${vm.id}` : `group:${vm.group}`}|${provider}`;
    let rules = withinProvider.get(key);
    if (!rules) withinProvider.set(key, (rules = { ...own, providers: (own.providers ?? [provider]).filter((x) => x === provider) }));
    return rules;
  };
  const p = compileProblem({
    hosts,
    vms: movable.map((vm) => ({ id: vm.id, group: vm.group, resources: vm.resources, ...(vm.labels ? { labels: vm.labels } : {}), rules: rulesFor(vm) })),
    existing: pinned.map((vm) => ({ id: vm.id, group: vm.group, host: vm.host })),
    ...(request.groupRules ? { groupRules: request.groupRules } : {}),
    seed: request.seed ?? 0,
  });
  const s = new SolverState(p);
  const at = new Int32Array(p.V);
  movable.forEach((vm, v) => {
    at[v] = p.hostIndex.get(vm.host)!;
    s.add(v, at[v]!); // where it runs, rules or not: the world is as it is
  });
  const before = objectivesOf(s);
  const dynamic = p.groups.map((g) => dynamicRulesFor(g));
  const skew = currentSkews(s);
  const weights = resolveWeights(request.weights);
  const scorer = new HostScorer(s, weights);
  const limit = request.maxMigrations ?? Infinity;
  const moves: { v: number; to: number; reason: string }[] = [];
  const provider = (h: number) => p.hosts[h]!.provider;
  const memory = (v: number) => p.req[v * DIMS + 1]!;

  /** Destinations a VM may migrate to: same provider, a fixed host, not where it is. */
  const destinations = (v: number, from: number): number[] => {
    const out: number[] = [];
    for (const h of p.classes[p.vmClass[v]!]!.candidates) if (h !== from && !p.elastic[h] && provider(h) === provider(from)) out.push(h);
    return out;
  };
  const move = (v: number, to: number, reason: string) => {
    s.remove(v);
    s.add(v, to);
    moves.push({ v, to, reason });
  };
  const stuck: UnplacedVm[] = [];
  let message: string;
  let reached = true;

  if (target.kind === 'drain') {
    const leaving: number[] = [];
    for (let v = 0; v < p.V; v++) if (drained.has(p.hosts[s.assign[v]!]!.id)) leaving.push(v);
    leaving.sort((a, b) => p.groups[p.vmGroup[a]!]!.layer - p.groups[p.vmGroup[b]!]!.layer || memory(b) - memory(a) || p.idRank[a]! - p.idRank[b]!);
    for (const v of leaving) {
      if (moves.length >= limit) {
        reached = false;
        break;
      }
      const from = s.assign[v]!;
      s.remove(v);
      scorer.prepare(v);
      let best = -1;
      let bestScore = -Infinity;
      for (const h of destinations(v, from)) {
        if (!allowedOn(s, dynamic, v, h)) continue;
        const score = scorer.score(h);
        if (score > bestScore + 1e-12) {
          bestScore = score;
          best = h;
        }
      }
      if (best < 0) {
        const reasons = explainRejection(s, v);
        // Cloud zones of its provider meet its rules but take no migration (a move there is a replace).
        let cloud = 0;
        for (const h of p.classes[p.vmClass[v]!]!.candidates) if (p.elastic[h] && allowedOn(s, dynamic, v, h)) cloud++;
        if (cloud) reasons['cloud-zone'] = cloud;
        stuck.push({ id: p.vms[v]!.id, reasons, message: describeReasons(reasons, p.H) });
        s.add(v, from);
        reached = false;
        continue;
      }
      s.add(v, from);
      move(v, best, `drain ${p.hosts[from]!.id}`);
    }
    message = reached
      ? `drained ${[...drained].join(', ')} with ${moves.length} migration(s)`
      : `${stuck.length} VM(s) cannot leave ${[...drained].join(', ')}: no other host of their provider can take them`;
  } else if (target.kind === 'consolidate') {
    const goal = target.maxActiveHosts ?? 0;
    const failed = new Set<number>();
    while (s.activeFixed > goal && moves.length < limit) {
      const candidates: number[] = [];
      for (let h = 0; h < p.H; h++) if (!p.elastic[h] && !p.baseActive[h] && s.hostVms[h]!.length > 0 && !failed.has(h)) candidates.push(h);
      const held = (h: number) => s.hostVms[h]!.reduce((sum, v) => sum + memory(v), 0);
      candidates.sort((a, b) => held(a) - held(b) || s.hostVms[a]!.length - s.hostVms[b]!.length || a - b);
      let emptied = false;
      for (const e of candidates) {
        if (moves.length + s.hostVms[e]!.length > limit) continue;
        const plan = emptyHost(e);
        if (plan) {
          for (const [v, to] of plan) moves.push({ v, to, reason: `empty ${p.hosts[e]!.id} to cut active hosts` });
          emptied = true;
          break;
        }
        failed.add(e);
      }
      if (!emptied) break;
    }
    reached = target.maxActiveHosts === undefined || s.activeFixed <= goal;
    message = `${before.activeHosts} → ${s.activeFixed} active hosts with ${moves.length} migration(s)${reached ? '' : `; no further host could be emptied (target ${goal})`}`;
  } else {
    const goal = target.maxImbalance ?? 0;
    while (s.imbalance() > goal + 1e-12 && moves.length < limit) {
      const step = bestBalancingMove();
      if (!step) break;
      move(step.v, step.to, `even out load: ${p.hosts[s.assign[step.v]!]!.id} is the fullest host`);
    }
    reached = s.imbalance() <= goal + 1e-9 || target.maxImbalance === undefined;
    message = `imbalance ${before.imbalance} → ${round(s.imbalance())} with ${moves.length} migration(s)${reached ? '' : `; no single move evens load further (target ${goal})`}`;
  }

  /** Moves every VM off host e onto other active hosts (best fit); the moves, or undefined (and nothing moved). */
  function emptyHost(e: number): [number, number][] | undefined {
    const vms = [...s.hostVms[e]!].sort((a, b) => memory(b) - memory(a) || p.idRank[a]! - p.idRank[b]!);
    const done: [number, number][] = [];
    const touched = new Set<number>([e]);
    const consolidate = resolveWeights({ consolidation: 1 });
    const fit = new HostScorer(s, consolidate);
    for (const v of vms) {
      s.remove(v);
      fit.prepare(v);
      let best = -1;
      let bestScore = -Infinity;
      for (const h of destinations(v, e)) {
        if (!s.active[h] || !allowedOn(s, dynamic, v, h)) continue;
        const score = fit.score(h);
        if (score > bestScore + 1e-12) {
          bestScore = score;
          best = h;
        }
      }
      if (best < 0) {
        s.add(v, e);
        for (let i = done.length - 1; i >= 0; i--) {
          s.remove(done[i]![0]);
          s.add(done[i]![0], e);
        }
        return undefined;
      }
      s.add(v, best);
      touched.add(best);
      done.push([v, best]);
    }
    if (!rulesHold(s, touched, skew)) {
      for (let i = done.length - 1; i >= 0; i--) {
        s.remove(done[i]![0]);
        s.add(done[i]![0], e);
      }
      return undefined;
    }
    return done;
  }

  function bestBalancingMove(): { v: number; to: number } | undefined {
    const n = s.usableFixed;
    let hot = -1;
    for (let h = 0; h < p.H; h++) {
      if (p.elastic[h] || !p.up[h] || s.hostVms[h]!.length === 0) continue;
      if (hot < 0 || s.util[h]! > s.util[hot]!) hot = h;
    }
    if (hot < 0 || n === 0) return undefined;
    const current = s.imbalance();
    const options: { v: number; to: number; gain: number }[] = [];
    const seenClass = new Set<number>();
    for (const v of s.hostVms[hot]!) {
      if (seenClass.has(p.vmClass[v]!)) continue; // alike VMs move alike: try one of each
      seenClass.add(p.vmClass[v]!);
      for (const h of destinations(v, hot)) {
        if (!p.up[h]) continue;
        s.remove(v);
        const ok = allowedOn(s, dynamic, v, h);
        s.add(v, hot);
        if (!ok) continue;
        const gain = current - imbalanceAfter(v, hot, h);
        if (gain > 1e-9) options.push({ v, to: h, gain });
      }
    }
    if (options.length === 0) return undefined;
    const top = Math.max(...options.map((o) => o.gain));
    options.sort((a, b) => memory(a.v) - memory(b.v) || b.gain - a.gain || p.idRank[a.v]! - p.idRank[b.v]! || a.to - b.to);
    const pick = options.find((o) => o.gain >= top * 0.95)!;
    s.remove(pick.v);
    s.add(pick.v, pick.to);
    const ok = rulesHold(s, new Set([hot, pick.to]), skew);
    s.remove(pick.v);
    s.add(pick.v, hot);
    return ok ? pick : undefined;
  }

  function imbalanceAfter(v: number, from: number, to: number): number {
    const u = (h: number, delta: number) => {
      let max = 0;
      for (let d = 0; d < DIMS; d++) max = Math.max(max, (s.used[h * DIMS + d]! + delta * p.req[v * DIMS + d]!) * p.invCap[h * DIMS + d]!);
      return max;
    };
    const n = s.usableFixed;
    const uf = u(from, -1);
    const ut = u(to, 1);
    const s1 = s.s1 - s.util[from]! - s.util[to]! + uf + ut;
    const s2 = s.s2 - s.util[from]! ** 2 - s.util[to]! ** 2 + uf * uf + ut * ut;
    const mean = s1 / n;
    return Math.sqrt(Math.max(0, s2 / n - mean * mean));
  }

  // A VM moved twice travels once, from where it ran to where it ends; one back home does not move.
  const final = new Map<number, { to: number; reason: string; order: number }>();
  moves.forEach((m, order) => final.set(m.v, { to: m.to, reason: final.get(m.v)?.reason ?? m.reason, order }));
  const migrations: Migration[] = [...final.entries()]
    .filter(([v, m]) => m.to !== at[v])
    .sort((a, b) => a[1].order - b[1].order)
    .map(([v, m]) => ({ vm: p.vms[v]!.id, group: p.groups[p.vmGroup[v]!]!.name, from: p.hosts[at[v]!]!.id, to: p.hosts[m.to]!.id, memoryMiB: memory(v), reason: m.reason }));
  const assignments: Record<string, string> = {};
  for (const v of p.byId) assignments[p.vms[v]!.id] = p.hosts[s.assign[v]!]!.id;
  for (const vm of pinned) assignments[vm.id] = vm.host;
  return {
    migrations,
    memoryMovedMiB: migrations.reduce((sum, m) => sum + m.memoryMiB, 0),
    reached,
    message,
    before,
    after: objectivesOf(s),
    assignments,
    stuck,
  };
}

const round = (n: number) => Math.round(n * 10_000) / 10_000;
