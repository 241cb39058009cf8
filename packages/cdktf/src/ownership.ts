import type { PlacedVm } from './placement.js';

/**
 * Ownership recorded on each synthesized VM, in the places NovaCron's providers read it
 * (EC2 tags, GCE labels, libvirt domain metadata), so `novacron status` and a later
 * `novacron plan` see VMs that Terraform made as the fleet's own.
 */
export const AWS_TAG = {
  name: 'Name',
  fleet: 'novacron:fleet',
  group: 'novacron:group',
  index: 'novacron:index',
  specHash: 'novacron:spec-hash',
  image: 'novacron:image',
  resources: 'novacron:resources',
} as const;

export function awsTags(fleet: string, vm: PlacedVm, providerLabels: Readonly<Record<string, string>>): Record<string, string> {
  const r = vm.resources;
  return {
    ...providerLabels,
    ...vm.spec.labels,
    [AWS_TAG.name]: vm.name,
    [AWS_TAG.fleet]: fleet,
    [AWS_TAG.group]: vm.group,
    [AWS_TAG.index]: String(vm.index),
    [AWS_TAG.specHash]: vm.specHash,
    [AWS_TAG.image]: vm.spec.image,
    [AWS_TAG.resources]: `${r.cpu}/${r.memoryMiB}/${r.diskGiB}/${r.gpu}`,
  };
}

/** A string as a GCE label value: lowercase letters, digits, `_` and `-`, at most 63 characters. */
function labelValue(value: string): string {
  return value.toLowerCase().replace(/[^a-z0-9_-]/g, '_').slice(0, 63);
}

/** A string as a GCE label key: as a value, and starting with a letter. */
function labelKey(key: string): string {
  const v = labelValue(key);
  return /^[a-z]/.test(v) ? v : `l${v}`.slice(0, 63);
}

/**
 * GCE labels as the GCP provider writes and filters them (`labels.novacron-fleet = "shop"`):
 * the user's labels made fit for GCE, and the ownership labels.
 */
export function gceLabels(fleet: string, vm: PlacedVm, providerLabels: Readonly<Record<string, string>>): Record<string, string> {
  const user = { ...providerLabels, ...vm.spec.labels };
  return {
    ...Object.fromEntries(Object.entries(user).map(([k, v]) => [labelKey(k), labelValue(v)])),
    'novacron-fleet': fleet,
    'novacron-group': vm.group,
    'novacron-index': String(vm.index),
    'novacron-spec': labelValue(vm.specHash),
  };
}

/**
 * GCE metadata as the GCP provider writes it: what labels cannot hold (the image name, the
 * requested size, the labels exactly as written), and cloud-init's data (`user-data`; a shell
 * script also as `startup-script`; keys as `ssh-keys` for user `novacron`).
 */
export function gceMetadata(vm: PlacedVm, providerLabels: Readonly<Record<string, string>>, userData: string | undefined): Record<string, string> {
  const r = vm.resources;
  const keys = vm.spec.cloudInit?.sshAuthorizedKeys ?? [];
  return {
    'novacron-image': vm.spec.image,
    'novacron-resources': `${r.cpu}/${r.memoryMiB}/${r.diskGiB}/${r.gpu}`,
    'novacron-labels': JSON.stringify({ ...providerLabels, ...vm.spec.labels }),
    ...(userData !== undefined ? { 'user-data': userData } : {}),
    ...(vm.spec.cloudInit?.userData?.startsWith('#!') ? { 'startup-script': vm.spec.cloudInit.userData } : {}),
    ...(keys.length > 0 ? { 'ssh-keys': keys.map((k) => `novacron:${k}`).join('\n') } : {}),
  };
}

/** The namespace of NovaCron's element in a libvirt domain's `<metadata>`, as the KVM provider reads it. */
export const LIBVIRT_METADATA_NS = 'https://novacron.dev/xmlns/vm/1';

/**
 * NovaCron's record in a libvirt domain's `<metadata>`, in the shape the KVM provider writes
 * and reads (`<novacron:vm fleet group index specHash image diskGiB>` with a
 * `<novacron:label key value/>` per label), so `novacron status` sees Terraform-made VMs as
 * the fleet's own.
 */
export function libvirtMetadata(fleet: string, vm: PlacedVm): string {
  const attr = (value: string | number) => String(value).replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const labels = Object.entries(vm.spec.labels)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, value]) => `<novacron:label key="${attr(key)}" value="${attr(value)}"/>`)
    .join('');
  const attrs = `xmlns:novacron="${LIBVIRT_METADATA_NS}" fleet="${attr(fleet)}" group="${attr(vm.group)}" index="${vm.index}" specHash="${attr(vm.specHash)}" image="${attr(vm.spec.image)}" diskGiB="${vm.resources.diskGiB}"`;
  return labels ? `<novacron:vm ${attrs}>${labels}</novacron:vm>` : `<novacron:vm ${attrs}/>`;
}
