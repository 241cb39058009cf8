import { ConflictError, NotFoundError, type ErrorContext } from '@novacron/core';
import type { DomainInfo } from '../domain/domainXml.js';
import type { Virsh } from '../virsh/Virsh.js';
import { child, parseXml, textOf } from '../xml/parseXml.js';
import { sshCommand, shellQuote, virshLine, type HostLink } from './sshLink.js';

/** A volume as `virsh vol-dumpxml` describes it. */
export interface VolumeInfo {
  readonly name: string;
  readonly path: string;
  readonly format: string;
  readonly capacityBytes: number;
  readonly allocationBytes: number;
  /** The file's length: what a copy of the file moves. */
  readonly physicalBytes: number;
  readonly backing?: { readonly path: string; readonly format: string };
}

export function parseVolumeXml(xml: string): VolumeInfo {
  const { node } = parseXml(xml);
  const bytes = (name: string) => Number(child(node, name)?.text ?? 0);
  const target = child(node, 'target');
  const backingStore = child(node, 'backingStore');
  const backingPath = textOf(backingStore, 'path');
  return {
    name: textOf(node, 'name') ?? '',
    path: textOf(target, 'path') ?? '',
    format: child(target, 'format')?.attrs['type'] ?? 'raw',
    capacityBytes: bytes('capacity'),
    allocationBytes: bytes('allocation'),
    physicalBytes: bytes('physical') || bytes('allocation'),
    ...(backingPath ? { backing: { path: backingPath, format: child(backingStore, 'format')?.attrs['type'] ?? 'raw' } } : {}),
  };
}

/** The domain's disks that are volumes in `pool`: what a move must carry. */
export function poolDisks(info: DomainInfo, pool: string): { volume: string; device: string; target: string; readonly: boolean }[] {
  return info.disks
    .filter((d) => d.pool === pool && d.volume)
    .map((d) => ({ volume: d.volume!, device: d.device, target: d.target, readonly: d.device === 'cdrom' }));
}

export async function readVolumes(virsh: Virsh, pool: string, names: readonly string[], opts: { signal?: AbortSignal; vm?: string; operation?: string }): Promise<VolumeInfo[]> {
  const results = await virsh.batch(
    names.map((v) => ['vol-dumpxml', '--pool', pool, v]),
    opts,
  );
  return names.map((name, i) => {
    const r = results[i];
    if (!r) throw new NotFoundError(`${virsh.host}: no answer for volume ${name}`, { context: virsh.context(opts), retryable: true });
    if (r.error) throw r.error;
    return parseVolumeXml(r.stdout);
  });
}

/** The last path component: a backing file's volume name in the pool. */
export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export interface CopyResult {
  readonly bytes: number;
  readonly sha256: string;
}

/**
 * Copies a volume's file from the source host to the destination host, straight between
 * them over SSH (the data never passes through NovaCron), and proves the copy: sha256 of
 * the stream as it leaves the source, and sha256 of the stored copy read back on the
 * destination; they must be equal. The destination volume is made empty first and refreshed
 * after, so libvirt reads its format and size from the copied content. A qcow2 overlay whose
 * backing file sits at another path on the destination is pointed at the destination's copy
 * of the same base volume (a header change only, after the checksum).
 */
export async function copyVolume(
  source: Virsh,
  destination: Virsh,
  to: HostLink,
  volume: VolumeInfo,
  pools: { source: string; destination: string },
  opts: { signal?: AbortSignal; vm?: string; context: ErrorContext },
): Promise<CopyResult> {
  const callOpts = { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.vm ? { vm: opts.vm } : {}), operation: 'migrate' };
  const made = await destination.tryRun(['vol-create-as', pools.destination, volume.name, '0', '--format', 'raw'], callOpts);
  if (made.error) throw made.error;
  const remote = [
    `${virshLine(['vol-upload', '--pool', pools.destination, volume.name, '/dev/stdin'])} || exit 1`,
    `${virshLine(['pool-refresh', pools.destination])} >/dev/null </dev/null`,
    `${virshLine(['vol-download', '--pool', pools.destination, volume.name, '/dev/stdout'])} </dev/null | sha256sum | sed 's/ .*//; s/^/dest=/'`,
  ].join('\n');
  const script = [
    't=$(mktemp -d /tmp/novacron-copy.XXXXXXXX) || exit 1',
    'mkfifo "$t"/f || exit 1',
    'sha256sum <"$t"/f >"$t"/sum & h=$!',
    `{ ${virshLine(['vol-download', '--pool', pools.source, volume.name, '/dev/stdout'])} </dev/null; echo $? >"$t"/dl; } | tee "$t"/f | ${sshCommand(to, remote)} >"$t"/remote 2>"$t"/remote.err; up=$?`,
    'wait $h',
    'echo "download=$(cat "$t"/dl)"; echo "upload=$up"; echo "source=$(cut -d" " -f1 "$t"/sum)"; cat "$t"/remote; cat "$t"/remote.err >&2',
    'rm -rf "$t"',
  ].join('\n');
  const r = await source.script(script, { ...(opts.signal ? { signal: opts.signal } : {}) });
  const field = (k: string) => new RegExp(`^${k}=(\\S*)$`, 'm').exec(r.stdout)?.[1] ?? '';
  const [download, upload, sent, stored] = [field('download'), field('upload'), field('source'), field('dest')];
  if (download !== '0' || upload !== '0' || !/^[0-9a-f]{64}$/.test(sent)) {
    throw new ConflictError(`${source.host}: copying volume ${volume.name} to ${destination.host} failed (download exit ${download || '?'}, upload exit ${upload || '?'}): ${r.stderr.trim().slice(0, 400) || 'no message'}`, {
      context: opts.context,
      hint: 'the VM was not moved; check that the source host can reach the destination over SSH and that the destination pool has room',
      retryable: true,
    });
  }
  if (sent !== stored) {
    throw new ConflictError(`${destination.host}: the copy of ${volume.name} does not match the source (sha256 ${sent.slice(0, 12)}… sent, ${stored.slice(0, 12) || 'nothing'}… stored)`, {
      context: opts.context,
      hint: 'the VM was not moved; the copy was corrupted in transit or on the destination disk: retry, and check the destination storage',
      retryable: true,
    });
  }
  if (volume.backing) await repointBacking(destination, pools.destination, volume, callOpts);
  return { bytes: volume.physicalBytes, sha256: sent };
}

/** After a verbatim copy: a backing path that does not exist on the destination is replaced by the destination's copy of that base volume. */
async function repointBacking(destination: Virsh, pool: string, volume: VolumeInfo, opts: { signal?: AbortSignal; vm?: string; operation: string }): Promise<void> {
  const backing = volume.backing!;
  const q = shellQuote;
  const script = [
    `p=$(${virshLine(['vol-path', '--pool', pool, volume.name])}) || exit 1`,
    `[ -e ${q(backing.path)} ] && exit 0`,
    `b=$(${virshLine(['vol-path', '--pool', pool, baseName(backing.path)])}) || { echo 'error: the base volume ${baseName(backing.path)} is not in pool ${pool}' >&2; exit 1; }`,
    `qemu-img rebase -u -F ${q(backing.format)} -b "$b" "$p"`,
  ].join('\n');
  const r = await destination.script(script, opts);
  if (r.code !== 0) throw new NotFoundError(`${destination.host}: cannot point ${volume.name} at its base image: ${r.stderr.trim().slice(0, 300)}`, { context: destination.context(opts), hint: 'put the image the VM was made from into the destination pool' });
}
