import { buildDomainXml, parseDomainXml, serialLogPath } from '../domain/domainXml.js';
import { el, renderXml } from '../xml/XmlBuilder.js';
import { child, childrenOf, parseXml, textOf, type XmlNode } from '../xml/parseXml.js';

/**
 * A VM restored from a snapshot under a new name belongs to no fleet: it carries no
 * `novacron:vm` record (so `list` never counts it and reconcile leaves it alone) but a record
 * of its own, in its own namespace, saying where it came from. Its labels are the ones the
 * other providers put on restored VMs.
 */
export const RESTORED_XMLNS = 'https://novacron.dev/xmlns/restored/1';
export const RESTORED_PREFIX = 'novacron-restored';
export const LABEL_FROM = 'novacron.io/restored-from';
export const LABEL_SNAPSHOT = 'novacron.io/snapshot';
export const LABEL_SCRATCH = 'novacron.io/scratch';

export interface RestoredRecord {
  readonly from: string;
  readonly snapshot: string;
  readonly scratch: boolean;
  /** The fleet image the source VM was made from (what its boot marker is looked up by). */
  readonly image: string;
}

export function restoredLabels(r: RestoredRecord): Record<string, string> {
  return { [LABEL_FROM]: r.from, [LABEL_SNAPSHOT]: r.snapshot, ...(r.scratch ? { [LABEL_SCRATCH]: 'true' } : {}) };
}

export interface RestoredDomainOptions {
  readonly name: string;
  readonly pool: string;
  readonly volume: string;
  readonly network: string;
  readonly record: RestoredRecord;
}

/**
 * The restored VM's domain: the source's size, domain type and boot (kernel, initrd, command
 * line) as its XML stood at backup time, one virtio disk (the restored image), a NIC on the
 * host's network with a new MAC, its own serial log. No cloud-init seed: the disk is the
 * source's, with whatever cloud-init already did on it.
 */
export function restoredDomainXml(sourceXml: string, options: RestoredDomainOptions): string {
  const info = parseDomainXml(sourceXml);
  const os = child(parseXml(sourceXml).node, 'os');
  const kernel = textOf(os, 'kernel');
  const initrd = textOf(os, 'initrd');
  const cmdline = textOf(os, 'cmdline');
  const xml = buildDomainXml({
    name: options.name,
    type: info.type === 'kvm' ? 'kvm' : 'qemu',
    vcpus: info.vcpus,
    maxVcpus: info.maxVcpus,
    memoryMiB: info.memoryMiB,
    maxMemoryMiB: info.maxMemoryMiB,
    ...(kernel ? { kernel: { kernel, ...(initrd ? { initrd } : {}), ...(cmdline ? { cmdline } : {}) } } : {}),
    disks: [{ device: 'disk', pool: options.pool, volume: options.volume, format: 'qcow2', target: 'vda', bus: 'virtio' }],
    network: options.network,
    serialLog: serialLogPath(options.name),
    // Replaced below: buildDomainXml always writes an ownership record, and this VM has none.
    metadata: { fleet: '', group: '', index: 0, specHash: '', image: options.record.image, diskGiB: 0, labels: {}, createdAt: '' },
    description: `Restored by NovaCron from snapshot ${options.record.snapshot} of VM ${options.record.from}; belongs to no fleet`,
  });
  const record = renderXml(restoredElement(options.record)).trim();
  const replaced = xml.replace(/<metadata>[\s\S]*?<\/metadata>/, `<metadata>\n    ${record}\n  </metadata>`);
  if (replaced === xml) throw new Error('domain XML without <metadata>');
  return replaced;
}

function restoredElement(r: RestoredRecord) {
  return el(`${RESTORED_PREFIX}:restored`, {
    [`xmlns:${RESTORED_PREFIX}`]: RESTORED_XMLNS,
    from: r.from,
    snapshot: r.snapshot,
    scratch: r.scratch ? 'true' : 'false',
    image: r.image,
  });
}

/** The restored record in a domain's XML, whatever prefix it was written with; undefined for other domains. */
export function readRestored(domainXml: string): RestoredRecord | undefined {
  let metadata: XmlNode | undefined;
  try {
    metadata = child(parseXml(domainXml).node, 'metadata');
  } catch {
    return undefined;
  }
  for (const [name, nodes] of metadata?.children ?? []) {
    const colon = name.indexOf(':');
    const prefix = colon < 0 ? undefined : name.slice(0, colon);
    if ((colon < 0 ? name : name.slice(colon + 1)) !== 'restored') continue;
    for (const node of nodes) {
      const ns = prefix === undefined ? node.attrs['xmlns'] : node.attrs[`xmlns:${prefix}`];
      if (ns !== RESTORED_XMLNS || !node.attrs['from'] || !node.attrs['snapshot']) continue;
      return { from: node.attrs['from'], snapshot: node.attrs['snapshot'], scratch: node.attrs['scratch'] === 'true', image: node.attrs['image'] ?? '' };
    }
  }
  return undefined;
}

/** libvirt names a `-blockdev` disk's format node `libvirt-<index>-format` after its `<source index>` (live XML). */
export function formatNodeName(liveXml: string, target: string): string | undefined {
  const devices = child(parseXml(liveXml).node, 'devices');
  for (const disk of childrenOf(devices, 'disk')) {
    if (child(disk, 'target')?.attrs['dev'] !== target) continue;
    const index = child(disk, 'source')?.attrs['index'];
    return index ? `libvirt-${index}-format` : undefined;
  }
  return undefined;
}
