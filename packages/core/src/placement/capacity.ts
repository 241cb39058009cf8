import type { Host, InstanceType, Resources } from '../model/records.js';

/** Usable capacity of a host in each dimension, overcommit applied. */
export function effectiveCapacity(host: Host): Resources {
  return {
    cpu: host.capacity.cpu * host.overcommit.cpu,
    memoryMiB: host.capacity.memoryMiB * host.overcommit.memory,
    diskGiB: host.capacity.diskGiB * host.overcommit.disk,
    gpu: host.capacity.gpu,
  };
}

/** The cheapest instance type a VM fits, or undefined. Ties go to the smaller type, then the name. */
export function cheapestFit(types: readonly InstanceType[], need: Resources): InstanceType | undefined {
  let best: InstanceType | undefined;
  for (const t of types) {
    if (t.cpu < need.cpu || t.memoryMiB < need.memoryMiB || (t.gpu ?? 0) < need.gpu) continue;
    if (
      !best ||
      t.pricePerHour < best.pricePerHour ||
      (t.pricePerHour === best.pricePerHour && (t.memoryMiB < best.memoryMiB || (t.memoryMiB === best.memoryMiB && t.name < best.name)))
    ) {
      best = t;
    }
  }
  return best;
}
