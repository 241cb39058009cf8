import { randomBytes } from 'node:crypto';
import {
  AbortedError,
  ConflictError,
  InvalidInputError,
  splitHostId,
  type OperationContext,
  type SnapshotRecord,
  type SnapshotRequest,
  type VmRef,
} from '@novacron/core';
import type { KvmHost } from '../config.js';
import { type LocatedDomain } from '../KvmProvider.js';
import type { Virsh } from '../virsh/Virsh.js';
import { relayFile } from '../images/streams.js';
import { backupXml, checkpointXml, jobActive, parseJobInfo } from './backupJob.js';
import { assembleManifest, BLOCK_BYTES, blocksToRead, classifyBlocks, digestOfManifest, formatManifest, parseImageMap, parseManifest } from './blockHashes.js';
import { HostOps, type OpOptions } from './hostOps.js';
import { assertSnapshotId, BACKUP_DISK, checkpointName, DATA_FILE, defaultSnapshotId, DISK_PATH_FILE, DOMAIN_FILE, MANIFEST_FILE, META_FILE, parentBacking, snapshotDir, stagingDir } from './layout.js';
import { serializeMeta, toRecord, type BackupMeta } from './meta.js';
import { formatNodeName } from './restoredDomain.js';
import { ACTIVE_STATES, inspectDisk, isRetryable, mib, progress, sig, throwIfAborted, type BackupStore, type VmDisk } from './store.js';

const POLL_MS = 500;

/**
 * Taking backups and disk snapshots: libvirt push-mode backup jobs (a full with a new
 * checkpoint, or an incremental from the parent's checkpoint) into the target host's backup
 * folder, qemu-img copies of stopped VMs, qcow2 internal snapshots. The record is written
 * `incomplete` before any data moves and `complete` once data, manifest and digest are there.
 */
export class Backups {
  constructor(private readonly s: BackupStore) {}

  async snapshot(ref: VmRef, request: SnapshotRequest, ctx: OperationContext = {}): Promise<SnapshotRecord> {
    const found = await this.s.owned(ref, 'snapshot', ctx);
    const context = { provider: this.s.p.name, vm: ref.name, operation: 'snapshot' };
    const id = assertSnapshotId(request.id ?? defaultSnapshotId(ref.name, this.s.clock.now()), context);
    if (request.parent !== undefined) assertSnapshotId(request.parent, context);
    const target = request.kind === 'disk' || request.target === undefined ? found.host : this.s.host(splitHostId(request.target).name, 'snapshot');
    const ops = new HostOps(this.s.p.virshFor(target.name));
    const folder = snapshotDir(this.s.dir(target.name), ref.name, id);
    const opts: OpOptions = { ...sig(ctx), vm: ref.name, operation: 'snapshot' };
    const active = ACTIVE_STATES.has(found.view.state);

    // One round trip to each end, at once: the VM's disk, checkpoints and agent; the target's
    // records of this id (anywhere) and of this VM's backups (the chain to build on).
    progress(ctx, 'inspect');
    const [vm, listing] = await Promise.all([
      inspectDisk(found, ctx, active && request.quiesce !== false),
      this.s.metasOn(target, [`*/${id}`, `${ref.name}/*`], ctx),
    ]);
    // The same id: complete is returned as it is, incomplete is redone.
    const same = listing.filter((m) => m.meta.id === id);
    const taken = same.find((m) => m.meta.vm !== ref.name || m.meta.fleet !== ref.fleet);
    if (taken) throw new ConflictError(`snapshot id "${id}" is taken by VM "${taken.meta.vm}"`, { context: { ...context, host: target.name }, hint: 'use another id' });
    const existing = same[0]?.meta;
    if (existing?.state === 'complete') return toRecord(this.s.p.name, existing);
    if (existing) this.s.log?.(`kvm: ${target.name}: redoing incomplete snapshot ${id}${existing.error ? ` (${existing.error})` : ''}`);
    if (request.kind === 'disk') return this.#diskSnapshot(found, vm, id, request, ops, folder, ctx);

    if (!active && found.view.state !== 'shut off') {
      throw new ConflictError(`VM "${ref.name}" is ${found.view.state}; a backup needs it running or shut off`, { context: found.virsh.context({ vm: ref.name, operation: 'snapshot' }), hint: 'wait for it to settle, then run the backup again' });
    }
    const own = listing.filter((m) => m.meta.vm === ref.name).map((m) => m.meta);
    const decision = decideKind(request, vm, own, target.name, active);
    if (decision.why) this.s.log?.(`kvm: ${ref.name}: taking a full instead of an incremental: ${decision.why}`);
    let meta: BackupMeta = {
      format: 1,
      id,
      vm: ref.name,
      fleet: ref.fleet,
      group: found.view.info.metadata?.group ?? '',
      kind: decision.kind,
      ...(decision.parent ? { parent: decision.parent.id } : {}),
      consistency: active ? (vm.agent ? 'quiesced' : 'crash') : 'quiesced',
      state: 'incomplete',
      takenAt: new Date(this.s.clock.now()).toISOString(),
      ...(request.scheduledFor ? { scheduledFor: request.scheduledFor } : {}),
      blockSize: BLOCK_BYTES,
      sizeBytes: 0,
      diskBytes: vm.virtualSize,
      host: target.name,
      location: `${target.name}:${folder}`,
      sourceHost: found.host.name,
      domainUuid: found.view.info.uuid,
      ...(active && vm.bitmapsPossible ? { checkpoint: checkpointName(id) } : {}),
      ...(active ? {} : { offline: true }),
      image: found.view.info.metadata?.image ?? 'unknown',
      resources: { cpu: found.view.info.vcpus, memoryMiB: found.view.info.memoryMiB, diskGiB: found.view.info.metadata?.diskGiB ?? Math.ceil(vm.virtualSize / 1024 ** 3) },
    };
    const job = { host: found.host, dir: target.name === found.host.name ? folder : stagingDir(this.s.dir(found.host.name), ref.name, id) };
    try {
      // The record first, before any data moves: an interruption leaves a trace that blocks
      // pruning and that the next call with this id redoes. Leftovers of an earlier attempt go.
      progress(ctx, 'record');
      await this.#record(ops, folder, meta, vm, active ? { job, parentCheckpoint: decision.parent?.checkpoint } : undefined, opts);
      if (active) {
        meta = await this.#onlineBackup(found, vm, meta, job.dir, ops, folder, ctx);
      } else {
        await this.#offlineBackup(found, vm, meta, job.dir, ctx);
      }
      if (job.dir !== folder) {
        progress(ctx, 'transfer', 0.7);
        const jobOps = new HostOps(found.virsh);
        await relayFile(this.s.p.transport, found.host.ssh, `${job.dir}/${DATA_FILE}`, target.ssh, `${folder}/${DATA_FILE}`, (x) => ops.q(x), ctx.signal);
        await jobOps.run(`rm -rf ${jobOps.q(job.dir)}`, `removing ${job.dir}`, { vm: ref.name, operation: 'snapshot' }).catch(() => undefined);
      }
      throwIfAborted(ctx);
      const done = await this.#finish(meta, folder, ops, ctx);
      // Checkpoints whose backups are gone (deleted while the VM was off, when libvirt cannot
      // delete one) cost a bitmap each in the disk: dropped once a backup succeeded.
      const kept = new Set(own.map((m) => m.checkpoint ?? checkpointName(m.id)));
      const stale = vm.checkpoints.filter((c) => c !== done.checkpoint && !kept.has(c));
      if (done.checkpoint && stale.length > 0) {
        this.s.log?.(`kvm: ${ref.name}: dropping checkpoints without a backup: ${stale.join(', ')}`);
        await found.virsh.batch(stale.map((c) => ['checkpoint-delete', ref.name, c]), { vm: ref.name, operation: 'snapshot' }).catch(() => undefined);
      }
      return toRecord(this.s.p.name, done);
    } catch (error) {
      const message = error instanceof AbortedError ? 'aborted' : error instanceof Error ? error.message : String(error);
      await this.s.writeMeta(ops, folder, { ...meta, error: message.slice(0, 500) }, { vm: ref.name, operation: 'snapshot' }).catch(() => undefined);
      throw error;
    }
  }

  /**
   * The incomplete record, the domain's XML and (same host) the job's files in one round trip
   * to the target; a job on another host is prepared there at the same time.
   */
  async #record(ops: HostOps, folder: string, meta: BackupMeta, vm: VmDisk, online: { job: { host: KvmHost; dir: string }; parentCheckpoint: string | undefined } | undefined, opts: OpOptions): Promise<void> {
    const q = (x: string) => ops.q(x);
    const xmlFits = Buffer.byteLength(vm.inactiveXml) <= 32 * 1024;
    const lines = [
      'set -e',
      `mkdir -p ${q(folder)}; rm -f ${q(`${folder}/${DATA_FILE}`)} ${q(`${folder}/${MANIFEST_FILE}`)}`,
      ops.writeScript(`${folder}/${META_FILE}`, serializeMeta(meta)),
      ...(xmlFits ? [ops.writeScript(`${folder}/${DOMAIN_FILE}`, vm.inactiveXml)] : []),
    ];
    const jobHere = online !== undefined && online.job.dir === folder;
    if (online && jobHere) lines.push(...this.#jobScript(ops, vm, meta, online.job.dir, online.parentCheckpoint));
    const work: Promise<unknown>[] = [ops.run(lines.join('\n'), `recording ${meta.id}`, opts)];
    if (!xmlFits) work.push(ops.writeAtomic(`${folder}/${DOMAIN_FILE}`, vm.inactiveXml, opts));
    if (online && !jobHere) {
      const jobOps = new HostOps(this.s.p.virshFor(online.job.host.name));
      work.push(jobOps.run(['set -e', ...this.#jobScript(jobOps, vm, meta, online.job.dir, online.parentCheckpoint)].join('\n'), `preparing the backup of ${meta.vm}`, opts));
    }
    await Promise.all(work);
  }

  /**
   * Script lines that prepare a backup job: leftovers of an interrupted attempt go (its file,
   * its checkpoint, whose bitmap libvirt merges into the previous one so nothing is lost,
   * stale job statistics), and the job's backup and checkpoint XML are written.
   */
  #jobScript(ops: HostOps, vm: VmDisk, meta: BackupMeta, dir: string, parentCheckpoint: string | undefined): string[] {
    const v = (args: string[]) => `${ops.virsh.commandLine(args)} </dev/null`;
    const bxml = backupXml({ target: `${dir}/${DATA_FILE}`, otherDisks: vm.otherDisks, ...(meta.kind === 'incremental' ? { incrementalFrom: parentCheckpoint! } : {}) });
    const cxml = meta.checkpoint ? checkpointXml({ name: meta.checkpoint, otherDisks: vm.otherDisks }) : undefined;
    return [
      `mkdir -p ${ops.q(dir)}; rm -f ${ops.q(`${dir}/${DATA_FILE}`)} ${ops.q(`${dir}/.checkpoint.xml`)}`,
      ...(meta.checkpoint && vm.checkpoints.includes(meta.checkpoint) ? [`${v(['checkpoint-delete', vm.name, meta.checkpoint])} >/dev/null 2>&1 || true`] : []),
      `${v(['domjobinfo', vm.name, '--completed'])} >/dev/null 2>&1 || true`,
      ops.writeScript(`${dir}/.backup.xml`, bxml),
      ...(cxml ? [ops.writeScript(`${dir}/.checkpoint.xml`, cxml)] : []),
    ];
  }

  async #onlineBackup(found: LocatedDomain, vm: VmDisk, meta: BackupMeta, jobDir: string, targetOps: HostOps, folder: string, ctx: OperationContext): Promise<BackupMeta> {
    const name = meta.vm;
    const virsh = found.virsh;
    const opts: OpOptions = { ...sig(ctx), vm: name, operation: 'snapshot' };
    // The job copies the disk as of its start (copy-before-write): the guest may go on at once.
    // The record says what was done: quiesced only when the freeze succeeded.
    const begin = async (m: BackupMeta): Promise<BackupMeta> => {
      const frozen = vm.agent && (await this.#freeze(virsh, name, ctx));
      try {
        await virsh.run(['backup-begin', name, `${jobDir}/.backup.xml`, ...(m.checkpoint ? [`${jobDir}/.checkpoint.xml`] : [])], opts);
      } finally {
        if (frozen) await this.#thaw(virsh, name);
      }
      return { ...m, consistency: frozen ? 'quiesced' : 'crash' };
    };
    progress(ctx, 'begin', 0.05);
    let current = meta;
    try {
      current = await begin(current);
    } catch (error) {
      if (current.kind !== 'incremental' || error instanceof AbortedError || isRetryable(error)) throw error;
      // The checkpoint's bitmap could not be used (inconsistent after a crash, say): a full.
      this.s.log?.(`kvm: ${name}: incremental from ${current.parent} failed (${(error as Error).message}); taking a full`);
      const { parent: _parent, ...rest } = current;
      current = { ...rest, kind: 'full' };
      const jobOps = new HostOps(virsh);
      await Promise.all([
        this.s.writeMeta(targetOps, folder, current, opts),
        jobOps.run(['set -e', ...this.#jobScript(jobOps, { ...vm, checkpoints: [...vm.checkpoints, ...(current.checkpoint ? [current.checkpoint] : [])] }, current, jobDir, undefined)].join('\n'), `preparing the backup of ${name}`, opts),
      ]);
      current = await begin(current);
    }
    await this.#waitForJob(virsh, name, current, ctx);
    return current;
  }

  /** Polls the job to its end, reporting progress; on abort the job is cancelled and its checkpoint dropped. */
  async #waitForJob(virsh: Virsh, name: string, meta: BackupMeta, ctx: OperationContext): Promise<void> {
    const ops = new HostOps(virsh);
    const opts = { vm: name, operation: 'snapshot' };
    const cancel = async (): Promise<never> => {
      await virsh.tryRun(['domjobabort', name], opts).catch(() => undefined);
      if (meta.checkpoint) await virsh.tryRun(['checkpoint-delete', name, meta.checkpoint], opts).catch(() => undefined);
      throw new AbortedError(`the backup of ${name} was aborted; its record stays incomplete and the next run redoes it`, { context: virsh.context(opts) });
    };
    const v = (args: string[]) => `${virsh.commandLine(args)} </dev/null`;
    for (;;) {
      if (ctx.signal?.aborted) return cancel();
      // The job's state, and once it has ended how it ended: one round trip.
      let parts: Map<string, string>;
      try {
        parts = await ops.sections(
          (mark) => `i=$(${v(['domjobinfo', name])}); printf '%s\\n' "$i"; ${mark('now')}; case "$i" in *Unbounded*|*Bounded*) ;; *) ${v(['domjobinfo', name, '--completed'])}; ${mark('done')} ;; esac`,
          `watching the backup of ${name}`,
          { ...opts, ...sig(ctx) },
        );
      } catch (error) {
        if (ctx.signal?.aborted) return cancel();
        throw error;
      }
      const info = parseJobInfo(parts.get('now') ?? '');
      if (!jobActive(info)) {
        if (ctx.signal?.aborted) return cancel();
        const done = parseJobInfo(parts.get('done') ?? '');
        if (done.type === 'Completed') return;
        throw new ConflictError(`the backup job of ${name} ended ${done.type.toLowerCase()}${done.error ? `: ${done.error}` : ''}`, {
          context: virsh.context(opts),
          hint: 'see the libvirt log of the domain on the host; the next run redoes the backup',
        });
      }
      const fraction = info.totalBytes ? (info.processedBytes ?? 0) / info.totalBytes : undefined;
      ctx.onProgress?.({ operation: 'snapshot', phase: 'copy', ...(fraction !== undefined ? { fraction: 0.1 + 0.6 * fraction } : {}), message: `${mib(info.processedBytes)} of ${mib(info.totalBytes)} MiB` });
      try {
        await this.s.clock.sleep(POLL_MS, ctx.signal);
      } catch {
        return cancel();
      }
    }
  }

  /** A stopped VM: its disk copied with qemu-img (libvirt runs backup jobs only on running domains). */
  async #offlineBackup(found: LocatedDomain, vm: VmDisk, meta: BackupMeta, jobDir: string, ctx: OperationContext): Promise<void> {
    const ops = new HostOps(found.virsh);
    const q = (x: string) => ops.q(x);
    progress(ctx, 'copy', 0.1);
    await ops.run(
      [
        'set -e',
        `mkdir -p ${q(jobDir)}`,
        `qemu-img convert -f ${q(vm.format)} -O qcow2 ${q(vm.path)} ${q(`${jobDir}/.${DATA_FILE}.part`)}`,
        `mv -f ${q(`${jobDir}/.${DATA_FILE}.part`)} ${q(`${jobDir}/${DATA_FILE}`)}`,
        // A v2 qcow2 cannot hold the bitmaps checkpoints need: upgraded while nothing uses it.
        ...(vm.format === 'qcow2' && !vm.bitmapsPossible ? [`qemu-img amend -f qcow2 -o compat=1.1 ${q(vm.path)}`] : []),
      ].join('\n'),
      `copying the disk of ${meta.vm}`,
      { ...sig(ctx), vm: meta.vm, operation: 'snapshot' },
    );
  }

  /**
   * Links an incremental to its parent's file (qcow2 backing, metadata only), hashes what it
   * holds (all of a full; an incremental's changed blocks, the rest from its parent's
   * manifest), then writes the manifest and the complete record. Three round trips.
   */
  async #finish(meta: BackupMeta, folder: string, ops: HostOps, ctx: OperationContext): Promise<BackupMeta> {
    const opts: OpOptions = { ...sig(ctx), vm: meta.vm, operation: 'snapshot' };
    const q = (x: string) => ops.q(x);
    const file = `${folder}/${DATA_FILE}`;
    progress(ctx, 'digest', 0.8);
    const parentFolder = meta.parent !== undefined ? snapshotDir(this.s.dir(meta.host), meta.vm, meta.parent) : undefined;
    const parts = await ops.sections(
      (mark) =>
        [
          'set -e',
          `cd ${q(folder)}; rm -f .backup.xml .checkpoint.xml`,
          ...(meta.kind === 'incremental' ? [`qemu-img rebase -u -f qcow2 -b ${q(parentBacking(meta.parent!))} -F qcow2 ${DATA_FILE}`, `cat ${q(`${parentFolder}/${MANIFEST_FILE}`)}; ${mark('base')}`] : []),
          `qemu-img info -U --output=json -f qcow2 ${DATA_FILE}; ${mark('info')}`,
          `qemu-img map -U --output=json -f qcow2 ${DATA_FILE}; ${mark('map')}`,
          `stat -c %s ${DATA_FILE}; if [ -f ${DOMAIN_FILE} ]; then stat -c %s ${DOMAIN_FILE}; fi; ${mark('sizes')}`,
        ].join('\n'),
      `reading ${meta.id}`,
      opts,
    );
    const size = Number((JSON.parse(parts.get('info') ?? '{}') as Record<string, unknown>)['virtual-size']);
    if (size !== meta.diskBytes) throw new ConflictError(`the backup of ${meta.vm} is ${size} bytes, the disk ${meta.diskBytes}`, { context: ops.virsh.context(opts) });
    const mode = meta.kind === 'incremental' ? 'top' : 'all';
    const classes = classifyBlocks(parseImageMap(parts.get('map') ?? '[]'), size);
    const hashed = await ops.hashBlocks(file, 'qcow2', blocksToRead(classes, mode), size, `${this.s.dir(meta.host)}/.work`, opts);
    const base = meta.kind === 'incremental' ? parseManifest(parts.get('base') ?? '') : undefined;
    const manifest = formatManifest(assembleManifest(classes, size, hashed, mode, base));
    const stored = (parts.get('sizes') ?? '').split('\n').filter(Boolean).reduce((sum, n) => sum + Number(n), 0) + Buffer.byteLength(manifest);
    const { error: _error, ...rest } = meta;
    const complete: BackupMeta = { ...rest, state: 'complete', digest: digestOfManifest(manifest), sizeBytes: 0 };
    const sized: BackupMeta = { ...complete, sizeBytes: stored + Buffer.byteLength(serializeMeta(complete)) + 16 };
    // The manifest first, then the record that says complete.
    await ops.run(
      `set -e; t=${q(`${folder}/.${MANIFEST_FILE}.tmp`)}.$$; cat > "$t"; sync "$t" 2>/dev/null || true; mv -f "$t" ${q(`${folder}/${MANIFEST_FILE}`)}\n${ops.writeScript(`${folder}/${META_FILE}`, serializeMeta(sized))}`,
      `completing ${meta.id}`,
      { ...opts, stdin: manifest },
    );
    progress(ctx, 'done', 1);
    return sized;
  }

  async #diskSnapshot(found: LocatedDomain, vm: VmDisk, id: string, request: SnapshotRequest, ops: HostOps, folder: string, ctx: OperationContext): Promise<SnapshotRecord> {
    const name = found.view.info.name;
    const virsh = found.virsh;
    const opts: OpOptions = { ...sig(ctx), vm: name, operation: 'snapshot' };
    const active = ACTIVE_STATES.has(found.view.state);
    if (vm.format !== 'qcow2') throw new InvalidInputError(`VM "${name}" has a ${vm.format} disk; disk snapshots need qcow2`, { context: virsh.context(opts) });
    const meta: BackupMeta = {
      format: 1,
      id,
      vm: name,
      fleet: found.view.info.metadata?.fleet ?? '',
      group: found.view.info.metadata?.group ?? '',
      kind: 'disk',
      consistency: active ? 'crash' : 'quiesced',
      state: 'incomplete',
      takenAt: new Date(this.s.clock.now()).toISOString(),
      ...(request.scheduledFor ? { scheduledFor: request.scheduledFor } : {}),
      blockSize: BLOCK_BYTES,
      sizeBytes: 0,
      diskBytes: vm.virtualSize,
      host: found.host.name,
      location: `${found.host.name}:${vm.path}@${id}`,
      sourceHost: found.host.name,
      domainUuid: found.view.info.uuid,
      image: found.view.info.metadata?.image ?? 'unknown',
      resources: { cpu: found.view.info.vcpus, memoryMiB: found.view.info.memoryMiB, diskGiB: found.view.info.metadata?.diskGiB ?? Math.ceil(vm.virtualSize / 1024 ** 3) },
      diskPath: vm.path,
    };
    progress(ctx, 'record');
    await ops.run(`mkdir -p ${ops.q(folder)}`, `preparing ${folder}`, opts);
    await Promise.all([this.s.writeMeta(ops, folder, meta, opts), ops.writeAtomic(`${folder}/${DOMAIN_FILE}`, vm.inactiveXml, opts), ops.writeAtomic(`${folder}/${DISK_PATH_FILE}`, `${vm.path}\n`, opts)]);
    let current = meta;
    try {
      progress(ctx, 'snapshot', 0.2);
      if (active) {
        const node = vm.liveXml ? formatNodeName(vm.liveXml, BACKUP_DISK) : undefined;
        if (!node) throw new ConflictError(`cannot find the block node of ${name}'s ${BACKUP_DISK}`, { context: virsh.context(opts), hint: 'libvirt runs QEMU with -blockdev since 6.0; an older libvirt cannot take disk snapshots here' });
        const qmp = (execute: string) => JSON.stringify({ execute, arguments: { device: node, name: id } });
        // A leftover of an interrupted attempt under this name goes first.
        await virsh.tryRun(['qemu-monitor-command', name, qmp('blockdev-snapshot-delete-internal-sync')], opts);
        const frozen = vm.agent && (await this.#freeze(virsh, name, ctx));
        current = { ...current, consistency: frozen ? 'quiesced' : 'crash' };
        try {
          await virsh.run(['qemu-monitor-command', name, qmp('blockdev-snapshot-internal-sync')], opts);
        } finally {
          if (frozen) await this.#thaw(virsh, name);
        }
      } else {
        await ops.run(`qemu-img snapshot -d ${ops.q(id)} ${ops.q(vm.path)} 2>/dev/null || true; qemu-img snapshot -c ${ops.q(id)} ${ops.q(vm.path)}`, `snapshotting ${vm.path}`, opts);
      }
      throwIfAborted(ctx);
      progress(ctx, 'digest', 0.5);
      const work = `${this.s.dir(found.host.name)}/.work`;
      const tmp = `${work}/.${name}-${id}-${randomBytes(4).toString('hex')}.qcow2`;
      await ops.run(`set -e; mkdir -p ${ops.q(work)}; qemu-img convert -U -f qcow2 -l ${ops.q(`snapshot.name=${id}`)} -O qcow2 ${ops.q(vm.path)} ${ops.q(tmp)}`, `reading snapshot ${id}`, opts);
      let manifest: string;
      try {
        manifest = formatManifest((await ops.manifest(tmp, 'qcow2', work, 'all', undefined, opts)).hashes);
      } finally {
        await ops.run(`rm -f ${ops.q(tmp)}`, 'cleaning up', { vm: name }).catch(() => undefined);
      }
      await ops.writeAtomic(`${folder}/${MANIFEST_FILE}`, manifest, opts);
      const complete: BackupMeta = { ...current, state: 'complete', digest: digestOfManifest(manifest) };
      const sized = { ...complete, sizeBytes: await this.s.folderBytes(ops, folder, serializeMeta(complete).length + 64, opts) };
      await this.s.writeMeta(ops, folder, sized, opts);
      progress(ctx, 'done', 1);
      return toRecord(this.s.p.name, sized);
    } catch (error) {
      const message = error instanceof AbortedError ? 'aborted' : error instanceof Error ? error.message : String(error);
      await this.s.writeMeta(ops, folder, { ...current, error: message.slice(0, 500) }, { vm: name, operation: 'snapshot' }).catch(() => undefined);
      throw error;
    }
  }

  /**
   * Freezes the guest's file systems (its agent answered `inspectDisk`); false when it could
   * not (crash-consistent then). A freeze that failed, timed out say, may still have frozen
   * some or all of them in the guest: thawed at once, so the guest is never left frozen.
   */
  async #freeze(virsh: Virsh, name: string, ctx: OperationContext): Promise<boolean> {
    let frozen: Awaited<ReturnType<Virsh['tryRun']>>;
    try {
      frozen = await virsh.tryRun(['domfsfreeze', name], { ...sig(ctx), vm: name, operation: 'snapshot' });
    } catch (error) {
      // Aborted, or the connection lost: the freeze may have reached the agent.
      await this.#thaw(virsh, name);
      throw error;
    }
    if (!frozen.error) return true;
    this.s.log?.(`kvm: ${name}: the guest agent answers but could not freeze: ${frozen.error.message}; crash-consistent`);
    await this.#thaw(virsh, name);
    return false;
  }

  /** Thaws the guest's file systems (no signal: it runs on abort too); a failure is logged, not thrown. */
  async #thaw(virsh: Virsh, name: string): Promise<void> {
    const thawed = await virsh.tryRun(['domfsthaw', name], { vm: name, operation: 'snapshot' }).catch((error: unknown) => ({ error: error instanceof Error ? error : new Error(String(error)) }));
    if (thawed.error) this.s.log?.(`kvm: ${name}: could not thaw the guest's file systems: ${thawed.error.message}; run virsh domfsthaw ${name} on its host`);
  }
}

/**
 * An incremental needs a complete parent in the same backup folder, from this very domain
 * (its checkpoint is on it: a domain made anew has none), of the same disk size (not resized),
 * whose checkpoint still exists (a restore in place drops them), and a chain that is whole.
 * Anything else: a full, and why.
 */
export function decideKind(request: Pick<SnapshotRequest, 'kind' | 'parent'>, vm: Pick<VmDisk, 'format' | 'bitmapsPossible' | 'checkpoints' | 'virtualSize'>, own: readonly BackupMeta[], target: string, active: boolean): { kind: 'full' | 'incremental'; parent?: BackupMeta; why?: string } {
  if (request.kind !== 'incremental') return { kind: 'full' };
  if (request.parent === undefined) return { kind: 'full', why: 'no parent named' };
  if (!active) return { kind: 'full', why: 'the VM is shut off (checkpoints need a running VM)' };
  if (!vm.bitmapsPossible) return { kind: 'full', why: `its disk is ${vm.format === 'qcow2' ? 'qcow2 v2 (compat 0.10)' : vm.format}, which cannot hold checkpoints; a qcow2 v2 disk is upgraded the next time a backup finds the VM shut off` };
  const byId = new Map(own.map((m) => [m.id, m]));
  const parent = byId.get(request.parent);
  if (!parent) return { kind: 'full', why: `parent ${request.parent} is not in ${target}'s backup folder` };
  const why =
    parent.state !== 'complete' ? `parent ${parent.id} is incomplete`
    : parent.kind === 'disk' ? `parent ${parent.id} is a disk snapshot`
    : parent.checkpoint === undefined ? `parent ${parent.id} has no checkpoint`
    : !vm.checkpoints.includes(parent.checkpoint) ? `the checkpoint of ${parent.id} is gone (restored in place, or the domain was made anew)`
    : parent.diskBytes !== vm.virtualSize ? `the disk was resized since ${parent.id}`
    : undefined;
  if (why) return { kind: 'full', why };
  // Every link back to the full must be there and complete.
  for (let at: BackupMeta | undefined = parent, n = 0; at && at.kind === 'incremental'; n++) {
    const up: BackupMeta | undefined = at.parent === undefined ? undefined : byId.get(at.parent);
    if (!up || up.state !== 'complete' || n > 10_000) return { kind: 'full', why: `the chain of ${parent.id} is broken at ${at.parent ?? at.id}` };
    at = up;
  }
  return { kind: 'incremental', parent };
}

