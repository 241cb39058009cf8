import { randomBytes } from 'node:crypto';
import {
  ConflictError,
  InvalidInputError,
  NotFoundError,
  type OperationContext,
  type RestoreRequest,
  type RestoreResult,
  type VmRef,
} from '@novacron/core';
import type { KvmHost } from '../config.js';
import { assertName } from '../names.js';
import { relayFile } from '../images/streams.js';
import { digestOfManifest, formatManifest } from './blockHashes.js';
import { HostOps, type OpOptions } from './hostOps.js';
import { assertSnapshotId, BACKUP_DISK, DATA_FILE, DOMAIN_FILE } from './layout.js';
import { restoredDomainXml, restoredLabels, type RestoredRecord } from './restoredDomain.js';
import { ACTIVE_STATES, inspectDisk, progress, restoredOf, sig, type BackupStore, type Located } from './store.js';

/** Restores: a chain flattened with qemu-img, written in place or into a new VM outside the fleet. */
export class Restores {
  constructor(private readonly s: BackupStore) {}

  async restore(ref: VmRef, request: RestoreRequest, ctx: OperationContext = {}): Promise<RestoreResult> {
    const context = { provider: this.s.p.name, vm: ref.name, operation: 'restore' };
    assertSnapshotId(request.snapshot, context);
    const located = await this.s.find(request.snapshot, 'restore', ctx);
    if (!located || located.meta.fleet !== ref.fleet || located.meta.vm !== ref.name) {
      throw new NotFoundError(`VM "${ref.name}" has no snapshot "${request.snapshot}"`, { context, hint: 'list them with `novacron snapshot list`' });
    }
    if (located.meta.state !== 'complete') {
      throw new ConflictError(`snapshot "${located.meta.id}" is incomplete and cannot be restored`, { context, hint: 'restore an earlier one, or let the next tick complete it' });
    }
    return request.asName === undefined ? this.#restoreInPlace(ref, located, ctx) : this.#restoreAs(ref, located, request.asName, request.scratch === true, ctx);
  }

  async #restoreInPlace(ref: VmRef, located: Located, ctx: OperationContext): Promise<RestoreResult> {
    const { meta } = located;
    const found = await this.s.owned(ref, 'restore', ctx);
    const ops = new HostOps(found.virsh);
    const opts: OpOptions = { ...sig(ctx), vm: ref.name, operation: 'restore' };
    const vm = await inspectDisk(found, ctx);
    if (vm.virtualSize < meta.diskBytes) {
      throw new InvalidInputError(`the disk of "${ref.name}" (${vm.virtualSize} bytes) is smaller than snapshot "${meta.id}" (${meta.diskBytes} bytes)`, { context: found.virsh.context(opts), hint: 'restore it as a new VM with --as' });
    }
    if (meta.kind === 'disk' && (meta.domainUuid !== found.view.info.uuid || meta.diskPath !== vm.path)) {
      throw new NotFoundError(`disk snapshot "${meta.id}" was taken of an earlier VM "${ref.name}" whose disk is gone`, { context: found.virsh.context(opts), hint: 'restore a backup instead' });
    }
    const wasRunning = ACTIVE_STATES.has(found.view.state);
    let bytesWritten = 0;
    let image: string | undefined;
    if (meta.kind !== 'disk') {
      // The chain flattened into one image next to the disk, before the VM is touched.
      progress(ctx, 'rebuild', 0.1, undefined, 'restore');
      image = `${vm.path.slice(0, vm.path.lastIndexOf('/'))}/.${ref.name}-restore-${randomBytes(4).toString('hex')}.qcow2`;
      bytesWritten = await this.#rebuild(located, found.host, image, vm.virtualSize, ctx);
    }
    try {
      progress(ctx, 'stop', 0.5, undefined, 'restore');
      if (wasRunning) await this.s.p.stop(ref, { force: true }, ctx);
      // The checkpoints describe the old disk: dropped, so the next backup is a full.
      const v = (args: string[]) => `${found.virsh.commandLine(args)} </dev/null`;
      const dropCheckpoints = `for c in $(${v(['checkpoint-list', ref.name, '--name'])}); do ${found.virsh.commandLine(['checkpoint-delete', ref.name])} "$c" --metadata </dev/null >/dev/null; done`;
      progress(ctx, 'write', 0.6, undefined, 'restore');
      if (meta.kind === 'disk') {
        const removeBitmaps = vm.bitmaps.map((b) => `qemu-img bitmap --remove ${ops.q(vm.path)} ${ops.q(b)}`);
        await ops.run(['set -e', dropCheckpoints, ...removeBitmaps, `qemu-img snapshot -a ${ops.q(meta.id)} ${ops.q(vm.path)}`].join('\n'), `reverting ${ref.name} to ${meta.id}`, opts);
        bytesWritten = meta.diskBytes;
      } else {
        const disk = found.view.info.disks.find((d) => d.target === BACKUP_DISK)!;
        await ops.run(
          ['set -e', dropCheckpoints, `mv -f ${ops.q(image!)} ${ops.q(vm.path)}`, ...(disk.pool ? [`${v(['pool-refresh', disk.pool])} >/dev/null`] : [])].join('\n'),
          `replacing the disk of ${ref.name}`,
          opts,
        );
        image = undefined;
      }
    } finally {
      if (image) await ops.run(`rm -f ${ops.q(image)}`, 'cleaning up', { vm: ref.name }).catch(() => undefined);
    }
    progress(ctx, 'digest', 0.8, undefined, 'restore');
    const digest = await this.#digestOf(ops, vm.path, found.host.name, meta.diskBytes, opts);
    if (wasRunning) await found.virsh.run(['start', ref.name], opts);
    const now = await this.s.p.locate({ name: ref.name, fleet: ref.fleet, host: found.host.name }, 'restore', ctx);
    progress(ctx, 'done', 1, undefined, 'restore');
    return { vm: this.s.p.toRecord(now ?? found), digest, bytesWritten };
  }

  async #restoreAs(ref: VmRef, located: Located, asName: string, scratch: boolean, ctx: OperationContext): Promise<RestoreResult> {
    const { meta } = located;
    const name = assertName('vm', asName, 'restored VM name', { provider: this.s.p.name });
    const context = { provider: this.s.p.name, vm: name, operation: 'restore' };
    const taken = await this.s.p.locate({ name, fleet: '' }, 'restore', ctx);
    if (taken) {
      const restored = await restoredOf(taken, ctx);
      if (scratch && restored?.scratch && !taken.view.info.metadata) {
        await this.s.p.delete({ name, fleet: '', host: taken.host.name }, ctx);
      } else {
        throw new ConflictError(`a VM named "${name}" already exists on ${taken.host.name}`, { context: { ...context, host: taken.host.name }, hint: 'choose another name for the restored VM' });
      }
    }
    // Where the source VM runs now, else where it ran, else where the backup is.
    const source = await this.s.p.locate({ name: ref.name, fleet: ref.fleet }, 'restore', ctx).catch(() => undefined);
    const dest = source?.host ?? this.s.p.hosts.get(meta.sourceHost) ?? this.s.host(meta.host, 'restore');
    const ops = new HostOps(this.s.p.virshFor(dest.name));
    const opts: OpOptions = { ...sig(ctx), vm: name, operation: 'restore' };
    const poolDir = await ops.poolDir(dest.pool, opts);
    const volume = `${name}-root.qcow2`;
    const path = `${poolDir}/${volume}`;
    const undo: (() => Promise<unknown>)[] = [];
    try {
      progress(ctx, 'rebuild', 0.1, undefined, 'restore');
      const tmp = `${poolDir}/.${volume}.restore-${randomBytes(4).toString('hex')}`;
      undo.push(() => ops.run(`rm -f ${ops.q(tmp)}`, 'cleaning up', { vm: name }));
      const bytesWritten = await this.#rebuild(located, dest, tmp, undefined, ctx);
      const v = (args: string[]) => `${ops.virsh.commandLine(args)} </dev/null`;
      await ops.run(`set -e; mv -f ${ops.q(tmp)} ${ops.q(path)}; ${v(['pool-refresh', dest.pool])} >/dev/null`, `placing the restored disk of ${name}`, opts);
      undo.push(() => ops.run(`rm -f ${ops.q(path)}; ${v(['pool-refresh', dest.pool])} >/dev/null`, 'cleaning up', { vm: name }));
      progress(ctx, 'digest', 0.7, undefined, 'restore');
      const digest = await this.#digestOf(ops, path, dest.name, meta.diskBytes, opts);
      const record: RestoredRecord = { from: meta.vm, snapshot: meta.id, scratch, image: meta.image };
      const sourceXml = await this.#sourceXml(located, ctx);
      const xml = restoredDomainXml(sourceXml, { name, pool: dest.pool, volume, network: dest.network, record });
      progress(ctx, 'define', 0.9, undefined, 'restore');
      const results = await ops.virsh.batch([['define', '/dev/stdin'], ...(scratch ? [] : [['start', name]])], { ...opts, stdin: xml, stdinFor: 0, stopOnError: true });
      if (results[0] && !results[0].error) undo.push(() => ops.virsh.tryRun(['undefine', name], { vm: name }));
      const failed = results.find((r) => r.error)?.error;
      if (failed) throw failed;
      const found = await this.s.p.locate({ name, fleet: '', host: dest.name }, 'restore', ctx);
      if (!found) throw new NotFoundError(`the restored VM "${name}" vanished`, { context });
      const vmRecord = this.s.p.toRecord(found);
      progress(ctx, 'done', 1, undefined, 'restore');
      return { vm: { ...vmRecord, labels: { ...vmRecord.labels, ...restoredLabels(record) }, image: meta.image }, digest, bytesWritten };
    } catch (error) {
      for (const step of undo.reverse()) await step().catch(() => undefined);
      throw error;
    }
  }

  /**
   * Writes the snapshot's disk, flattened, into `path` on host `dest`: qemu-img convert of the
   * chain on the host holding it, then (other host) a checked copy. `growTo` extends it to the
   * VM's current size. Returns the bytes of the image written.
   */
  async #rebuild(located: Located, dest: KvmHost, path: string, growTo: number | undefined, ctx: OperationContext): Promise<number> {
    const { meta, host, folder } = located;
    const src = new HostOps(this.s.p.virshFor(host.name));
    const opts: OpOptions = { ...sig(ctx), vm: meta.vm, operation: 'restore' };
    const here = host.name === dest.name;
    const out = here ? path : `${this.s.dir(host.name)}/.work/.restore-${meta.id}-${randomBytes(4).toString('hex')}.qcow2`;
    const from = meta.kind === 'disk' ? `-U -l ${src.q(`snapshot.name=${meta.id}`)} ${src.q(meta.diskPath!)}` : src.q(`${folder}/${DATA_FILE}`);
    const stdout = await src.run(
      [
        'set -e',
        `mkdir -p "$(dirname ${src.q(out)})"`,
        `qemu-img convert -f qcow2 -O qcow2 ${from} ${src.q(out)}`,
        ...(growTo !== undefined && growTo > meta.diskBytes ? [`qemu-img resize -f qcow2 ${src.q(out)} ${growTo} >/dev/null`] : []),
        `stat -c %s ${src.q(out)}`,
      ].join('\n'),
      `rebuilding ${meta.id}`,
      opts,
    );
    if (!here) {
      progress(ctx, 'transfer', 0.4, undefined, 'restore');
      try {
        await relayFile(this.s.p.transport, host.ssh, out, dest.ssh, path, (s) => src.q(s), ctx.signal);
      } finally {
        await src.run(`rm -f ${src.q(out)}`, 'cleaning up', { vm: meta.vm }).catch(() => undefined);
      }
    }
    return Number(stdout.trim().split('\n').at(-1));
  }

  async #digestOf(ops: HostOps, path: string, host: string, limitBytes: number, opts: OpOptions): Promise<string> {
    const m = await ops.manifest(path, 'qcow2', `${this.s.dir(host)}/.work`, 'all', undefined, { ...opts, limitBytes });
    return digestOfManifest(formatManifest(m.hashes));
  }

  async #sourceXml(located: Located, ctx: OperationContext): Promise<string> {
    const ops = new HostOps(this.s.p.virshFor(located.host.name));
    const xml = await ops.readText(`${located.folder}/${DOMAIN_FILE}`, { ...sig(ctx), vm: located.meta.vm, operation: 'restore' });
    if (!xml) throw new NotFoundError(`snapshot "${located.meta.id}" has no ${DOMAIN_FILE}`, { context: { provider: this.s.p.name, host: located.host.name, vm: located.meta.vm, operation: 'restore' }, hint: 'restore it in place instead' });
    return xml;
  }

}
