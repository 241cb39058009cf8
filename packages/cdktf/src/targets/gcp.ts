import { InvalidInputError, type GcpProviderConfig } from '@novacron/core';
import { ComputeInstance } from '../generated/google/compute-instance/index.js';
import { GoogleProvider } from '../generated/google/provider/index.js';
import { renderUserData } from '../cloudInit.js';
import { gceLabels, gceMetadata } from '../ownership.js';
import type { SynthesizedVm, Target } from './types.js';

/** Compute Engine: one `google` provider alias per fleet provider, a `google_compute_instance` per VM. */
export const gcpTarget: Target<GcpProviderConfig> = ({ scope, fleet, providerName, config, vms }) => {
  if (vms.length === 0) return [];
  const provider = new GoogleProvider(scope, 'google', { alias: providerName, project: config.project, ...(config.region ? { region: config.region } : {}) });
  return vms.map((vm): SynthesizedVm => {
    const where = `providers.${providerName}`;
    const image = config.images[vm.spec.image];
    if (!image) {
      throw new InvalidInputError(`VM "${vm.name}" was placed on GCP provider "${providerName}", which does not map image "${vm.spec.image}"`, {
        context: { vm: vm.name, path: `${where}.images` },
        hint: `add images.${vm.spec.image}: projects/…/global/images/… to ${where}`,
      });
    }
    if (!vm.instanceType) {
      throw new InvalidInputError(`VM "${vm.name}" was placed on "${vm.host.id}" without a machine type: that inventory host lists no instance types`, {
        context: { vm: vm.name, host: vm.host.id },
        hint: 'a GCP zone in the inventory carries instanceTypes (name, cpu, memoryMiB, pricePerHour)',
      });
    }
    const userData = renderUserData(vm.spec.cloudInit, vm.name);
    const instance = new ComputeInstance(scope, vm.name, {
      provider,
      name: vm.name,
      machineType: vm.instanceType,
      zone: vm.host.zone,
      labels: gceLabels(fleet.name, vm, config.labels),
      metadata: gceMetadata(vm, config.labels, userData),
      bootDisk: { autoDelete: true, initializeParams: { image, size: vm.resources.diskGiB, type: config.diskType } },
      // The group's NICs (one per VPC network, in order), else the provider's network and subnetwork.
      networkInterface: vm.spec.nics
        ? vm.spec.nics.map((nic) => ({ network: nic.network }))
        : [{ ...(config.network ? { network: config.network } : { network: 'default' }), ...(config.subnetwork ? { subnetwork: config.subnetwork } : {}) }],
    });
    return { name: vm.name, provider: providerName, host: vm.host.id, resource: instance };
  });
};
