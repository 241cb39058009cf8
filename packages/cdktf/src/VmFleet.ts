import { TerraformOutput } from 'cdktf';
import { Construct } from 'constructs';
import { parseFleet, type FleetSpec, type FleetSpecInput, type Host, type ProviderConfig } from '@novacron/core';
import { placeFleet, type FleetPlacement, type PlacedVm } from './placement.js';
import { awsTarget } from './targets/aws.js';
import { gcpTarget } from './targets/gcp.js';
import { libvirtTarget } from './targets/libvirt.js';
import { simTarget } from './targets/sim.js';
import type { SynthesizedVm, Target, TargetOptions } from './targets/types.js';

export interface VmFleetProps {
  /** The fleet, in the same shape as a fleet file. Invalid specs fail at synth with every problem and its path. */
  readonly spec: FleetSpecInput;
  /**
   * The hosts to place on: KVM hosts with their capacity, cloud zones with their instance
   * types. Synthesis is offline, so the inventory is given, not asked of the providers; a
   * snapshot of `novacron`'s inventory, or one written by hand, both do.
   */
  readonly inventory: readonly Host[];
  /**
   * Directory of each libvirt storage pool, for images given as a base volume by name.
   * @default { default: '/var/lib/libvirt/images' }
   */
  readonly poolPaths?: Readonly<Record<string, string>>;
}

/** Which target synthesizes each provider kind. */
const TARGETS: { readonly [K in ProviderConfig['type']]: Target<Extract<ProviderConfig, { type: K }>> } = {
  kvm: libvirtTarget,
  aws: awsTarget,
  gcp: gcpTarget,
  sim: simTarget,
};

/**
 * A NovaCron fleet as Terraform resources: validated with the fleet model, placed by the core's
 * placement engine (the same engine and seed as the CLI and Pulumi), synthesized per provider
 * kind with bindings generated from the providers' schemas. Kept thin on purpose: CDKTF is
 * archived upstream, and everything of substance here is the core's.
 */
export class VmFleet extends Construct {
  readonly fleet: FleetSpec;
  readonly placement: FleetPlacement;
  /** The VMs' main resources (domain, instance), by VM name. */
  readonly vms: Readonly<Record<string, SynthesizedVm>>;

  constructor(scope: Construct, id: string, props: VmFleetProps) {
    super(scope, id);
    this.fleet = parseFleet(props.spec, `VmFleet "${id}"`);
    this.placement = placeFleet(this.fleet, props.inventory);
    const options: TargetOptions = { poolPaths: { default: '/var/lib/libvirt/images', ...props.poolPaths } };

    const vms: Record<string, SynthesizedVm> = {};
    for (const [providerName, config] of Object.entries(this.fleet.providers)) {
      const placed = this.placement.vms.filter((vm) => vm.provider === providerName);
      if (placed.length === 0) continue;
      const target = TARGETS[config.type] as Target<ProviderConfig>;
      const made = target({ scope: new Construct(this, providerName), fleet: this.fleet, providerName, config, vms: placed, options });
      for (const vm of made) vms[vm.name] = vm;
    }
    this.vms = vms;

    new TerraformOutput(this, 'placement', {
      description: `Where each VM of fleet ${this.fleet.name} was placed, and why`,
      value: Object.fromEntries(this.placement.vms.map((vm) => [vm.name, explain(vm)])),
    });
  }
}

function explain(vm: PlacedVm) {
  return { provider: vm.provider, host: vm.host.id, zone: vm.host.zone, ...(vm.instanceType ? { instanceType: vm.instanceType } : {}), reason: vm.reason };
}
