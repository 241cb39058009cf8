import type { FleetSpec } from '../model/fleet.js';
import type { OperationContext } from '../provider/Provider.js';
import type { ProviderSet } from '../provider/registry.js';
import type { Observed } from './types.js';

/** Asks every provider of the fleet, in parallel, for its hosts and the fleet's VMs. */
export async function observe(fleet: FleetSpec, providers: ProviderSet, ctx: OperationContext = {}): Promise<Observed> {
  const names = Object.keys(fleet.providers);
  const results = await Promise.all(
    names.map(async (name) => {
      const provider = providers.get(name);
      const [hosts, vms] = await Promise.all([provider.inventory(ctx), provider.list(fleet.name, ctx)]);
      return { name, hosts, vms, capabilities: provider.capabilities };
    }),
  );
  return {
    hosts: results.flatMap((r) => r.hosts),
    vms: results.flatMap((r) => r.vms),
    capabilities: Object.fromEntries(results.map((r) => [r.name, r.capabilities])),
  };
}
