import type { HostState, Labels, Overcommit, Resources, SnapshotConsistency, SnapshotKind, SnapshotState, SnapshotVerification, VmState } from '@novacron/core';
import type { Runs } from './blocks.js';
import type { JournalEntry, StoredWorld, WorldStore } from './store.js';

export interface SimHost {
  readonly name: string;
  readonly zone: string;
  readonly region?: string;
  readonly capacity: Resources;
  readonly labels: Labels;
  readonly pricePerHour: number;
  readonly overcommit: Overcommit;
  readonly state: HostState;
}

export interface SimVm {
  readonly name: string;
  readonly id: string;
  /** Empty for VMs no fleet owns. */
  readonly fleet: string;
  readonly group: string;
  readonly index: number;
  readonly specHash: string;
  readonly host: string;
  readonly state: VmState;
  readonly resources: Resources;
  readonly image: string;
  readonly labels: Labels;
  readonly createdAt: string;
  /** The guest's memory behaviour, for migration modelling. */
  readonly workingSetMiB: number;
  readonly dirtyRateMiBps: number;
  readonly instanceType?: string;
  /** Absent on VMs made before NICs were modelled (and by default): one virtio NIC on `default`. */
  readonly nics?: readonly SimNic[];
}

export interface SimNic {
  readonly network: string;
  readonly mac: string;
  readonly model: string;
}

export interface SimVolume {
  readonly name: string;
  readonly vm: string;
  readonly host: string;
  readonly sizeGiB: number;
  readonly fleet: string;
}

/**
 * A VM's disk as 1 MiB blocks: the base image (implicit, blocks below `imageBlocks`), and the
 * blocks written since, as runs (see blocks.ts). Guests write lazily: whenever the disk is
 * touched, the writes since `advancedAt` are applied at `writeMiBps`, circling a hot set.
 */
export interface SimDisk {
  /** The VM's name (the table key). */
  readonly vm: string;
  /** The VM incarnation it belongs to: a VM deleted and made again starts a fresh disk. */
  readonly vmId: string;
  /** World-unique; names this disk's block tokens. */
  readonly serial: number;
  readonly generation: number;
  /** Bumped when the disk's content is replaced (restore in place): change tracking starts over, as libvirt checkpoints do. */
  readonly epoch: number;
  readonly image: string;
  readonly imageBlocks: number;
  readonly sizeBlocks: number;
  readonly runs: Runs;
  readonly advancedAt: number;
  readonly writeMiBps: number;
  readonly hotStart: number;
  readonly hotBlocks: number;
  readonly cursor: number;
  /** Fractional MiB written but not yet a whole block. */
  readonly carry: number;
}

/** A snapshot in the sim's store: its block runs (a full: the whole map; an incremental: the blocks changed since its parent). */
export interface SimSnapshot {
  readonly id: string;
  readonly vm: string;
  readonly vmId: string;
  readonly epoch: number;
  readonly fleet: string;
  readonly group: string;
  readonly host: string;
  readonly takenAt: string;
  readonly scheduledFor?: string;
  readonly kind: SnapshotKind;
  readonly parent?: string;
  readonly consistency: SnapshotConsistency;
  readonly state: SnapshotState;
  readonly error?: string;
  readonly image: string;
  readonly imageBlocks: number;
  readonly sizeBlocks: number;
  readonly resources: Resources;
  readonly runs: Runs;
  readonly storedBlocks: number;
  readonly sizeBytes: number;
  readonly digest?: string;
  readonly location: string;
  readonly verified?: SnapshotVerification;
}

/** An image imported from another provider's exported disk. */
export interface SimImage {
  readonly name: string;
  readonly sha256: string;
  readonly sizeBytes: number;
  readonly importedAt: string;
}

type Tables = {
  hosts: SimHost;
  vms: SimVm;
  volumes: SimVolume;
  disks: SimDisk;
  snapshots: SimSnapshot;
  images: SimImage;
  meta: number;
};
type TableName = keyof Tables;
const TABLES: readonly TableName[] = ['hosts', 'vms', 'volumes', 'disks', 'snapshots', 'images', 'meta'];

/**
 * The simulated datacenter in memory, every change journaled through the store. Host
 * allocation is kept up to date incrementally so inventory stays cheap at 10,000 VMs.
 */
export class World {
  readonly #tables: { [K in TableName]: Map<string, Tables[K]> };
  readonly #allocated = new Map<string, { cpu: number; memoryMiB: number; diskGiB: number; gpu: number }>();
  #seq: number;

  constructor(private readonly store: WorldStore | undefined, stored: StoredWorld = { seq: 0, tables: {} }) {
    this.#seq = stored.seq;
    this.#tables = Object.fromEntries(
      TABLES.map((t) => [t, new Map(Object.entries(stored.tables[t] ?? {}))]),
    ) as { [K in TableName]: Map<string, Tables[K]> };
    for (const vm of this.#tables.vms.values()) this.#account(vm, 1);
  }

  get<T extends TableName>(table: T, key: string): Tables[T] | undefined {
    return this.#tables[table].get(key);
  }

  values<T extends TableName>(table: T): IterableIterator<Tables[T]> {
    return this.#tables[table].values();
  }

  count(table: TableName): number {
    return this.#tables[table].size;
  }

  put<T extends TableName>(table: T, key: string, value: Tables[T]): void {
    if (table === 'vms') {
      const old = this.#tables.vms.get(key);
      if (old) this.#account(old, -1);
      this.#account(value as SimVm, 1);
    }
    this.#tables[table].set(key, value);
    this.#journal({ seq: ++this.#seq, op: 'put', table, key, value });
  }

  delete(table: TableName, key: string): void {
    if (!this.#tables[table].has(key)) return;
    if (table === 'vms') this.#account(this.#tables.vms.get(key)!, -1);
    this.#tables[table].delete(key);
    this.#journal({ seq: ++this.#seq, op: 'del', table, key });
  }

  /** Next value of a named counter (VM ids). */
  next(counter: string): number {
    const value = (this.get('meta', counter) ?? 0) + 1;
    this.put('meta', counter, value);
    return value;
  }

  allocated(host: string): Resources {
    return this.#allocated.get(host) ?? { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 };
  }

  toStored(): StoredWorld {
    return {
      seq: this.#seq,
      tables: Object.fromEntries(TABLES.map((t) => [t, Object.fromEntries(this.#tables[t])])),
    };
  }

  #account(vm: SimVm, sign: 1 | -1): void {
    let a = this.#allocated.get(vm.host);
    if (!a) this.#allocated.set(vm.host, (a = { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 }));
    a.cpu += sign * vm.resources.cpu;
    a.memoryMiB += sign * vm.resources.memoryMiB;
    a.diskGiB += sign * vm.resources.diskGiB;
    a.gpu += sign * vm.resources.gpu;
  }

  #journal(entry: JournalEntry): void {
    this.store?.append(entry);
  }
}
