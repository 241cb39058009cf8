import type { CloudInit, FleetSpec, GroupSpec, PlacementRules } from '../model/fleet.js';
import type { Resources } from '../model/records.js';
import { stableHash } from '../util/hash.js';

/** One VM the fleet asks for. */
export interface DesiredVm {
  readonly name: string;
  readonly group: string;
  readonly index: number;
  readonly resources: Resources;
  readonly image: string;
  readonly specHash: string;
  readonly spec: GroupSpec;
}

/** VM names are `<fleet>-<group>-<index>`: stable, so every create is idempotent on its name. */
export function vmName(fleet: string, group: string, index: number): string {
  return `${fleet}-${group}-${index}`;
}

export function groupResources(group: GroupSpec): Resources {
  return { cpu: group.cpu, memoryMiB: group.memory, diskGiB: group.disk, gpu: group.gpu };
}

/** The hash recorded on each VM: the fields that shape it. Labels and policies are not part of it. */
export function groupSpecHash(group: GroupSpec): string {
  return specHashOf(groupResources(group), group.image, group.cloudInit);
}

/**
 * The spec hash of a VM of this size and image with this cloud-init data (what
 * `groupSpecHash` gives a group of that size, image and data): the planner computes it for a
 * VM's own size and image to tell a cloud-init change from a change of size or image.
 */
export function specHashOf(resources: Resources, image: string, cloudInit: CloudInit | undefined): string {
  return stableHash({
    resources: { cpu: resources.cpu, memoryMiB: resources.memoryMiB, diskGiB: resources.diskGiB, gpu: resources.gpu },
    image,
    userData: cloudInit?.userData,
    keys: cloudInit?.sshAuthorizedKeys,
  });
}

/** Every VM of the fleet, in group order then index order. */
export function expandFleet(fleet: FleetSpec): DesiredVm[] {
  const out: DesiredVm[] = [];
  for (const [group, spec] of Object.entries(fleet.groups)) {
    const resources = groupResources(spec);
    const specHash = groupSpecHash(spec);
    for (let index = 0; index < spec.count; index++) {
      out.push({ name: vmName(fleet.name, group, index), group, index, resources, image: spec.image, specHash, spec });
    }
  }
  return out;
}

/** Every group's placement rules, as `place` reads them (groups scaled to 0 included, so rules naming them hold). */
export function fleetGroupRules(fleet: FleetSpec): Record<string, PlacementRules> {
  return Object.fromEntries(Object.entries(fleet.groups).map(([name, group]) => [name, group.placement]));
}
