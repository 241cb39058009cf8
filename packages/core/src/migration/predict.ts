import type { MigrationPolicy } from '../model/policies.js';
import type { MigrationEstimateInputs } from '../provider/Provider.js';
import { predictPreCopy, type PreCopyInput, type Prediction } from './model.js';
import { assertPolicyPossible, streamCap } from './policy.js';

/** A provider's estimate, with whatever model inputs it measured beyond the core's (set-up, switchover, storage copy). */
export type MigrationEstimate = MigrationEstimateInputs & Partial<Pick<PreCopyInput, 'setupMs' | 'switchoverMs' | 'storageCopyBytes' | 'storageBandwidthBytesPerSec'>>;

/**
 * What multifd compression leaves of a page whose compressibility was never measured: Linux
 * memory (code, page cache, heap) typically shrinks to a third or half under zstd/zlib.
 * A provider that measured a VM's pages (the KVM provider, after its first compressed move)
 * passes `compressibility`, which replaces this.
 */
export const UNMEASURED_COMPRESSIBILITY = 0.5;

/**
 * What a migration under `policy` will do, from a provider's measurements: the pre-copy
 * model with the policy's cap, compression (multifd compresses every page; XBZRLE only
 * re-sent ones, as deltas), auto-converge, post-copy rounds and timeout applied.
 */
export function predictMigration(estimate: MigrationEstimate, policy: MigrationPolicy, memoryMiB: number): Prediction {
  const eff = assertPolicyPossible(policy, memoryMiB);
  // The orchestrator paces the stream below the path's measured capacity (see streamCap).
  const cap = streamCap(policy, estimate.bandwidthBytesPerSec) ?? Infinity;
  const multifd = eff.effectiveCompression.startsWith('multifd');
  return predictPreCopy({
    ...estimate,
    bandwidthBytesPerSec: Math.min(estimate.bandwidthBytesPerSec, cap),
    // The storage copy is neither paced nor capped (only the memory stream is).
    storageBandwidthBytesPerSec: estimate.storageBandwidthBytesPerSec ?? estimate.bandwidthBytesPerSec,
    maxDowntimeMs: policy.maxDowntimeMs,
    compressionRatio: multifd ? (estimate.compressibility ?? UNMEASURED_COMPRESSIBILITY) : 1,
    ...(eff.effectiveCompression === 'xbzrle' ? { resendRatio: Math.max(0.05, estimate.compressibility ?? 1) } : {}),
    autoConverge: policy.autoConverge,
    // The orchestrator engages it once a round shows pre-copy is not converging (round 2 at the earliest).
    autoConvergeAfterRounds: 2,
    ...(policy.postCopy.allowed ? { postCopyAfterRounds: policy.postCopy.afterRounds } : {}),
    timeoutMs: policy.timeoutPerGiB * Math.max(1, memoryMiB / 1024),
  });
}
