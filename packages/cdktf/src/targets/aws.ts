import { InvalidInputError, type AwsProviderConfig } from '@novacron/core';
import { DataAwsAmi } from '../generated/aws/data-aws-ami/index.js';
import { Instance } from '../generated/aws/instance/index.js';
import { AwsProvider } from '../generated/aws/provider/index.js';
import { renderUserData } from '../cloudInit.js';
import { awsTags } from '../ownership.js';
import type { SynthesizedVm, Target } from './types.js';

/**
 * EC2: one `aws` provider alias per fleet provider, an `aws_instance` per VM in the zone placement
 * chose. An image mapped to an AMI id is used as is; one mapped to `owner/name-pattern` (as the AWS
 * provider reads it) becomes a `data.aws_ami` lookup per image — that owner, names matching the
 * pattern, available, the most recent — whose id the instances launch, ignoring later changes.
 */
export const awsTarget: Target<AwsProviderConfig> = ({ scope, fleet, providerName, config, vms }) => {
  if (vms.length === 0) return [];
  const provider = new AwsProvider(scope, 'aws', { alias: providerName, region: config.region, ...(config.profile ? { profile: config.profile } : {}) });
  const lookups = new Map<string, DataAwsAmi>();
  const amiFor = (vm: (typeof vms)[number], where: string): { ami: string; lookedUp: boolean } => {
    const image = vm.spec.image;
    const ref = config.images[image];
    if (!ref) {
      throw new InvalidInputError(`VM "${vm.name}" was placed on AWS provider "${providerName}", which does not map image "${image}" to an AMI`, {
        context: { vm: vm.name, path: `${where}.images` },
        hint: `add images.${image}: ami-… (or owner/name-pattern) to ${where}`,
      });
    }
    if (ref.startsWith('ami-')) return { ami: ref, lookedUp: false };
    const pattern = parseAmiPattern(ref);
    if (!pattern) {
      throw new InvalidInputError(`image "${image}" maps to "${ref}", which is neither an AMI id (ami-…) nor owner/name-pattern`, {
        context: { vm: vm.name, path: `${where}.images.${image}` },
        hint: 'use an AMI id, e.g. ami-0abcdef1234567890, or owner/name-pattern, e.g. 136693071363/debian-12-amd64-*',
      });
    }
    let lookup = lookups.get(image);
    if (!lookup) {
      // The id ends in "-ami", which no VM name (…-<index>) does.
      lookup = new DataAwsAmi(scope, `${image}-ami`, {
        provider,
        owners: [pattern.owner],
        mostRecent: true,
        filter: [
          { name: 'name', values: [pattern.name] },
          { name: 'state', values: ['available'] },
        ],
      });
      lookups.set(image, lookup);
    }
    return { ami: lookup.id, lookedUp: true };
  };
  return vms.map((vm): SynthesizedVm => {
    const where = `providers.${providerName}`;
    const { ami, lookedUp } = amiFor(vm, where);
    if (!vm.instanceType) {
      throw new InvalidInputError(`VM "${vm.name}" was placed on "${vm.host.id}" without an instance type: that inventory host lists no instance types`, {
        context: { vm: vm.name, host: vm.host.id },
        hint: 'an AWS zone in the inventory carries instanceTypes (name, cpu, memoryMiB, pricePerHour)',
      });
    }
    const nics = vm.spec.nics;
    if (nics && nics.length > 1) {
      // More NICs need aws_network_interface resources, which this target does not synthesize (yet).
      throw new InvalidInputError(`VM "${vm.name}" declares ${nics.length} NICs; the CDKTF AWS target makes one NIC per instance`, {
        context: { vm: vm.name, path: `groups.${vm.group}.nics` },
        hint: 'declare one NIC (its subnet) for groups placed on AWS, or manage the fleet with the SDK or Pulumi, whose AWS provider makes every NIC',
      });
    }
    const subnet = nics ? nics[0]!.network : config.subnetIds?.[vm.host.zone];
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
      // A looked-up AMI is resolved again at every plan; a newer match must not replace running
      // VMs (the AWS provider, too, resolves the pattern only when it creates a VM).
      ...(lookedUp ? { lifecycle: { ignoreChanges: ['ami'] } } : {}),
    });
    return { name: vm.name, provider: providerName, host: vm.host.id, resource: instance };
  });
};

/** `owner/name-pattern` (the AWS provider's image reference besides an AMI id): the owner is up to the first slash. */
function parseAmiPattern(ref: string): { owner: string; name: string } | undefined {
  const slash = ref.indexOf('/');
  if (slash <= 0 || slash === ref.length - 1) return undefined;
  return { owner: ref.slice(0, slash), name: ref.slice(slash + 1) };
}
