import { InvalidInputError, type AwsProviderConfig } from '@novacron/core';
import { Instance } from '../generated/aws/instance/index.js';
import { AwsProvider } from '../generated/aws/provider/index.js';
import { renderUserData } from '../cloudInit.js';
import { awsTags } from '../ownership.js';
import type { SynthesizedVm, Target } from './types.js';

/** EC2: one `aws` provider alias per fleet provider, an `aws_instance` per VM in the zone placement chose. */
export const awsTarget: Target<AwsProviderConfig> = ({ scope, fleet, providerName, config, vms }) => {
  if (vms.length === 0) return [];
  const provider = new AwsProvider(scope, 'aws', { alias: providerName, region: config.region, ...(config.profile ? { profile: config.profile } : {}) });
  return vms.map((vm): SynthesizedVm => {
    const where = `providers.${providerName}`;
    const ami = config.images[vm.spec.image];
    if (!ami) {
      throw new InvalidInputError(`VM "${vm.name}" was placed on AWS provider "${providerName}", which does not map image "${vm.spec.image}" to an AMI`, {
        context: { vm: vm.name, path: `${where}.images` },
        hint: `add images.${vm.spec.image}: ami-… to ${where}`,
      });
    }
    if (!vm.instanceType) {
      throw new InvalidInputError(`VM "${vm.name}" was placed on "${vm.host.id}" without an instance type: that inventory host lists no instance types`, {
        context: { vm: vm.name, host: vm.host.id },
        hint: 'an AWS zone in the inventory carries instanceTypes (name, cpu, memoryMiB, pricePerHour)',
      });
    }
    const subnet = config.subnetIds?.[vm.host.zone];
    const userData = renderUserData(vm.spec.cloudInit, vm.name);
    const instance = new Instance(scope, vm.name, {
      provider,
      ami,
      instanceType: vm.instanceType,
      availabilityZone: vm.host.zone,
      ...(subnet ? { subnetId: subnet } : {}),
      ...(config.securityGroupIds ? { vpcSecurityGroupIds: [...config.securityGroupIds] } : {}),
      ...(config.keyName ? { keyName: config.keyName } : {}),
      ...(userData ? { userData } : {}),
      tags: awsTags(fleet.name, vm, config.labels),
      rootBlockDevice: { volumeSize: vm.resources.diskGiB, volumeType: config.diskType, deleteOnTermination: true },
    });
    return { name: vm.name, provider: providerName, host: vm.host.id, resource: instance };
  });
};
