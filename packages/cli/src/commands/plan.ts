import { InvalidInputError, observe, parseRebalance as parseTarget, parseWeights, plan, resolveWeights, type FleetSpec, type Host, type Plan, type PlacementWeights, type PlanOptions, type ProviderSet, type RebalanceTarget } from '@novacron/core';
import { loadFleet, withProviders, writeJson, type GlobalOptions, type Io } from '../context.js';
import { planJson, renderPlan } from '../output/plan.js';
import { EXIT } from '../exit.js';

export async function computePlan(fleet: FleetSpec, providers: ProviderSet, destroy = false, rebalance?: RebalanceTarget, weights?: PlacementWeights): Promise<Plan> {
  return (await computePlanWithOptions(fleet, providers, destroy, rebalance, weights)).plan;
}

/** The plan, and the options it was made with (drained hosts named by id), for `apply` to plan again with. */
export async function computePlanWithOptions(fleet: FleetSpec, providers: ProviderSet, destroy = false, rebalance?: RebalanceTarget, weights?: PlacementWeights): Promise<{ plan: Plan; options: PlanOptions }> {
  const observed = await observe(fleet, providers);
  const target = rebalance?.kind === 'drain' ? { ...rebalance, hosts: rebalance.hosts.map((h) => hostId(observed.hosts, h)) } : rebalance;
  const options: PlanOptions = { destroy, ...(target ? { rebalance: target } : {}), ...(weights ? { weights } : {}) };
  return { plan: plan(fleet, observed, options), options };
}

/** A host given by id (`lab/host-3`) or by name (`host-3`, when one provider has it). */
function hostId(hosts: readonly Host[], given: string): string {
  if (hosts.some((h) => h.id === given)) return given;
  const named = hosts.filter((h) => h.name === given);
  if (named.length === 1) return named[0]!.id;
  throw new InvalidInputError(named.length ? `--rebalance drain:${given}: ${named.length} providers have a host "${given}" (${named.map((h) => h.id).join(', ')})` : `--rebalance drain:${given}: no host "${given}" among the fleet's providers`, {
    hint: named.length ? 'name it by id (provider/host)' : `known hosts: ${hosts.slice(0, 10).map((h) => h.id).join(', ')}${hosts.length > 10 ? ', …' : ''}`,
  });
}

/**
 * `--weights cost=1,balance=0.5`: the soft rules' weights for this plan. They are the whole
 * objective, as in the fleet file: they replace its `placement.weights`, and a rule left out
 * counts 0.
 */
export function weightsFlag(value: string | undefined): PlacementWeights | undefined {
  return value === undefined ? undefined : resolveWeights(parseWeights(value));
}

/**
 * `--rebalance balance[:MAX_IMBALANCE]|consolidate[:MAX_ACTIVE_HOSTS]|drain:HOST[,HOST…]`
 * (hosts by id or name): where VMs run is otherwise never
 * compared with where placement would put them (a VM moved by hand or by a drain is not
 * drift); with it, the plan also moves running VMs toward the target.
 */
export function parseRebalance(value: string | undefined): RebalanceTarget | undefined {
  if (value === undefined) return undefined;
  if (!/^(balance|consolidate|drain)(:|$)/.test(value)) {
    throw new InvalidInputError(`--rebalance ${value}: expected balance, consolidate or drain:HOST[,HOST…]`, { hint: 'e.g. --rebalance balance; consolidate:N and balance:X set a goal' });
  }
  return parseTarget(value);
}

/** `novacron plan`: what apply would do, and why. Exit 2 when some VM fits nowhere. */
export async function planCommand(io: Io, options: GlobalOptions & { rebalance?: string; weights?: string }): Promise<number> {
  const fleet = await loadFleet(io, options);
  const rebalance = parseRebalance(options.rebalance);
  const weights = weightsFlag(options.weights);
  const result = await withProviders(io, options, fleet, (providers) => computePlan(fleet, providers, false, rebalance, weights));
  if (options.json) writeJson(io, planJson(result));
  else io.stdout.write(`${renderPlan(result)}\n`);
  return result.unplaced.length > 0 ? EXIT.invalid : EXIT.ok;
}
