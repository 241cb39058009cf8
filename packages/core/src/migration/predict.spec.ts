import { describe, expect, it } from 'vitest';
import { migrationPolicy } from '../model/policies.js';
import { predictMigration, UNMEASURED_COMPRESSIBILITY } from './predict.js';

const MiB = 1024 * 1024;
const estimate = { memoryBytes: 256 * MiB, workingSetBytes: 96 * MiB, dirtyRateBytesPerSec: 90 * MiB, bandwidthBytesPerSec: 35 * MiB, zeroFraction: 0.7, setupMs: 3000, switchoverMs: 200, storageCopyBytes: 2 * MiB };

describe('predictMigration', () => {
  it('applies the policy to a provider\'s estimate', () => {
    const plain = predictMigration(estimate, migrationPolicy.parse({ autoConverge: false }), 256);
    expect(plain.converges).toBe(false);
    const postCopy = predictMigration(estimate, migrationPolicy.parse({ autoConverge: false, postCopy: { allowed: true, afterRounds: 2 } }), 256);
    expect(postCopy).toMatchObject({ converges: true, strategy: 'post-copy', rounds: 2, downtimeMs: 200 });
    expect(postCopy.totalMs).toBeGreaterThan(3000);
    const idle = predictMigration({ ...estimate, dirtyRateBytesPerSec: 0 }, migrationPolicy.parse({}), 256);
    expect(idle).toMatchObject({ converges: true, strategy: 'pre-copy' });
    // Set-up, the storage copy at the link's 35 MiB/s, ~77 MiB of pages paced at 0.8 of it, the switchover.
    expect(idle.totalMs).toBeCloseTo(3000 + (2 / 35) * 1000 + (256 * 0.3 / (0.8 * 35)) * 1000 + 200, 0);
    const unpaced = predictMigration({ ...estimate, dirtyRateBytesPerSec: 0 }, migrationPolicy.parse({ pacing: 1 }), 256);
    expect(unpaced.totalMs).toBeCloseTo(3000 + (2 / 35) * 1000 + (256 * 0.3 / 35) * 1000 + 200, 0);
  });

  it('compresses with multifd by what the VM\'s pages were measured to compress to, and caps the stream', () => {
    const zstd = predictMigration({ ...estimate, dirtyRateBytesPerSec: 0, compressibility: 0.1 }, migrationPolicy.parse({ compression: 'multifd-zstd', parallelConnections: 2 }), 256);
    const plain = predictMigration({ ...estimate, dirtyRateBytesPerSec: 0, compressibility: 0.1 }, migrationPolicy.parse({}), 256);
    expect(zstd.bytesSent).toBeCloseTo(plain.bytesSent * 0.1, -3);
    // Never measured: the prior, not "incompressible".
    const unmeasured = predictMigration({ ...estimate, dirtyRateBytesPerSec: 0 }, migrationPolicy.parse({ compression: 'multifd-zstd', parallelConnections: 2 }), 256);
    expect(unmeasured.bytesSent).toBeCloseTo(plain.bytesSent * UNMEASURED_COMPRESSIBILITY, -3);
    const capped = predictMigration({ ...estimate, dirtyRateBytesPerSec: 0 }, migrationPolicy.parse({ bandwidthMbps: 80 }), 256);
    // The cap (10 MB/s) is below the pace (0.8 × 35 MiB/s): it rules the memory stream, not the storage copy.
    expect(capped.totalMs).toBeCloseTo(3000 + (2 / 35) * 1000 + ((256 * 0.3 * MiB) / 10e6) * 1000 + 200, 0);
  });

  it('lets auto-converge throttle only from the round the orchestrator can engage it', () => {
    const ac = predictMigration({ ...estimate, dirtyRateBytesPerSec: 60 * MiB }, migrationPolicy.parse({ autoConverge: true, timeoutPerGiB: '10m' }), 256);
    expect(ac.timeline.slice(0, 4).every((r) => r.throttle === 0)).toBe(true);
    expect(ac.timeline.at(-1)!.throttle).toBeGreaterThan(0);
  });
});
