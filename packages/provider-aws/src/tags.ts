import type { Instance, Tag } from '@aws-sdk/client-ec2';
import { hostId, type Labels, type Ownership, type Resources, type VmRecord, type VmState } from '@novacron/core';

/**
 * Ownership lives in tags on the instance (and its volumes and snapshots), so any machine
 * can reconcile the fleet without a state file. Keys are namespaced; user labels become
 * plain tags so they show up in cost allocation reports as users named them.
 */
export const TAG = {
  name: 'Name',
  fleet: 'novacron:fleet',
  group: 'novacron:group',
  index: 'novacron:index',
  specHash: 'novacron:spec-hash',
  /** The fleet's image name (the AMI id says nothing about which fleet image it was). */
  image: 'novacron:image',
  /** What the group asked for; the instance type may be larger. `cpu/memoryMiB/diskGiB/gpu`. */
  resources: 'novacron:resources',
  vm: 'novacron:vm',
  snapshot: 'novacron:snapshot',
  device: 'novacron:device',
  sha256: 'novacron:sha256',
  /** On snapshots: what a restore into a new VM needs, `type|zone|arch|rootDevice|bootMode`. */
  restore: 'novacron:restore',
  verified: 'novacron:verified',
  scheduledFor: 'novacron:scheduled-for',
  /** On VMs restored as new ones. */
  restoredFrom: 'novacron:restored-from',
  scratch: 'novacron:scratch',
} as const;

const RESERVED = /^(novacron:|aws:)/;

export function ownershipTags(name: string, ownership: Ownership, image: string, resources: Resources, labels: Labels): Tag[] {
  return [
    ...Object.entries(labels).map(([Key, Value]) => ({ Key, Value })),
    { Key: TAG.name, Value: name },
    { Key: TAG.fleet, Value: ownership.fleet },
    { Key: TAG.group, Value: ownership.group },
    { Key: TAG.index, Value: String(ownership.index) },
    { Key: TAG.specHash, Value: ownership.specHash },
    { Key: TAG.image, Value: image },
    { Key: TAG.resources, Value: formatResources(resources) },
  ];
}

export function formatResources(r: Resources): string {
  return `${r.cpu}/${r.memoryMiB}/${r.diskGiB}/${r.gpu}`;
}

export function parseResources(text: string | undefined): Resources | undefined {
  const parts = text?.split('/').map(Number);
  if (!parts || parts.length !== 4 || parts.some((n) => !Number.isFinite(n) || n < 0)) return undefined;
  const [cpu, memoryMiB, diskGiB, gpu] = parts as [number, number, number, number];
  return { cpu, memoryMiB, diskGiB, gpu };
}

export function tagMap(tags: readonly Tag[] | undefined): Map<string, string> {
  return new Map((tags ?? []).filter((t) => t.Key !== undefined).map((t) => [t.Key!, t.Value ?? '']));
}

/** EC2 states as the core sees them. `stopping` counts as stopped: start waits for it to settle first. */
export function vmState(state: string | undefined): VmState {
  switch (state) {
    case 'pending':
      return 'creating';
    case 'running':
      return 'running';
    case 'stopping':
    case 'stopped':
      return 'stopped';
    default:
      return 'unknown';
  }
}

/**
 * An instance as a VmRecord. Resources are what the group asked for (from the tag), falling
 * back to the instance type's size for instances made by other tools.
 */
export function toVmRecord(provider: string, instance: Instance, typeSize: (type: string) => Resources | undefined): VmRecord {
  const tags = tagMap(instance.Tags);
  const zone = instance.Placement?.AvailabilityZone ?? 'unknown';
  const type = instance.InstanceType ?? '';
  const addresses = [
    ...(instance.PrivateIpAddress ? [{ address: instance.PrivateIpAddress, source: 'api' as const, interface: 'private' }] : []),
    ...(instance.PublicIpAddress ? [{ address: instance.PublicIpAddress, source: 'api' as const, interface: 'public' }] : []),
    ...(instance.Ipv6Address ? [{ address: instance.Ipv6Address, source: 'api' as const, interface: 'ipv6' }] : []),
  ];
  const labels: Record<string, string> = {};
  for (const [k, v] of tags) if (k !== TAG.name && !RESERVED.test(k)) labels[k] = v;
  return {
    name: tags.get(TAG.name) ?? instance.InstanceId ?? '',
    id: instance.InstanceId ?? '',
    provider,
    fleet: tags.get(TAG.fleet) ?? '',
    group: tags.get(TAG.group) ?? '',
    index: Number(tags.get(TAG.index) ?? 0) || 0,
    specHash: tags.get(TAG.specHash) ?? '',
    host: hostId(provider, zone),
    zone,
    state: vmState(instance.State?.Name),
    resources: parseResources(tags.get(TAG.resources)) ?? typeSize(type) ?? { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 },
    image: tags.get(TAG.image) ?? instance.ImageId ?? '',
    labels,
    addresses,
    ...(instance.NetworkInterfaces?.length
      ? {
          // By device index: the first is the primary. A NIC's network is its subnet; EC2 has no NIC model to report.
          nics: [...instance.NetworkInterfaces]
            .sort((a, b) => (a.Attachment?.DeviceIndex ?? 0) - (b.Attachment?.DeviceIndex ?? 0))
            .map((n) => ({ network: n.SubnetId ?? '', ...(n.MacAddress ? { mac: n.MacAddress } : {}), ...(n.NetworkInterfaceId ? { id: n.NetworkInterfaceId } : {}) })),
        }
      : {}),
    ...(type ? { instanceType: type } : {}),
    ...(instance.LaunchTime ? { createdAt: new Date(instance.LaunchTime).toISOString() } : {}),
  };
}

/**
 * The tags of a VM restored from a snapshot as a new one: its name, the fleet of the VM the
 * snapshot was taken of (what the documented IAM policy asks of every instance NovaCron
 * launches or terminates), the snapshot, and whether it is a restore test's scratch VM.
 * No group or index: it fills no slot of the fleet.
 */
export function restoredTags(name: string, fleet: string, snapshotId: string, scratch: boolean): Tag[] {
  return [
    { Key: TAG.name, Value: name },
    { Key: TAG.fleet, Value: fleet },
    { Key: TAG.restoredFrom, Value: snapshotId },
    ...(scratch ? [{ Key: TAG.scratch, Value: 'true' }] : []),
  ];
}

/** A VM restored from a snapshot as a new one (not a fleet VM, though it carries the fleet tag). */
export function isRestored(instance: Instance): boolean {
  return tagMap(instance.Tags).has(TAG.restoredFrom);
}

/**
 * An instance no fleet owns: no `novacron:fleet` tag, and not a VM NovaCron restored from a
 * snapshot (those carry the source's fleet tag; a restored or scratch tag alone still marks
 * one NovaCron made). What `listUnowned` lists and `adopt` takes.
 */
export function isUnowned(instance: Instance): boolean {
  const tags = tagMap(instance.Tags);
  return !tags.has(TAG.fleet) && !tags.has(TAG.restoredFrom) && !tags.has(TAG.scratch);
}
