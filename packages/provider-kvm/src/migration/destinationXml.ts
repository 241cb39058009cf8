/**
 * The destination's domain definitions, derived from the source's (libvirt's own
 * formatting, single-quoted attributes) with two changes:
 *
 * - `discard='unmap' detect_zeroes='unmap'` on qcow2 and raw disks. Beyond passing the
 *   guest's TRIM through, discard is what lets QEMU's storage copy skip zero areas (the NBD
 *   target may then write zeroes by unmapping): without it a 20 GiB disk holding 1 GiB of
 *   data sends 20 GiB. It applies to migrations *from* a domain defined this way, so a VM
 *   moved once moves sparsely after; detect_zeroes keeps the destination's disk sparse
 *   while the zeroes of that first, full copy arrive.
 * - For the live definition only, `-global migration.multifd-compression=…` when multifd
 *   compression is used: libvirt 9.0 cannot set it, and both QEMUs must agree before the
 *   first byte. Ours is removed first, so a definition never carries a stale setting.
 */
export const QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0';
const OUR_GLOBAL = /\s*<qemu:arg value='-global'\/>\s*<qemu:arg value='migration\.multifd-compression=[a-z]+'\/>/g;

export interface DestinationXmlOptions {
  readonly multifdCompression?: 'none' | 'zstd' | 'zlib';
}

export function destinationXml(xml: string, options: DestinationXmlOptions = {}): string {
  let out = withDiscardUnmap(xml).replace(OUR_GLOBAL, '');
  // An element emptied by the removal above goes too.
  out = out.replace(/\s*<qemu:commandline>\s*<\/qemu:commandline>/g, '');
  const compression = options.multifdCompression ?? 'none';
  if (compression === 'none') return out;
  const args = `<qemu:arg value='-global'/>\n    <qemu:arg value='migration.multifd-compression=${compression}'/>`;
  if (/<qemu:commandline>/.test(out)) return out.replace(/<qemu:commandline>/, `<qemu:commandline>\n    ${args}`);
  out = withQemuNamespace(out);
  return out.replace(/<\/domain>\s*$/, `  <qemu:commandline>\n    ${args}\n  </qemu:commandline>\n</domain>\n`);
}

function withQemuNamespace(xml: string): string {
  return xml.replace(/<domain\b([^>]*)>/, (whole, attrs: string) => (attrs.includes('xmlns:qemu=') ? whole : `<domain${attrs} xmlns:qemu='${QEMU_NS}'>`));
}

/** `discard='unmap' detect_zeroes='unmap'` on the driver of every qcow2 or raw `<disk device='disk'>`, where not set. */
function withDiscardUnmap(xml: string): string {
  return xml.replace(/<disk\b[^>]*device='disk'[^>]*>[\s\S]*?<\/disk>/g, (disk) =>
    disk.replace(/<driver\b([^>]*?)(\/?)>/, (whole, attrs: string, close: string) => {
      if (!/\btype='(?:qcow2|raw)'/.test(attrs)) return whole;
      const discard = /\bdiscard=/.test(attrs) ? '' : " discard='unmap'";
      const zeroes = /\bdetect_zeroes=/.test(attrs) ? '' : " detect_zeroes='unmap'";
      return `<driver${attrs}${discard}${zeroes}${close}>`;
    }),
  );
}

/** True when every qcow2/raw disk of the domain already lets the storage copy skip zeroes. */
export function copiesSparsely(xml: string): boolean {
  const disks = xml.match(/<disk\b[^>]*device='disk'[^>]*>[\s\S]*?<\/disk>/g) ?? [];
  return disks.every((d) => !/<driver\b[^>]*\btype='(?:qcow2|raw)'/.test(d) || /<driver\b[^>]*\bdiscard='unmap'/.test(d));
}
