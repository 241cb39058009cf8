import type { Image, Instance } from '@aws-sdk/client-ec2';
import type { Resources, UnownedVm, VmRecord } from '@novacron/core';
import { TAG, tagMap } from './tags.js';

/**
 * What adoption needs that an instance's own record does not say: the fleet image its AMI
 * is (from the provider's `images` map) and a size with the root volume's.
 */

/** The root EBS volume's id: the mapping on the root device, else the first EBS mapping. */
export function rootVolumeId(instance: Instance): string | undefined {
  const mappings = instance.BlockDeviceMappings ?? [];
  return (mappings.find((m) => m.DeviceName === instance.RootDeviceName) ?? mappings.find((m) => m.Ebs?.VolumeId))?.Ebs?.VolumeId;
}

/** Every EBS volume attached to the instance. */
export function volumeIds(instance: Instance): string[] {
  return (instance.BlockDeviceMappings ?? []).map((m) => m.Ebs?.VolumeId).filter((id): id is string => id !== undefined);
}

/**
 * The fleet image names an AMI is, per the provider's `images` map: an entry naming the AMI
 * id, else an `owner/name-pattern` entry the AMI matches (its owner id or alias, its name),
 * else the fleet image NovaCron imported it as (the AMI's `novacron:image` tag) when the map
 * does not name that image otherwise.
 */
export function fleetImagesOf(amiId: string, ami: Image | undefined, images: Readonly<Record<string, string>>): string[] {
  const exact = Object.entries(images).filter(([, ref]) => ref === amiId).map(([name]) => name);
  if (exact.length > 0 || !ami) return exact;
  const patterned = Object.entries(images)
    .filter(([, ref]) => !ref.startsWith('ami-') && ref.includes('/'))
    .filter(([, ref]) => {
      const slash = ref.indexOf('/');
      const owner = ref.slice(0, slash);
      return (owner === ami.OwnerId || owner === ami.ImageOwnerAlias) && ami.Name !== undefined && globMatch(ref.slice(slash + 1), ami.Name);
    })
    .map(([name]) => name);
  if (patterned.length > 0) return patterned;
  const imported = tagMap(ami.Tags).get(TAG.image);
  return imported && !(imported in images) ? [imported] : [];
}

/** An instance no fleet owns as `listUnowned` reports it. */
export function unownedVm(record: VmRecord, instance: Instance, resources: Resources, ami: Image | undefined, fleetImages: readonly string[]): UnownedVm {
  const amiId = instance.ImageId ?? '';
  const described = `AMI ${amiId || 'unknown'}${ami?.Name ? ` (${ami.Name})` : ''}`;
  return {
    name: record.name,
    id: record.id,
    provider: record.provider,
    host: record.host,
    zone: record.zone,
    state: record.state,
    resources,
    ...(fleetImages.length === 1 ? { image: fleetImages[0]! } : {}),
    imageSource: fleetImages.length > 1 ? `${described}, which images ${fleetImages.join(', ')} all name` : described,
    ...(fleetImages.length === 0 && amiId ? { imageSuggestion: { name: suggestedName(ami?.Name ?? amiId), config: amiId } } : {}),
    labels: record.labels,
    addresses: record.addresses,
  };
}

/** An AMI name as a fleet image name: `debian-12-amd64-20260101` → `debian-12-amd64-20260101`, lowercased and tidied. */
function suggestedName(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63) || 'image';
}

/** EC2 name filter semantics: `*` any run, `?` one character. */
function globMatch(pattern: string, value: string): boolean {
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`).test(value);
}
