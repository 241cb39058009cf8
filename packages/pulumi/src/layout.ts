import {
  expandFleet,
  InvalidInputError,
  observe,
  plan,
  splitHostId,
  systemClock,
  type Capabilities,
  type FleetSpec,
  type Host,
  type Observed,
  type PlacementObjectives,
  type ProviderRegistry,
} from '@novacron/core';

/** Where one VM goes, and why. */
export interface VmPlacement {
  readonly vm: string;
  readonly group: string;
  readonly provider: string;
  readonly host: string;
  readonly instanceType?: string;
  readonly reason: string;
  readonly scores: Readonly<Record<string, number>>;
}

/** The placement of a whole fleet, as VmFleet outputs it. */
export interface FleetLayout {
  /** Where the hosts came from: asked of the providers, or given. */
  readonly inventory: 'providers' | 'static';
  readonly vms: Readonly<Record<string, VmPlacement>>;
  readonly objectives: PlacementObjectives;
  /** What each provider can do, when the providers were asked. */
  readonly capabilities: Readonly<Record<string, Capabilities>>;
}

/**
 * Places a fleet with the core's planner, exactly as `novacron plan` does: VMs that already
 * run stay where they are (unless the plan replaces them), new ones go where the placement
 * engine puts them, with the fleet's seed and weights. A fleet with VMs that fit nowhere is
 * refused, as `novacron apply` refuses it.
 */
export function layoutFleet(fleet: FleetSpec, observed: Observed, inventory: FleetLayout['inventory']): FleetLayout {
  const planned = plan(fleet, observed);
  if (planned.unplaced.length > 0) {
    const lines = planned.unplaced.map((u) => `  ${u.id}: ${u.message}`);
    throw new InvalidInputError(`${planned.unplaced.length} VM(s) fit nowhere; nothing was changed:\n${lines.join('\n')}`, {
      hint: 'add capacity, relax the placement rules or lower the count',
    });
  }
  const current = new Map(observed.vms.filter((v) => v.fleet === fleet.name).map((v) => [v.name, v]));
  const hosts = new Map(observed.hosts.map((h) => [h.id, h]));
  const vms: Record<string, VmPlacement> = {};
  for (const want of expandFleet(fleet)) {
    const existing = current.get(want.name);
    const host = planned.placement.assignments[want.name] ?? existing?.host;
    if (!host) throw new InvalidInputError(`VM "${want.name}" was neither placed nor found`);
    const explanation = planned.placement.explanations[want.name];
    const instanceType = planned.placement.instanceTypes[want.name] ?? (explanation ? undefined : existing?.instanceType);
    vms[want.name] = {
      vm: want.name,
      group: want.group,
      provider: hosts.get(host)?.provider ?? splitHostId(host).provider,
      host,
      ...(instanceType ? { instanceType } : {}),
      reason: explanation?.reason ?? `already runs on ${host}; the plan keeps it there`,
      scores: explanation?.scores ?? {},
    };
  }
  return { inventory, vms, objectives: planned.placement.objectives, capabilities: observed.capabilities };
}

/** Asks every provider of the fleet for its hosts and the fleet's VMs, then closes them. */
export async function observeProviders(
  fleet: FleetSpec,
  registry: ProviderRegistry,
  env: Readonly<Record<string, string | undefined>>,
  cwd: string = process.cwd(),
): Promise<Observed> {
  const providers = await registry.open(fleet, { cwd, env, clock: systemClock });
  try {
    return await observe(fleet, providers);
  } finally {
    await providers.close();
  }
}

/** A static inventory as the planner sees it: these hosts, no VMs yet. */
export function staticObserved(fleet: FleetSpec, hosts: readonly Host[]): Observed {
  for (const host of hosts) {
    if (!(host.provider in fleet.providers)) {
      throw new InvalidInputError(`inventory host "${host.id}" belongs to provider "${host.provider}", which fleet "${fleet.name}" does not declare`, {
        hint: `declare providers.${host.provider} or drop the host from the inventory`,
      });
    }
  }
  return { hosts, vms: [], capabilities: {} };
}
