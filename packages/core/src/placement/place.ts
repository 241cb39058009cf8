import { InvalidInputError } from '../errors/errors.js';
import type { Host } from '../model/records.js';
import { cheapestFit } from './capacity.js';
import { describeReasons, explainRejection, FILTERS } from './filters.js';
import { AllocationState } from './state.js';
import type { PlacementObjectives, PlacementRequest, PlacementResult, PlacementVm, UnplacedVm, VmExplanation } from './types.js';

/**
 * Placement v0: the capacity and rule filters, then first-fit decreasing (largest VMs
 * first, each on the first host in id order that takes it). Deterministic: the same
 * request gives the same result. The weighted multi-objective engine replaces the solver
 * behind this same interface.
 */
export function place(request: PlacementRequest): PlacementResult {
  validateRequest(request);
  const hosts = [...request.hosts].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const state = new AllocationState(hosts, request.existing);
  const vms = [...request.vms].sort(largestFirst);

  const assignments: Record<string, string> = {};
  const instanceTypes: Record<string, string> = {};
  const explanations: Record<string, VmExplanation> = {};
  const unplaced: UnplacedVm[] = [];
  let elasticCost = 0;

  for (const vm of vms) {
    const host = hosts.find((h) => quickFits(vm, h, state) && FILTERS.every((f) => f.accepts(vm, h, state)));
    if (!host) {
      const reasons = explainRejection(vm, hosts, state);
      unplaced.push({ id: vm.id, reasons, message: describeReasons(reasons, hosts.length) });
      continue;
    }
    state.add(host, vm.group, vm.resources);
    assignments[vm.id] = host.id;
    const type = host.instanceTypes ? cheapestFit(host.instanceTypes, vm.resources) : undefined;
    if (type) {
      instanceTypes[vm.id] = type.name;
      elasticCost += type.pricePerHour;
    }
    explanations[vm.id] = {
      host: host.id,
      reason: 'first host in order with room that meets every rule (first-fit decreasing)',
      scores: type ? { costPerHour: type.pricePerHour } : {},
      ...(type ? { instanceType: type.name } : {}),
    };
  }
  unplaced.sort((a, b) => (a.id < b.id ? -1 : 1));
  return { assignments, instanceTypes, unplaced, explanations, objectives: objectives(hosts, state, elasticCost), alternatives: [] };
}

/** The cheap capacity check first, so most non-fitting hosts are passed over without the full rule chain. */
function quickFits(vm: PlacementVm, host: Host, state: AllocationState): boolean {
  if (host.instanceTypes) return true;
  const used = state.used(host);
  const cap = state.capacity(host);
  return used.memoryMiB + vm.resources.memoryMiB <= cap.memoryMiB && used.cpu + vm.resources.cpu <= cap.cpu;
}

function largestFirst(a: PlacementVm, b: PlacementVm): number {
  return (
    b.resources.memoryMiB - a.resources.memoryMiB ||
    b.resources.cpu - a.resources.cpu ||
    b.resources.diskGiB - a.resources.diskGiB ||
    (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
}

function objectives(hosts: readonly Host[], state: AllocationState, elasticCost: number): PlacementObjectives {
  let activeHosts = 0;
  let cost = elasticCost;
  const utilisation: number[] = [];
  for (const host of hosts) {
    if (host.instanceTypes || !state.isActive(host)) continue;
    activeHosts++;
    cost += host.pricePerHour;
    utilisation.push(state.used(host).memoryMiB / Math.max(1, state.capacity(host).memoryMiB));
  }
  const mean = utilisation.reduce((s, u) => s + u, 0) / Math.max(1, utilisation.length);
  const variance = utilisation.reduce((s, u) => s + (u - mean) ** 2, 0) / Math.max(1, utilisation.length);
  return { activeHosts, costPerHour: round(cost), imbalance: round(Math.sqrt(variance)) };
}

const round = (n: number) => Math.round(n * 10_000) / 10_000;

function validateRequest(request: PlacementRequest): void {
  const seen = new Set<string>();
  for (const host of request.hosts) {
    if (seen.has(host.id)) throw new InvalidInputError(`duplicate host id "${host.id}" in the inventory`);
    seen.add(host.id);
  }
  const vmIds = new Set<string>();
  for (const vm of request.vms) {
    if (vmIds.has(vm.id)) throw new InvalidInputError(`duplicate VM id "${vm.id}" in the placement request`);
    vmIds.add(vm.id);
  }
}
