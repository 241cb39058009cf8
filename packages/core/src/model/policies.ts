import { z } from 'zod';
import { checkCron, checkTimeZone } from '../snapshot/schedule.js';
import { duration } from './units.js';

/** How a group's VMs move between hosts. Defaults favour short downtime over speed. */
export const migrationPolicy = z.strictObject({
  /** `auto` moves live when the provider can, else cold. */
  mode: z.enum(['auto', 'live', 'cold']).default('auto'),
  maxDowntimeMs: z.number().int().min(1).max(60_000).default(300),
  /** Cap on the migration stream, in Mbit/s; unset means as fast as the link allows. */
  bandwidthMbps: z.number().min(1).max(400_000).optional(),
  /**
   * The memory stream's rate as a share of the path's measured capacity, when the provider
   * has measured it (1: unpaced). Below 1 no backlog builds up in the buffers along the path
   * (the SSH tunnel, the sockets), so the guest's pause does not include draining one: on the
   * testbed 0.8 cut the pause at 300 Mbit/s from ~240 ms to ~115 ms at the same total time.
   */
  pacing: z.number().min(0.5).max(1).default(0.8),
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
    /**
     * How rules share snapshots: `restic` (forget: a snapshot kept by several rules counts for
     * each) or `proxmox` (prune: a rule skips periods an earlier rule covered). See snapshots.md.
     */
    semantics: z.enum(['restic', 'proxmox']).default('restic'),
  })
  .refine((r) => [r.keepLast, r.hourly, r.daily, r.weekly, r.monthly, r.yearly].some((n) => n > 0), {
    message: 'retention keeps nothing: set keepLast or at least one of hourly, daily, weekly, monthly, yearly',
    // Only when the retention is otherwise valid: `daily: -1` or a misspelled `dayly: 7` gets
    // its own message, not also a misleading "keeps nothing" (the count was meant to keep some).
    when: (payload) => payload.issues.length === 0,
  });
export type Retention = z.infer<typeof retention>;

/** Five fields; croner then checks each field's values (checkCron). */
const CRON = /^\s*(\S+\s+){4}\S+\s*$/;

export const snapshotPolicy = z.strictObject({
  schedule: z
    .string()
    .regex(CRON, 'a cron expression has five fields: minute hour day-of-month month day-of-week')
    .superRefine((expression, ctx) => {
      // Only once the shape is right, so a four-field cron gets one clear message, not two.
      if (!CRON.test(expression)) return;
      const problem = checkCron(expression);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  /** IANA time zone the schedule and the retention's calendar periods are read in. */
  timezone: z
    .string()
    .min(1)
    .default('UTC')
    .superRefine((zone, ctx) => {
      const problem = checkTimeZone(zone);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  /** `backup`: incremental backups off the host; `snapshot`: disk snapshots on the host for quick rollback. */
  kind: z.enum(['backup', 'snapshot']).default('backup'),
  incremental: z.boolean().default(true),
  /** Make a full backup after this many incrementals, to bound restore chains. */
  fullEvery: z.number().int().min(1).max(10_000).default(7),
  retention: retention,
  /** Where backups are kept: a host name (KVM) or the provider's own store (clouds). */
  target: z.string().min(1).optional(),
  /** Freeze guest file systems through the guest agent when there is one; crash-consistent otherwise. */
  quiesce: z.boolean().default(true),
  /** Restore each new snapshot into a scratch VM and compare its digest, in the same tick. */
  verify: z.boolean().default(false),
});
export type SnapshotPolicy = z.infer<typeof snapshotPolicy>;
