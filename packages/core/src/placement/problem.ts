import { InvalidInputError } from '../errors/errors.js';
import type { PlacementRules } from '../model/fleet.js';
import type { Host, InstanceType } from '../model/records.js';
import { stableStringify } from '../util/hash.js';
import { findAffinityCycle } from './affinityCycle.js';
import { DIM_KEYS, DIMS } from './dims.js';
import { staticRejection, topologyValue } from './filters.js';
import { cheapestFit, effectiveCapacity } from './capacity.js';
import { seededPermutation } from './random.js';
import type { PlacedVm, PlacementRequest, PlacementVm } from './types.js';

export interface SpreadDomains {
  readonly key: string;
  readonly maxSkew: number;
  /** Domain of each host, -1 when the host lacks the key. */
  readonly domainOf: Int32Array;
  readonly names: readonly string[];
  /** Domains with a host the group may use: the ones the skew is measured over. */
  readonly eligible: Uint8Array;
}

/** A group with its rules resolved to indexes, so the solver's inner loop touches only typed arrays. */
export interface CompiledGroup {
  readonly index: number;
  readonly name: string;
  readonly rules: PlacementRules;
  readonly antiHost: boolean;
  readonly antiZone: boolean;
  readonly maxPerHost: number;
  /** Groups not to share a host / zone with, both ways (a rule of either group). */
  readonly avoidHost: readonly number[];
  readonly avoidZone: readonly number[];
  /** Groups to share a host / zone with; may name the group itself ("keep together"). */
  readonly withHost: readonly number[];
  readonly withZone: readonly number[];
  /** Groups whose `withGroups` names this one: a VM of this group may anchor theirs. */
  readonly anchorsHost: readonly number[];
  readonly anchorsZone: readonly number[];
  readonly near: readonly number[];
  readonly prefer: readonly (readonly [string, string])[];
  readonly spread: SpreadDomains | undefined;
  /** Hosts some VM of the group may use (by the host rules). */
  readonly hostCount: number;
  /** Score 0..1 of each host for the preferred labels, when the group prefers any. */
  readonly preferScore: Float64Array | undefined;
  /** True when some rule besides capacity depends on what else is placed. */
  readonly dynamic: boolean;
  /** Placement order between groups: a group comes after the groups it must run with. */
  readonly layer: number;
  /** VMs of the group in the request. */
  readonly size: number;
}

/** VMs of one group with one shape and the same host rules: they share candidates and instance-type prices. */
export interface VmClass {
  readonly group: number;
  readonly req: Float64Array;
  /** The host rules and the group's rules, as the class's first VM (by id) carries them. */
  readonly rules: PlacementRules;
  /** Hosts that pass the host rules, in search order. */
  readonly candidates: Int32Array;
  /** 1 for each host in `candidates`. */
  readonly isCandidate: Uint8Array;
  /** Cheapest fitting instance type on each elastic host (by host index). */
  readonly elasticType: ReadonlyMap<number, InstanceType>;
  /** The largest marginal cost among the group's hosts, to scale cost scores to 0..1. */
  readonly maxMarginal: number;
}

export interface Problem {
  readonly hosts: readonly Host[];
  readonly H: number;
  readonly hostIndex: ReadonlyMap<string, number>;
  readonly elastic: Uint8Array;
  /** 1 when the host is up (not down, in maintenance or draining). */
  readonly up: Uint8Array;
  readonly cap: Float64Array;
  readonly invCap: Float64Array;
  /** What hosts report allocated: VMs placement does not move. */
  readonly base: Float64Array;
  readonly baseActive: Uint8Array;
  readonly price: Float64Array;
  readonly zoneOf: Int32Array;
  readonly zones: readonly string[];
  /** Hosts in the same class are interchangeable while empty: the search looks at one of them. */
  readonly hostClass: Int32Array;
  readonly hostClasses: number;
  /** Host capacity relative to the largest, 0..1 (mean over dimensions): consolidation opens big hosts first. */
  readonly sizeRel: Float64Array;
  /** The largest fixed host's capacity in each dimension, to compare shapes across hosts. */
  readonly maxCap: Float64Array;
  /** Search order of hosts: id order for seed 0, a seeded permutation otherwise. */
  readonly order: Int32Array;
  readonly groups: readonly CompiledGroup[];
  readonly groupIndex: ReadonlyMap<string, number>;
  readonly vms: readonly PlacementVm[];
  readonly V: number;
  /** VM indexes in id order: results list VMs in it, and ties between VMs break by it. */
  readonly byId: Int32Array;
  /** Each VM's position in `byId`. */
  readonly idRank: Int32Array;
  readonly vmGroup: Int32Array;
  readonly vmClass: Int32Array;
  readonly req: Float64Array;
  readonly classes: readonly VmClass[];
  /** Existing VMs per group per host / zone, counted before anything is placed. */
  readonly existingHost: readonly (Int32Array | undefined)[];
  readonly existingZone: readonly (Int32Array | undefined)[];
  readonly existingTotal: Int32Array;
  readonly seed: number;
}

/**
 * Checks a request and compiles it into index form. Every problem a user can cause is an
 * InvalidInputError naming the offending host, VM or group.
 */
export function compileProblem(request: PlacementRequest): Problem {
  const hosts = [...request.hosts].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const H = hosts.length;
  const hostIndex = new Map<string, number>();
  hosts.forEach((host, h) => {
    if (hostIndex.has(host.id)) throw new InvalidInputError(`duplicate host id "${host.id}" in the inventory`, { context: { host: host.id } });
    hostIndex.set(host.id, h);
    checkHost(host);
  });

  const elastic = new Uint8Array(H);
  const up = new Uint8Array(H);
  const cap = new Float64Array(H * DIMS);
  const invCap = new Float64Array(H * DIMS);
  const base = new Float64Array(H * DIMS);
  const baseActive = new Uint8Array(H);
  const price = new Float64Array(H);
  const zoneOf = new Int32Array(H);
  const zones: string[] = [];
  const zoneIndex = new Map<string, number>();
  const maxCap = [0, 0, 0, 0];
  hosts.forEach((host, h) => {
    elastic[h] = host.instanceTypes ? 1 : 0;
    up[h] = host.state === 'up' ? 1 : 0;
    price[h] = host.pricePerHour;
    let z = zoneIndex.get(host.zone);
    if (z === undefined) zoneIndex.set(host.zone, (z = zones.push(host.zone) - 1));
    zoneOf[h] = z;
    const eff = effectiveCapacity(host);
    for (let d = 0; d < DIMS; d++) {
      const c = host.instanceTypes ? Infinity : eff[DIM_KEYS[d]];
      cap[h * DIMS + d] = c;
      invCap[h * DIMS + d] = c > 0 && Number.isFinite(c) ? 1 / c : 0;
      base[h * DIMS + d] = host.instanceTypes ? 0 : host.allocated[DIM_KEYS[d]];
      if (!host.instanceTypes && c > maxCap[d]!) maxCap[d] = c;
    }
    if (!host.instanceTypes && (host.allocated.cpu > 0 || host.allocated.memoryMiB > 0 || host.allocated.diskGiB > 0 || host.allocated.gpu > 0)) baseActive[h] = 1;
  });
  const sizeRel = new Float64Array(H);
  for (let h = 0; h < H; h++) {
    if (elastic[h]) continue;
    let sum = 0;
    let n = 0;
    for (let d = 0; d < DIMS; d++) {
      if (maxCap[d]! <= 0) continue;
      sum += cap[h * DIMS + d]! / maxCap[d]!;
      n++;
    }
    sizeRel[h] = n ? sum / n : 0;
  }

  const seed = request.seed ?? 0;
  const order = seededPermutation(H, seed);

  // VMs, groups and their rules.
  const vms = request.vms;
  const V = vms.length;
  const existing = (request.existing ?? []).filter((e) => hostIndex.has(e.host));
  checkVmIds(vms, request.existing ?? []);
  const groupIndex = new Map<string, number>();
  const groupNames: string[] = [];
  const groupRules: (PlacementRules | undefined)[] = [];
  const groupRulesKey: (string | undefined)[] = [];
  const ruleSource: string[] = [];
  const groupSize: number[] = [];
  const addGroup = (name: string): number => {
    let g = groupIndex.get(name);
    if (g === undefined) {
      groupIndex.set(name, (g = groupNames.push(name) - 1));
      groupRules.push(undefined);
      groupRulesKey.push(undefined);
      ruleSource.push('');
      groupSize.push(0);
    }
    return g;
  };
  // Indexes independent of input order (groups by name, VMs by id), so the order of a
  // request's lists never changes a placement.
  const byId = Int32Array.from({ length: V }, (_, v) => v).sort((a, b) => (vms[a]!.id < vms[b]!.id ? -1 : vms[a]!.id > vms[b]!.id ? 1 : 0));
  const idRank = new Int32Array(V);
  byId.forEach((v, rank) => (idRank[v] = rank));
  // Groups of every running VM count, even those on hosts outside this request: they exist.
  for (const name of [...new Set([...vms.map((vm) => vm.group), ...(request.existing ?? []).map((e) => e.group), ...Object.keys(request.groupRules ?? {})])].sort()) addGroup(name);
  const vmGroup = new Int32Array(V);
  const req = new Float64Array(V * DIMS);
  for (const v of byId) {
    const vm = vms[v]!;
    checkVm(vm);
    const g = addGroup(vm.group);
    vmGroup[v] = g;
    groupSize[g]!++;
    for (let d = 0; d < DIMS; d++) req[v * DIMS + d] = vm.resources[DIM_KEYS[d]];
    const rules = vm.rules ?? request.groupRules?.[vm.group];
    if (rules === undefined) continue;
    const previous = groupRules[g];
    if (previous === undefined) {
      groupRules[g] = rules;
      ruleSource[g] = vm.id;
    } else if (previous !== rules) {
      // Host rules may differ per VM (a VM moving to another provider, say); rules between
      // VMs (anti-affinity, spread, groups to avoid or join) belong to the group.
      const key = (groupRulesKey[g] ??= stableStringify(groupPart(previous)));
      if (stableStringify(groupPart(rules)) !== key) {
        throw new InvalidInputError(`VMs "${ruleSource[g]}" and "${vm.id}" of group "${vm.group}" carry different placement rules`, {
          context: { vm: vm.id },
          hint: 'rules between VMs (antiAffinity, maxPerHost, spread, avoidGroups, withGroups, near, preferLabels) belong to a group: give every VM of the group the same',
        });
      }
    }
  }
  for (const e of existing) addGroup(e.group);
  for (const [name, rules] of Object.entries(request.groupRules ?? {})) {
    const g = addGroup(name);
    groupRules[g] ??= rules;
    if (!ruleSource[g]) ruleSource[g] = `groupRules.${name}`;
  }
  const G = groupNames.length;
  const rulesOf = (g: number): PlacementRules => groupRules[g] ?? {};

  const existingTotal = new Int32Array(G);
  const existingHost: (Int32Array | undefined)[] = new Array<Int32Array | undefined>(G).fill(undefined);
  const existingZone: (Int32Array | undefined)[] = new Array<Int32Array | undefined>(G).fill(undefined);
  for (const e of existing) {
    const g = groupIndex.get(e.group)!;
    const h = hostIndex.get(e.host)!;
    existingTotal[g]!++;
    (existingHost[g] ??= new Int32Array(H))[h]!++;
    (existingZone[g] ??= new Int32Array(zones.length))[zoneOf[h]!]!++;
    if (!elastic[h]) baseActive[h] = 1;
  }

  // Every group a rule names must be known: with VMs to place or running, or with rules given
  // (a group scaled to 0 is known by its rules; `plan` gives every fleet group's). Avoiding a
  // known group with no VMs, or wanting to be near it, asks nothing; running with it cannot be
  // met (below).
  const lookup = (g: number, target: string, rule: string): number => {
    const t = groupIndex.get(target);
    if (t === undefined) {
      throw new InvalidInputError(`group "${groupNames[g]}": ${rule} names group "${target}", which has no VMs, running or to place, and no rules in this request`, {
        context: { path: `${groupNames[g]}.${rule}` },
        hint: `known groups: ${groupNames.join(', ')}; a group with no VMs (scaled to 0) is known when its rules are given in groupRules`,
      });
    }
    return t;
  };
  const avoidHost = groupNames.map(() => new Set<number>());
  const avoidZone = groupNames.map(() => new Set<number>());
  const withHost = groupNames.map(() => new Set<number>());
  const withZone = groupNames.map(() => new Set<number>());
  const anchorsHost = groupNames.map(() => new Set<number>());
  const anchorsZone = groupNames.map(() => new Set<number>());
  const near = groupNames.map(() => new Set<number>());
  for (let g = 0; g < G; g++) {
    const rules = rulesOf(g);
    for (const ref of rules.avoidGroups ?? []) {
      const t = lookup(g, ref.group, 'avoidGroups');
      const scope = ref.scope ?? 'host';
      // Symmetric: "a avoids b" keeps b away from a as well.
      (scope === 'zone' ? avoidZone : avoidHost)[g]!.add(t);
      (scope === 'zone' ? avoidZone : avoidHost)[t]!.add(g);
    }
    for (const ref of rules.withGroups ?? []) {
      const t = lookup(g, ref.group, 'withGroups');
      const scope = ref.scope ?? 'zone';
      (scope === 'host' ? withHost : withZone)[g]!.add(t);
      (scope === 'host' ? anchorsHost : anchorsZone)[t]!.add(g);
      const total = existingTotal[t]! + groupSize[t]!;
      // Only a group with VMs to place needs its rule met.
      if (total === 0 && groupSize[g]! > 0) {
        throw new InvalidInputError(`group "${groupNames[g]}" must run with group "${ref.group}" (${scope}), which has no VMs, running or to place`, {
          context: { path: `${groupNames[g]}.withGroups` },
          hint: `remove the rule or give group "${ref.group}" VMs`,
        });
      }
      const clash = (rules.avoidGroups ?? []).find((a) => a.group === ref.group && ((a.scope ?? 'host') === 'zone' || scope === 'host'));
      if (clash) {
        throw new InvalidInputError(`group "${groupNames[g]}" both requires and avoids group "${ref.group}"; no placement can meet both`, {
          context: { path: `${groupNames[g]}.withGroups` },
        });
      }
    }
    for (const ref of rules.near ?? []) near[g]!.add(lookup(g, ref, 'near'));
    if (rules.spread && !(rules.spread.maxSkew >= 1)) {
      throw new InvalidInputError(`group "${groupNames[g]}": spread.maxSkew must be 1 or more`, { context: { path: `${groupNames[g]}.spread.maxSkew` } });
    }
    if (rules.maxPerHost !== undefined && !(rules.maxPerHost >= 1)) {
      throw new InvalidInputError(`group "${groupNames[g]}": maxPerHost must be 1 or more`, { context: { path: `${groupNames[g]}.maxPerHost` } });
    }
  }
  const cycle = findAffinityCycle(new Map(groupNames.map((name, g) => [name, [...withHost[g]!, ...withZone[g]!].map((t) => groupNames[t]!)])));
  if (cycle) {
    throw new InvalidInputError(`withGroups rules form a cycle (${cycle.join(' → ')}); no group can be placed first`, {
      context: { path: `${cycle[0]}.withGroups` },
      hint: 'keep one direction, so one group anchors the other',
    });
  }
  const layers = affinityLayers(G, withHost, withZone);

  // The host rules of each VM (its own, or its group's): VMs alike in them and in shape form
  // a class and share candidate hosts.
  const vmRules = (v: number): PlacementRules => vms[v]!.rules ?? request.groupRules?.[vms[v]!.group] ?? {};
  const staticKey = new Map<PlacementRules, string>();
  const hostRulesKey = (rules: PlacementRules): string => {
    let key = staticKey.get(rules);
    if (key === undefined) staticKey.set(rules, (key = stableStringify([rules.providers, rules.regions, rules.zones, rules.hostLabels])));
    return key;
  };
  const candidateCache = new Map<string, number[]>();
  const candidatesFor = (rules: PlacementRules): number[] => {
    const key = `${hostRulesKey(rules)}|${stableStringify(rules.spread?.key ?? null)}`;
    let list = candidateCache.get(key);
    if (!list) candidateCache.set(key, (list = staticCandidates(hosts, order, rules)));
    return list;
  };
  // A spread is measured over the domains of every host some VM of the group may use.
  const groupHosts = groupNames.map(() => new Set<number>());
  const seenRules = groupNames.map(() => new Set<PlacementRules>());
  for (let v = 0; v < V; v++) {
    const rules = vmRules(v);
    const g = vmGroup[v]!;
    if (seenRules[g]!.has(rules)) continue; // VMs of a group usually share one rules object
    seenRules[g]!.add(rules);
    for (const h of candidatesFor(rules)) groupHosts[g]!.add(h);
  }
  for (let g = 0; g < G; g++) if (groupSize[g] === 0) for (const h of candidatesFor(rulesOf(g))) groupHosts[g]!.add(h);

  const groups: CompiledGroup[] = [];
  for (let g = 0; g < G; g++) {
    const rules = rulesOf(g);
    const spread = rules.spread ? spreadDomains(hosts, [...groupHosts[g]!], rules.spread.key, rules.spread.maxSkew ?? 1) : undefined;
    const prefer = Object.entries(rules.preferLabels ?? {});
    const groupDynamic =
      rules.antiAffinity !== undefined ||
      rules.maxPerHost !== undefined ||
      avoidHost[g]!.size + avoidZone[g]!.size + withHost[g]!.size + withZone[g]!.size > 0 ||
      spread !== undefined;
    groups.push({
      index: g,
      name: groupNames[g]!,
      rules,
      antiHost: rules.antiAffinity === 'host',
      antiZone: rules.antiAffinity === 'zone',
      maxPerHost: rules.maxPerHost ?? Infinity,
      avoidHost: [...avoidHost[g]!].sort((a, b) => a - b),
      avoidZone: [...avoidZone[g]!].sort((a, b) => a - b),
      withHost: [...withHost[g]!].sort((a, b) => a - b),
      withZone: [...withZone[g]!].sort((a, b) => a - b),
      anchorsHost: [...anchorsHost[g]!].sort((a, b) => a - b),
      anchorsZone: [...anchorsZone[g]!].sort((a, b) => a - b),
      near: [...near[g]!].sort((a, b) => a - b),
      prefer,
      spread,
      hostCount: groupHosts[g]!.size,
      preferScore: prefer.length ? Float64Array.from(hosts, (host) => prefer.filter(([k, v]) => host.labels[k] === v).length / prefer.length) : undefined,
      dynamic: groupDynamic,
      layer: layers[g]!,
      size: groupSize[g]!,
    });
  }

  // Host classes: hosts alike in everything a rule or score reads (labels only where a rule names them).
  const labelKeys = new Set<string>();
  for (let g = 0; g < G; g++) {
    const rules = rulesOf(g);
    for (const k of Object.keys(rules.hostLabels ?? {})) labelKeys.add(k);
    for (const k of Object.keys(rules.preferLabels ?? {})) labelKeys.add(k);
    if (rules.spread) labelKeys.add(rules.spread.key ?? 'zone');
  }
  const keys = [...labelKeys].sort();
  const classKey = new Map<string, number>();
  const hostClass = new Int32Array(H);
  hosts.forEach((host, h) => {
    const key = host.instanceTypes
      ? `#${h}`
      : stableStringify([effectiveCapacity(host), host.pricePerHour, host.zone, host.region ?? '', host.provider, host.state, keys.map((k) => host.labels[k] ?? null)]);
    let k = classKey.get(key);
    if (k === undefined) classKey.set(key, (k = classKey.size));
    hostClass[h] = k;
  });

  // Classes: VMs of a group with the same shape.
  const anyElastic = elastic.some((e) => e === 1);
  const classIndex = new Map<string, number>();
  const classes: VmClass[] = [];
  const vmClass = new Int32Array(V);
  for (const v of byId) {
    const g = vmGroup[v]!;
    const rules = vmRules(v);
    const key = `${g}|${req[v * DIMS]}|${req[v * DIMS + 1]}|${req[v * DIMS + 2]}|${req[v * DIMS + 3]}|${hostRulesKey(rules)}`;
    let c = classIndex.get(key);
    if (c === undefined) {
      classIndex.set(key, (c = classes.length));
      const r = req.slice(v * DIMS, v * DIMS + DIMS);
      const elasticType = new Map<number, InstanceType>();
      let maxMarginal = 0;
      const resources = vms[v]!.resources;
      const candidates = Int32Array.from(candidatesFor(rules));
      const isCandidate = new Uint8Array(H);
      for (const h of candidates) isCandidate[h] = 1;
      for (const h of candidates) {
        if (elastic[h]) {
          if (!anyElastic) continue;
          const type = cheapestFit(hosts[h]!.instanceTypes!, resources);
          if (type) {
            elasticType.set(h, type);
            maxMarginal = Math.max(maxMarginal, type.pricePerHour);
          }
        } else {
          maxMarginal = Math.max(maxMarginal, price[h]! * share(r, invCap, h));
        }
      }
      classes.push({ group: g, req: r, rules, candidates, isCandidate, elasticType, maxMarginal });
    }
    vmClass[v] = c;
  }

  return {
    byId, idRank, hosts, H, hostIndex, elastic, up, cap, invCap, base, baseActive, price, zoneOf, zones, hostClass, hostClasses: classKey.size, sizeRel, maxCap: Float64Array.from(maxCap), order,
    groups, groupIndex, vms, V, vmGroup, vmClass, req, classes, existingHost, existingZone, existingTotal, seed,
  };
}

/** The rules between VMs of a group, which every VM of the group must share (host rules may differ per VM). */
function groupPart(rules: PlacementRules): PlacementRules {
  const { providers: _p, regions: _r, zones: _z, hostLabels: _l, ...rest } = rules;
  return rest;
}

/** The VM's dominant share of a fixed host: its largest fraction of any dimension. */
export function share(r: Float64Array, invCap: Float64Array, h: number): number {
  const o = h * DIMS;
  return Math.max(r[0]! * invCap[o]!, r[1]! * invCap[o + 1]!, r[2]! * invCap[o + 2]!, r[3]! * invCap[o + 3]!);
}

/** Hosts that pass the rules that do not depend on what else is placed (see STATIC_RULES), in search order. */
function staticCandidates(hosts: readonly Host[], order: Int32Array, rules: PlacementRules): number[] {
  const out: number[] = [];
  for (const h of order) if (staticRejection(hosts[h]!, rules) === undefined) out.push(h);
  return out;
}

function spreadDomains(hosts: readonly Host[], candidates: readonly number[], key: string, maxSkew: number): SpreadDomains {
  const domainOf = new Int32Array(hosts.length).fill(-1);
  const names: string[] = [];
  const index = new Map<string, number>();
  hosts.forEach((host, h) => {
    const value = topologyValue(host, key);
    if (value === undefined) return;
    let d = index.get(value);
    if (d === undefined) index.set(value, (d = names.push(value) - 1));
    domainOf[h] = d;
  });
  const eligible = new Uint8Array(names.length);
  for (const h of candidates) if (domainOf[h]! >= 0) eligible[domainOf[h]!] = 1;
  return { key, maxSkew, domainOf, names, eligible };
}

/** Layer 0: groups that need no other group; then groups whose targets are all in earlier layers. */
function affinityLayers(G: number, withHost: readonly Set<number>[], withZone: readonly Set<number>[]): number[] {
  const layer = new Array<number>(G).fill(-1);
  const visit = (g: number): number => {
    if (layer[g]! >= 0) return layer[g]!;
    let l = 0;
    for (const t of [...withHost[g]!, ...withZone[g]!]) if (t !== g) l = Math.max(l, visit(t) + 1);
    return (layer[g] = l);
  };
  for (let g = 0; g < G; g++) visit(g);
  return layer;
}

function checkHost(host: Host): void {
  const bad = (what: string, value: unknown) =>
    new InvalidInputError(`host "${host.id}": ${what} is ${String(value)}; it must be a finite number, 0 or more`, { context: { host: host.id } });
  for (const d of DIM_KEYS) {
    if (!(host.capacity[d] >= 0) || !Number.isFinite(host.capacity[d])) throw bad(`capacity.${d}`, host.capacity[d]);
    if (!(host.allocated[d] >= 0) || !Number.isFinite(host.allocated[d])) throw bad(`allocated.${d}`, host.allocated[d]);
  }
  for (const k of ['cpu', 'memory', 'disk'] as const) if (!(host.overcommit[k] > 0) || !Number.isFinite(host.overcommit[k])) throw bad(`overcommit.${k}`, host.overcommit[k]);
  if (!(host.pricePerHour >= 0) || !Number.isFinite(host.pricePerHour)) throw bad('pricePerHour', host.pricePerHour);
}

function checkVm(vm: PlacementVm): void {
  for (const d of DIM_KEYS) {
    const value = vm.resources[d];
    if (!(value >= 0) || !Number.isFinite(value)) {
      throw new InvalidInputError(`VM "${vm.id}": ${d} is ${String(value)}; it must be a finite number, 0 or more`, { context: { vm: vm.id } });
    }
  }
}

function checkVmIds(vms: readonly PlacementVm[], existing: readonly PlacedVm[]): void {
  const seen = new Set<string>();
  for (const vm of vms) {
    if (seen.has(vm.id)) throw new InvalidInputError(`duplicate VM id "${vm.id}" in the placement request`, { context: { vm: vm.id } });
    seen.add(vm.id);
  }
  const running = new Set<string>();
  for (const vm of existing) {
    if (seen.has(vm.id)) throw new InvalidInputError(`VM "${vm.id}" is both running and to be placed`, { context: { vm: vm.id } });
    if (running.has(vm.id)) throw new InvalidInputError(`duplicate running VM id "${vm.id}"`, { context: { vm: vm.id } });
    running.add(vm.id);
  }
}
