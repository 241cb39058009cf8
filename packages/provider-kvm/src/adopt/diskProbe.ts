import { randomBytes } from 'node:crypto';
import type { DomainInfo } from '../domain/domainXml.js';
import type { Virsh } from '../virsh/Virsh.js';

/** What adoption needs to know of a domain's root disk: its size and what it was cloned from. */
export interface RootDiskFacts {
  readonly capacityBytes?: number;
  /** The disk's file on the host. */
  readonly path?: string;
  /** The qcow2 backing file, when the disk is an overlay. */
  readonly backingFile?: string;
  readonly format?: string;
}

/** The first disk that is not a cdrom: what a VM boots from and NovaCron calls its root disk. */
export function rootDiskOf(info: DomainInfo): DomainInfo['disks'][number] | undefined {
  return info.disks.find((d) => d.device === 'disk');
}

/**
 * Reads the root disk of each domain in one round trip: `domblkinfo` for its capacity,
 * `vol-path` for a volume's file, and `qemu-img info -U` (read without taking the running
 * guest's lock) for its backing file. Domains without a disk are left out of the answer.
 */
export async function probeRootDisks(virsh: Virsh, domains: readonly DomainInfo[], signal?: AbortSignal): Promise<Map<string, RootDiskFacts>> {
  const out = new Map<string, RootDiskFacts>();
  const marker = `@@novacron-${randomBytes(8).toString('hex')}`;
  const q = (s: string) => virsh.quote(s);
  const lines = [`s() { printf '\\n%s %s %d\\n' ${marker} "$1" "$2"; }`];
  const probed: DomainInfo[] = [];
  for (const info of domains) {
    const disk = rootDiskOf(info);
    if (!disk || !disk.target) continue;
    const i = probed.push(info) - 1;
    lines.push(`${virsh.commandLine(['domblkinfo', info.uuid || info.name, disk.target])} </dev/null; s info-${i} $?`);
    if (disk.file) lines.push(`p=${q(disk.file)}`);
    else if (disk.pool && disk.volume) lines.push(`p=$(${virsh.commandLine(['vol-path', '--pool', disk.pool, disk.volume])} </dev/null)`);
    else lines.push(`p=''`);
    lines.push(`printf '%s' "$p"; s path-${i} 0`);
    lines.push(`if [ -n "$p" ] && command -v qemu-img >/dev/null 2>&1; then qemu-img info -U --output=json "$p" </dev/null 2>/dev/null; s img-${i} $?; else s img-${i} 127; fi`);
  }
  if (probed.length === 0) return out;
  const result = await virsh.script(lines.join('\n'), { ...(signal ? { signal } : {}), timeoutMs: 120_000 });
  const sections = new Map<string, { text: string; code: number }>();
  let from = 0;
  for (const m of result.stdout.matchAll(new RegExp(`\\n${marker} (\\S+) (\\d+)\\n`, 'g'))) {
    sections.set(m[1]!, { text: result.stdout.slice(from, m.index), code: Number(m[2]) });
    from = m.index + m[0].length;
  }
  for (const [i, info] of probed.entries()) {
    const blk = sections.get(`info-${i}`);
    const capacity = blk?.code === 0 ? Number(/Capacity:\s+(\d+)/.exec(blk.text)?.[1]) : NaN;
    const path = sections.get(`path-${i}`)?.text.trim() || undefined;
    const img = sections.get(`img-${i}`);
    let backingFile: string | undefined;
    let format: string | undefined;
    if (img?.code === 0) {
      try {
        const parsed = JSON.parse(img.text) as { 'full-backing-filename'?: string; 'backing-filename'?: string; format?: string };
        backingFile = parsed['full-backing-filename'] ?? parsed['backing-filename'];
        format = parsed.format;
      } catch {
        // not JSON: an old qemu-img; the backing file stays unknown
      }
    }
    out.set(info.uuid || info.name, {
      ...(Number.isFinite(capacity) ? { capacityBytes: capacity } : {}),
      ...(path ? { path } : {}),
      ...(backingFile ? { backingFile } : {}),
      ...(format ? { format } : {}),
    });
  }
  return out;
}
