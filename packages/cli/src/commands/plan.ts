import { observe, plan, type FleetSpec, type Plan, type ProviderSet } from '@novacron/core';
import { loadFleet, withProviders, writeJson, type GlobalOptions, type Io } from '../context.js';
import { planJson, renderPlan } from '../output/plan.js';
import { EXIT } from '../exit.js';

export async function computePlan(fleet: FleetSpec, providers: ProviderSet, destroy = false): Promise<Plan> {
  return plan(fleet, await observe(fleet, providers), { destroy });
}

/** `novacron plan`: what apply would do, and why. Exit 2 when some VM fits nowhere. */
export async function planCommand(io: Io, options: GlobalOptions): Promise<number> {
  const fleet = await loadFleet(io, options);
  const result = await withProviders(io, options, fleet, (providers) => computePlan(fleet, providers));
  if (options.json) writeJson(io, planJson(result));
  else io.stdout.write(`${renderPlan(result)}\n`);
  return result.unplaced.length > 0 ? EXIT.invalid : EXIT.ok;
}
