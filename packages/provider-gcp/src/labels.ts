import type { protos } from '@google-cloud/compute';
import { hostId, renderUserData, type CloudInit, type Labels, type Ownership, type Resources, type VmRecord, type VmState } from '@novacron/core';

type Instance = protos.google.cloud.compute.v1.IInstance;
type MetadataItem = protos.google.cloud.compute.v1.IItems;

/**
 * Ownership is in labels (filterable: `labels.novacron-fleet = "shop"`); what labels cannot
 * hold (the fleet's image name, the requested size, the user's labels exactly as written:
 * GCE label values are lowercase `[a-z0-9_-]`) is in instance metadata.
 */
export const LABEL = {
  fleet: 'novacron-fleet',
  group: 'novacron-group',
  index: 'novacron-index',
  specHash: 'novacron-spec',
  vm: 'novacron-vm',
  image: 'novacron-image',
  sha256: 'novacron-sha256',
  restoreZone: 'novacron-zone',
  restoreType: 'novacron-type',
  scheduledFor: 'novacron-scheduled-for',
  verifiedAt: 'novacron-verified-at',
  verified: 'novacron-verified',
  verifiedMethod: 'novacron-verified-method',
  restoredFrom: 'novacron-restored-from',
  scratch: 'novacron-scratch',
} as const;

export const META = {
  image: 'novacron-image',
  resources: 'novacron-resources',
  labels: 'novacron-labels',
  userData: 'user-data',
  startupScript: 'startup-script',
  sshKeys: 'ssh-keys',
} as const;

const OWN_METADATA = new Set<string>(Object.values(META));

/** A string as a GCE label value: lowercase letters, digits, `_` and `-`, at most 63 characters. */
export function labelValue(value: string): string {
  return value.toLowerCase().replace(/[^a-z0-9_-]/g, '_').slice(0, 63);
}

/** A string as a GCE label key: as a value, and starting with a letter. */
export function labelKey(key: string): string {
  const v = labelValue(key);
  return /^[a-z]/.test(v) ? v : `l${v}`.slice(0, 63);
}

/** The user's labels as GCE can hold them; the exact ones go to metadata too. */
export function userLabels(labels: Labels): Record<string, string> {
  return Object.fromEntries(Object.entries(labels).map(([k, v]) => [labelKey(k), labelValue(v)]));
}

export function ownershipLabels(ownership: Ownership, labels: Labels): Record<string, string> {
  return {
    ...userLabels(labels),
    [LABEL.fleet]: ownership.fleet,
    [LABEL.group]: ownership.group,
    [LABEL.index]: String(ownership.index),
    [LABEL.specHash]: labelValue(ownership.specHash),
  };
}

export function formatResources(r: Resources): string {
  return `${r.cpu}/${r.memoryMiB}/${r.diskGiB}/${r.gpu}`;
}

export function parseResources(text: string | undefined | null): Resources | undefined {
  const parts = text?.split('/').map(Number);
  if (!parts || parts.length !== 4 || parts.some((n) => !Number.isFinite(n) || n < 0)) return undefined;
  const [cpu, memoryMiB, diskGiB, gpu] = parts as [number, number, number, number];
  return { cpu, memoryMiB, diskGiB, gpu };
}

/**
 * The metadata NovaCron writes: its own keys plus cloud-init's. `user-data` is what
 * cloud-init images read; a shell script is also set as `startup-script`, which Google's
 * guest agent runs on images without cloud-init (Debian, Rocky, COS); keys become
 * `ssh-keys` for the guest agent as user `novacron`.
 */
export function ownMetadata(image: string, resources: Resources, labels: Labels, cloudInit: CloudInit | undefined, seed: string): MetadataItem[] {
  const items: MetadataItem[] = [
    { key: META.image, value: image },
    { key: META.resources, value: formatResources(resources) },
    { key: META.labels, value: JSON.stringify(labels) },
  ];
  const userData = renderUserData(cloudInit, seed);
  if (userData !== undefined) items.push({ key: META.userData, value: userData });
  if (cloudInit?.userData?.startsWith('#!')) items.push({ key: META.startupScript, value: cloudInit.userData });
  const keys = cloudInit?.sshAuthorizedKeys ?? [];
  if (keys.length > 0) items.push({ key: META.sshKeys, value: keys.map((k) => `novacron:${k}`).join('\n') });
  return items;
}

/** Replaces NovaCron's own metadata keys, keeping every other key someone else set. */
export function mergeMetadata(current: readonly MetadataItem[] | null | undefined, own: readonly MetadataItem[]): MetadataItem[] {
  return [...(current ?? []).filter((i) => !OWN_METADATA.has(i.key ?? '')), ...own];
}

export function metadataValue(instance: Instance, key: string): string | undefined {
  return instance.metadata?.items?.find((i) => i.key === key)?.value ?? undefined;
}

/** The last path segment of a resource URL (`…/zones/us-central1-a` → `us-central1-a`). */
export function lastSegment(url: string | null | undefined): string {
  return (url ?? '').split('/').at(-1) ?? '';
}

export function vmState(status: string | null | undefined): VmState {
  switch (status) {
    case 'PROVISIONING':
    case 'STAGING':
      return 'creating';
    case 'RUNNING':
      return 'running';
    case 'STOPPING':
    case 'SUSPENDING':
    case 'TERMINATED':
    case 'STOPPED':
    case 'SUSPENDED':
      return 'stopped';
    default:
      return 'unknown';
  }
}

export function toVmRecord(provider: string, instance: Instance, typeSize: (type: string) => Resources | undefined): VmRecord {
  const labels = instance.labels ?? {};
  const zone = lastSegment(instance.zone);
  const type = lastSegment(instance.machineType);
  let userLabelsExact: Labels | undefined;
  try {
    const parsed: unknown = JSON.parse(metadataValue(instance, META.labels) ?? 'null');
    if (parsed && typeof parsed === 'object') userLabelsExact = parsed as Labels;
  } catch {
    userLabelsExact = undefined;
  }
  const addresses = (instance.networkInterfaces ?? []).flatMap((nic) => [
    ...(nic.networkIP ? [{ address: nic.networkIP, source: 'api' as const, interface: nic.name ?? 'nic0' }] : []),
    ...(nic.accessConfigs ?? []).filter((a) => a.natIP).map((a) => ({ address: a.natIP!, source: 'api' as const, interface: `${nic.name ?? 'nic0'}-external` })),
  ]);
  const bootSize = Number((instance.disks ?? []).find((d) => d.boot)?.diskSizeGb ?? 0);
  const sized = typeSize(type);
  return {
    name: instance.name ?? '',
    id: String(instance.id ?? instance.name ?? ''),
    provider,
    fleet: labels[LABEL.fleet] ?? '',
    group: labels[LABEL.group] ?? '',
    index: Number(labels[LABEL.index] ?? 0) || 0,
    specHash: labels[LABEL.specHash] ?? '',
    host: hostId(provider, zone),
    zone,
    state: vmState(instance.status),
    resources: parseResources(metadataValue(instance, META.resources)) ?? (sized ? { ...sized, diskGiB: bootSize } : { cpu: 0, memoryMiB: 0, diskGiB: bootSize, gpu: 0 }),
    image: metadataValue(instance, META.image) ?? lastSegment((instance.disks ?? []).find((d) => d.boot)?.source),
    labels: userLabelsExact ?? Object.fromEntries(Object.entries(labels).filter(([k]) => !k.startsWith('novacron-'))),
    addresses,
    // In order (nic0 first); a NIC's network by its name, as a fleet names it. Compute Engine reports no MAC or model.
    ...(instance.networkInterfaces?.length ? { nics: instance.networkInterfaces.map((nic) => ({ network: lastSegment(nic.network ?? undefined), ...(nic.name ? { id: nic.name } : {}) })) } : {}),
    ...(type ? { instanceType: type } : {}),
    ...(instance.creationTimestamp ? { createdAt: new Date(instance.creationTimestamp).toISOString() } : {}),
  };
}
