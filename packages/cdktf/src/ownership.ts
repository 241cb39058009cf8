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

/** GCE label keys take lowercase letters, digits, `-` and `_` only. */
export function gceLabels(fleet: string, vm: PlacedVm, providerLabels: Readonly<Record<string, string>>): Record<string, string> {
  return {
    ...providerLabels,
    ...vm.spec.labels,
    'novacron-fleet': fleet,
    'novacron-group': vm.group,
    'novacron-index': String(vm.index),
    'novacron-spec-hash': vm.specHash,
  };
}

export const LIBVIRT_METADATA_NS = 'https://novacron.dev/xmlns/vm/1';

/** The `<metadata>` element of a libvirt domain: one namespaced element carrying ownership. */
export function libvirtMetadata(fleet: string, vm: PlacedVm): string {
  const attr = (value: string) => value.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
  return `<novacron:vm xmlns:novacron="${LIBVIRT_METADATA_NS}" fleet="${attr(fleet)}" group="${attr(vm.group)}" index="${vm.index}" spec-hash="${attr(vm.specHash)}" image="${attr(vm.spec.image)}"/>`;
}
