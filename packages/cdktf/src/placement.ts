import {
  expandFleet,
  groupSpecHash,
  InvalidInputError,
  plan,
  type FleetSpec,
  type GroupSpec,
  type Host,
  type PlacementObjectives,
  type Resources,
} from '@novacron/core';

/** One VM of the fleet with the host placement chose for it. */
export interface PlacedVm {
  readonly name: string;
  readonly group: string;
  readonly index: number;
  readonly spec: GroupSpec;
  readonly specHash: string;
  readonly resources: Resources;
  readonly provider: string;
  readonly host: Host;
  readonly instanceType?: string;
  /** Why placement chose this host. */
  readonly reason: string;
}

export interface FleetPlacement {
  readonly vms: readonly PlacedVm[];
  readonly objectives: PlacementObjectives;
}

/**
 * Places the fleet on a static inventory with the core's planner, as `novacron plan` places a
 * fleet nothing of which exists yet: the same engine, seed and weights, so the same fleet and
 * inventory give the same hosts from every front door. Synthesis is offline, so the inventory
 * is given rather than asked of the providers; a fleet with VMs that fit nowhere is refused.
 */
export function placeFleet(fleet: FleetSpec, inventory: readonly Host[]): FleetPlacement {
  for (const host of inventory) {
    if (!(host.provider in fleet.providers)) {
      throw new InvalidInputError(`inventory host "${host.id}" belongs to provider "${host.provider}", which fleet "${fleet.name}" does not declare`, {
        hint: `declare providers.${host.provider} or drop the host from the inventory`,
      });
    }
  }
  const planned = plan(fleet, { hosts: inventory, vms: [], capabilities: {} });
  if (planned.unplaced.length > 0) {
    const lines = planned.unplaced.map((u) => `  ${u.id}: ${u.message}`);
    throw new InvalidInputError(`${planned.unplaced.length} VM(s) fit nowhere; nothing was changed:\n${lines.join('\n')}`, {
      hint: 'add capacity, relax the placement rules or lower the count',
    });
  }
  const hosts = new Map(inventory.map((h) => [h.id, h]));
  const vms = expandFleet(fleet).map((want): PlacedVm => {
    const host = hosts.get(planned.placement.assignments[want.name]!)!;
    const instanceType = planned.placement.instanceTypes[want.name];
    return {
      name: want.name,
      group: want.group,
      index: want.index,
      spec: want.spec,
      specHash: groupSpecHash(want.spec),
      resources: want.resources,
      provider: host.provider,
      host,
      ...(instanceType ? { instanceType } : {}),
      reason: planned.placement.explanations[want.name]?.reason ?? '',
    };
  });
  return { vms, objectives: planned.placement.objectives };
}
