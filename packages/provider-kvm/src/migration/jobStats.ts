import type { MigrationStats, MigrationStatus } from '@novacron/core';

/**
 * libvirt's view of a migration job: `virsh domjobinfo --rawstats` (typed parameters, exact
 * integers) and `virsh domstate --reason`, read into the core's `MigrationStats`.
 */

/** `virDomainJobType`. */
export const JOB_TYPE = { none: 0, bounded: 1, unbounded: 2, completed: 3, failed: 4, cancelled: 5 } as const;

export interface RawJobStats {
  /** `Job type:` as libvirt's number (see JOB_TYPE); -1 when the output had none. */
  readonly type: number;
  readonly numbers: ReadonlyMap<string, number>;
  readonly strings: ReadonlyMap<string, string>;
}

/** `Job type: 2` then `name: value` lines (numbers, or strings such as `errmsg`). */
export function parseRawJobStats(text: string): RawJobStats {
  const numbers = new Map<string, number>();
  const strings = new Map<string, string>();
  let type = -1;
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (key === 'Job type') {
      type = /^\d+$/.test(value) ? Number(value) : jobTypeWord(value);
      continue;
    }
    if (/^-?\d+(?:\.\d+)?$/.test(value)) numbers.set(key, Number(value));
    else strings.set(key, value);
  }
  return { type, numbers, strings };
}

function jobTypeWord(word: string): number {
  const known: Record<string, number> = { none: 0, bounded: 1, unbounded: 2, completed: 3, failed: 4, cancelled: 5 };
  return known[word.toLowerCase()] ?? -1;
}

/** `virsh domstate --reason`: `running (migrated)`, `paused (post-copy)`, `shut off (destroyed)`. */
export function parseDomState(text: string): { state: string; reason: string } {
  const m = /^\s*([a-z ]+?)\s*(?:\(([^)]*)\))?\s*$/.exec(text.trim().split('\n')[0] ?? '');
  return { state: m?.[1] ?? text.trim(), reason: m?.[2] ?? '' };
}

export interface JobSample {
  readonly raw: RawJobStats;
  readonly domState?: { state: string; reason: string };
  /** When it was taken (the driver's clock). */
  readonly atMs: number;
}

/**
 * The core's stats from one sample. `throughputBytesPerSec` is given by the caller (the driver
 * smooths it over samples); iterations are counted as the core counts them, pre-copy rounds
 * completed (QEMU's dirty-sync count minus the sync that starts round 0).
 */
export function toMigrationStats(sample: JobSample, extra: { elapsedMs: number; throughputBytesPerSec: number; wireBytes?: number }): MigrationStats {
  const n = sample.raw.numbers;
  const get = (key: string) => n.get(key) ?? 0;
  const memoryTotal = get('memory_total');
  const pageSize = get('memory_page_size') || 4096;
  const status = statusOf(sample);
  const expected = n.get('downtime');
  return {
    status,
    iteration: Math.max(0, get('memory_iteration') - 1),
    dataTotalBytes: memoryTotal,
    dataProcessedBytes: get('memory_processed'),
    dataRemainingBytes: status === 'setup' && !n.has('memory_remaining') ? memoryTotal : get('memory_remaining'),
    dirtyRateBytesPerSec: get('memory_dirty_rate') * pageSize,
    throughputBytesPerSec: extra.throughputBytesPerSec,
    ...(status === 'active' && expected !== undefined && get('memory_iteration') > 1 ? { expectedDowntimeMs: expected } : {}),
    ...(extra.wireBytes === undefined ? {} : { wireBytes: extra.wireBytes }),
    elapsedMs: extra.elapsedMs,
  };
}

/**
 * `setup` until memory moves (libvirt's own set-up and the storage copy, which comes
 * first), `postcopy-active` once the source is paused for post-copy.
 */
export function statusOf(sample: JobSample): MigrationStatus {
  const { raw, domState } = sample;
  if (domState?.state === 'paused' && /post-copy/.test(domState.reason) && !/failed/.test(domState.reason)) return 'postcopy-active';
  if (raw.type === JOB_TYPE.failed) return 'failed';
  if (raw.type === JOB_TYPE.cancelled) return 'cancelled';
  if (raw.type === JOB_TYPE.completed) return 'completed';
  if (raw.type !== JOB_TYPE.unbounded && raw.type !== JOB_TYPE.bounded) return 'setup';
  return (raw.numbers.get('memory_iteration') ?? 0) >= 1 && (raw.numbers.get('memory_total') ?? 0) > 0 ? 'active' : 'setup';
}

/** Disk copy progress, for messages: bytes done and total, when libvirt reports them. */
export function diskProgress(raw: RawJobStats): { processed: number; total: number } | undefined {
  const total = raw.numbers.get('disk_total');
  if (!total) return undefined;
  return { processed: raw.numbers.get('disk_processed') ?? 0, total };
}
