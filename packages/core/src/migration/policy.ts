import { InvalidInputError } from '../errors/errors.js';
import type { MigrationPolicy } from '../model/policies.js';
import type { MigrationCompression } from './driver.js';

/**
 * WAN profiles: what a policy means on a given kind of link.
 * - lan: the policy as written.
 * - wan: multifd with zstd over 4 connections unless the policy says otherwise — fewer
 *   bytes on a thin, long link — and the policy's bandwidth cap.
 * - adaptive: as wan, and the rate follows the measured throughput so the stream does
 *   not overrun a path whose capacity changes.
 */
export interface EffectivePolicy extends MigrationPolicy {
  readonly effectiveCompression: MigrationCompression;
  readonly effectiveParallel: number;
  readonly adaptiveRate: boolean;
}

export function effectivePolicy(policy: MigrationPolicy): EffectivePolicy {
  const wan = policy.wanProfile !== 'lan';
  const compression: MigrationCompression = wan && policy.compression === 'none' ? 'multifd-zstd' : policy.compression;
  const parallel = compression.startsWith('multifd') && policy.parallelConnections === 1 && wan ? 4 : policy.parallelConnections;
  return { ...policy, effectiveCompression: compression, effectiveParallel: parallel, adaptiveRate: policy.wanProfile === 'adaptive' };
}

/** Refuses contradictory policies before anything moves, saying what to change. */
export function assertPolicyPossible(policy: MigrationPolicy, memoryMiB: number, path = 'migration'): EffectivePolicy {
  const eff = effectivePolicy(policy);
  const problems: string[] = [];
  if (policy.onTimeout === 'postcopy' && !policy.postCopy.allowed) {
    problems.push(`${path}.onTimeout is "postcopy" but ${path}.postCopy.allowed is false: allow post-copy or abort on timeout`);
  }
  if (eff.effectiveCompression === 'xbzrle' && eff.effectiveParallel > 1) {
    problems.push(`${path}.compression "xbzrle" works on one connection only (QEMU), but ${path}.parallelConnections is ${eff.effectiveParallel}`);
  }
  if (policy.postCopy.allowed && eff.effectiveCompression.startsWith('multifd')) {
    problems.push(`${path}.postCopy cannot be combined with multifd compression in QEMU 7.2; use compression "none" or "xbzrle", or disallow post-copy`);
  }
  if (policy.bandwidthMbps !== undefined) {
    const seconds = (memoryMiB * 1024 * 1024 * 8) / (policy.bandwidthMbps * 1e6);
    const timeout = (policy.timeoutPerGiB * Math.max(1, memoryMiB / 1024)) / 1000;
    if (seconds > timeout) {
      problems.push(`${path}.bandwidthMbps ${policy.bandwidthMbps} cannot move ${memoryMiB} MiB even once within the timeout of ${Math.round(timeout)} s (${path}.timeoutPerGiB): raise one of them`);
    }
  }
  if (problems.length > 0) {
    throw new InvalidInputError(`impossible migration policy: ${problems.join('; ')}`, { context: { path }, hint: 'nothing was moved' });
  }
  return eff;
}

/**
 * The stream's rate cap: the policy's bandwidth limit, and the policy's pacing share of the
 * path's measured capacity when the provider knows it. undefined: unlimited.
 */
export function streamCap(policy: MigrationPolicy, linkBytesPerSec: number | undefined): number | undefined {
  const limit = policy.bandwidthMbps === undefined ? Infinity : mbpsToBytesPerSec(policy.bandwidthMbps);
  const paced = linkBytesPerSec !== undefined && linkBytesPerSec > 0 && policy.pacing < 1 ? policy.pacing * linkBytesPerSec : Infinity;
  const cap = Math.min(limit, paced);
  return Number.isFinite(cap) ? cap : undefined;
}

export function mbpsToBytesPerSec(mbps: number): number {
  return (mbps * 1e6) / 8;
}
