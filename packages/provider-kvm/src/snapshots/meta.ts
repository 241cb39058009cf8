import { z } from 'zod';
import type { SnapshotRecord } from '@novacron/core';

/**
 * A backup's record as it is kept in its folder (`meta.json`): the contract's SnapshotRecord
 * plus what the provider needs to build on it, restore it or merge it away (the domain it
 * came from, the checkpoint, the host it is stored on). Written atomically (temporary file,
 * then rename), so a reader sees the old or the new record, never half of one.
 */
export const backupMeta = z.object({
  format: z.literal(1),
  id: z.string().min(1),
  vm: z.string().min(1),
  fleet: z.string(),
  group: z.string(),
  kind: z.enum(['full', 'incremental', 'disk']),
  parent: z.string().optional(),
  consistency: z.enum(['crash', 'quiesced']),
  state: z.enum(['complete', 'incomplete']),
  takenAt: z.string(),
  scheduledFor: z.string().optional(),
  error: z.string().optional(),
  verified: z
    .object({ at: z.string(), ok: z.boolean(), method: z.enum(['checksum', 'boot']), detail: z.string().optional() })
    .optional(),
  /** `sha256-blocks:<blockSize>:<sha256 of blocks.sha256>`. */
  digest: z.string().optional(),
  blockSize: z.number().int().positive(),
  /** Bytes the folder holds (data, manifest, metadata, domain XML). */
  sizeBytes: z.number().int().nonnegative(),
  /** The disk's virtual size at backup time. */
  diskBytes: z.number().int().nonnegative(),
  /** The host whose backup folder (or, for disk snapshots, whose disk) holds it. */
  host: z.string().min(1),
  location: z.string(),
  /** The VM's host when it was taken. */
  sourceHost: z.string().min(1),
  /** libvirt's UUID of the domain: a domain made anew under the same name has another, and its checkpoints are gone. */
  domainUuid: z.string(),
  /** The libvirt checkpoint made with this backup (its id), which the next incremental starts from. */
  checkpoint: z.string().optional(),
  /** Taken from a stopped VM with qemu-img (no checkpoint possible). */
  offline: z.boolean().optional(),
  image: z.string(),
  resources: z.object({ cpu: z.number(), memoryMiB: z.number(), diskGiB: z.number() }),
  /** Disk snapshots: the qcow2 file whose internal snapshot (named by the id) this is. */
  diskPath: z.string().optional(),
});

export type BackupMeta = z.infer<typeof backupMeta>;

/** Parses a meta.json; undefined for one that is unreadable (a foreign file, a torn copy by hand). */
export function parseMeta(text: string): BackupMeta | undefined {
  try {
    const parsed = backupMeta.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

export function serializeMeta(meta: BackupMeta): string {
  return `${JSON.stringify(meta, null, 2)}\n`;
}

export function toRecord(provider: string, meta: BackupMeta): SnapshotRecord {
  return {
    id: meta.id,
    provider,
    vm: meta.vm,
    fleet: meta.fleet,
    group: meta.group,
    takenAt: meta.takenAt,
    kind: meta.kind,
    ...(meta.parent !== undefined ? { parent: meta.parent } : {}),
    consistency: meta.consistency,
    state: meta.state,
    sizeBytes: meta.sizeBytes,
    diskBytes: meta.diskBytes,
    ...(meta.digest !== undefined ? { digest: meta.digest } : {}),
    location: meta.location,
    ...(meta.scheduledFor !== undefined ? { scheduledFor: meta.scheduledFor } : {}),
    ...(meta.error !== undefined ? { error: meta.error } : {}),
    ...(meta.verified !== undefined ? { verified: meta.verified } : {}),
  };
}
