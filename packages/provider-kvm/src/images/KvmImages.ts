import { randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ConflictError,
  InvalidInputError,
  NotFoundError,
  UnreachableError,
  UnsupportedError,
  type ImageArtifact,
  type KvmProviderConfig,
  type OperationContext,
  type VmRef,
} from '@novacron/core';
import type { KvmHost } from '../config.js';
import { assertOwnedOnHost, type LocatedDomain } from '../KvmProvider.js';
import { assertName } from '../names.js';
import { HostOps, type OpOptions } from '../snapshots/hostOps.js';
import type { Transport } from '../transport.js';
import type { Virsh } from '../virsh/Virsh.js';
import { pullStream, pushStream, readLocal, relayFile, SparseFileWriter, streamError } from './streams.js';

/** What image moves need from the provider (KvmProvider implements it). */
export interface KvmImagesHost {
  readonly name: string;
  readonly hosts: ReadonlyMap<string, KvmHost>;
  readonly transport: Transport;
  virshFor(host: string): Virsh;
  locate(ref: VmRef, operation: string, ctx?: OperationContext): Promise<LocatedDomain | undefined>;
}

/** A volume new disks can be backed by, with its size. */
export interface ImportedBase {
  readonly volume: string;
  readonly format: 'qcow2';
  readonly capacityBytes: number;
}

/**
 * Disk images in and out of KVM hosts, for moves between providers (capabilities
 * `imageExport`, `imageImport`):
 *
 * - export: the stopped VM's root disk converted to raw on its host (`qemu-img convert`,
 *   sparse), its sha256 taken there, pulled to this machine gzipped in transit and written
 *   sparse into `imageDir`, checked against that sha256.
 * - import: a raw, qcow2 or VMDK artifact pushed (gzipped) to one host, checked against the
 *   artifact's sha256 there, converted to a qcow2 volume `novacron-image-<name>.qcow2` in the
 *   pool. Importing the same name again returns the volume already there.
 * - create with `fromImage`: the new disk is a qcow2 overlay on that volume; a host that
 *   lacks it gets a checked copy from one that has it.
 */
export class KvmImages {
  readonly #p: KvmImagesHost;
  readonly #config: KvmProviderConfig;
  readonly #log: ((message: string) => void) | undefined;

  constructor(provider: KvmImagesHost, options: { readonly config: KvmProviderConfig; readonly log?: (message: string) => void }) {
    this.#p = provider;
    this.#config = options.config;
    this.#log = options.log;
  }

  async exportImage(ref: VmRef, ctx: OperationContext = {}): Promise<ImageArtifact> {
    const context = { provider: this.#p.name, vm: ref.name, operation: 'exportImage' };
    assertName('vm', ref.name, 'VM name', { provider: this.#p.name });
    const found = await this.#p.locate(ref, 'exportImage', ctx);
    if (!found) throw new NotFoundError(`VM "${ref.name}" does not exist on any host of provider "${this.#p.name}"`, { context });
    assertOwnedOnHost(found, ref, this.#p.name, 'exportImage');
    if (found.view.state !== 'shut off') {
      throw new ConflictError(`VM "${ref.name}" is ${found.view.state}; its disk can be exported only while it is shut off`, { context: { ...context, host: found.host.name }, hint: 'stop it first (a move between providers does)' });
    }
    const disk = found.view.info.disks.find((d) => d.target === 'vda' && d.device === 'disk');
    if (!disk) throw new InvalidInputError(`VM "${ref.name}" has no vda disk`, { context });
    const ops = new HostOps(found.virsh);
    const opts: OpOptions = { ...sig(ctx), vm: ref.name, operation: 'exportImage' };
    const work = `${this.#dir(found.host.name)}/.work`;
    const tmp = `${work}/.export-${ref.name}-${randomBytes(4).toString('hex')}.raw`;
    const pathCmd = disk.volume && disk.pool ? `${found.virsh.commandLine(['vol-path', '--pool', disk.pool, disk.volume])} </dev/null` : `printf '%s' ${ops.q(disk.file ?? '')}`;
    ctx.onProgress?.({ operation: 'exportImage', phase: 'convert', fraction: 0.05 });
    try {
      const out = await ops.run(
        ['set -e', `mkdir -p ${ops.q(work)}`, `p=$(${pathCmd})`, `qemu-img convert -O raw "$p" ${ops.q(tmp)}`, `sha256sum ${ops.q(tmp)} | cut -d' ' -f1`, `stat -c %s ${ops.q(tmp)}`].join('\n'),
        `converting the disk of ${ref.name} to raw`,
        opts,
      );
      const [sha256, size] = out.trim().split('\n');
      const sizeBytes = Number(size);
      const dir = this.#config.imageDir ?? join(tmpdir(), 'novacron-images');
      mkdirSync(dir, { recursive: true });
      const path = join(dir, `${ref.name}-${sha256!.slice(0, 12)}.raw`);
      const part = `${path}.part-${randomBytes(4).toString('hex')}`;
      ctx.onProgress?.({ operation: 'exportImage', phase: 'download', fraction: 0.3, message: `${(sizeBytes / 1024 ** 2).toFixed(0)} MiB` });
      const sink = new SparseFileWriter(part);
      try {
        const r = await pullStream(this.#p.transport, found.host.ssh, `gzip -1 -c ${ops.q(tmp)}`, sink, { gunzip: true, ...sig(ctx) });
        if (r.code !== 0) throw streamError(found.host.ssh, `reading ${tmp}`, r);
        if (sink.sha256 !== sha256 || sink.bytes !== sizeBytes) {
          throw new ConflictError(`${found.host.name}: the exported image of ${ref.name} arrived damaged (${sink.bytes} bytes, sha256 ${sink.sha256}; expected ${sizeBytes}, ${sha256})`, { context, hint: 'export it again' });
        }
        renameSync(part, path);
      } catch (error) {
        rmSync(part, { force: true });
        throw error;
      }
      ctx.onProgress?.({ operation: 'exportImage', phase: 'done', fraction: 1 });
      return { path, format: 'raw', sizeBytes, sha256: sha256! };
    } finally {
      await ops.run(`rm -f ${ops.q(tmp)}`, 'cleaning up', { vm: ref.name }).catch(() => undefined);
    }
  }

  async importImage(artifact: ImageArtifact, imageName: string, ctx: OperationContext = {}): Promise<string> {
    const context = { provider: this.#p.name, operation: 'importImage' };
    if (artifact.format === 'tar.gz') throw new UnsupportedError(`a ${artifact.format} image cannot be imported into KVM hosts`, { context, hint: 'import a raw, qcow2 or VMDK disk' });
    if (!/^[0-9a-f]{64}$/.test(artifact.sha256)) throw new InvalidInputError(`image artifact ${artifact.path} has no sha256`, { context });
    const volume = importedVolumeName(imageName, context);
    const hosts = [...this.#p.hosts.values()];
    const have = await this.#hostsWith(volume, ctx);
    if (have.length > 0) return volume;
    let lastError: unknown;
    for (const host of hosts) {
      try {
        await this.#upload(host, artifact, volume, ctx);
        return volume;
      } catch (error) {
        // A host that does not answer: the next one takes the image.
        if (!(error instanceof UnreachableError)) throw error;
        lastError = error;
        this.#log?.(`kvm: ${host.name}: ${error.message}; importing on the next host`);
      }
    }
    throw lastError ?? new NotFoundError('no host to import the image to', { context });
  }

  /** The imported volume on `host`, copied there from a host that has it if needed. */
  async baseFor(host: KvmHost, volume: string, ctx: OperationContext = {}): Promise<ImportedBase> {
    const context = { provider: this.#p.name, host: host.name, operation: 'create' };
    assertName('object', volume, 'imported image volume', context);
    const here = await this.#volumeInfo(host, volume, ctx);
    if (here) return { volume, format: 'qcow2', capacityBytes: here.capacity };
    const source = (await this.#hostsWith(volume, ctx))[0];
    if (!source) throw new NotFoundError(`image volume ${volume} was not imported on any host of provider "${this.#p.name}"`, { context, hint: 'import the image first (a move between providers does)' });
    ctx.onProgress?.({ operation: 'create', phase: 'image-copy', message: `copying ${volume} from ${source.host.name}` });
    const to = new HostOps(this.#p.virshFor(host.name));
    const opts: OpOptions = { ...sig(ctx), operation: 'create' };
    const toDir = await to.poolDir(host.pool, opts);
    await relayFile(this.#p.transport, source.host.ssh, source.path, host.ssh, `${toDir}/${volume}`, (s) => to.q(s), ctx.signal);
    await to.run(`${to.virsh.commandLine(['pool-refresh', host.pool])} </dev/null >/dev/null`, `refreshing pool ${host.pool}`, opts);
    return { volume, format: 'qcow2', capacityBytes: source.capacity };
  }

  /** Makes a root volume qcow2 v3, which can hold the dirty bitmaps incremental backups need (libvirt creates v2). */
  static upgradeScript(virsh: Virsh, pool: string, volume: string): string {
    return `set -e; p=$(${virsh.commandLine(['vol-path', '--pool', pool, volume])} </dev/null); qemu-img amend -f qcow2 -o compat=1.1 "$p"`;
  }

  async #upload(host: KvmHost, artifact: ImageArtifact, volume: string, ctx: OperationContext): Promise<void> {
    const ops = new HostOps(this.#p.virshFor(host.name));
    const opts: OpOptions = { ...sig(ctx), operation: 'importImage' };
    const dir = await ops.poolDir(host.pool, opts);
    const q = (s: string) => ops.q(s);
    const part = `${dir}/.${volume}.import`;
    const script = [
      'set -e',
      `t=${q(part)}.$$`,
      `trap 'rm -f "$t" "$t.qcow2"' EXIT`,
      `gunzip -c > "$t"`,
      `s=$(sha256sum "$t" | cut -d' ' -f1)`,
      `if [ "$s" != ${q(artifact.sha256)} ]; then echo "error: checksum mismatch: the image arrived with sha256 $s" >&2; exit 1; fi`,
      `qemu-img convert -f ${q(artifact.format)} -O qcow2 "$t" "$t.qcow2"`,
      `mv -f "$t.qcow2" ${q(`${dir}/${volume}`)}`,
      `${ops.virsh.commandLine(['pool-refresh', host.pool])} </dev/null >/dev/null`,
    ].join('\n');
    ctx.onProgress?.({ operation: 'importImage', phase: 'upload', fraction: 0.1, message: `${(artifact.sizeBytes / 1024 ** 2).toFixed(0)} MiB to ${host.name}` });
    const r = await pushStream(this.#p.transport, host.ssh, script, readLocal(artifact.path), { gzip: true, ...sig(ctx) });
    if (r.code !== 0) {
      if (/checksum mismatch/.test(r.stderr)) {
        throw new ConflictError(`${host.name}: ${r.stderr.trim().replace(/^error: /, '')} (expected ${artifact.sha256})`, { context: { provider: this.#p.name, host: host.name, operation: 'importImage' }, hint: 'the artifact changed or broke in transit: export it again' });
      }
      throw streamError(host.ssh, `importing ${volume}`, r);
    }
    ctx.onProgress?.({ operation: 'importImage', phase: 'done', fraction: 1 });
  }

  async #volumeInfo(host: KvmHost, volume: string, ctx: OperationContext): Promise<{ path: string; capacity: number } | undefined> {
    const virsh = this.#p.virshFor(host.name);
    const [info, path] = await virsh.batch([['vol-info', '--bytes', volume, '--pool', host.pool], ['vol-path', '--pool', host.pool, volume]], { ...sig(ctx), operation: 'importImage' });
    if (info?.error?.code === 'NotFound' || path?.error?.code === 'NotFound') return undefined;
    if (info?.error) throw info.error;
    if (path?.error) throw path.error;
    const capacity = Number(/Capacity:\s+(\d+)/.exec(info?.stdout ?? '')?.[1] ?? 0);
    return { path: (path?.stdout ?? '').trim(), capacity };
  }

  async #hostsWith(volume: string, ctx: OperationContext): Promise<{ host: KvmHost; path: string; capacity: number }[]> {
    const found = await Promise.all(
      [...this.#p.hosts.values()].map(async (host) => {
        try {
          const info = await this.#volumeInfo(host, volume, ctx);
          return info ? { host, ...info } : undefined;
        } catch (error) {
          if (error instanceof UnreachableError) return undefined;
          throw error;
        }
      }),
    );
    return found.filter((f): f is { host: KvmHost; path: string; capacity: number } => f !== undefined);
  }

  #dir(host: string): string {
    return this.#config.hosts.find((h) => h.name === host)?.backupDir ?? this.#config.backupDir;
  }
}

/** `novacron-image-<name>.qcow2`, the name made safe for a pool. */
export function importedVolumeName(imageName: string, context: { provider?: string; host?: string; vm?: string } = {}): string {
  return assertName('object', `novacron-image-${imageName.replace(/[^A-Za-z0-9._+-]/g, '_')}.qcow2`, 'imported image volume', context);
}

function sig(ctx: OperationContext): { signal?: AbortSignal } {
  return ctx.signal ? { signal: ctx.signal } : {};
}
