import type { Labels, Ownership } from '@novacron/core';
import { el, renderXml, type XmlElement } from '../xml/XmlBuilder.js';
import { childrenOf, type XmlNode } from '../xml/parseXml.js';

/**
 * NovaCron's record on each domain, in libvirt's `<metadata>`: who owns it (fleet, group,
 * index, spec hash) and what it was made from. It is the source of truth for `list`, so a
 * fleet can be reconciled from any machine without a state file. Versioned by namespace:
 * a future `/vm/2` would be read alongside this one, never in place of it.
 */
export const NOVACRON_XMLNS = 'https://novacron.dev/xmlns/vm/1';
export const NOVACRON_PREFIX = 'novacron';

export interface NovaCronMetadata extends Ownership {
  /** The logical image name from the fleet spec. */
  readonly image: string;
  /** Root disk size as created or last resized (GiB), so `list` needs no per-disk call. */
  readonly diskGiB: number;
  readonly labels: Labels;
  /** ISO 8601 time the VM was created. */
  readonly createdAt: string;
}

/**
 * The element as it goes into domain XML (`novacron:vm` with its namespace declared), or,
 * with `forMetadataCommand`, bare (`vm`) as `virsh metadata --set` wants it: libvirt then
 * applies the namespace and prefix given by `--uri` and `--key` (see metadataCommand).
 */
export function metadataElement(meta: NovaCronMetadata, options: { forMetadataCommand?: boolean } = {}): XmlElement {
  const bare = options.forMetadataCommand === true;
  const n = (local: string) => (bare ? local : `${NOVACRON_PREFIX}:${local}`);
  return el(
    n('vm'),
    {
      ...(bare ? {} : { [`xmlns:${NOVACRON_PREFIX}`]: NOVACRON_XMLNS }),
      fleet: meta.fleet,
      group: meta.group,
      index: meta.index,
      specHash: meta.specHash,
      image: meta.image,
      diskGiB: meta.diskGiB,
      createdAt: meta.createdAt,
    },
    ...Object.entries(meta.labels)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, value]) => el(n('label'), { key, value })),
  );
}

/**
 * Finds NovaCron's element among `<metadata>`'s children by namespace URI, whatever prefix
 * libvirt or another tool wrote it with. Returns undefined for domains NovaCron did not make
 * (or whose record is unreadable: such a domain is treated as foreign, never as ours).
 */
export function readMetadata(metadata: XmlNode | undefined): NovaCronMetadata | undefined {
  if (!metadata) return undefined;
  for (const [name, nodes] of metadata.children) {
    const colon = name.indexOf(':');
    const prefix = colon < 0 ? undefined : name.slice(0, colon);
    const local = colon < 0 ? name : name.slice(colon + 1);
    if (local !== 'vm') continue;
    for (const node of nodes) {
      const ns = prefix === undefined ? node.attrs['xmlns'] : node.attrs[`xmlns:${prefix}`];
      if (ns !== NOVACRON_XMLNS) continue;
      const parsed = fromNode(node, prefix);
      if (parsed) return parsed;
    }
  }
  return undefined;
}

function fromNode(node: XmlNode, prefix: string | undefined): NovaCronMetadata | undefined {
  const a = node.attrs;
  const index = Number(a['index']);
  const diskGiB = Number(a['diskGiB']);
  if (!a['fleet'] || a['group'] === undefined || !Number.isInteger(index) || index < 0) return undefined;
  const labels: Record<string, string> = {};
  for (const label of childrenOf(node, prefix === undefined ? 'label' : `${prefix}:label`)) {
    const key = label.attrs['key'];
    if (key !== undefined) labels[key] = label.attrs['value'] ?? '';
  }
  return {
    fleet: a['fleet'],
    group: a['group'],
    index,
    specHash: a['specHash'] ?? '',
    image: a['image'] ?? 'unknown',
    diskGiB: Number.isFinite(diskGiB) && diskGiB > 0 ? diskGiB : 0,
    labels,
    createdAt: a['createdAt'] ?? '',
  };
}

/** virsh arguments that replace the record on a defined domain (`--live` too while it runs). */
export function metadataCommand(domain: string, meta: NovaCronMetadata, live: boolean): string[] {
  const xml = renderXml(metadataElement(meta, { forMetadataCommand: true })).trim();
  return ['metadata', domain, NOVACRON_XMLNS, '--key', NOVACRON_PREFIX, '--set', xml, '--config', ...(live ? ['--live'] : [])];
}
