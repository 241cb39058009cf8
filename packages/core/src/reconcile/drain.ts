import { InvalidInputError } from '../errors/errors.js';
import type { FleetSpec } from '../model/fleet.js';
import { migrationPolicy, type MigrationPolicy } from '../model/policies.js';
import { rebalance } from '../placement/rebalance.js';
import type { PlacementResult, VmExplanation } from '../placement/types.js';
import { fleetGroupRules } from './desired.js';
import { naturalCompare, plan } from './plan.js';
import { emptySummary, type MigrateStep, type Observed, type Plan } from './types.js';

export interface DrainOptions {
  /** Overrides each group's migration mode. */
  readonly mode?: 'live' | 'cold';
  readonly policy?: Partial<MigrationPolicy>;
  readonly seed?: number;
}

/**
 * Moves every VM of the fleet off a host: the placement engine's `rebalance` with a drain
 * target (the host treated as draining, every other VM where it runs, every group's rules
 * held both ways), as migrate steps in the order they can run. Moves stay within the host's
 * provider. VMs that fit nowhere are listed as unplaced; an apply refuses such a plan.
 */
export function planDrain(fleet: FleetSpec, observed: Observed, host: string, options: DrainOptions = {}): Plan {
  const current = plan(fleet, observed);
  const target = observed.hosts.find((h) => h.id === host || h.name === host);
  if (!target) {
    throw new InvalidInputError(`no host "${host}" among the fleet's providers`, {
      hint: `known hosts: ${observed.hosts.slice(0, 10).map((h) => h.id).join(', ')}${observed.hosts.length > 10 ? ', …' : ''}`,
    });
  }
  const known = new Set(observed.hosts.map((h) => h.id));
  const vms = observed.vms.filter((vm) => known.has(vm.host)).sort((a, b) => naturalCompare(a.name, b.name));
  const byName = new Map(vms.map((vm) => [vm.name, vm]));
  const result = rebalance({
    hosts: observed.hosts,
    // Only the drained host's VMs move; the rest count where they run.
    vms: vms.map((vm) => ({ id: vm.name, group: vm.group, host: vm.host, resources: vm.resources, labels: vm.labels, movable: vm.host === target.id })),
    target: { kind: 'drain', hosts: [target.id] },
    groupRules: fleetGroupRules(fleet),
    ...(fleet.placement.weights ? { weights: fleet.placement.weights } : {}),
    seed: options.seed ?? fleet.placement.seed,
  });
  const steps: MigrateStep[] = [];
  const explanations: Record<string, VmExplanation> = {};
  for (const m of result.migrations) {
    const vm = byName.get(m.vm)!;
    const group = fleet.groups[vm.group];
    const policy: MigrationPolicy = { ...(group?.migration ?? migrationPolicy.parse({})), ...options.policy };
    const mode = options.mode ?? (policy.mode === 'cold' || !observed.capabilities[vm.provider]?.liveMigration || vm.state !== 'running' ? 'cold' : 'live');
    explanations[vm.name] = { host: m.to, reason: m.reason, scores: {} };
    steps.push({
      id: `migrate:${vm.name}`,
      kind: 'migrate',
      vm: vm.name,
      group: vm.group,
      provider: vm.provider,
      reason: m.reason,
      dependsOn: [],
      ref: { name: vm.name, fleet: fleet.name, id: vm.id, host: vm.host },
      from: vm.host,
      to: m.to,
      mode,
      policy: { ...policy, mode },
      memoryMiB: vm.resources.memoryMiB,
    });
  }
  const placement: PlacementResult = {
    assignments: Object.fromEntries(result.migrations.map((m) => [m.vm, m.to])),
    instanceTypes: {},
    unplaced: result.stuck,
    explanations,
    objectives: result.after,
    alternatives: [],
  };
  const staying = vms.filter((vm) => vm.host !== target.id).length;
  return { fleet: fleet.name, steps, unplaced: result.stuck, placement, summary: { ...emptySummary(), migrate: steps.length, unchanged: staying }, costPerHour: current.costPerHour };
}
