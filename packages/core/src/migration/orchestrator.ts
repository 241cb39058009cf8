import { AbortedError, TimeoutError } from '../errors/errors.js';
import { NovaCronError } from '../errors/NovaCronError.js';
import type { MigrationPolicy } from '../model/policies.js';
import type { MigrationProgress, OperationProgress } from '../provider/Provider.js';
import type { Clock } from '../util/clock.js';
import type { MigrationDriver, MigrationStats } from './driver.js';
import { assertPolicyPossible, streamCap } from './policy.js';

export type OrchestratorAction =
  | { readonly kind: 'downtime'; readonly ms: number; readonly atMs: number }
  | { readonly kind: 'auto-converge'; readonly atMs: number }
  | { readonly kind: 'post-copy'; readonly atMs: number; readonly reason: 'not converging' | 'timeout' }
  | { readonly kind: 'bandwidth'; readonly bytesPerSec: number; readonly atMs: number };

export interface OrchestratedMigration {
  readonly durationMs: number;
  readonly downtimeMs: number;
  readonly bytesTransferred: number;
  readonly iterations: number;
  readonly postCopy: boolean;
  readonly actions: readonly OrchestratorAction[];
  readonly final: MigrationStats;
}

export interface OrchestratorOptions {
  readonly driver: MigrationDriver;
  readonly policy: MigrationPolicy;
  readonly memoryMiB: number;
  readonly clock: Clock;
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: OperationProgress) => void;
  /** How often the job is polled. @default 250 */
  readonly pollMs?: number;
  /** Context for errors. */
  readonly vm?: string;
  readonly provider?: string;
}

/**
 * Drives one live migration to completion with the least downtime the policy allows. It
 * starts with a low downtime limit and, each round the job is not converging, takes the
 * next step: raise the limit (doubling, up to the policy's maximum) while the expected
 * downtime would fit under that maximum; when it would not (the guest dirties memory about
 * as fast as it is sent), go straight to the maximum and engage auto-converge, then switch
 * to post-copy once the policy's rounds have passed. On timeout it aborts or switches to
 * post-copy, as the policy says; on abort the guest stays on the source.
 *
 * The hypervisor's limit covers only the last dirty pages; the driver's `switchoverMs`
 * (device state, disk hand-over, resuming on the destination) comes on top, so the limit
 * is kept that much below the policy's `maxDowntimeMs`. When the driver knows the path's
 * capacity, the stream is paced at the policy's `pacing` share of it: a stream that fills the
 * path leaves a backlog in its buffers, and the guest waits for that backlog at the switch.
 * The timeout counts from the first memory round: a storage copy before it is not memory
 * migration.
 */
export async function orchestrateMigration(options: OrchestratorOptions): Promise<OrchestratedMigration> {
  const { driver, policy, clock } = options;
  const eff = assertPolicyPossible(policy, options.memoryMiB);
  const pollMs = options.pollMs ?? 250;
  const timeoutMs = policy.timeoutPerGiB * Math.max(1, options.memoryMiB / 1024);
  const context = { operation: 'migrate', ...(options.vm ? { vm: options.vm } : {}), ...(options.provider ? { provider: options.provider } : {}) };
  const actions: OrchestratorAction[] = [];
  const cap = streamCap(policy, driver.linkBytesPerSec);

  // What the hypervisor may spend on the last pages: the policy's maximum less the fixed switchover.
  const maxLimit = Math.max(1, Math.min(policy.maxDowntimeMs, Math.round(policy.maxDowntimeMs - (driver.switchoverMs ?? 0))));
  let downtime = Math.min(maxLimit, Math.max(Math.min(50, maxLimit), Math.round(maxLimit / 4)));
  let autoConverging = false;
  let postCopy = false;
  let bandwidth = cap;
  const started = clock.now();
  await driver.start({
    downtimeLimitMs: downtime,
    ...(bandwidth === undefined ? {} : { bandwidthBytesPerSec: bandwidth }),
    autoConverge: policy.autoConverge,
    autoConvergeNow: false,
    postCopy: policy.postCopy.allowed,
    compression: eff.effectiveCompression,
    parallelConnections: eff.effectiveParallel,
  });

  const remainingAt = new Map<number, number>(); // iteration → data remaining when it began
  let lastEscalationIteration = -1;
  let memoryStarted: number | undefined;
  let stats: MigrationStats | undefined;
  try {
    for (;;) {
      await clock.sleep(pollMs, options.signal);
      stats = await driver.poll();
      const elapsed = clock.now() - started;
      options.onProgress?.({ operation: 'migrate', phase: stats.status, fraction: fraction(stats), migration: progressOf(stats, elapsed) });
      if (stats.status === 'completed') {
        return {
          durationMs: elapsed,
          downtimeMs: stats.downtimeMs ?? 0,
          bytesTransferred: stats.wireBytes ?? stats.dataProcessedBytes,
          iterations: stats.iteration,
          postCopy,
          actions,
          final: stats,
        };
      }
      if (stats.status === 'failed' || stats.status === 'cancelled') {
        throw new NovaCronError('Provider', 'server', `migration ${stats.status}${stats.error ? `: ${stats.error}` : ''}; the VM keeps running on the source`, { context, retryable: true });
      }
      if (postCopy || (stats.status !== 'active' && stats.status !== 'setup')) continue;
      if (stats.status === 'active' && memoryStarted === undefined) memoryStarted = elapsed;
      // A set-up or storage copy that never reaches memory still ends: after the same timeout again.
      const sinceMemory = memoryStarted === undefined ? elapsed - timeoutMs : elapsed - memoryStarted;

      if (sinceMemory >= timeoutMs) {
        if (policy.onTimeout === 'postcopy') {
          await driver.switchToPostCopy();
          postCopy = true;
          actions.push({ kind: 'post-copy', atMs: elapsed, reason: 'timeout' });
          continue;
        }
        throw new TimeoutError(`migration did not complete within ${Math.round(timeoutMs / 1000)} s (policy timeoutPerGiB); aborted, the VM keeps running on the source`, { context, retryable: false });
      }

      if (stats.status !== 'active') continue;

      if (eff.adaptiveRate && stats.throughputBytesPerSec > 0) {
        // Follow the path: a little above what it carried, never above the cap.
        const next = Math.min(cap ?? Infinity, stats.throughputBytesPerSec * 1.25);
        if (bandwidth === undefined || Math.abs(next - bandwidth) / bandwidth > 0.2) {
          bandwidth = next;
          await driver.setBandwidth(bandwidth);
          actions.push({ kind: 'bandwidth', bytesPerSec: Math.round(bandwidth), atMs: elapsed });
        }
      }

      if (!remainingAt.has(stats.iteration)) remainingAt.set(stats.iteration, stats.dataRemainingBytes);
      if (stats.iteration === lastEscalationIteration || !notConverging(stats, remainingAt, downtime)) continue;
      lastEscalationIteration = stats.iteration;
      // Raising the limit helps only if what is left would then fit in it; otherwise take the maximum at once and adapt further.
      const hopeless = expectedDowntime(stats) > maxLimit && (policy.autoConverge || policy.postCopy.allowed);
      if (downtime < maxLimit) {
        downtime = hopeless ? maxLimit : Math.min(maxLimit, downtime * 2);
        await driver.setDowntimeLimit(downtime);
        actions.push({ kind: 'downtime', ms: downtime, atMs: elapsed });
        if (!hopeless) continue;
      }
      if (policy.autoConverge && !autoConverging) {
        await driver.engageAutoConverge();
        autoConverging = true;
        actions.push({ kind: 'auto-converge', atMs: elapsed });
      } else if (policy.postCopy.allowed && stats.iteration >= policy.postCopy.afterRounds) {
        await driver.switchToPostCopy();
        postCopy = true;
        actions.push({ kind: 'post-copy', atMs: elapsed, reason: 'not converging' });
      }
    }
  } catch (error) {
    if (!postCopy && stats?.status !== 'completed') {
      await driver.abort().catch(() => undefined);
    }
    if (options.signal?.aborted && !postCopy) {
      throw new AbortedError('migration aborted; the VM keeps running on the source', { context, cause: error });
    }
    throw error;
  }
}

/**
 * Not converging: the guest dirties memory about as fast as it is sent, or the data still
 * to send has stopped shrinking between rounds while the expected downtime is over the limit.
 */
function notConverging(stats: MigrationStats, remainingAt: ReadonlyMap<number, number>, downtimeLimitMs: number): boolean {
  if (stats.iteration < 2) return false;
  if (expectedDowntime(stats) <= downtimeLimitMs) return false;
  if (stats.throughputBytesPerSec > 0 && stats.dirtyRateBytesPerSec >= 0.9 * stats.throughputBytesPerSec) return true;
  const before = remainingAt.get(stats.iteration - 2);
  const now = remainingAt.get(stats.iteration);
  return before !== undefined && now !== undefined && now >= 0.7 * before;
}

/** The pause if the job stopped now: what the hypervisor says, else what is left at the current rate. */
function expectedDowntime(stats: MigrationStats): number {
  return stats.expectedDowntimeMs ?? (stats.throughputBytesPerSec > 0 ? (stats.dataRemainingBytes / stats.throughputBytesPerSec) * 1000 : Infinity);
}

function fraction(stats: MigrationStats): number {
  const total = stats.dataProcessedBytes + stats.dataRemainingBytes;
  return total > 0 ? Math.min(1, stats.dataProcessedBytes / total) : 0;
}

function progressOf(stats: MigrationStats, elapsedMs: number): MigrationProgress {
  return {
    iteration: stats.iteration,
    dataTotalBytes: stats.dataTotalBytes,
    dataProcessedBytes: stats.dataProcessedBytes,
    dataRemainingBytes: stats.dataRemainingBytes,
    dirtyRateBytesPerSec: stats.dirtyRateBytesPerSec,
    bandwidthBytesPerSec: stats.throughputBytesPerSec,
    ...(stats.expectedDowntimeMs === undefined ? {} : { expectedDowntimeMs: stats.expectedDowntimeMs }),
    elapsedMs,
  };
}
