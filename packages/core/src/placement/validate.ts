import type { PlacementRules } from '../model/fleet.js';
import type { Host } from '../model/records.js';
import type { PlacementRequest, PlacementResult } from './types.js';

/**
 * An independent check of a placement against every hard rule. It shares no code with the
 * solver (only the types): plain loops over plain maps, written from the rules' definitions,
 * so a bug in the solver's indexes and counters cannot hide in both. Tests run it on every
 * result; users can run it on placements they made by hand.
 */
export interface PlacementViolation {
  readonly rule: string;
  readonly message: string;
  readonly vm?: string;
  readonly host?: string;
  readonly group?: string;
}

const DIMENSIONS = [
  ['cpu', 'cpu', 'cpu'],
  ['memoryMiB', 'memory', 'memory'],
  ['diskGiB', 'disk', 'disk'],
  ['gpu', undefined, 'gpu'],
] as const;

/** Tolerance for sums of fractional capacities (overcommit ratios). */
const SLACK = 1e-6;

interface Member {
  readonly id: string;
  readonly group: string;
  readonly host: Host;
  readonly isNew: boolean;
}

export function validatePlacement(
  request: PlacementRequest,
  result: Pick<PlacementResult, 'assignments' | 'unplaced'> & Partial<Pick<PlacementResult, 'instanceTypes'>>,
): PlacementViolation[] {
  const out: PlacementViolation[] = [];
  const hosts = new Map(request.hosts.map((h) => [h.id, h]));
  const vms = new Map(request.vms.map((vm) => [vm.id, vm]));
  const unplaced = new Set(result.unplaced.map((u) => u.id));
  const rulesOf = (group: string, own?: PlacementRules): PlacementRules => own ?? request.groupRules?.[group] ?? {};
  const groupRules = new Map<string, PlacementRules>();
  for (const [group, rules] of Object.entries(request.groupRules ?? {})) groupRules.set(group, rules);
  for (const vm of request.vms) if (vm.rules) groupRules.set(vm.group, vm.rules);

  // 1. Every VM accounted for exactly once; nothing else.
  for (const vm of request.vms) {
    const placed = Object.hasOwn(result.assignments, vm.id);
    if (placed && unplaced.has(vm.id)) out.push({ rule: 'accounting', vm: vm.id, message: `VM "${vm.id}" is both placed and unplaced` });
    if (!placed && !unplaced.has(vm.id)) out.push({ rule: 'accounting', vm: vm.id, message: `VM "${vm.id}" is neither placed nor reported unplaced` });
  }
  for (const id of Object.keys(result.assignments)) if (!vms.has(id)) out.push({ rule: 'accounting', vm: id, message: `"${id}" is placed but was not asked for` });
  for (const id of unplaced) if (!vms.has(id)) out.push({ rule: 'accounting', vm: id, message: `"${id}" is reported unplaced but was not asked for` });

  // Everything on each host and in each zone: the VMs running already, and the new ones.
  const members: Member[] = [];
  for (const e of request.existing ?? []) {
    const host = hosts.get(e.host);
    if (host) members.push({ id: e.id, group: e.group, host, isNew: false });
  }
  const used = new Map<string, number[]>();
  for (const [id, hostId] of Object.entries(result.assignments)) {
    const vm = vms.get(id);
    const host = hosts.get(hostId);
    if (!vm) continue;
    if (!host) {
      out.push({ rule: 'accounting', vm: id, host: hostId, message: `VM "${id}" is placed on "${hostId}", which is not in the inventory` });
      continue;
    }
    members.push({ id, group: vm.group, host, isNew: true });
    const rules = rulesOf(vm.group, vm.rules);
    const at = { vm: id, host: host.id, group: vm.group };
    if (host.state !== 'up') out.push({ rule: host.state, ...at, message: `host ${host.id} is ${host.state}` });
    if (rules.providers && !rules.providers.includes(host.provider)) out.push({ rule: 'provider', ...at, message: `provider ${host.provider} is not among ${rules.providers.join(', ')}` });
    if (rules.regions && (host.region === undefined || !rules.regions.includes(host.region))) out.push({ rule: 'region', ...at, message: `region ${host.region ?? '(none)'} is not among ${rules.regions.join(', ')}` });
    if (rules.zones && !rules.zones.includes(host.zone)) out.push({ rule: 'zone', ...at, message: `zone ${host.zone} is not among ${rules.zones.join(', ')}` });
    for (const [k, v] of Object.entries(rules.hostLabels ?? {})) {
      if (host.labels[k] !== v) out.push({ rule: 'labels', ...at, message: `host label ${k}=${host.labels[k] ?? '(missing)'}, required ${v}` });
    }
    if (host.instanceTypes) {
      const typeName = result.instanceTypes?.[id];
      const type = host.instanceTypes.find((t) => t.name === typeName);
      if (!type) out.push({ rule: 'instance-type', ...at, message: `no instance type of ${host.id} is named for it (got ${typeName ?? 'none'})` });
      else if (type.cpu < vm.resources.cpu || type.memoryMiB < vm.resources.memoryMiB || (type.gpu ?? 0) < vm.resources.gpu) {
        out.push({ rule: 'instance-type', ...at, message: `instance type ${type.name} is smaller than the VM` });
      }
    } else {
      const sum = used.get(host.id) ?? [0, 0, 0, 0];
      DIMENSIONS.forEach(([key], i) => (sum[i]! += vm.resources[key]));
      used.set(host.id, sum);
    }
  }

  // 2. Capacity, every dimension, overcommit applied, on top of what hosts report allocated.
  for (const [hostId, sum] of used) {
    const host = hosts.get(hostId)!;
    DIMENSIONS.forEach(([key, over, rule], i) => {
      const capacity = host.capacity[key] * (over ? host.overcommit[over] : 1);
      const total = host.allocated[key] + sum[i]!;
      if (sum[i]! > 0 && total > capacity + SLACK) out.push({ rule, host: hostId, message: `${rule} on ${hostId}: ${total} allocated of ${capacity}` });
    });
  }

  // Counts of each group per host and per zone.
  const onHost = new Map<string, Member[]>();
  const inZone = new Map<string, Member[]>();
  for (const m of members) {
    onHost.set(m.host.id, [...(onHost.get(m.host.id) ?? []), m]);
    inZone.set(m.host.zone, [...(inZone.get(m.host.zone) ?? []), m]);
  }
  const count = (list: readonly Member[] | undefined, group: string, except?: string) => (list ?? []).filter((m) => m.group === group && m.id !== except).length;
  const groupsWithNew = new Set(members.filter((m) => m.isNew).map((m) => m.group));

  for (const group of groupsWithNew) {
    const rules = groupRules.get(group) ?? {};
    const mine = members.filter((m) => m.group === group);
    const fresh = mine.filter((m) => m.isNew);

    // 3. At most maxPerHost per host; anti-affinity at host or zone level. Elastic hosts give
    // every VM its own instance, so host-level separation holds there by construction.
    for (const m of fresh) {
      if (m.host.instanceTypes) continue;
      const n = count(onHost.get(m.host.id), group);
      if (rules.maxPerHost !== undefined && n > rules.maxPerHost) {
        out.push({ rule: 'max-per-host', vm: m.id, host: m.host.id, group, message: `${n} VMs of group ${group} on ${m.host.id}, at most ${rules.maxPerHost}` });
      }
      if (rules.antiAffinity === 'host' && n > 1) out.push({ rule: 'anti-affinity', vm: m.id, host: m.host.id, group, message: `${n} VMs of group ${group} on host ${m.host.id}` });
    }
    if (rules.antiAffinity === 'zone') {
      for (const m of fresh) {
        const n = count(inZone.get(m.host.zone), group);
        if (n > 1) out.push({ rule: 'anti-affinity', vm: m.id, host: m.host.id, group, message: `${n} VMs of group ${group} in zone ${m.host.zone}` });
      }
    }

    // 4. Run with other groups: some VM of the target (other than itself) on the same host or
    // in the same zone. A group naming itself is met by its first VM.
    for (const ref of rules.withGroups ?? []) {
      const scope = ref.scope ?? 'zone';
      for (const m of fresh) {
        const near = scope === 'host' ? onHost.get(m.host.id) : inZone.get(m.host.zone);
        if (count(near, ref.group, m.id) > 0) continue;
        if (ref.group === group && members.filter((x) => x.group === group && x.id !== m.id).length === 0) continue;
        out.push({ rule: 'with-groups', vm: m.id, host: m.host.id, group, message: `no VM of group ${ref.group} on the same ${scope} as ${m.id}` });
      }
    }

    // 5. Spread: over the domains of the hosts the group may use, the most and fewest VMs
    // differ by at most maxSkew (or by what the running VMs differed by already).
    if (rules.spread) {
      const key = rules.spread.key ?? 'zone';
      const value = (h: Host) => (key === 'zone' ? h.zone : key === 'region' ? h.region : key === 'host' ? h.id : key === 'provider' ? h.provider : h.labels[key]);
      // Over the domains of every host some VM of the group may use (VMs may carry host rules of their own).
      const hostRules = [...new Set(request.vms.filter((vm) => vm.group === group).map((vm) => rulesOf(vm.group, vm.rules)))];
      const domains = new Map<string, { now: number; before: number }>();
      for (const h of request.hosts) {
        const ok =
          h.state === 'up' &&
          hostRules.some(
            (r) =>
              (!r.providers || r.providers.includes(h.provider)) &&
              (!r.regions || (h.region !== undefined && r.regions.includes(h.region))) &&
              (!r.zones || r.zones.includes(h.zone)) &&
              Object.entries(r.hostLabels ?? {}).every(([k, v]) => h.labels[k] === v),
          );
        const d = value(h);
        if (ok && d !== undefined) domains.set(d, { now: 0, before: 0 });
      }
      for (const m of mine) {
        const d = value(m.host);
        const entry = d === undefined ? undefined : domains.get(d);
        if (!entry) {
          if (m.isNew) out.push({ rule: 'spread', vm: m.id, host: m.host.id, group, message: `host ${m.host.id} is in no domain of the spread over ${key}` });
          continue;
        }
        entry.now++;
        if (!m.isNew) entry.before++;
      }
      const now = [...domains.values()].map((e) => e.now);
      const before = [...domains.values()].map((e) => e.before);
      const skew = now.length ? Math.max(...now) - Math.min(...now) : 0;
      const skewBefore = before.length ? Math.max(...before) - Math.min(...before) : 0;
      const allowed = Math.max(rules.spread.maxSkew ?? 1, skewBefore);
      if (skew > allowed) out.push({ rule: 'spread', group, message: `group ${group} spreads over ${key} with skew ${skew}, at most ${allowed}` });
    }
  }

  // 6. Avoidance, both ways: a new VM must not share a host (or zone) with a group either one avoids.
  const avoid: { a: string; b: string; scope: 'host' | 'zone' }[] = [];
  for (const [group, rules] of groupRules) for (const ref of rules.avoidGroups ?? []) avoid.push({ a: group, b: ref.group, scope: ref.scope ?? 'host' });
  for (const { a, b, scope } of avoid) {
    const places = scope === 'host' ? onHost : inZone;
    for (const [where, list] of places) {
      if (scope === 'host' && hosts.get(where)?.instanceTypes) continue;
      const offenders = list.filter((m) => m.isNew && (m.group === a || m.group === b));
      if (offenders.length === 0) continue;
      const hasA = list.some((m) => m.group === a);
      const hasB = list.some((m) => m.group === b && (a !== b || list.filter((x) => x.group === b).length > 1));
      if (hasA && hasB) {
        for (const m of offenders) out.push({ rule: 'avoid-groups', vm: m.id, group: m.group, message: `groups ${a} and ${b} share ${scope} ${where}` });
      }
    }
  }
  return out;
}
