import type {
  BootCheckOptions,
  BootCheckResult,
  OperationContext,
  RestoreRequest,
  RestoreResult,
  SnapshotRecord,
  SnapshotRequest,
  SnapshotVerification,
  VmRef,
} from '@novacron/core';
import { Backups } from './backup.js';
import { BootChecks } from './bootCheck.js';
import { Catalog } from './catalog.js';
import { Restores } from './restore.js';
import { BackupStore, type KvmSnapshotsHost, type KvmSnapshotsOptions } from './store.js';

export { decideKind } from './backup.js';
export { DEFAULT_READY_MARKER } from './bootCheck.js';
export type { KvmSnapshotsHost, KvmSnapshotsOptions, VmDisk } from './store.js';

/**
 * Backups, disk snapshots and restores of KVM VMs (docs/snapshots.md, "On KVM hosts"): the
 * snapshot operations of the provider contract, each in its own module.
 *
 * - backup.ts: libvirt push-mode backup jobs into `<backupDir>/<vm>/<id>/` on the target
 *   host (a full with a new checkpoint named after the id, or an incremental from the
 *   parent's checkpoint, linked to the parent's file as its qcow2 backing file); qemu-img
 *   copies of stopped VMs; qcow2 internal disk snapshots.
 * - catalog.ts: the records in the backup folders; deletion merges into children first.
 * - restore.ts: a chain flattened with qemu-img, in place or as a new VM outside the fleet.
 * - bootCheck.ts: a restored VM booted to its image's ready marker (restore tests).
 * - store.ts: what they share (the folders, finding a snapshot by id, the VM's disk).
 */
export class KvmSnapshots {
  readonly #backups: Backups;
  readonly #catalog: Catalog;
  readonly #restores: Restores;
  readonly #boots: BootChecks;

  constructor(provider: KvmSnapshotsHost, options: KvmSnapshotsOptions) {
    const store = new BackupStore(provider, options.config, options.clock, options.log);
    this.#backups = new Backups(store);
    this.#catalog = new Catalog(store);
    this.#restores = new Restores(store);
    this.#boots = new BootChecks(store);
  }

  snapshot(ref: VmRef, request: SnapshotRequest, ctx: OperationContext = {}): Promise<SnapshotRecord> {
    return this.#backups.snapshot(ref, request, ctx);
  }

  listSnapshots(fleet: string, ctx: OperationContext = {}): Promise<readonly SnapshotRecord[]> {
    return this.#catalog.listSnapshots(fleet, ctx);
  }

  recordVerification(id: string, verification: SnapshotVerification, ctx: OperationContext = {}): Promise<SnapshotRecord> {
    return this.#catalog.recordVerification(id, verification, ctx);
  }

  deleteSnapshot(id: string, ctx: OperationContext = {}): Promise<void> {
    return this.#catalog.deleteSnapshot(id, ctx);
  }

  restore(ref: VmRef, request: RestoreRequest, ctx: OperationContext = {}): Promise<RestoreResult> {
    return this.#restores.restore(ref, request, ctx);
  }

  bootCheck(ref: VmRef, options: BootCheckOptions = {}, ctx: OperationContext = {}): Promise<BootCheckResult> {
    return this.#boots.bootCheck(ref, options, ctx);
  }
}
