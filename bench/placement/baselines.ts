/**
 * Baseline schedulers for the benchmark, written from scratch (no solver code): first-fit,
 * and the spread-style default of common VM schedulers, each VM on the least-loaded host.
 * Both keep the same hard rules, checked VM by VM as they go; the validator judges the
 * result like any other.
 */
import type { Host, PlacementRequest, PlacementRules } from '@novacron/core';

export interface BaselineResult {
  readonly assignments: Record<string, string>;
  readonly instanceTypes: Record<string, string>;
  readonly unplaced: { id: string; reasons: Record<string, number>; message: string }[];
}

const DIMS = ['cpu', 'memoryMiB', 'diskGiB', 'gpu'] as const;

function capacity(h: Host): number[] {
  return [h.capacity.cpu * h.overcommit.cpu, h.capacity.memoryMiB * h.overcommit.memory, h.capacity.diskGiB * h.overcommit.disk, h.capacity.gpu];
}

function topology(h: Host, key: string): string | undefined {
  return key === 'zone' ? h.zone : key === 'region' ? h.region : key === 'host' ? h.id : key === 'provider' ? h.provider : h.labels[key];
}

function hostAllowed(h: Host, r: PlacementRules): boolean {
  return (
    h.state === 'up' &&
    (!r.providers || r.providers.includes(h.provider)) &&
    (!r.regions || (h.region !== undefined && r.regions.includes(h.region))) &&
    (!r.zones || r.zones.includes(h.zone)) &&
    Object.entries(r.hostLabels ?? {}).every(([k, v]) => h.labels[k] === v) &&
    (!r.spread || topology(h, r.spread.key ?? 'zone') !== undefined)
  );
}

export function baseline(request: PlacementRequest, strategy: 'first-fit' | 'least-loaded'): BaselineResult {
  const hosts = [...request.hosts].sort((a, b) => (a.id < b.id ? -1 : 1));
  const caps = hosts.map(capacity);
  const used = hosts.map((h) => DIMS.map((d) => h.allocated[d]));
  const onHost = hosts.map(() => new Map<string, number>());
  const inZone = new Map<string, Map<string, number>>();
  const total = new Map<string, number>();
  const count = (m: Map<string, number>, k: string) => m.get(k) ?? 0;
  const bump = (m: Map<string, number>, k: string) => m.set(k, count(m, k) + 1);
  const zoneMap = (z: string) => inZone.get(z) ?? inZone.set(z, new Map()).get(z)!;
  const index = new Map(hosts.map((h, i) => [h.id, i]));
  for (const e of request.existing ?? []) {
    const i = index.get(e.host);
    if (i === undefined) continue;
    bump(onHost[i]!, e.group);
    bump(zoneMap(hosts[i]!.zone), e.group);
    bump(total, e.group);
  }
  const rulesOf = (group: string, own?: PlacementRules) => own ?? request.groupRules?.[group] ?? {};
  // Avoidance holds both ways.
  const avoids = new Map<string, { group: string; scope: 'host' | 'zone' }[]>();
  const allRules = new Map<string, PlacementRules>(Object.entries(request.groupRules ?? {}));
  for (const vm of request.vms) if (vm.rules) allRules.set(vm.group, vm.rules);
  for (const [g, r] of allRules) {
    for (const a of r.avoidGroups ?? []) {
      const scope = a.scope ?? 'host';
      avoids.set(g, [...(avoids.get(g) ?? []), { group: a.group, scope }]);
      avoids.set(a.group, [...(avoids.get(a.group) ?? []), { group: g, scope }]);
    }
  }
  // Spread counts per group, over the domains of the hosts its VMs may use.
  const spreadCounts = new Map<string, Map<string, number>>();
  for (const [g, r] of allRules) {
    if (!r.spread) continue;
    const counts = new Map<string, number>();
    for (const h of hosts) if (hostAllowed(h, r)) counts.set(topology(h, r.spread.key ?? 'zone')!, 0);
    for (const e of request.existing ?? []) {
      const i = index.get(e.host);
      if (e.group !== g || i === undefined) continue;
      const d = topology(hosts[i]!, r.spread.key ?? 'zone');
      if (d !== undefined && counts.has(d)) counts.set(d, counts.get(d)! + 1);
    }
    spreadCounts.set(g, counts);
  }

  const out: BaselineResult = { assignments: {}, instanceTypes: {}, unplaced: [] };
  // Hosts each set of rules allows, and each spread's current minimum, computed once.
  const allowedFor = new Map<PlacementRules, number[]>();
  const spreadMin = new Map<string, number>();
  for (const [g, counts] of spreadCounts) spreadMin.set(g, Math.min(...counts.values()));
  for (const vm of request.vms) {
    const r = rulesOf(vm.group, vm.rules);
    let candidates = allowedFor.get(r);
    if (!candidates) allowedFor.set(r, (candidates = hosts.map((h, i) => (hostAllowed(h, r) ? i : -1)).filter((i) => i >= 0)));
    const need = DIMS.map((d) => vm.resources[d]);
    let best = -1;
    let bestLoad = Infinity;
    let bestType: string | undefined;
    for (const i of candidates) {
      const h = hosts[i]!;
      let type: string | undefined;
      if (h.instanceTypes) {
        const fit = h.instanceTypes.filter((t) => t.cpu >= vm.resources.cpu && t.memoryMiB >= vm.resources.memoryMiB && (t.gpu ?? 0) >= vm.resources.gpu).sort((a, b) => a.pricePerHour - b.pricePerHour)[0];
        if (!fit) continue;
        type = fit.name;
      } else {
        const u = used[i]!;
        const c = caps[i]!;
        if (u[0]! + need[0]! > c[0]! + 1e-9 || u[1]! + need[1]! > c[1]! + 1e-9 || u[2]! + need[2]! > c[2]! + 1e-9 || u[3]! + need[3]! > c[3]! + 1e-9) continue;
      }
      const fixed = !h.instanceTypes;
      const here = onHost[i]!;
      const zone = zoneMap(h.zone);
      if (fixed && r.maxPerHost !== undefined && count(here, vm.group) >= r.maxPerHost) continue;
      if (r.antiAffinity === 'host' && fixed && count(here, vm.group) > 0) continue;
      if (r.antiAffinity === 'zone' && count(zone, vm.group) > 0) continue;
      if ((avoids.get(vm.group) ?? []).some((a) => (a.scope === 'zone' ? count(zone, a.group) > 0 : fixed && count(here, a.group) > 0))) continue;
      if ((r.withGroups ?? []).some((w) => ((w.scope ?? 'zone') === 'host' ? count(here, w.group) : count(zone, w.group)) === 0 && !(w.group === vm.group && count(total, vm.group) === 0))) continue;
      if (r.spread) {
        const counts = spreadCounts.get(vm.group)!;
        const d = topology(h, r.spread.key ?? 'zone')!;
        if (count(counts, d) + 1 - spreadMin.get(vm.group)! > (r.spread.maxSkew ?? 1)) continue;
      }
      if (strategy === 'first-fit') {
        best = i;
        bestType = type;
        break;
      }
      let load = 1;
      if (fixed) {
        load = 0;
        for (let d = 0; d < 4; d++) if (caps[i]![d]! > 0) load = Math.max(load, (used[i]![d]! + need[d]!) / caps[i]![d]!);
      }
      if (load < bestLoad) {
        bestLoad = load;
        best = i;
        bestType = type;
      }
    }
    if (best < 0) {
      out.unplaced.push({ id: vm.id, reasons: {}, message: 'no host' });
      continue;
    }
    const h = hosts[best]!;
    out.assignments[vm.id] = h.id;
    if (bestType) out.instanceTypes[vm.id] = bestType;
    if (!h.instanceTypes) need.forEach((n, d) => (used[best]![d]! += n));
    bump(onHost[best]!, vm.group);
    bump(zoneMap(h.zone), vm.group);
    bump(total, vm.group);
    if (r.spread) {
      const counts = spreadCounts.get(vm.group)!;
      const d = topology(h, r.spread.key ?? 'zone')!;
      counts.set(d, count(counts, d) + 1);
      spreadMin.set(vm.group, Math.min(...counts.values()));
    }
  }
  return out;
}

/** Active hosts and cost of a placement, counted the way the engine reports them. */
export function objectives(request: PlacementRequest, result: Pick<BaselineResult, 'assignments' | 'instanceTypes'>): { activeHosts: number; costPerHour: number } {
  const hosts = new Map(request.hosts.map((h) => [h.id, h]));
  const active = new Set<string>();
  let cost = 0;
  for (const h of request.hosts) if (!h.instanceTypes && DIMS.some((d) => h.allocated[d] > 0)) active.add(h.id);
  for (const e of request.existing ?? []) if (hosts.get(e.host) && !hosts.get(e.host)!.instanceTypes) active.add(e.host);
  for (const [vm, id] of Object.entries(result.assignments)) {
    const h = hosts.get(id)!;
    if (h.instanceTypes) cost += h.instanceTypes.find((t) => t.name === result.instanceTypes[vm])?.pricePerHour ?? 0;
    else active.add(id);
  }
  for (const id of active) cost += hosts.get(id)!.pricePerHour;
  return { activeHosts: active.size, costPerHour: Math.round(cost * 10_000) / 10_000 };
}
