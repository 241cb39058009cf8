import type { Host, Resources } from '../model/records.js';
import { effectiveCapacity } from './capacity.js';
import type { FilterState } from './filters.js';
import type { PlacedVm } from './types.js';

interface Mutable {
  cpu: number;
  memoryMiB: number;
  diskGiB: number;
  gpu: number;
}

/** Allocation during one placement run: starts from what hosts report and grows as VMs are placed. */
export class AllocationState implements FilterState {
  readonly #used = new Map<string, Mutable>();
  readonly #capacity = new Map<string, Resources>();
  readonly #groupCounts = new Map<string, number>();
  readonly #groupsByHost = new Map<string, Set<string>>();

  constructor(hosts: readonly Host[], existing: readonly PlacedVm[] = []) {
    for (const host of hosts) {
      this.#used.set(host.id, { ...host.allocated });
      this.#capacity.set(host.id, effectiveCapacity(host));
    }
    for (const vm of existing) this.#count(vm.group, vm.host, 1);
  }

  used(host: Host): Resources {
    return this.#used.get(host.id)!;
  }

  capacity(host: Host): Resources {
    return this.#capacity.get(host.id)!;
  }

  groupCountOnHost(group: string, host: Host): number {
    return this.#groupCounts.get(`${host.id}\u0000${group}`) ?? 0;
  }

  add(host: Host, group: string, resources: Resources): void {
    const used = this.#used.get(host.id)!;
    if (!host.instanceTypes) {
      used.cpu += resources.cpu;
      used.memoryMiB += resources.memoryMiB;
      used.diskGiB += resources.diskGiB;
      used.gpu += resources.gpu;
    }
    this.#count(group, host.id, 1);
  }

  /** True when the host carries any VM (reported or placed). */
  isActive(host: Host): boolean {
    const used = this.#used.get(host.id)!;
    return used.cpu > 0 || used.memoryMiB > 0 || (this.#groupsByHost.get(host.id)?.size ?? 0) > 0;
  }

  #count(group: string, host: string, delta: number): void {
    const key = `${host}\u0000${group}`;
    this.#groupCounts.set(key, (this.#groupCounts.get(key) ?? 0) + delta);
    let groups = this.#groupsByHost.get(host);
    if (!groups) this.#groupsByHost.set(host, (groups = new Set()));
    groups.add(group);
  }
}
