import type { FleetSpec } from '../model/fleet.js';
import { defaultMiddlewareStack } from '../provider/defaultStack.js';
import type { MiddlewareStack } from '../provider/middleware.js';
import type { OperationContext } from '../provider/Provider.js';
import type { ProviderSet } from '../provider/registry.js';
import type { Observed } from './types.js';

/**
 * Asks every provider of the fleet, in parallel, for its hosts and the fleet's VMs, through
 * the same retries and pacing as apply, so one throttled list does not fail a plan.
 */
export async function observe(fleet: FleetSpec, set: ProviderSet, ctx: OperationContext = {}, options: { readonly middleware?: MiddlewareStack } = {}): Promise<Observed> {
  const stack = options.middleware ?? defaultMiddlewareStack();
  const providers = set.map((p) => stack.wrap(p));
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
