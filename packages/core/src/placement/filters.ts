import type { Host, Resources } from '../model/records.js';
import type { PlacementVm } from './types.js';

/** What a filter may look at besides the VM and the host: the allocation so far. */
export interface FilterState {
  /** Resources in use on each host (host.allocated plus what this placement added). */
  used(host: Host): Resources;
  /** How many VMs of a group are on a host. */
  groupCountOnHost(group: string, host: Host): number;
  /** Free capacity after overcommit, per dimension. */
  capacity(host: Host): Resources;
}

/** A hard rule. Named, so an explanation can say how many hosts each one ruled out. */
export interface PlacementFilter {
  readonly name: string;
  /** True when the host may take the VM. */
  accepts(vm: PlacementVm, host: Host, state: FilterState): boolean;
}

const fits = (dimension: keyof Resources): PlacementFilter => ({
  name: dimension === 'memoryMiB' ? 'memory' : dimension === 'diskGiB' ? 'disk' : dimension,
  accepts(vm, host, state) {
    if (host.instanceTypes) return true; // elastic: the instance-type rule decides
    return state.used(host)[dimension] + vm.resources[dimension] <= state.capacity(host)[dimension];
  },
});

/** The hard rules of placement v0, in the order explanations list them. */
export const FILTERS: readonly PlacementFilter[] = [
  { name: 'state', accepts: (_vm, host) => host.state === 'up' },
  { name: 'provider', accepts: (vm, host) => !vm.rules?.providers || vm.rules.providers.includes(host.provider) },
  { name: 'zone', accepts: (vm, host) => !vm.rules?.zones || vm.rules.zones.includes(host.zone) },
  { name: 'region', accepts: (vm, host) => !vm.rules?.regions || (host.region !== undefined && vm.rules.regions.includes(host.region)) },
  {
    name: 'labels',
    accepts: (vm, host) => !vm.rules?.hostLabels || Object.entries(vm.rules.hostLabels).every(([k, v]) => host.labels[k] === v),
  },
  fits('cpu'),
  fits('memoryMiB'),
  fits('diskGiB'),
  fits('gpu'),
  {
    name: 'instance-type',
    accepts: (vm, host) =>
      !host.instanceTypes ||
      host.instanceTypes.some((t) => t.cpu >= vm.resources.cpu && t.memoryMiB >= vm.resources.memoryMiB && (t.gpu ?? 0) >= vm.resources.gpu),
  },
  {
    name: 'max-per-host',
    accepts: (vm, host, state) => vm.rules?.maxPerHost === undefined || state.groupCountOnHost(vm.group, host) < vm.rules.maxPerHost,
  },
  {
    name: 'anti-affinity',
    accepts: (vm, host, state) => vm.rules?.antiAffinity !== 'host' || host.instanceTypes !== undefined || state.groupCountOnHost(vm.group, host) === 0,
  },
];

/** Counts, for a VM that fits nowhere, how many hosts each rule ruled out (first failing rule per host). */
export function explainRejection(vm: PlacementVm, hosts: readonly Host[], state: FilterState, filters = FILTERS): Record<string, number> {
  const reasons: Record<string, number> = {};
  for (const host of hosts) {
    const failed = filters.find((f) => !f.accepts(vm, host, state));
    if (failed) reasons[failed.name] = (reasons[failed.name] ?? 0) + 1;
  }
  return reasons;
}

export function describeReasons(reasons: Readonly<Record<string, number>>, hostCount: number): string {
  if (hostCount === 0) return 'no hosts in the inventory';
  const parts = Object.entries(reasons)
    .sort((a, b) => b[1] - a[1])
    .map(([rule, n]) => `${rule}: ${n} ${n === 1 ? 'host' : 'hosts'}`);
  return `no host can take it (${parts.join('; ')})`;
}
