import { el, renderXml } from '../xml/XmlBuilder.js';

/**
 * libvirt's push-mode backup job: `virsh backup-begin DOMAIN BACKUP.xml CHECKPOINT.xml`
 * copies the disk (all of it, or with `<incremental>` the blocks changed since a checkpoint)
 * into a qcow2 file libvirt creates, and atomically starts a new checkpoint (a persistent
 * dirty bitmap in the disk's qcow2) that the next incremental starts from. Only `vda` is
 * backed up; every other disk (the cloud-init seed) is left out of both.
 */
export function backupXml(options: { readonly target: string; readonly incrementalFrom?: string; readonly otherDisks: readonly string[]; readonly disk?: string }): string {
  const disk = options.disk ?? 'vda';
  return renderXml(
    el(
      'domainbackup',
      { mode: 'push' },
      options.incrementalFrom !== undefined && el('incremental', {}, options.incrementalFrom),
      el(
        'disks',
        {},
        el('disk', { name: disk, backup: 'yes', type: 'file' }, el('target', { file: options.target }), el('driver', { type: 'qcow2' })),
        ...options.otherDisks.map((d) => el('disk', { name: d, backup: 'no' })),
      ),
    ),
  );
}

export function checkpointXml(options: { readonly name: string; readonly otherDisks: readonly string[]; readonly disk?: string }): string {
  const disk = options.disk ?? 'vda';
  return renderXml(
    el(
      'domaincheckpoint',
      {},
      el('name', {}, options.name),
      el('description', {}, 'NovaCron backup checkpoint: the next incremental backup starts here'),
      el('disks', {}, el('disk', { name: disk, checkpoint: 'bitmap' }), ...options.otherDisks.map((d) => el('disk', { name: d, checkpoint: 'no' }))),
    ),
  );
}

export interface JobInfo {
  /** `None`, `Unbounded`, `Bounded`, and for `--completed`: `Completed`, `Failed`, `Cancelled`. */
  readonly type: string;
  readonly operation?: string;
  readonly processedBytes?: number;
  readonly totalBytes?: number;
  readonly error?: string;
}

const UNITS: Readonly<Record<string, number>> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4, PiB: 1024 ** 5 };

function bytes(text: string | undefined): number | undefined {
  const m = text ? /^([\d.]+)\s*([KMGTP]iB|B)$/.exec(text.trim()) : null;
  return m ? Math.round(Number(m[1]) * UNITS[m[2]!]!) : undefined;
}

/** `virsh domjobinfo` output (`Job type:         Unbounded`, `File processed:   1.000 GiB`, …). */
export function parseJobInfo(text: string): JobInfo {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const processed = bytes(fields.get('File processed'));
  const total = bytes(fields.get('File total'));
  return {
    type: fields.get('Job type') ?? 'None',
    ...(fields.get('Operation') ? { operation: fields.get('Operation')! } : {}),
    ...(processed !== undefined ? { processedBytes: processed } : {}),
    ...(total !== undefined ? { totalBytes: total } : {}),
    ...(fields.get('Error message') ? { error: fields.get('Error message')! } : {}),
  };
}

/** libvirt's word for a job that is still running. */
export function jobActive(info: JobInfo): boolean {
  return info.type === 'Unbounded' || info.type === 'Bounded';
}
