import * as pulumi from '@pulumi/pulumi';
import {
  groupResources,
  groupSpec,
  groupSpecHash,
  parseFleet,
  vmName,
  type FleetSpec,
  type FleetSpecInput,
  type GroupSpec,
  type Host,
  type ProviderConfig,
} from '@novacron/core';
import { layoutFleet, observeProviders, staticObserved, type FleetLayout, type VmPlacement } from './layout.js';
import { createRegistry } from './runtime/sessions.js';
import { isPlain, skeletonOf, type FleetSpecArgs } from './spec.js';
import { Vm } from './Vm.js';

export interface VmFleetArgs {
  /** The fleet, in the same shape as a fleet file (see `FleetSpecArgs` for what must be plain). */
  readonly spec: FleetSpecArgs;
  /**
   * Where placement gets its hosts.
   * - `'providers'`: asks the fleet's providers, from the program, in previews and updates:
   *   the inventory `novacron plan` sees. VMs that already run stay where they are.
   * - a list of hosts: a static inventory, for a preview without reaching the providers.
   *   Placement is then a pure function of spec and inventory; the hosts' `allocated` must
   *   not count this fleet's own VMs.
   * @default 'providers'
   */
  readonly inventory?: 'providers' | pulumi.Input<readonly Host[]>;
  /**
   * Environment entries the providers read credentials from (the variable a KVM host's
   * `passwordEnv` names, say), such as `KvmHost.credentials`. Merged in order, kept as a
   * secret in state, and given to the provider only inside its methods.
   */
  readonly credentials?: readonly pulumi.Input<Record<string, pulumi.Input<string>>>[];
}

/** One VM as the fleet reports it. */
export interface VmSummary {
  readonly name: string;
  readonly group: string;
  readonly provider: string;
  readonly host: string;
  readonly zone: string;
  readonly addresses: readonly string[];
  readonly state: string;
  readonly instanceType?: string;
}

/**
 * A NovaCron fleet in a Pulumi program: validated with the fleet model, placed by the core's
 * placement engine (the same engine and seed as the CLI and CDKTF), one `Vm` child per VM.
 */
export class VmFleet extends pulumi.ComponentResource {
  readonly fleetName: string;
  /** The VM resources, by VM name (`<fleet>-<group>-<index>`). */
  readonly vmResources: Readonly<Record<string, Vm>>;
  /** Each VM: provider, host, zone, addresses, state. */
  readonly vms: pulumi.Output<Record<string, VmSummary>>;
  /** Where each VM was placed and why, with the placement's objectives. */
  readonly placement: pulumi.Output<FleetLayout>;

  constructor(name: string, args: VmFleetArgs, opts?: pulumi.ComponentResourceOptions) {
    super('novacron:index:VmFleet', name, {}, opts);
    const source = `VmFleet "${name}"`;
    // A plain spec fails here, at once, with every problem and its path (and with a static
    // inventory, a fleet that does not fit fails here too); a spec with outputs in it fails the
    // same way as soon as they resolve, in the preview when they are known.
    let known: FleetLayout | undefined;
    if (isPlain(args.spec)) {
      const parsed = parseFleet(args.spec, source);
      if (args.inventory !== undefined && args.inventory !== 'providers' && isPlain(args.inventory)) {
        known = layoutFleet(parsed, staticObserved(parsed, args.inventory as readonly Host[]), 'static');
      }
    }
    const skeleton = skeletonOf(args.spec, source);
    this.fleetName = skeleton.name;

    const fleet = fleetOutput(args.spec, source);
    const credentials = mergeCredentials(args.credentials);
    const inventory = pulumi.output((args.inventory ?? 'providers') as pulumi.Input<'providers' | readonly Host[]>);

    // Placement results (host ids, scores) are not secret even when an input that shaped them
    // was; secret values themselves never enter the layout.
    this.placement = known
      ? pulumi.output(known)
      : pulumi.unsecret(
          pulumi.all([fleet, inventory, credentials ?? {}]).apply(async ([f, inv, creds]) => {
            const observed = inv === 'providers' ? await observeProviders(f, createRegistry(), { ...process.env, ...creds }) : staticObserved(f, inv);
            return layoutFleet(f, observed, inv === 'providers' ? 'providers' : 'static');
          }),
        );
    // Provider configs hold no secrets by design (passwords come from the environment).
    const providerConfigs = pulumi.unsecret(fleet.apply((f) => f.providers));
    const valid = pulumi.unsecret(fleet.apply(() => true));

    const vmResources: Record<string, Vm> = {};
    const groupOf: Record<string, string> = {};
    for (const group of skeleton.groups) {
      // Each group is normalised from its own inputs, so a secret in one group does not make
      // the others secret.
      const spec: pulumi.Output<GroupSpec> = pulumi
        .all([valid, pulumi.output(args.spec.groups[group.name] as pulumi.Input<unknown>)])
        .apply(([, raw]) => groupSpec.parse(raw));
      for (let index = 0; index < group.count; index++) {
        const vm = vmName(skeleton.name, group.name, index);
        groupOf[vm] = group.name;
        const placed: pulumi.Output<VmPlacement> = this.placement.apply((l) => l.vms[vm]!);
        vmResources[vm] = new Vm(
          vm,
          {
            fleet: skeleton.name,
            group: group.name,
            index,
            vmName: vm,
            providerName: placed.apply((p) => p.provider),
            providerConfig: pulumi.all([placed, providerConfigs]).apply(([p, configs]) => configs[p.provider] as ProviderConfig),
            host: placed.apply((p) => p.host),
            instanceType: placed.apply((p) => p.instanceType),
            resources: spec.apply(groupResources),
            image: spec.apply((g) => g.image),
            labels: spec.apply((g) => g.labels),
            specHash: spec.apply(groupSpecHash),
            cloudInit: pulumi.secret(spec.apply((g) => g.cloudInit)),
            nics: spec.apply((g) => g.nics),
            workload: spec.apply((g) => workloadOf(g)),
            migration: spec.apply((g) => g.migration),
            snapshots: spec.apply((g) => g.snapshots),
            changes: spec.apply((g) => g.changes),
            capabilities: pulumi.all([this.placement, placed]).apply(([l, p]) => l.capabilities[p.provider]),
            ...(credentials ? { credentials } : {}),
          },
          { parent: this },
        );
      }
    }
    this.vmResources = vmResources;

    this.vms = pulumi
      .all(
        Object.entries(vmResources).map(([vm, r]) =>
          pulumi.all([r.providerName, r.host, r.zone, r.addresses, r.state, r.instanceType]).apply(([provider, host, zone, addresses, state, instanceType]) => ({
            name: vm,
            group: groupOf[vm]!,
            provider,
            host,
            zone,
            addresses: addresses ?? [],
            state,
            ...(instanceType ? { instanceType } : {}),
          })),
        ),
      )
      .apply((list) => Object.fromEntries(list.map((v) => [v.name, v])));

    this.registerOutputs({ vms: this.vms, placement: this.placement });
  }
}

/** The spec as the fleet model parses it, once every Input in it has resolved. */
export function fleetOutput(spec: FleetSpecArgs, source?: string): pulumi.Output<FleetSpec> {
  return pulumi.output(spec as unknown as pulumi.Input<FleetSpecInput>).apply((raw) => parseFleet(raw, source));
}

function workloadOf(group: GroupSpec): { workingSetMiB?: number; dirtyRateMiBps?: number } | undefined {
  const w = group.workload;
  if (!w) return undefined;
  return {
    ...(w.workingSet !== undefined ? { workingSetMiB: w.workingSet } : {}),
    ...(w.dirtyRateMiBps !== undefined ? { dirtyRateMiBps: w.dirtyRateMiBps } : {}),
  };
}

function mergeCredentials(list: VmFleetArgs['credentials']): pulumi.Output<Record<string, string>> | undefined {
  if (!list || list.length === 0) return undefined;
  return pulumi.secret(pulumi.all(list.map((c) => pulumi.output(c))).apply((maps) => Object.assign({}, ...maps) as Record<string, string>));
}
