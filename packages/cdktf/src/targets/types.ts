import type { TerraformResource } from 'cdktf';
import type { Construct } from 'constructs';
import type { FleetSpec, ProviderConfig } from '@novacron/core';
import type { PlacedVm } from '../placement.js';

export interface TargetOptions {
  /** Directory of each libvirt storage pool on the hosts, for base volumes given by name. */
  readonly poolPaths: Readonly<Record<string, string>>;
}

/** What a target synthesizes from: one provider of the fleet and the VMs placed on it. */
export interface TargetContext<C extends ProviderConfig = ProviderConfig> {
  /** A scope of its own per fleet provider, so resource names never collide across providers. */
  readonly scope: Construct;
  readonly fleet: FleetSpec;
  readonly providerName: string;
  readonly config: C;
  readonly vms: readonly PlacedVm[];
  readonly options: TargetOptions;
}

/** A VM as synthesized: its main resource (domain, instance, …). */
export interface SynthesizedVm {
  readonly name: string;
  readonly provider: string;
  readonly host: string;
  readonly resource: TerraformResource;
}

export type Target<C extends ProviderConfig> = (context: TargetContext<C>) => SynthesizedVm[];
