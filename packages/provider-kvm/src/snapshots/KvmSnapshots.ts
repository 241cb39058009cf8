import { randomBytes } from 'node:crypto';
import {
  AbortedError,
  ConflictError,
  type BootCheckOptions,
  type BootCheckResult,
  InvalidInputError,
  NotFoundError,
  splitHostId,
  UnreachableError,
  type Clock,
  type KvmProviderConfig,
  type OperationContext,
  type RestoreRequest,
  type RestoreResult,
  type SnapshotConsistency,
  type SnapshotRecord,
  type SnapshotRequest,
  type SnapshotVerification,
  type StopOptions,
  type VmRecord,
  type VmRef,
} from '@novacron/core';
import type { KvmHost } from '../config.js';
import { assertOwnedOnHost, type LocatedDomain } from '../KvmProvider.js';
import { assertName } from '../names.js';
import type { Transport } from '../transport.js';
import type { Virsh } from '../virsh/Virsh.js';
import { relayFile } from '../images/streams.js';
import { backupXml, checkpointXml, jobActive, parseJobInfo } from './backupJob.js';
import { assembleManifest, BLOCK_BYTES, blocksToRead, classifyBlocks, digestOfManifest, formatManifest, parseImageMap, parseManifest } from './blockHashes.js';
import { HostOps, type OpOptions } from './hostOps.js';
import {
  assertSnapshotId,
  BACKUP_DISK,
  checkpointName,
  DATA_FILE,
  defaultSnapshotId,
  DISK_PATH_FILE,
  DOMAIN_FILE,
  MANIFEST_FILE,
  META_FILE,
  parentBacking,
  snapshotDir,
  stagingDir,
} from './layout.js';
import { parseMeta, serializeMeta, toRecord, type BackupMeta } from './meta.js';
import { formatNodeName, readRestored, restoredDomainXml, restoredLabels, type RestoredRecord } from './restoredDomain.js';

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

type LocatedVm = LocatedDomain;

export interface KvmSnapshotsOptions {
  readonly config: KvmProviderConfig;
  readonly clock: Clock;
  readonly log?: (message: string) => void;
}

/** What a guest prints when it is up, when its image names nothing else: the test guest, a login prompt, cloud-init done. */
export const DEFAULT_READY_MARKER = /NOVACRON-GUEST-READY|^\S+ login: ?$|Cloud-init v\. \S+ finished/m;

const POLL_MS = 500;
/** libvirt states in which QEMU runs and a backup job can run. */
const ACTIVE_STATES = new Set(['running', 'paused', 'idle', 'blocked']);

interface Located {
  readonly meta: BackupMeta;
  readonly host: KvmHost;
  readonly folder: string;
}

/**
 * Backups, disk snapshots and restores of KVM VMs (see docs/snapshots.md, "KVM").
 *
 * - Backups are libvirt push-mode backup jobs into `<backupDir>/<vm>/<id>/` on the target
 *   host: a full with a new checkpoint named by the id, or an incremental (`<incremental>`
 *   from the parent's checkpoint) whose qcow2 is rebased (metadata only) onto the parent's
 *   file, so every backup reads as the whole disk through its chain.
 * - Disk snapshots are qcow2 internal snapshots of the root disk, next to it.
 * - The record (meta.json) is written `incomplete` before any data moves and `complete` after
 *   the data, its block manifest and its digest are in place; a call with the same id
 *   returns a complete one and redoes an incomplete one from scratch.
 */
export class KvmSnapshots {
  readonly #p: KvmSnapshotsHost;
  readonly #config: KvmProviderConfig;
  readonly #clock: Clock;
  readonly #log: ((message: string) => void) | undefined;

  constructor(provider: KvmSnapshotsHost, options: KvmSnapshotsOptions) {
    this.#p = provider;
    this.#config = options.config;
    this.#clock = options.clock;
    this.#log = options.log;
  }

  // ---- snapshot ----------------------------------------------------------------------------

  async snapshot(ref: VmRef, request: SnapshotRequest, ctx: OperationContext = {}): Promise<SnapshotRecord> {
    const found = await this.#owned(ref, 'snapshot', ctx);
    const context = { provider: this.#p.name, vm: ref.name, operation: 'snapshot' };
    const id = assertSnapshotId(request.id ?? defaultSnapshotId(ref.name, this.#clock.now()), context);
    if (request.parent !== undefined) assertSnapshotId(request.parent, context);
    const target = request.kind === 'disk' || request.target === undefined ? found.host : this.#host(splitHostId(request.target).name, 'snapshot');
    const ops = new HostOps(this.#p.virshFor(target.name));
    const folder = snapshotDir(this.#dir(target.name), ref.name, id);
    const opts: OpOptions = { ...sig(ctx), vm: ref.name, operation: 'snapshot' };
    const active = ACTIVE_STATES.has(found.view.state);

    // One round trip to each end, at once: the VM's disk, checkpoints and agent; the target's
    // records of this id (anywhere) and of this VM's backups (the chain to build on).
    progress(ctx, 'inspect');
    const [vm, listing] = await Promise.all([
      this.#inspect(found, ctx, active && request.quiesce !== false),
      this.#metasOn(target, [`*/${id}`, `${ref.name}/*`], ctx),
    ]);
    // The same id: complete is returned as it is, incomplete is redone.
    const same = listing.filter((m) => m.meta.id === id);
    const taken = same.find((m) => m.meta.vm !== ref.name || m.meta.fleet !== ref.fleet);
    if (taken) throw new ConflictError(`snapshot id "${id}" is taken by VM "${taken.meta.vm}"`, { context: { ...context, host: target.name }, hint: 'use another id' });
    const existing = same[0]?.meta;
    if (existing?.state === 'complete') return toRecord(this.#p.name, existing);
    if (existing) this.#log?.(`kvm: ${target.name}: redoing incomplete snapshot ${id}${existing.error ? ` (${existing.error})` : ''}`);
    if (request.kind === 'disk') return this.#diskSnapshot(found, vm, id, request, ops, folder, ctx);

    if (!active && found.view.state !== 'shut off') {
      throw new ConflictError(`VM "${ref.name}" is ${found.view.state}; a backup needs it running or shut off`, { context: found.virsh.context({ vm: ref.name, operation: 'snapshot' }), hint: 'wait for it to settle, then run the backup again' });
    }
    const own = listing.filter((m) => m.meta.vm === ref.name).map((m) => m.meta);
    const decision = decideKind(request, vm, own, target.name, active);
    if (decision.why) this.#log?.(`kvm: ${ref.name}: taking a full instead of an incremental: ${decision.why}`);
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
      takenAt: new Date(this.#clock.now()).toISOString(),
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
    const job = { host: found.host, dir: target.name === found.host.name ? folder : stagingDir(this.#dir(found.host.name), ref.name, id) };
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
        await relayFile(this.#p.transport, found.host.ssh, `${job.dir}/${DATA_FILE}`, target.ssh, `${folder}/${DATA_FILE}`, (x) => ops.q(x), ctx.signal);
        await jobOps.run(`rm -rf ${jobOps.q(job.dir)}`, `removing ${job.dir}`, { vm: ref.name, operation: 'snapshot' }).catch(() => undefined);
      }
      throwIfAborted(ctx);
      const done = await this.#finish(meta, folder, ops, ctx);
      // Checkpoints whose backups are gone (deleted while the VM was off, when libvirt cannot
      // delete one) cost a bitmap each in the disk: dropped once a backup succeeded.
      const kept = new Set(own.map((m) => m.checkpoint ?? checkpointName(m.id)));
      const stale = vm.checkpoints.filter((c) => c !== done.checkpoint && !kept.has(c));
      if (done.checkpoint && stale.length > 0) {
        this.#log?.(`kvm: ${ref.name}: dropping checkpoints without a backup: ${stale.join(', ')}`);
        await found.virsh.batch(stale.map((c) => ['checkpoint-delete', ref.name, c]), { vm: ref.name, operation: 'snapshot' }).catch(() => undefined);
      }
      return toRecord(this.#p.name, done);
    } catch (error) {
      const message = error instanceof AbortedError ? 'aborted' : error instanceof Error ? error.message : String(error);
      await this.#writeMeta(ops, folder, { ...meta, error: message.slice(0, 500) }, { vm: ref.name, operation: 'snapshot' }).catch(() => undefined);
      throw error;
    }
  }

  /** What a backup needs to know about the VM, in one round trip to its host. */
  async #inspect(found: LocatedVm, ctx: OperationContext, askAgent = false): Promise<VmDisk> {
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
      const jobOps = new HostOps(this.#p.virshFor(online.job.host.name));
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

  async #onlineBackup(found: LocatedVm, vm: VmDisk, meta: BackupMeta, jobDir: string, targetOps: HostOps, folder: string, ctx: OperationContext): Promise<BackupMeta> {
    const name = meta.vm;
    const virsh = found.virsh;
    const opts: OpOptions = { ...sig(ctx), vm: name, operation: 'snapshot' };
    const begin = async (m: BackupMeta): Promise<void> => {
      // The job copies the disk as of its start (copy-before-write): the guest may go on at once.
      const frozen = vm.agent && (await this.#freeze(virsh, name, ctx));
      try {
        await virsh.run(['backup-begin', name, `${jobDir}/.backup.xml`, ...(m.checkpoint ? [`${jobDir}/.checkpoint.xml`] : [])], opts);
      } finally {
        if (frozen) await virsh.tryRun(['domfsthaw', name], { vm: name, operation: 'snapshot' }).catch(() => undefined);
      }
    };
    progress(ctx, 'begin', 0.05);
    let current = meta;
    try {
      await begin(current);
    } catch (error) {
      if (current.kind !== 'incremental' || error instanceof AbortedError || isRetryable(error)) throw error;
      // The checkpoint's bitmap could not be used (inconsistent after a crash, say): a full.
      this.#log?.(`kvm: ${name}: incremental from ${current.parent} failed (${(error as Error).message}); taking a full`);
      const { parent: _parent, ...rest } = current;
      current = { ...rest, kind: 'full' };
      const jobOps = new HostOps(virsh);
      await Promise.all([
        this.#writeMeta(targetOps, folder, current, opts),
        jobOps.run(['set -e', ...this.#jobScript(jobOps, { ...vm, checkpoints: [...vm.checkpoints, ...(current.checkpoint ? [current.checkpoint] : [])] }, current, jobDir, undefined)].join('\n'), `preparing the backup of ${name}`, opts),
      ]);
      await begin(current);
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
        await this.#clock.sleep(POLL_MS, ctx.signal);
      } catch {
        return cancel();
      }
    }
  }

  /** A stopped VM: its disk copied with qemu-img (libvirt runs backup jobs only on running domains). */
  async #offlineBackup(found: LocatedVm, vm: VmDisk, meta: BackupMeta, jobDir: string, ctx: OperationContext): Promise<void> {
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
    const parentFolder = meta.parent !== undefined ? snapshotDir(this.#dir(meta.host), meta.vm, meta.parent) : undefined;
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
    const hashed = await ops.hashBlocks(file, 'qcow2', blocksToRead(classes, mode), size, `${this.#dir(meta.host)}/.work`, opts);
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

  async #diskSnapshot(found: LocatedVm, vm: VmDisk, id: string, request: SnapshotRequest, ops: HostOps, folder: string, ctx: OperationContext): Promise<SnapshotRecord> {
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
      takenAt: new Date(this.#clock.now()).toISOString(),
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
    await Promise.all([this.#writeMeta(ops, folder, meta, opts), ops.writeAtomic(`${folder}/${DOMAIN_FILE}`, vm.inactiveXml, opts), ops.writeAtomic(`${folder}/${DISK_PATH_FILE}`, `${vm.path}\n`, opts)]);
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
          if (frozen) await virsh.tryRun(['domfsthaw', name], { vm: name, operation: 'snapshot' }).catch(() => undefined);
        }
      } else {
        await ops.run(`qemu-img snapshot -d ${ops.q(id)} ${ops.q(vm.path)} 2>/dev/null || true; qemu-img snapshot -c ${ops.q(id)} ${ops.q(vm.path)}`, `snapshotting ${vm.path}`, opts);
      }
      throwIfAborted(ctx);
      progress(ctx, 'digest', 0.5);
      const work = `${this.#dir(found.host.name)}/.work`;
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
      const sized = { ...complete, sizeBytes: await this.#folderBytes(ops, folder, serializeMeta(complete).length + 64, opts) };
      await this.#writeMeta(ops, folder, sized, opts);
      progress(ctx, 'done', 1);
      return toRecord(this.#p.name, sized);
    } catch (error) {
      const message = error instanceof AbortedError ? 'aborted' : error instanceof Error ? error.message : String(error);
      await this.#writeMeta(ops, folder, { ...current, error: message.slice(0, 500) }, { vm: name, operation: 'snapshot' }).catch(() => undefined);
      throw error;
    }
  }

  /** Freezes the guest's file systems (its agent answered `#inspect`); false when it could not (crash-consistent then). */
  async #freeze(virsh: Virsh, name: string, ctx: OperationContext): Promise<boolean> {
    const frozen = await virsh.tryRun(['domfsfreeze', name], { ...sig(ctx), vm: name, operation: 'snapshot' });
    if (frozen.error) this.#log?.(`kvm: ${name}: the guest agent answers but could not freeze: ${frozen.error.message}; crash-consistent`);
    return !frozen.error;
  }

  // ---- list, verify, delete --------------------------------------------------------------

  async listSnapshots(fleet: string, ctx: OperationContext = {}): Promise<readonly SnapshotRecord[]> {
    const perHost = await Promise.all([...this.#p.hosts.values()].map((h) => this.#metasOn(h, '*/*', ctx, true)));
    const out: SnapshotRecord[] = [];
    for (const { meta } of perHost.flat()) if (meta.fleet === fleet) out.push(toRecord(this.#p.name, meta));
    return out.sort((a, b) => a.vm.localeCompare(b.vm) || a.takenAt.localeCompare(b.takenAt) || a.id.localeCompare(b.id));
  }

  async recordVerification(id: string, verification: SnapshotVerification, ctx: OperationContext = {}): Promise<SnapshotRecord> {
    const found = await this.#find(id, 'recordVerification', ctx);
    if (!found) throw new NotFoundError(`snapshot "${id}" does not exist`, { context: { provider: this.#p.name, operation: 'recordVerification' } });
    const updated: BackupMeta = { ...found.meta, verified: verification };
    await this.#writeMeta(new HostOps(this.#p.virshFor(found.host.name)), found.folder, updated, { ...sig(ctx), vm: found.meta.vm, operation: 'recordVerification' });
    return toRecord(this.#p.name, updated);
  }

  /**
   * Merges a backup into each child before removing it: the child is rebased (a copy of it,
   * renamed over it when done) onto the deleted one's parent, or flattened into a full when
   * that was a full, and its record updated; only then does the folder go. A crash in
   * between leaves both restorable. Its checkpoint goes too (libvirt merges its bitmap into
   * the previous checkpoint, so later incrementals miss nothing).
   */
  async deleteSnapshot(id: string, ctx: OperationContext = {}): Promise<void> {
    const context = { provider: this.#p.name, operation: 'deleteSnapshot' };
    assertSnapshotId(id, context);
    const found = await this.#find(id, 'deleteSnapshot', ctx);
    if (!found) return;
    const { meta, host, folder } = found;
    const ops = new HostOps(this.#p.virshFor(host.name));
    const opts: OpOptions = { ...sig(ctx), vm: meta.vm, operation: 'deleteSnapshot' };
    if (meta.kind === 'disk') {
      await this.#dropInternalSnapshot(meta, ctx);
    } else {
      const siblings = await this.#metasOn(host, `${meta.vm}/*`, ctx);
      const children = siblings.map((s) => s.meta).filter((m) => m.parent === id);
      for (const child of children) {
        progress(ctx, 'merge', undefined, `merging ${id} into ${child.id}`, 'deleteSnapshot');
        const childFolder = snapshotDir(this.#dir(host.name), meta.vm, child.id);
        const work = `.${DATA_FILE}.rebase`;
        const onto = meta.kind === 'incremental' && meta.parent !== undefined ? `-b ${ops.q(parentBacking(meta.parent))} -F qcow2` : `-b ''`;
        await ops.run(
          `set -e; cd ${ops.q(childFolder)}; cp --reflink=auto ${DATA_FILE} ${work}; qemu-img rebase -f qcow2 ${onto} ${work}; sync ${work} 2>/dev/null || true; mv -f ${work} ${DATA_FILE}`,
          `merging ${id} into ${child.id}`,
          opts,
        );
        const { parent: _old, ...rest } = child;
        const merged: BackupMeta = meta.kind === 'incremental' && meta.parent !== undefined ? { ...rest, parent: meta.parent } : { ...rest, kind: 'full' };
        const sized = { ...merged, sizeBytes: await this.#folderBytes(ops, childFolder, serializeMeta(merged).length + 64, opts) };
        await this.#writeMeta(ops, childFolder, sized, opts);
      }
      if (meta.checkpoint) await this.#dropCheckpoint(meta, ctx);
    }
    // Renamed first (listing skips dot folders), then removed: never half a backup on view.
    const gone = `${this.#dir(host.name)}/${meta.vm}/.deleting-${id}-${randomBytes(4).toString('hex')}`;
    await ops.run(`if [ -d ${ops.q(folder)} ]; then mv ${ops.q(folder)} ${ops.q(gone)}; rm -rf ${ops.q(gone)}; fi; rmdir ${ops.q(`${this.#dir(host.name)}/${meta.vm}`)} 2>/dev/null || true`, `removing ${folder}`, opts);
  }

  async #dropCheckpoint(meta: BackupMeta, ctx: OperationContext): Promise<void> {
    const found = await this.#p.locate({ name: meta.vm, fleet: meta.fleet, host: meta.sourceHost }, 'deleteSnapshot', ctx).catch(() => undefined);
    // libvirt can delete a checkpoint only while the domain runs; otherwise the next backup's clean-up does it.
    if (!found || found.view.info.uuid !== meta.domainUuid || !ACTIVE_STATES.has(found.view.state)) return;
    const r = await found.virsh.tryRun(['checkpoint-delete', meta.vm, meta.checkpoint!], { ...sig(ctx), vm: meta.vm, operation: 'deleteSnapshot' });
    if (r.error && !/checkpoint not found|no domain checkpoint/i.test(r.stderr)) throw r.error;
  }

  async #dropInternalSnapshot(meta: BackupMeta, ctx: OperationContext): Promise<void> {
    const found = await this.#p.locate({ name: meta.vm, fleet: meta.fleet, host: meta.host }, 'deleteSnapshot', ctx);
    if (!found || found.view.info.uuid !== meta.domainUuid || !meta.diskPath) return;
    const opts = { ...sig(ctx), vm: meta.vm, operation: 'deleteSnapshot' };
    if (ACTIVE_STATES.has(found.view.state)) {
      const live = await found.virsh.run(['dumpxml', meta.vm], opts);
      const node = formatNodeName(live, BACKUP_DISK);
      if (!node) return;
      const r = await found.virsh.tryRun(['qemu-monitor-command', meta.vm, JSON.stringify({ execute: 'blockdev-snapshot-delete-internal-sync', arguments: { device: node, name: meta.id } })], opts);
      if (r.error && !/not found|does not exist|Can't find/i.test(r.stderr)) throw r.error;
    } else {
      const ops = new HostOps(found.virsh);
      await ops.run(`if qemu-img snapshot -l ${ops.q(meta.diskPath)} | awk 'NR>2{print $2}' | grep -qxF -- ${ops.q(meta.id)}; then qemu-img snapshot -d ${ops.q(meta.id)} ${ops.q(meta.diskPath)}; fi`, `deleting snapshot ${meta.id}`, opts);
    }
  }

  // ---- restore ------------------------------------------------------------------------------

  async restore(ref: VmRef, request: RestoreRequest, ctx: OperationContext = {}): Promise<RestoreResult> {
    const context = { provider: this.#p.name, vm: ref.name, operation: 'restore' };
    assertSnapshotId(request.snapshot, context);
    const located = await this.#find(request.snapshot, 'restore', ctx);
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
    const found = await this.#owned(ref, 'restore', ctx);
    const ops = new HostOps(found.virsh);
    const opts: OpOptions = { ...sig(ctx), vm: ref.name, operation: 'restore' };
    const vm = await this.#inspect(found, ctx);
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
      if (wasRunning) await this.#p.stop(ref, { force: true }, ctx);
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
    const now = await this.#p.locate({ name: ref.name, fleet: ref.fleet, host: found.host.name }, 'restore', ctx);
    progress(ctx, 'done', 1, undefined, 'restore');
    return { vm: this.#p.toRecord(now ?? found), digest, bytesWritten };
  }

  async #restoreAs(ref: VmRef, located: Located, asName: string, scratch: boolean, ctx: OperationContext): Promise<RestoreResult> {
    const { meta } = located;
    const name = assertName('vm', asName, 'restored VM name', { provider: this.#p.name });
    const context = { provider: this.#p.name, vm: name, operation: 'restore' };
    const taken = await this.#p.locate({ name, fleet: '' }, 'restore', ctx);
    if (taken) {
      const restored = await this.#restoredOf(taken, ctx);
      if (scratch && restored?.scratch && !taken.view.info.metadata) {
        await this.#p.delete({ name, fleet: '', host: taken.host.name }, ctx);
      } else {
        throw new ConflictError(`a VM named "${name}" already exists on ${taken.host.name}`, { context: { ...context, host: taken.host.name }, hint: 'choose another name for the restored VM' });
      }
    }
    // Where the source VM runs now, else where it ran, else where the backup is.
    const source = await this.#p.locate({ name: ref.name, fleet: ref.fleet }, 'restore', ctx).catch(() => undefined);
    const dest = source?.host ?? this.#p.hosts.get(meta.sourceHost) ?? this.#host(meta.host, 'restore');
    const ops = new HostOps(this.#p.virshFor(dest.name));
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
      const found = await this.#p.locate({ name, fleet: '', host: dest.name }, 'restore', ctx);
      if (!found) throw new NotFoundError(`the restored VM "${name}" vanished`, { context });
      const vmRecord = this.#p.toRecord(found);
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
    const src = new HostOps(this.#p.virshFor(host.name));
    const opts: OpOptions = { ...sig(ctx), vm: meta.vm, operation: 'restore' };
    const here = host.name === dest.name;
    const out = here ? path : `${this.#dir(host.name)}/.work/.restore-${meta.id}-${randomBytes(4).toString('hex')}.qcow2`;
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
        await relayFile(this.#p.transport, host.ssh, out, dest.ssh, path, (s) => src.q(s), ctx.signal);
      } finally {
        await src.run(`rm -f ${src.q(out)}`, 'cleaning up', { vm: meta.vm }).catch(() => undefined);
      }
    }
    return Number(stdout.trim().split('\n').at(-1));
  }

  async #digestOf(ops: HostOps, path: string, host: string, limitBytes: number, opts: OpOptions): Promise<string> {
    const m = await ops.manifest(path, 'qcow2', `${this.#dir(host)}/.work`, 'all', undefined, { ...opts, limitBytes });
    return digestOfManifest(formatManifest(m.hashes));
  }

  async #sourceXml(located: Located, ctx: OperationContext): Promise<string> {
    const ops = new HostOps(this.#p.virshFor(located.host.name));
    const xml = await ops.readText(`${located.folder}/${DOMAIN_FILE}`, { ...sig(ctx), vm: located.meta.vm, operation: 'restore' });
    if (!xml) throw new NotFoundError(`snapshot "${located.meta.id}" has no ${DOMAIN_FILE}`, { context: { provider: this.#p.name, host: located.host.name, vm: located.meta.vm, operation: 'restore' }, hint: 'restore it in place instead' });
    return xml;
  }

  async #restoredOf(found: LocatedVm, ctx: OperationContext): Promise<RestoredRecord | undefined> {
    const xml = await found.virsh.run(['dumpxml', '--inactive', found.view.info.name], { ...sig(ctx), vm: found.view.info.name, operation: 'restore' });
    return readRestored(xml);
  }

  // ---- boot check -------------------------------------------------------------------------

  /**
   * Boots a VM restored for a restore test and waits for its guest's ready marker on the
   * serial console (the image's `readyMarker`), then powers it off again. Only VMs of
   * `ref.fleet` or, with no fleet, VMs NovaCron restored.
   */
  async bootCheck(ref: VmRef, options: BootCheckOptions = {}, ctx: OperationContext = {}): Promise<BootCheckResult> {
    const started = this.#clock.now();
    const found = await this.#p.locate(ref, 'bootCheck', ctx);
    const context = { provider: this.#p.name, vm: ref.name, operation: 'bootCheck' };
    if (!found) throw new NotFoundError(`VM "${ref.name}" does not exist`, { context });
    const restored = await this.#restoredOf(found, ctx);
    const fleet = found.view.info.metadata?.fleet ?? '';
    if (fleet !== ref.fleet || (fleet === '' && !restored)) {
      throw new ConflictError(`VM "${ref.name}" is not ${ref.fleet ? `owned by fleet "${ref.fleet}"` : 'a VM NovaCron restored'}; refusing to boot it`, { context: { ...context, host: found.host.name } });
    }
    const image = restored?.image || found.view.info.metadata?.image || '';
    const configured = this.#config.images[image]?.readyMarker;
    const marker = configured ? new RegExp(configured, 'm') : DEFAULT_READY_MARKER;
    const timeoutMs = options.timeoutMs ?? this.#config.bootTimeout;
    const virsh = found.virsh;
    const ops = new HostOps(virsh);
    const opts: OpOptions = { ...sig(ctx), vm: ref.name, operation: 'bootCheck' };
    const log = `/var/log/libvirt/qemu/${ref.name}-serial.log`;
    if (ACTIVE_STATES.has(found.view.state)) await virsh.tryRun(['destroy', ref.name], opts);
    await ops.run(`: > ${ops.q(log)} 2>/dev/null || true`, 'clearing the serial log', opts);
    progress(ctx, 'boot', 0.1, undefined, 'bootCheck');
    await virsh.run(['start', ref.name], opts);
    let text = '';
    let offset = 0;
    let ok = false;
    try {
      while (this.#clock.now() - started < timeoutMs) {
        const chunk = await ops.run(`tail -c +${offset + 1} ${ops.q(log)} 2>/dev/null || true`, 'reading the serial log', opts);
        offset += Buffer.byteLength(chunk);
        text = (text + chunk).slice(-65_536);
        if (marker.test(text)) {
          ok = true;
          break;
        }
        await this.#clock.sleep(1000, ctx.signal);
      }
    } finally {
      await virsh.tryRun(['destroy', ref.name], { vm: ref.name, operation: 'bootCheck' }).catch(() => undefined);
    }
    const durationMs = this.#clock.now() - started;
    const detail = ok
      ? `booted on ${found.host.name} to its ready marker (${marker.source}) in ${(durationMs / 1000).toFixed(1)} s`
      : `no ready marker (${marker.source}) on the serial console within ${Math.round(timeoutMs / 1000)} s; last output: ${text.slice(-400).replace(/\s+/g, ' ').trim() || '(none)'}`;
    return { ok, detail, durationMs };
  }

  // ---- internals -------------------------------------------------------------------------

  #dir(host: string): string {
    return this.#config.hosts.find((h) => h.name === host)?.backupDir ?? this.#config.backupDir;
  }

  #host(name: string, operation: string): KvmHost {
    const host = this.#p.hosts.get(name);
    if (!host) {
      throw new NotFoundError(`host "${name}" is not in provider "${this.#p.name}"`, { context: { provider: this.#p.name, host: name, operation }, hint: `hosts: ${[...this.#p.hosts.keys()].join(', ')}` });
    }
    return host;
  }

  async #owned(ref: VmRef, operation: string, ctx: OperationContext): Promise<LocatedVm> {
    assertName('vm', ref.name, 'VM name', { provider: this.#p.name });
    const found = await this.#p.locate(ref, operation, ctx);
    if (!found) {
      throw new NotFoundError(`VM "${ref.name}" does not exist on any host of provider "${this.#p.name}"`, {
        context: { provider: this.#p.name, vm: ref.name, operation },
        hint: operation === 'restore' ? 'restore it as a new VM with --as, or apply the fleet first' : 'apply the fleet first',
      });
    }
    assertOwnedOnHost(found, ref, this.#p.name, operation);
    return found;
  }

  /**
   * The records under `<backupDir>/<glob>/meta.json` on one host. A folder several hosts see
   * (a shared mount) is reported by the host that wrote it. With `withDisks`, disk snapshots
   * whose internal snapshot is gone (the VM was deleted) are left out.
   */
  async #metasOn(host: KvmHost, globs: string | readonly string[], ctx: OperationContext, withDisks = false): Promise<{ meta: BackupMeta; folder: string }[]> {
    const ops = new HostOps(this.#p.virshFor(host.name));
    const dir = this.#dir(host.name);
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
    if (!parts.has('end')) throw new UnreachableError(`${host.name}: the backup listing was cut short`, { context: { provider: this.#p.name, host: host.name }, hint: 'retry' });
    const out: { meta: BackupMeta; folder: string }[] = [];
    for (const [key, text] of parts) {
      if (!key.startsWith('meta:')) continue;
      const folder = key.slice('meta:'.length);
      const meta = parseMeta(text);
      if (!meta) continue;
      if (meta.host !== host.name && this.#p.hosts.has(meta.host)) continue;
      if (withDisks && meta.kind === 'disk' && meta.state === 'complete' && parts.get(`disk:${folder}`) !== 'present') continue;
      out.push({ meta, folder });
    }
    return out;
  }

  /** A snapshot by id, wherever it is. Undefined when no host has it; a host that does not answer is an error (it might). */
  async #find(id: string, operation: string, ctx: OperationContext): Promise<Located | undefined> {
    assertSnapshotId(id, { provider: this.#p.name, operation });
    const perHost = await Promise.all(
      [...this.#p.hosts.values()].map(async (host) => (await this.#metasOn(host, `*/${id}`, ctx)).map((m) => ({ ...m, host }))),
    );
    const hit = perHost.flat().find((m) => m.meta.id === id);
    return hit ? { meta: hit.meta, host: hit.host, folder: hit.folder } : undefined;
  }

  async #writeMeta(ops: HostOps, folder: string, meta: BackupMeta, opts: OpOptions): Promise<void> {
    await ops.writeAtomic(`${folder}/${META_FILE}`, serializeMeta(meta), opts);
  }

  /** Bytes the folder's files hold, with the record about to be written counted as `metaBytes`. */
  async #folderBytes(ops: HostOps, folder: string, metaBytes: number, opts: OpOptions): Promise<number> {
    const files = [DATA_FILE, MANIFEST_FILE, DOMAIN_FILE, DISK_PATH_FILE].map((f) => ops.q(`${folder}/${f}`)).join(' ');
    const out = await ops.run(`for f in ${files}; do [ -f "$f" ] && stat -c %s "$f"; done; true`, `sizing ${folder}`, opts);
    return out.split('\n').filter(Boolean).reduce((sum, n) => sum + Number(n), 0) + metaBytes;
  }
}

/** The backed-up disk of a VM, as `#inspect` reads it. */
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

function sig(ctx: OperationContext): { signal?: AbortSignal } {
  return ctx.signal ? { signal: ctx.signal } : {};
}

function throwIfAborted(ctx: OperationContext): void {
  if (ctx.signal?.aborted) throw new AbortedError(undefined, { cause: ctx.signal.reason });
}

function isRetryable(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { retryable?: unknown }).retryable === true;
}

function mib(bytes: number | undefined): string {
  return bytes === undefined ? '?' : (bytes / 1024 ** 2).toFixed(1);
}

function progress(ctx: OperationContext, phase: string, fraction?: number, message?: string, operation = 'snapshot'): void {
  ctx.onProgress?.({ operation, phase, ...(fraction !== undefined ? { fraction } : {}), ...(message ? { message } : {}) });
}

export type { SnapshotConsistency };
