import { InvalidInputError, observe, plan, type FleetSpec, type Plan, type ProviderSet, type RebalanceTarget } from '@novacron/core';
import { loadFleet, withProviders, writeJson, type GlobalOptions, type Io } from '../context.js';
import { planJson, renderPlan } from '../output/plan.js';
import { EXIT } from '../exit.js';

export async function computePlan(fleet: FleetSpec, providers: ProviderSet, destroy = false, rebalance?: RebalanceTarget): Promise<Plan> {
  return plan(fleet, await observe(fleet, providers), { destroy, ...(rebalance ? { rebalance } : {}) });
}

/**
 * `--rebalance balance|consolidate|drain:HOST[,HOST…]`: where VMs run is otherwise never
 * compared with where placement would put them (a VM moved by hand or by a drain is not
 * drift); with it, the plan also moves running VMs toward the target.
 */
export function parseRebalance(value: string | undefined): RebalanceTarget | undefined {
  if (value === undefined) return undefined;
  if (value === 'balance' || value === 'consolidate') return { kind: value };
  const drain = /^drain:(.+)$/.exec(value);
  if (drain) return { kind: 'drain', hosts: drain[1]!.split(',').map((h) => h.trim()).filter(Boolean) };
  throw new InvalidInputError(`--rebalance ${value}: expected balance, consolidate or drain:HOST[,HOST…]`, { hint: 'e.g. --rebalance balance' });
}

/** `novacron plan`: what apply would do, and why. Exit 2 when some VM fits nowhere. */
export async function planCommand(io: Io, options: GlobalOptions & { rebalance?: string }): Promise<number> {
  const fleet = await loadFleet(io, options);
  const rebalance = parseRebalance(options.rebalance);
  const result = await withProviders(io, options, fleet, (providers) => computePlan(fleet, providers, false, rebalance));
  if (options.json) writeJson(io, planJson(result));
  else io.stdout.write(`${renderPlan(result)}\n`);
  return result.unplaced.length > 0 ? EXIT.invalid : EXIT.ok;
}
