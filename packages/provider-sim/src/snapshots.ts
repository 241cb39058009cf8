import {
  assertOwned,
  CapacityExceededError,
  ConflictError,
  hostId,
  InvalidInputError,
  NotFoundError,
  splitHostId,
  UnreachableError,
  type Clock,
  type CreateVmRequest,
  type OperationContext,
  type RestoreRequest,
  type RestoreResult,
  type SimProviderConfig,
  type SnapshotConsistency,
  type SnapshotKind,
  type SnapshotRecord,
  type SnapshotRequest,
  type SnapshotVerification,
  type VmRecord,
  type VmRef,
} from '@novacron/core';
import { createHash } from 'node:crypto';
import { BLOCK_BYTES, blockBytes, countBlocks, countBlocksFrom, diff, digestOf, GENERATIONS, overlay, tokenAt, tokenOf, truncate, write, type Runs } from './blocks.js';
import { SimulatedCrash, type FaultInjector } from './faults.js';
import type { SimDisk, SimSnapshot, SimVm, World } from './world.js';

/** Fixed metadata of a stored snapshot (its manifest header), in bytes. */
export const MANIFEST_BYTES = 4096;
/** Metadata per stored block: its index and sha256. */
export const MANIFEST_BYTES_PER_BLOCK = 40;
/** The base image occupies at most this much of a disk. */
const IMAGE_MIB = 2048;
/** Blocks copied between fault checks and progress reports. */
const CHUNK_BLOCKS = 256;
/** Guests write to disk at this fraction of their memory dirty rate (`workload.dirtyRateMiBps`). */
export const DISK_WRITE_FRACTION = 1 / 1024;

/** What the disk store needs from the provider it belongs to. */
export interface SimDiskHost {
  readonly name: string;
  readonly world: World;
  readonly clock: Clock;
  readonly faults: FaultInjector;
  readonly config: SimProviderConfig;
  create(request: CreateVmRequest, ctx?: OperationContext): Promise<VmRecord>;
  delete(vm: VmRef, ctx?: OperationContext): Promise<void>;
  record(vm: SimVm): VmRecord;
}

const LABEL_FROM = 'novacron.io/restored-from';
const LABEL_SNAPSHOT = 'novacron.io/snapshot';
const LABEL_SCRATCH = 'novacron.io/scratch';

/**
 * The sim's disks and snapshot store: a block model of every VM's disk, full and incremental
 * snapshots that store only the blocks they need, restore from a chain byte for byte, and
 * merge-on-delete so pruning never breaks a kept snapshot. Everything lives in the world, so
 * snapshots survive restarts like the rest of the datacenter.
 */
export class SimDisks {
  /** Parent id → child ids, built on first use; every snapshot write goes through #put/#remove to keep it true. */
  #children: Map<string, Set<string>> | undefined;

  constructor(private readonly host: SimDiskHost) {}

  // ---- the provider contract ---------------------------------------------------------

  async snapshot(ref: VmRef, request: SnapshotRequest, ctx: OperationContext = {}): Promise<SnapshotRecord> {
    const stage = await this.#enter('snapshot', ctx, ref.name);
    const vm = this.#owned(ref, 'snapshot');
    const context = { provider: this.host.name, vm: vm.name, operation: 'snapshot' };
    const location = this.#location(vm, request);
    const id = request.id ?? `${vm.name}@${new Date(this.host.clock.now()).toISOString()}`;
    const existing = this.host.world.get('snapshots', id);
    if (existing && (existing.vm !== vm.name || existing.fleet !== ref.fleet)) {
      throw new ConflictError(`snapshot id "${id}" is taken by VM "${existing.vm}"`, { context, hint: 'use another id' });
    }
    if (existing?.state === 'complete') return this.#toRecord(existing);

    const disk = this.#touch(vm);
    const now = this.host.clock.now();
    const { kind, parent } = this.#decideKind(request, disk);
    const runs = kind === 'incremental' ? diff(disk.runs, this.#reconstruct(parent!)) : truncate(disk.runs, disk.sizeBlocks);
    const storedBlocks = kind === 'incremental' ? countBlocks(runs) : disk.imageBlocks + countBlocksFrom(runs, disk.imageBlocks);
    const base: SimSnapshot = {
      id,
      vm: vm.name,
      vmId: vm.id,
      epoch: disk.epoch,
      fleet: vm.fleet,
      group: vm.group,
      host: vm.host,
      takenAt: new Date(now).toISOString(),
      ...(request.scheduledFor ? { scheduledFor: request.scheduledFor } : {}),
      kind,
      ...(parent ? { parent: parent.id } : {}),
      consistency: this.#consistency(vm, request),
      state: 'incomplete',
      image: disk.image,
      imageBlocks: disk.imageBlocks,
      sizeBlocks: disk.sizeBlocks,
      resources: vm.resources,
      runs: [],
      storedBlocks: 0,
      sizeBytes: 0,
      location,
    };
    // Recorded before any block moves: an interruption leaves an incomplete snapshot that
    // blocks pruning and that the next call with this id redoes.
    this.#put(base);
    try {
      for (let done = 0; done < storedBlocks; done += CHUNK_BLOCKS) {
        await stage('copy');
        ctx.onProgress?.({ operation: 'snapshot', phase: 'copy', fraction: done / storedBlocks, message: `${done}/${storedBlocks} MiB` });
      }
      await stage('commit');
    } catch (error) {
      if (!(error instanceof SimulatedCrash)) this.#put({ ...base, error: error instanceof Error ? error.message : String(error) });
      throw error;
    }
    const complete: SimSnapshot = {
      ...base,
      state: 'complete',
      runs,
      storedBlocks,
      sizeBytes: sizeOf(storedBlocks),
      digest: digestOf(disk),
    };
    this.#put(complete);
    ctx.onProgress?.({ operation: 'snapshot', phase: 'done', fraction: 1 });
    return this.#toRecord(complete);
  }

  async listSnapshots(fleet: string, ctx: OperationContext = {}): Promise<readonly SnapshotRecord[]> {
    await this.#enter('listSnapshots', ctx);
    this.#dropStaleDisks();
    const out: SnapshotRecord[] = [];
    for (const s of this.host.world.values('snapshots')) if (s.fleet === fleet) out.push(this.#toRecord(s));
    return out.sort((a, b) => a.vm.localeCompare(b.vm) || a.takenAt.localeCompare(b.takenAt));
  }

  async restore(ref: VmRef, request: RestoreRequest, ctx: OperationContext = {}): Promise<RestoreResult> {
    const stage = await this.#enter('restore', ctx, ref.name);
    const snapshot = this.host.world.get('snapshots', request.snapshot);
    const context = { provider: this.host.name, vm: ref.name, operation: 'restore' };
    if (!snapshot || snapshot.fleet !== ref.fleet || snapshot.vm !== ref.name) {
      throw new NotFoundError(`VM "${ref.name}" has no snapshot "${request.snapshot}"`, { context, hint: 'list them with `novacron snapshot list`' });
    }
    if (snapshot.state !== 'complete') {
      throw new ConflictError(`snapshot "${snapshot.id}" is incomplete and cannot be restored`, { context, hint: 'restore an earlier one, or let the next tick complete it' });
    }
    const runs = this.#reconstruct(snapshot);
    const blocks = snapshot.imageBlocks + countBlocksFrom(runs, snapshot.imageBlocks);
    const copy = async () => {
      for (let done = 0; done < blocks; done += CHUNK_BLOCKS) {
        await stage('write');
        ctx.onProgress?.({ operation: 'restore', phase: 'write', fraction: done / blocks, message: `${done}/${blocks} MiB` });
      }
    };
    const bytesWritten = blocks * BLOCK_BYTES;

    if (request.asName === undefined) {
      const vm = this.#owned(ref, 'restore');
      const disk = this.#touch(vm);
      if (disk.sizeBlocks < snapshot.sizeBlocks) {
        throw new InvalidInputError(`the disk of "${vm.name}" (${disk.sizeBlocks} MiB) is smaller than snapshot "${snapshot.id}" (${snapshot.sizeBlocks} MiB)`, { context, hint: 'restore it as a new VM with --as' });
      }
      const wasRunning = vm.state === 'running';
      if (wasRunning) this.host.world.put('vms', vm.name, { ...vm, state: 'stopped' });
      await copy();
      const restored: SimDisk = {
        ...disk,
        image: snapshot.image,
        imageBlocks: snapshot.imageBlocks,
        runs,
        epoch: disk.epoch + 1,
        advancedAt: this.host.clock.now(),
        carry: 0,
      };
      this.host.world.put('disks', vm.name, restored);
      const after: SimVm = { ...this.host.world.get('vms', vm.name)!, state: wasRunning ? 'running' : vm.state };
      this.host.world.put('vms', vm.name, after);
      return { vm: this.host.record(after), digest: digestOf(restored), bytesWritten };
    }

    const taken = this.host.world.get('vms', request.asName);
    if (taken) {
      if (request.scratch && taken.fleet === '' && taken.labels[LABEL_SCRATCH] === 'true') {
        await this.host.delete({ name: taken.name, fleet: '' }, ctx);
      } else {
        throw new ConflictError(`a VM named "${request.asName}" already exists`, { context: { ...context, vm: request.asName }, hint: 'choose another name for the restored VM' });
      }
    }
    const source = this.host.world.get('vms', ref.name);
    const created = await this.#createRestored(request.asName, snapshot, source, request.scratch === true, ctx);
    try {
      await copy();
    } catch (error) {
      // As create does: a restore that fails leaves no half-restored VM behind.
      if (!(error instanceof SimulatedCrash)) await this.host.delete({ name: created.name, fleet: '' }).catch(() => undefined);
      throw error;
    }
    const vm = this.host.world.get('vms', created.name)!;
    const disk: SimDisk = {
      ...this.#newDisk(vm),
      image: snapshot.image,
      imageBlocks: snapshot.imageBlocks,
      sizeBlocks: snapshot.sizeBlocks,
      runs,
      ...(request.scratch ? { writeMiBps: 0 } : {}),
    };
    this.host.world.put('disks', vm.name, disk);
    const final: SimVm = request.scratch ? { ...vm, state: 'stopped' } : vm;
    if (request.scratch) this.host.world.put('vms', vm.name, final);
    return { vm: this.host.record(final), digest: digestOf(disk), bytesWritten };
  }

  async deleteSnapshot(id: string, ctx: OperationContext = {}): Promise<void> {
    const stage = await this.#enter('deleteSnapshot', ctx);
    const snapshot = this.host.world.get('snapshots', id);
    if (!snapshot) return;
    const children = this.#childrenOf(id);
    for (const child of children) {
      // The child takes the deleted snapshot's blocks it does not override, and its parent;
      // it is rewritten before the parent goes, so a crash between leaves both restorable.
      const runs = overlay(snapshot.runs, child.runs);
      const becomesFull = snapshot.kind !== 'incremental';
      const storedBlocks = becomesFull ? child.imageBlocks + countBlocksFrom(runs, child.imageBlocks) : countBlocks(runs);
      const { parent: _parent, ...rest } = child;
      const merged: SimSnapshot = {
        ...rest,
        ...(becomesFull ? { kind: 'full' as const } : { parent: snapshot.parent! }),
        runs,
        storedBlocks,
        sizeBytes: sizeOf(storedBlocks),
      };
      this.#put(merged);
      await stage('merge');
    }
    this.#remove(id);
  }

  async recordVerification(id: string, verification: SnapshotVerification, ctx: OperationContext = {}): Promise<SnapshotRecord> {
    await this.#enter('recordVerification', ctx);
    const snapshot = this.host.world.get('snapshots', id);
    if (!snapshot) throw new NotFoundError(`snapshot "${id}" does not exist`, { context: { provider: this.host.name, operation: 'recordVerification' } });
    const updated: SimSnapshot = { ...snapshot, verified: verification };
    this.#put(updated);
    return this.#toRecord(updated);
  }

  // ---- for tests, benchmarks and the simulated guests --------------------------------

  /**
   * The guest writes `lengthMiB` of new data: at `offsetMiB`, or by default where its hot set
   * is headed next (a log-structured guest). Returns the blocks written.
   */
  write(vmName: string, options: { readonly lengthMiB: number; readonly offsetMiB?: number }): number {
    const vm = this.#vm(vmName);
    const disk = this.#touch(vm);
    const length = Math.min(Math.ceil(options.lengthMiB), disk.sizeBlocks);
    if (length <= 0) return 0;
    const next = this.#nextGeneration(disk);
    if (options.offsetMiB !== undefined) {
      const start = Math.floor(options.offsetMiB);
      if (start < 0 || start + length > disk.sizeBlocks) throw new InvalidInputError(`a write at ${start} MiB of ${length} MiB runs past the disk's ${disk.sizeBlocks} MiB`);
      this.host.world.put('disks', vm.name, { ...next, runs: write(disk.runs, start, length, tokenOf(next.serial, next.generation)) });
      return length;
    }
    this.host.world.put('disks', vm.name, circularWrite(next, length));
    return Math.min(length, disk.hotBlocks);
  }

  /** Sets how fast the guest writes to its disk and over how much of it. */
  setWorkload(vmName: string, workload: { readonly writeMiBps?: number; readonly hotSetMiB?: number }): void {
    const vm = this.#vm(vmName);
    const disk = this.#touch(vm);
    const hotBlocks = workload.hotSetMiB === undefined ? disk.hotBlocks : Math.max(1, Math.min(Math.floor(workload.hotSetMiB), disk.sizeBlocks));
    const hotStart = Math.min(disk.hotStart, disk.sizeBlocks - hotBlocks);
    this.host.world.put('disks', vm.name, { ...disk, writeMiBps: workload.writeMiBps ?? disk.writeMiBps, hotBlocks, hotStart, cursor: disk.cursor % hotBlocks });
  }

  /** A VM's block map as it is now (after the guest's writes so far). */
  blocks(vmName: string): { readonly image: string; readonly imageBlocks: number; readonly sizeBlocks: number; readonly runs: Runs } {
    const disk = this.#touch(this.#vm(vmName));
    return { image: disk.image, imageBlocks: disk.imageBlocks, sizeBlocks: disk.sizeBlocks, runs: disk.runs };
  }

  /** The digest `restore` would read back from this VM's disk now. */
  digest(vmName: string): string {
    return digestOf(this.#touch(this.#vm(vmName)));
  }

  /** One block's bytes. */
  readBlock(vmName: string, index: number): Buffer {
    const disk = this.#touch(this.#vm(vmName));
    return blockBytes(index, tokenAt(disk.runs, index), disk.image, disk.imageBlocks);
  }

  /** sha256 of every byte of the disk: slow (1 GiB ≈ 2 s), for tests and benchmarks on small disks. */
  sha256(vmName: string): string {
    const disk = this.#touch(this.#vm(vmName));
    const hash = createHash('sha256');
    for (let i = 0; i < disk.sizeBlocks; i++) hash.update(blockBytes(i, tokenAt(disk.runs, i), disk.image, disk.imageBlocks));
    return hash.digest('hex');
  }

  /** Compares two disks byte for byte; returns the first differing block, or -1 when equal. */
  firstDifference(a: string, b: string): number {
    const da = this.#touch(this.#vm(a));
    const db = this.#touch(this.#vm(b));
    const size = Math.max(da.sizeBlocks, db.sizeBlocks);
    for (let i = 0; i < size; i++) {
      const x = i < da.sizeBlocks ? blockBytes(i, tokenAt(da.runs, i), da.image, da.imageBlocks) : Buffer.alloc(BLOCK_BYTES);
      const y = i < db.sizeBlocks ? blockBytes(i, tokenAt(db.runs, i), db.image, db.imageBlocks) : Buffer.alloc(BLOCK_BYTES);
      if (!x.equals(y)) return i;
    }
    return -1;
  }

  /** Damages one stored block of a snapshot, as bit rot in a backup folder would: verification must notice. */
  corrupt(snapshotId: string): void {
    const s = this.host.world.get('snapshots', snapshotId);
    if (!s || s.runs.length === 0) throw new NotFoundError(`snapshot "${snapshotId}" has no stored blocks to corrupt`);
    const [start, , token] = s.runs[0]!;
    this.#put({ ...s, runs: overlay(s.runs, [[start, 1, token + 1]]) });
  }

  /** Bytes the store holds across all snapshots. */
  storedBytes(): number {
    let total = 0;
    for (const s of this.host.world.values('snapshots')) total += s.sizeBytes;
    return total;
  }

  // ---- internals ----------------------------------------------------------------------

  #index(): Map<string, Set<string>> {
    if (!this.#children) {
      this.#children = new Map();
      for (const s of this.host.world.values('snapshots')) if (s.parent !== undefined) this.#link(s.parent, s.id);
    }
    return this.#children;
  }

  #link(parent: string, child: string): void {
    const set = this.#children!.get(parent);
    if (set) set.add(child);
    else this.#children!.set(parent, new Set([child]));
  }

  #unlink(parent: string | undefined, child: string): void {
    if (parent === undefined) return;
    const set = this.#children!.get(parent);
    set?.delete(child);
    if (set?.size === 0) this.#children!.delete(parent);
  }

  #put(snapshot: SimSnapshot): void {
    this.#index();
    this.#unlink(this.host.world.get('snapshots', snapshot.id)?.parent, snapshot.id);
    if (snapshot.parent !== undefined) this.#link(snapshot.parent, snapshot.id);
    this.host.world.put('snapshots', snapshot.id, snapshot);
  }

  #remove(id: string): void {
    this.#index();
    this.#unlink(this.host.world.get('snapshots', id)?.parent, id);
    this.host.world.delete('snapshots', id);
  }

  #childrenOf(id: string): SimSnapshot[] {
    return [...(this.#index().get(id) ?? [])].map((c) => this.host.world.get('snapshots', c)).filter((s): s is SimSnapshot => s !== undefined);
  }

  async #enter(operation: string, ctx: OperationContext, vm?: string) {
    const call = this.host.faults.call(operation);
    const latency = (this.host.config.latency as Record<string, number | undefined>)[operation];
    if (latency) await this.host.clock.sleep(latency, ctx.signal);
    ctx.signal?.throwIfAborted();
    const stage = (name: string) => this.host.faults.check({ operation, call, stage: name, ...(vm ? { vm } : {}) }, this.host.clock, ctx.signal);
    await stage('start');
    return stage;
  }

  #vm(name: string): SimVm {
    const vm = this.host.world.get('vms', name);
    if (!vm) throw new NotFoundError(`VM "${name}" does not exist`, { context: { provider: this.host.name, vm: name } });
    return vm;
  }

  #owned(ref: VmRef, operation: string): SimVm {
    const vm = this.host.world.get('vms', ref.name);
    if (!vm) throw new NotFoundError(`VM "${ref.name}" does not exist`, { context: { provider: this.host.name, vm: ref.name, operation }, hint: operation === 'restore' ? 'restore it as a new VM with --as, or apply the fleet first' : undefined });
    assertOwned(vm, ref, this.host.name);
    this.#hostUp(vm.host, operation, vm.name);
    return vm;
  }

  #hostUp(name: string, operation: string, vm?: string): void {
    const host = this.host.world.get('hosts', name);
    const context = { provider: this.host.name, host: name, operation, ...(vm ? { vm } : {}) };
    if (!host) throw new NotFoundError(`host "${name}" is not in the simulated datacenter`, { context });
    if (host.state === 'down') throw new UnreachableError(`host "${name}" does not answer`, { context });
  }

  #location(vm: SimVm, request: SnapshotRequest): string {
    if (request.kind === 'disk') return `${vm.host}:/var/lib/libvirt/images/${vm.name}-root`;
    if (request.target === undefined) return `sim-store/${vm.name}/${request.id ?? ''}`.replace(/\/$/, '');
    const target = splitHostId(request.target).name;
    this.#hostUp(target, 'snapshot', vm.name);
    return `${target}:/var/lib/novacron/backups/${vm.name}`;
  }

  /** A running guest with an agent is quiesced; one labelled `guest-agent: none` is only crash-consistent; a stopped one is clean. */
  #consistency(vm: SimVm, request: SnapshotRequest): SnapshotConsistency {
    if (vm.state !== 'running') return 'quiesced';
    return request.quiesce === false || vm.labels['guest-agent'] === 'none' ? 'crash' : 'quiesced';
  }

  /** What can be taken: an incremental needs a complete parent of this same disk, unchanged since (the checkpoint still valid). */
  #decideKind(request: SnapshotRequest, disk: SimDisk): { kind: SnapshotKind; parent?: SimSnapshot } {
    if (request.kind !== 'incremental') return { kind: request.kind };
    const parent = request.parent === undefined ? undefined : this.host.world.get('snapshots', request.parent);
    const usable =
      parent !== undefined &&
      parent.state === 'complete' &&
      parent.kind !== 'disk' &&
      parent.vm === disk.vm &&
      parent.vmId === disk.vmId &&
      parent.epoch === disk.epoch &&
      parent.image === disk.image &&
      parent.sizeBlocks === disk.sizeBlocks &&
      this.#chainIntact(parent);
    return usable ? { kind: 'incremental', parent } : { kind: 'full' };
  }

  #chainIntact(snapshot: SimSnapshot): boolean {
    let current: SimSnapshot | undefined = snapshot;
    for (let guard = 0; current && current.kind === 'incremental'; guard++) {
      if (guard > 100_000 || current.parent === undefined) return false;
      current = this.host.world.get('snapshots', current.parent);
    }
    return current !== undefined && current.state === 'complete';
  }

  /** The whole block map a snapshot restores: its chain's runs laid over each other from the full. */
  #reconstruct(snapshot: SimSnapshot): Runs {
    const chain: SimSnapshot[] = [];
    let current: SimSnapshot | undefined = snapshot;
    while (current) {
      chain.push(current);
      if (current.kind !== 'incremental') break;
      const parentId: string | undefined = current.parent;
      current = parentId === undefined ? undefined : this.host.world.get('snapshots', parentId);
      if (!current) {
        throw new NotFoundError(`the chain of snapshot "${snapshot.id}" is broken: "${parentId}" is missing`, {
          context: { provider: this.host.name, vm: snapshot.vm, operation: 'restore' },
          hint: 'restore a later full or an earlier complete chain',
        });
      }
    }
    let runs: Runs = [];
    for (let i = chain.length - 1; i >= 0; i--) runs = overlay(runs, chain[i]!.runs);
    return truncate(runs, snapshot.sizeBlocks);
  }

  /** The VM's disk with the guest's writes applied up to now; made on first touch. */
  #touch(vm: SimVm): SimDisk {
    let disk = this.host.world.get('disks', vm.name);
    const sizeBlocks = vm.resources.diskGiB * 1024;
    if (!disk || disk.vmId !== vm.id) disk = this.#newDisk(vm);
    else if (disk.sizeBlocks < sizeBlocks) disk = { ...disk, sizeBlocks }; // grown by a resize: zeros beyond
    const advanced = advance(disk, this.host.clock.now(), vm.state === 'running', (d) => this.#nextGeneration(d));
    if (advanced !== this.host.world.get('disks', vm.name)) this.host.world.put('disks', vm.name, advanced);
    return advanced;
  }

  #newDisk(vm: SimVm): SimDisk {
    const sizeBlocks = vm.resources.diskGiB * 1024;
    const imageBlocks = Math.min(IMAGE_MIB, Math.floor(sizeBlocks / 2));
    const data = sizeBlocks - imageBlocks;
    const hotBlocks = Math.max(1, Math.min(data, Math.max(64, Math.floor(sizeBlocks / 10))));
    return {
      vm: vm.name,
      vmId: vm.id,
      serial: this.host.world.next('disk'),
      generation: 0,
      epoch: 0,
      image: vm.image,
      imageBlocks,
      sizeBlocks,
      runs: [],
      advancedAt: Date.parse(vm.createdAt) || this.host.clock.now(),
      writeMiBps: vm.dirtyRateMiBps * DISK_WRITE_FRACTION,
      hotStart: imageBlocks,
      hotBlocks,
      cursor: 0,
      carry: 0,
    };
  }

  #nextGeneration(disk: SimDisk): SimDisk {
    return disk.generation + 1 < GENERATIONS ? { ...disk, generation: disk.generation + 1 } : { ...disk, serial: this.host.world.next('disk'), generation: 1 };
  }

  async #createRestored(name: string, snapshot: SimSnapshot, source: SimVm | undefined, scratch: boolean, ctx: OperationContext): Promise<VmRecord> {
    const hosts = [...this.host.world.values('hosts')].filter((h) => h.state === 'up').map((h) => h.name);
    const preferred = [source?.host, snapshot.host].filter((h): h is string => h !== undefined && hosts.includes(h));
    const order = [...new Set([...preferred, ...hosts.sort()])];
    // The disk as it was when the snapshot was taken, not as the source VM has grown since.
    const resources = { ...(source?.resources ?? snapshot.resources), diskGiB: Math.ceil(snapshot.sizeBlocks / 1024) };
    let lastError: unknown = new CapacityExceededError('no host is up to restore onto');
    for (const host of order) {
      try {
        return await this.host.create(
          {
            name,
            // Belongs to no fleet: reconcile leaves it alone, and it is not mistaken for a member of the group.
            ownership: { fleet: '', group: '', index: 0, specHash: '' },
            host: hostId(this.host.name, host),
            resources,
            image: snapshot.image,
            labels: { [LABEL_FROM]: snapshot.vm, [LABEL_SNAPSHOT]: snapshot.id, ...(scratch ? { [LABEL_SCRATCH]: 'true' } : {}) },
            ...(source ? { workload: { workingSetMiB: source.workingSetMiB, dirtyRateMiBps: source.dirtyRateMiBps } } : {}),
          },
          ctx,
        );
      } catch (error) {
        if (!(error instanceof CapacityExceededError)) throw error;
        lastError = error;
      }
    }
    throw lastError;
  }

  /** Disks of VMs that are gone (a deleted VM's disk goes with it; its snapshots stay). */
  #dropStaleDisks(): void {
    for (const disk of [...this.host.world.values('disks')]) {
      const vm = this.host.world.get('vms', disk.vm);
      if (!vm || vm.id !== disk.vmId) this.host.world.delete('disks', disk.vm);
    }
  }

  #toRecord(s: SimSnapshot): SnapshotRecord {
    return {
      id: s.id,
      provider: this.host.name,
      vm: s.vm,
      fleet: s.fleet,
      group: s.group,
      takenAt: s.takenAt,
      kind: s.kind,
      ...(s.parent !== undefined ? { parent: s.parent } : {}),
      consistency: s.consistency,
      state: s.state,
      sizeBytes: s.sizeBytes,
      diskBytes: s.sizeBlocks * BLOCK_BYTES,
      ...(s.digest !== undefined ? { digest: s.digest } : {}),
      location: s.location,
      ...(s.scheduledFor !== undefined ? { scheduledFor: s.scheduledFor } : {}),
      ...(s.error !== undefined ? { error: s.error } : {}),
      ...(s.verified !== undefined ? { verified: s.verified } : {}),
    };
  }
}

function sizeOf(storedBlocks: number): number {
  return storedBlocks * BLOCK_BYTES + MANIFEST_BYTES + storedBlocks * MANIFEST_BYTES_PER_BLOCK;
}

/** Applies the guest's writes between `advancedAt` and `now`. Stopped guests write nothing. */
function advance(disk: SimDisk, now: number, running: boolean, nextGeneration: (d: SimDisk) => SimDisk): SimDisk {
  if (now <= disk.advancedAt) return disk;
  if (!running || disk.writeMiBps <= 0) return { ...disk, advancedAt: now };
  const total = disk.carry + (disk.writeMiBps * (now - disk.advancedAt)) / 1000;
  const blocks = Math.floor(total);
  const moved = { ...disk, advancedAt: now, carry: total - blocks };
  return blocks > 0 ? circularWrite(nextGeneration(moved), blocks) : moved;
}

/** Writes `blocks` at the hot set's cursor with the disk's current generation, wrapping around. */
function circularWrite(disk: SimDisk, blocks: number): SimDisk {
  const token = tokenOf(disk.serial, disk.generation);
  const n = Math.min(blocks, disk.hotBlocks);
  const first = Math.min(n, disk.hotBlocks - disk.cursor);
  let runs = write(disk.runs, disk.hotStart + disk.cursor, first, token);
  runs = write(runs, disk.hotStart, n - first, token);
  return { ...disk, runs, cursor: (disk.cursor + blocks) % disk.hotBlocks };
}
