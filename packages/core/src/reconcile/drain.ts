import { InvalidInputError } from '../errors/errors.js';
import type { FleetSpec } from '../model/fleet.js';
import { migrationPolicy, type MigrationPolicy } from '../model/policies.js';
import type { Host } from '../model/records.js';
import { place } from '../placement/place.js';
import { naturalCompare, plan } from './plan.js';
import { emptySummary, type MigrateStep, type Observed, type Plan } from './types.js';

export interface DrainOptions {
  /** Overrides each group's migration mode. */
  readonly mode?: 'live' | 'cold';
  readonly policy?: Partial<MigrationPolicy>;
  readonly seed?: number;
}

/**
 * Moves every VM of the fleet off a host: places them on the other hosts (the drained one
 * treated as draining, the rest of the fleet where it is) and returns migrate steps. VMs
 * that fit nowhere are listed as unplaced; an apply refuses such a plan.
 */
export function planDrain(fleet: FleetSpec, observed: Observed, host: string, options: DrainOptions = {}): Plan {
  const current = plan(fleet, observed);
  const target = observed.hosts.find((h) => h.id === host || h.name === host);
  if (!target) {
    throw new InvalidInputError(`no host "${host}" among the fleet's providers`, {
      hint: `known hosts: ${observed.hosts.slice(0, 10).map((h) => h.id).join(', ')}${observed.hosts.length > 10 ? ', …' : ''}`,
    });
  }
  const leaving = observed.vms.filter((vm) => vm.host === target.id).sort((a, b) => naturalCompare(a.name, b.name));
  const staying = observed.vms.filter((vm) => vm.host !== target.id);
  // The drained host takes nothing; moves stay within its provider (cross-provider moves are their own path).
  const hosts: Host[] = observed.hosts.map((h) => (h.id === target.id ? { ...h, state: 'draining' as const } : h));
  const placement = place({
    hosts: hosts.filter((h) => h.provider === target.provider && !h.instanceTypes),
    vms: leaving.map((vm) => ({ id: vm.name, group: vm.group, resources: vm.resources, labels: vm.labels, rules: { ...(fleet.groups[vm.group]?.placement ?? {}), providers: [target.provider] } })),
    existing: staying.map((vm) => ({ id: vm.name, group: vm.group, host: vm.host })),
    seed: options.seed ?? fleet.placement.seed,
    weights: fleet.placement.weights,
  });
  const steps: MigrateStep[] = [];
  for (const vm of leaving) {
    const to = placement.assignments[vm.name];
    if (!to) continue;
    const group = fleet.groups[vm.group];
    const policy: MigrationPolicy = { ...(group?.migration ?? migrationPolicy.parse({})), ...options.policy };
    const mode = options.mode ?? (policy.mode === 'cold' || !observed.capabilities[vm.provider]?.liveMigration || vm.state !== 'running' ? 'cold' : 'live');
    steps.push({
      id: `migrate:${vm.name}`,
      kind: 'migrate',
      vm: vm.name,
      group: vm.group,
      provider: vm.provider,
      reason: `drain ${target.id}`,
      dependsOn: [],
      ref: { name: vm.name, fleet: fleet.name, id: vm.id, host: vm.host },
      from: vm.host,
      to,
      mode,
      policy: { ...policy, mode },
      memoryMiB: vm.resources.memoryMiB,
    });
  }
  return { fleet: fleet.name, steps, unplaced: placement.unplaced, placement, summary: { ...emptySummary(), migrate: steps.length, unchanged: staying.length }, costPerHour: current.costPerHour };
}
