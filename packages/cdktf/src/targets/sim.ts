import { DataResource } from 'cdktf';
import type { SimProviderConfig } from '@novacron/core';
import type { SynthesizedVm, Target } from './types.js';

/**
 * The simulated datacenter lives inside NovaCron's own process and has no Terraform provider.
 * Its VMs are recorded as `terraform_data` resources holding the placement, so a stack built
 * on the quickstart fleet synthesizes, plans and diffs like any other.
 */
export const simTarget: Target<SimProviderConfig> = ({ scope, fleet, providerName, vms }) =>
  vms.map((vm): SynthesizedVm => {
    const resource = new DataResource(scope, vm.name, {
      input: { fleet: fleet.name, group: vm.group, index: vm.index, provider: providerName, host: vm.host.id, resources: vm.resources, image: vm.spec.image, specHash: vm.specHash },
    });
    return { name: vm.name, provider: providerName, host: vm.host.id, resource };
  });
