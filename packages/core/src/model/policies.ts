import { z } from 'zod';
import { duration } from './units.js';

/** How a group's VMs move between hosts. Defaults favour short downtime over speed. */
export const migrationPolicy = z.strictObject({
  /** `auto` moves live when the provider can, else cold. */
  mode: z.enum(['auto', 'live', 'cold']).default('auto'),
  maxDowntimeMs: z.number().int().min(1).max(60_000).default(300),
  /** Cap on the migration stream, in Mbit/s; unset means as fast as the link allows. */
  bandwidthMbps: z.number().min(1).max(400_000).optional(),
  autoConverge: z.boolean().default(true),
  postCopy: z
    .strictObject({
      allowed: z.boolean().default(false),
      /** Switch to post-copy after this many pre-copy rounds when not converging. */
      afterRounds: z.number().int().min(1).max(1000).default(5),
    })
    .default({ allowed: false, afterRounds: 5 }),
  compression: z.enum(['none', 'xbzrle', 'multifd-zstd', 'multifd-zlib']).default('none'),
  parallelConnections: z.number().int().min(1).max(64).default(1),
  /** Completion timeout per GiB of guest memory. */
  timeoutPerGiB: duration(24 * 3_600_000).default(120_000),
  onTimeout: z.enum(['abort', 'postcopy']).default('abort'),
  /** Maximum concurrent migrations leaving or entering one host. */
  perHostConcurrency: z.number().int().min(1).max(64).default(2),
  wanProfile: z.enum(['lan', 'wan', 'adaptive']).default('lan'),
});
export type MigrationPolicy = z.infer<typeof migrationPolicy>;

export const retention = z
  .strictObject({
    keepLast: z.number().int().min(0).max(100_000).default(0),
    hourly: z.number().int().min(0).max(100_000).default(0),
    daily: z.number().int().min(0).max(100_000).default(0),
    weekly: z.number().int().min(0).max(100_000).default(0),
    monthly: z.number().int().min(0).max(100_000).default(0),
    yearly: z.number().int().min(0).max(100_000).default(0),
  })
  .refine((r) => Object.values(r).some((n) => n > 0), {
    message: 'retention keeps nothing: set keepLast or at least one of hourly, daily, weekly, monthly, yearly',
  });
export type Retention = z.infer<typeof retention>;

/** Five-field cron, checked fully by the snapshot scheduler; here only the shape. */
const CRON = /^\s*(\S+\s+){4}\S+\s*$/;

export const snapshotPolicy = z.strictObject({
  schedule: z.string().regex(CRON, 'a cron expression has five fields: minute hour day-of-month month day-of-week'),
  timezone: z.string().min(1).default('UTC'),
  /** `backup`: incremental backups off the host; `snapshot`: disk snapshots on the host for quick rollback. */
  kind: z.enum(['backup', 'snapshot']).default('backup'),
  incremental: z.boolean().default(true),
  /** Make a full backup after this many incrementals, to bound restore chains. */
  fullEvery: z.number().int().min(1).max(10_000).default(7),
  retention: retention,
  /** Where backups are kept: a host name (KVM) or the provider's own store (clouds). */
  target: z.string().min(1).optional(),
  verify: z.boolean().default(false),
});
export type SnapshotPolicy = z.infer<typeof snapshotPolicy>;
