import * as pulumi from '@pulumi/pulumi';
import type { Capabilities, CloudInit, GroupSpec, MigrationPolicy, NicSpec, ProviderConfig, Resources, SnapshotPolicy, VmNic } from '@novacron/core';
import { vmProvider } from './provider/vmProvider.js';
import type { VmLastChange } from './runtime/vmInputs.js';

/** The inputs of one VM. VmFleet fills them; use `Vm` directly only to manage a single VM by hand. */
export interface VmArgs {
  readonly fleet: pulumi.Input<string>;
  readonly group: pulumi.Input<string>;
  readonly index: pulumi.Input<number>;
  /** `<fleet>-<group>-<index>`. */
  readonly vmName: pulumi.Input<string>;
  /** The provider's name in the fleet spec (`providers.<name>`). */
  readonly providerName: pulumi.Input<string>;
  readonly providerConfig: pulumi.Input<ProviderConfig>;
  /** Host id chosen by placement: `<provider>/<host>`. */
  readonly host: pulumi.Input<string>;
  readonly instanceType?: pulumi.Input<string | undefined>;
  readonly resources: pulumi.Input<Resources>;
  readonly image: pulumi.Input<string>;
  readonly labels: pulumi.Input<Record<string, string>>;
  readonly specHash: pulumi.Input<string>;
  /** Kept as a secret: user data often carries passwords. */
  readonly cloudInit?: pulumi.Input<CloudInit | undefined>;
  /** The group's NICs; absent: the provider's default NIC, never compared. */
  readonly nics?: pulumi.Input<readonly NicSpec[] | undefined>;
  readonly workload?: pulumi.Input<{ workingSetMiB?: number; dirtyRateMiBps?: number } | undefined>;
  readonly migration: pulumi.Input<MigrationPolicy>;
  readonly snapshots?: pulumi.Input<SnapshotPolicy | undefined>;
  /** The group's policy for changes to running VMs. */
  readonly changes?: pulumi.Input<GroupSpec['changes'] | undefined>;
  readonly capabilities?: pulumi.Input<Capabilities | undefined>;
  /** Environment entries the provider reads credentials from. Kept as a secret. */
  readonly credentials?: pulumi.Input<Record<string, pulumi.Input<string>>>;
}

/** Type token of the VM resource. Dynamic resources live in Pulumi's `pulumi-nodejs` package. */
export const VM_TYPE = 'pulumi-nodejs:dynamic/novacron:Vm';

/**
 * One VM, made and changed through NovaCron's providers by the dynamic provider
 * `novacron:Vm` (its `check` validates with the fleet model, its `diff` classifies changes as
 * in-place, hot-plug, migrate, reboot or replace).
 */
export class Vm extends pulumi.dynamic.Resource {
  declare readonly vmName: pulumi.Output<string>;
  declare readonly providerName: pulumi.Output<string>;
  declare readonly host: pulumi.Output<string>;
  declare readonly zone: pulumi.Output<string>;
  declare readonly addresses: pulumi.Output<string[]>;
  declare readonly state: pulumi.Output<string>;
  declare readonly vmId: pulumi.Output<string>;
  declare readonly instanceType: pulumi.Output<string | undefined>;
  declare readonly resources: pulumi.Output<Resources>;
  declare readonly image: pulumi.Output<string>;
  declare readonly lastChange: pulumi.Output<VmLastChange | undefined>;
  /** The NICs the provider reports (network, MAC, model). */
  declare readonly observedNics: pulumi.Output<VmNic[] | undefined>;

  constructor(name: string, args: VmArgs, opts: pulumi.CustomResourceOptions = {}) {
    super(
      vmProvider,
      name,
      { ...args, zone: undefined, addresses: undefined, state: undefined, vmId: undefined, lastChange: undefined, observedNics: undefined },
      { ...opts, additionalSecretOutputs: [...(opts.additionalSecretOutputs ?? []), 'credentials', 'cloudInit'] },
      'novacron',
      'Vm',
    );
  }
}
