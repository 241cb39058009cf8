import { InvalidInputError, type ErrorContext } from '@novacron/core';

/**
 * Where a backup lives on its host: `<backupDir>/<vm>/<snapshot id>/`, holding
 *
 *   meta.json       the record (written as `incomplete` before any data moves)
 *   vda.qcow2       the data: a full image, or an incremental whose qcow2 backing file is
 *                   `../<parent id>/vda.qcow2` (relative, so a folder can be moved whole)
 *   blocks.sha256   one sha256 per 1 MiB block of the disk as of the backup: the digest's input
 *   domain.xml      the domain's persistent XML at backup time, for restores as a new VM
 *
 * A disk snapshot's folder is on the VM's host and holds only meta.json and `disk.path` (the
 * qcow2 file whose internal snapshot it is). Names starting with a dot are work in progress
 * (staging, temporary files, folders being deleted) and never listed.
 */
export const META_FILE = 'meta.json';
export const DATA_FILE = 'vda.qcow2';
export const MANIFEST_FILE = 'blocks.sha256';
export const DOMAIN_FILE = 'domain.xml';
export const DISK_PATH_FILE = 'disk.path';
/** The disk NovaCron backs up: the root disk (`vda`). */
export const BACKUP_DISK = 'vda';

/**
 * Snapshot ids become folder names, libvirt checkpoint names, qcow2 internal snapshot and
 * bitmap names: letters, digits and `._@+-`, as the snapshot engine makes them
 * (`shop-db-0@20250102T0200Z`).
 */
export const SNAPSHOT_ID = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;

export function assertSnapshotId(id: string, context: ErrorContext): string {
  if (!SNAPSHOT_ID.test(id)) {
    throw new InvalidInputError(`snapshot id ${JSON.stringify(id)} is not valid on KVM hosts`, {
      context,
      hint: `use letters, digits and ._@+- (${SNAPSHOT_ID.source}); it names a folder, a libvirt checkpoint and a qcow2 snapshot`,
    });
  }
  return id;
}

/**
 * The libvirt checkpoint of a backup. Checkpoint names allow only letters, digits and `_.-`
 * (libvirt's schema), so `_`, `@` and `+` are escaped one to one: `_` → `__`, `@` → `_a`,
 * `+` → `_p` (`shop-db-0@20250102T0200Z` → `shop-db-0_a20250102T0200Z`).
 */
export function checkpointName(id: string): string {
  return id.replace(/[_@+]/g, (c) => (c === '_' ? '__' : c === '@' ? '_a' : '_p'));
}

/** `shop-db-0@20251127T2100Z` for a snapshot taken without an id. */
export function defaultSnapshotId(vm: string, at: number): string {
  return `${vm}@${new Date(at).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}`;
}

export function snapshotDir(backupDir: string, vm: string, id: string): string {
  return `${backupDir}/${vm}/${id}`;
}

/** Where a backup whose job runs on another host than its target is written first. */
export function stagingDir(backupDir: string, vm: string, id: string): string {
  return `${backupDir}/.staging/${vm}/${id}`;
}

/** The backing file an incremental names: relative to its own folder. */
export function parentBacking(parent: string): string {
  return `../${parent}/${DATA_FILE}`;
}
