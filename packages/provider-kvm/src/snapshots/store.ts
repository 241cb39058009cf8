import {
  AbortedError,
  InvalidInputError,
  NotFoundError,
  UnreachableError,
  type Clock,
  type KvmProviderConfig,
  type OperationContext,
  type StopOptions,
  type VmRecord,
  type VmRef,
} from '@novacron/core';
import type { KvmHost } from '../config.js';
import { assertOwnedOnHost, type LocatedDomain } from '../KvmProvider.js';
import { assertName } from '../names.js';
import type { Transport } from '../transport.js';
import type { Virsh } from '../virsh/Virsh.js';
import { HostOps, type OpOptions } from './hostOps.js';
import { assertSnapshotId, BACKUP_DISK, DATA_FILE, DISK_PATH_FILE, DOMAIN_FILE, MANIFEST_FILE, META_FILE } from './layout.js';
import { parseMeta, serializeMeta, type BackupMeta } from './meta.js';
import { readRestored, type RestoredRecord } from './restoredDomain.js';

/** What the snapshot engine needs from the provider it extends (KvmProvider implements it). */
export interface KvmSnapshotsHost {
  readonly name: string;
  readonly hosts: ReadonlyMap<string, KvmHost>;
  readonly transport: Transport;
  virshFor(host: string): Virsh;
  locate(ref: VmRef, operation: string, ctx?: OperationContext): Promise<LocatedDomain | undefined>;
  toRecord(found: LocatedDomain): VmRecord;
  stop(ref: VmRef, options?: StopOptions, ctx?: OperationContext): Promise<VmRecord>;
  delete(ref: VmRef, ctx?: OperationContext): Promise<void>;
}

export interface KvmSnapshotsOptions {
  readonly config: KvmProviderConfig;
  readonly clock: Clock;
  readonly log?: (message: string) => void;
}

/** libvirt states in which QEMU runs and a backup job can run. */
export const ACTIVE_STATES = new Set(['running', 'paused', 'idle', 'blocked']);

/** A backup folder found by snapshot id: its record, the host it is on, its path there. */
export interface Located {
  readonly meta: BackupMeta;
  readonly host: KvmHost;
  readonly folder: string;
}

/**
 * What the parts of the snapshot engine share: the provider, its config, clock and log, and
 * the backup folders on the hosts (where a host's folder is, the records in it, a snapshot
 * by id wherever it is).
 */
export class BackupStore {
  constructor(
    readonly p: KvmSnapshotsHost,
    readonly config: KvmProviderConfig,
    readonly clock: Clock,
    readonly log: ((message: string) => void) | undefined,
  ) {}

  dir(host: string): string {
    return this.config.hosts.find((h) => h.name === host)?.backupDir ?? this.config.backupDir;
  }

  host(name: string, operation: string): KvmHost {
    const host = this.p.hosts.get(name);
    if (!host) {
      throw new NotFoundError(`host "${name}" is not in provider "${this.p.name}"`, { context: { provider: this.p.name, host: name, operation }, hint: `hosts: ${[...this.p.hosts.keys()].join(', ')}` });
    }
    return host;
  }

  async owned(ref: VmRef, operation: string, ctx: OperationContext): Promise<LocatedDomain> {
    assertName('vm', ref.name, 'VM name', { provider: this.p.name });
    const found = await this.p.locate(ref, operation, ctx);
    if (!found) {
      throw new NotFoundError(`VM "${ref.name}" does not exist on any host of provider "${this.p.name}"`, {
        context: { provider: this.p.name, vm: ref.name, operation },
        hint: operation === 'restore' ? 'restore it as a new VM with --as, or apply the fleet first' : 'apply the fleet first',
      });
    }
    assertOwnedOnHost(found, ref, this.p.name, operation);
    return found;
  }

  /**
   * The records under `<backupDir>/<glob>/meta.json` on one host. A folder several hosts see
   * (a shared mount) is reported by the host that wrote it. With `withDisks`, disk snapshots
   * whose internal snapshot is gone (the VM was deleted) are left out.
   */
  async metasOn(host: KvmHost, globs: string | readonly string[], ctx: OperationContext, withDisks = false): Promise<{ meta: BackupMeta; folder: string }[]> {
    const ops = new HostOps(this.p.virshFor(host.name));
    const dir = this.dir(host.name);
    const parts = await ops.sections(
      (mark) =>
        `for f in ${(typeof globs === 'string' ? [globs] : globs).map((g) => `${ops.q(dir)}/${g}/${META_FILE}`).join(' ')}; do [ -f "$f" ] || continue; d=\${f%/${META_FILE}}; cat "$f"; ${mark('"meta:$d"', true)}` +
        (withDisks
          ? `; if [ -f "$d/${DISK_PATH_FILE}" ]; then if qemu-img snapshot -U -l "$(cat "$d/${DISK_PATH_FILE}")" 2>/dev/null | awk 'NR>2{print $2}' | grep -qxF -- "\${d##*/}"; then s=present; else s=missing; fi; printf '%s' "$s"; ${mark('"disk:$d"', true)}; fi`
          : '') +
        `; done; ${mark('end')}`,
      `listing backups in ${dir}`,
      { ...sig(ctx), operation: 'listSnapshots' },
    );
    if (!parts.has('end')) throw new UnreachableError(`${host.name}: the backup listing was cut short`, { context: { provider: this.p.name, host: host.name }, hint: 'retry' });
    const out: { meta: BackupMeta; folder: string }[] = [];
    for (const [key, text] of parts) {
      if (!key.startsWith('meta:')) continue;
      const folder = key.slice('meta:'.length);
      const meta = parseMeta(text);
      if (!meta) continue;
      if (meta.host !== host.name && this.p.hosts.has(meta.host)) continue;
      if (withDisks && meta.kind === 'disk' && meta.state === 'complete' && parts.get(`disk:${folder}`) !== 'present') continue;
      out.push({ meta, folder });
    }
    return out;
  }

  /** A snapshot by id, wherever it is. Undefined when no host has it; a host that does not answer is an error (it might). */
  async find(id: string, operation: string, ctx: OperationContext): Promise<Located | undefined> {
    assertSnapshotId(id, { provider: this.p.name, operation });
    const perHost = await Promise.all(
      [...this.p.hosts.values()].map(async (host) => (await this.metasOn(host, `*/${id}`, ctx)).map((m) => ({ ...m, host }))),
    );
    const hit = perHost.flat().find((m) => m.meta.id === id);
    return hit ? { meta: hit.meta, host: hit.host, folder: hit.folder } : undefined;
  }

  async writeMeta(ops: HostOps, folder: string, meta: BackupMeta, opts: OpOptions): Promise<void> {
    await ops.writeAtomic(`${folder}/${META_FILE}`, serializeMeta(meta), opts);
  }

  /** Bytes the folder's files hold, with the record about to be written counted as `metaBytes`. */
  async folderBytes(ops: HostOps, folder: string, metaBytes: number, opts: OpOptions): Promise<number> {
    const files = [DATA_FILE, MANIFEST_FILE, DOMAIN_FILE, DISK_PATH_FILE].map((f) => ops.q(`${folder}/${f}`)).join(' ');
    const out = await ops.run(`for f in ${files}; do [ -f "$f" ] && stat -c %s "$f"; done; true`, `sizing ${folder}`, opts);
    return out.split('\n').filter(Boolean).reduce((sum, n) => sum + Number(n), 0) + metaBytes;
  }
}

/** What a backup needs to know about the VM, in one round trip to its host. */
export async function inspectDisk(found: LocatedDomain, ctx: OperationContext, askAgent = false): Promise<VmDisk> {
  const ops = new HostOps(found.virsh);
  const name = found.view.info.name;
  const disk = found.view.info.disks.find((d) => d.target === BACKUP_DISK && d.device === 'disk');
  if (!disk) throw new InvalidInputError(`VM "${name}" has no ${BACKUP_DISK} disk to back up`, { context: found.virsh.context({ vm: name, operation: 'snapshot' }) });
  const v = (args: string[]) => `${found.virsh.commandLine(args)} </dev/null`;
  const pathCmd = disk.volume && disk.pool ? v(['vol-path', '--pool', disk.pool, disk.volume]) : `printf '%s\\n' ${ops.q(disk.file ?? '')}`;
  const parts = await ops.sections(
    (mark) =>
      [
        'set -e',
        `p=$(${pathCmd}); printf '%s' "$p"; ${mark('path')}`,
        `qemu-img info -U --output=json "$p"; ${mark('info')}`,
        `${v(['checkpoint-list', name, '--name'])}; ${mark('checkpoints')}`,
        `${v(['dumpxml', '--inactive', name])}; ${mark('xml')}`,
        ...(ACTIVE_STATES.has(found.view.state) ? [`${v(['dumpxml', name])}; ${mark('live')}`] : []),
        // A guest agent that answers: the backup is quiesced (file systems frozen at its start).
        ...(askAgent ? [`if ${v(['qemu-agent-command', name, '{"execute":"guest-ping"}', '--timeout', '5'])} >/dev/null 2>&1; then printf yes; fi; ${mark('agent')}`] : []),
      ].join('\n'),
    `inspecting ${name}`,
    { ...sig(ctx), vm: name, operation: 'snapshot' },
  );
  const info = JSON.parse(parts.get('info') ?? '{}') as { 'virtual-size'?: number; format?: string; 'format-specific'?: { data?: { compat?: string; bitmaps?: { name: string }[] } } };
  const compat = info['format-specific']?.data?.compat;
  return {
    name,
    path: (parts.get('path') ?? '').trim(),
    virtualSize: Number(info['virtual-size'] ?? 0),
    format: info.format ?? 'qcow2',
    bitmapsPossible: info.format === 'qcow2' && compat !== '0.10',
    bitmaps: (info['format-specific']?.data?.bitmaps ?? []).map((b) => b.name),
    checkpoints: (parts.get('checkpoints') ?? '').split('\n').map((x) => x.trim()).filter(Boolean),
    inactiveXml: parts.get('xml') ?? '',
    liveXml: parts.get('live'),
    otherDisks: found.view.info.disks.filter((d) => d.target !== BACKUP_DISK && d.target).map((d) => d.target),
    agent: parts.get('agent') === 'yes',
  };
}

/** The restored-VM record in a domain's XML (undefined for a domain NovaCron did not restore). */
export async function restoredOf(found: LocatedDomain, ctx: OperationContext): Promise<RestoredRecord | undefined> {
  const xml = await found.virsh.run(['dumpxml', '--inactive', found.view.info.name], { ...sig(ctx), vm: found.view.info.name, operation: 'restore' });
  return readRestored(xml);
}

/** The backed-up disk of a VM, as `inspectDisk` reads it. */
export interface VmDisk {
  readonly name: string;
  readonly path: string;
  readonly virtualSize: number;
  readonly format: string;
  /** qcow2 v3: persistent dirty bitmaps (checkpoints) possible. */
  readonly bitmapsPossible: boolean;
  readonly bitmaps: readonly string[];
  checkpoints: string[];
  readonly inactiveXml: string;
  readonly liveXml: string | undefined;
  readonly otherDisks: readonly string[];
  /** A guest agent answered (asked only when the backup wants quiescing). */
  readonly agent: boolean;
}

export function sig(ctx: OperationContext): { signal?: AbortSignal } {
  return ctx.signal ? { signal: ctx.signal } : {};
}

export function throwIfAborted(ctx: OperationContext): void {
  if (ctx.signal?.aborted) throw new AbortedError(undefined, { cause: ctx.signal.reason });
}

export function isRetryable(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { retryable?: unknown }).retryable === true;
}

export function mib(bytes: number | undefined): string {
  return bytes === undefined ? '?' : (bytes / 1024 ** 2).toFixed(1);
}

export function progress(ctx: OperationContext, phase: string, fraction?: number, message?: string, operation = 'snapshot'): void {
  ctx.onProgress?.({ operation, phase, ...(fraction !== undefined ? { fraction } : {}), ...(message ? { message } : {}) });
}
