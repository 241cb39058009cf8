import { describe, expect, it } from 'vitest';
import { migrationPolicy, type MigrationPolicy } from '../model/policies.js';
import type { Clock } from '../util/clock.js';
import type { MigrationDriver, MigrationSettings } from './driver.js';
import { predictPreCopy } from './model.js';
import { orchestrateMigration } from './orchestrator.js';
import { SimulatedMigrationDriver, type SimulatedGuest, type SimulatedLink } from './simulatedDriver.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const gbit = (n: number) => (n * 1e9) / 8;

/** Virtual time: each sleep moves the clock forward at once. */
function virtualClock(): Clock {
  let t = 0;
  return { now: () => t, sleep: async (ms, signal) => { signal?.throwIfAborted(); t += ms; } };
}

const policy = (patch: Record<string, unknown> = {}): MigrationPolicy => migrationPolicy.parse(patch);

async function migrate(guest: SimulatedGuest, link: SimulatedLink, p: MigrationPolicy, signal?: AbortSignal) {
  const clock = virtualClock();
  const driver = new SimulatedMigrationDriver(guest, link, clock);
  const result = await orchestrateMigration({ driver, policy: p, memoryMiB: guest.memoryBytes / MiB, clock, pollMs: 100, ...(signal ? { signal } : {}) });
  return { result, stats: await driver.poll() };
}

/** The driver with some members replaced (the simulated one keeps private state, so no prototype tricks). */
function wrap(driver: MigrationDriver, patch: Partial<MigrationDriver>): MigrationDriver {
  return {
    start: (s) => driver.start(s),
    poll: () => driver.poll(),
    setDowntimeLimit: (ms) => driver.setDowntimeLimit(ms),
    setBandwidth: (b) => driver.setBandwidth(b),
    engageAutoConverge: () => driver.engageAutoConverge(),
    switchToPostCopy: () => driver.switchToPostCopy(),
    abort: () => driver.abort(),
    ...patch,
  };
}

const idle: SimulatedGuest = { memoryBytes: 2 * GiB, workingSetBytes: 8 * MiB, dirtyRateBytesPerSec: 1 * MiB, zeroFraction: 0.9 };
const heavy: SimulatedGuest = { memoryBytes: 4 * GiB, workingSetBytes: 1 * GiB, dirtyRateBytesPerSec: 200 * MiB };

describe('orchestrateMigration', () => {
  it('moves an idle guest with plain pre-copy and a short downtime', async () => {
    const { result } = await migrate(idle, { bandwidthBytesPerSec: gbit(1) }, policy());
    expect(result.postCopy).toBe(false);
    expect(result.downtimeMs).toBeLessThanOrEqual(300);
    expect(result.iterations).toBeLessThanOrEqual(3);
    expect(result.actions.filter((a) => a.kind === 'auto-converge')).toEqual([]);
  });

  it('gives up on a guest that dirties faster than the link when it may not adapt, leaving it on the source', async () => {
    const p = policy({ autoConverge: false, timeoutPerGiB: '10s' });
    const clock = virtualClock();
    const driver = new SimulatedMigrationDriver(heavy, { bandwidthBytesPerSec: gbit(1) }, clock);
    await expect(orchestrateMigration({ driver, policy: p, memoryMiB: 4096, clock })).rejects.toMatchObject({ code: 'Timeout' });
    expect((await driver.poll()).status).toBe('cancelled');
  });

  it('raises the downtime limit in steps while the rest would fit under the maximum', async () => {
    // A small working set rewritten every round: 20 MiB stay dirty, about 170 ms at 1 Gbit/s.
    const hot: SimulatedGuest = { memoryBytes: 2 * GiB, workingSetBytes: 20 * MiB, dirtyRateBytesPerSec: 300 * MiB };
    const { result } = await migrate(hot, { bandwidthBytesPerSec: gbit(1) }, policy({ autoConverge: true }));
    expect(result.actions.map((a) => a.kind)).toEqual(['downtime', 'downtime']);
    expect(result.actions.map((a) => (a as { ms: number }).ms)).toEqual([150, 300]);
    expect(result.downtimeMs).toBeLessThanOrEqual(300);
  });

  it('goes to the maximum at once and engages auto-converge when no limit would do, and converges', async () => {
    const { result } = await migrate(heavy, { bandwidthBytesPerSec: gbit(1) }, policy({ autoConverge: true, timeoutPerGiB: '5m' }));
    const kinds = result.actions.map((a) => a.kind);
    expect(kinds.slice(0, 2)).toEqual(['downtime', 'auto-converge']);
    expect(result.actions[0]).toMatchObject({ kind: 'downtime', ms: 300 });
    expect(result.downtimeMs).toBeLessThanOrEqual(300);
  });

  it('keeps the hypervisor\'s limit below the maximum by the driver\'s switchover time', async () => {
    const clock = virtualClock();
    const driver = new SimulatedMigrationDriver(heavy, { bandwidthBytesPerSec: gbit(1) }, clock);
    const limits: number[] = [];
    const spy = wrap(driver, {
      switchoverMs: 120,
      start: (s: Parameters<SimulatedMigrationDriver['start']>[0]) => (limits.push(s.downtimeLimitMs), driver.start(s)),
      setDowntimeLimit: (ms: number) => (limits.push(ms), driver.setDowntimeLimit(ms)),
    });
    await orchestrateMigration({ driver: spy, policy: policy({ autoConverge: true, timeoutPerGiB: '5m' }), memoryMiB: 4096, clock, pollMs: 100 });
    expect(limits[0]).toBe(50);
    expect(Math.max(...limits)).toBe(180);
  });

  it('times out a migration whose set-up never reaches memory, and aborts it', async () => {
    const clock = virtualClock();
    const driver = new SimulatedMigrationDriver(idle, { bandwidthBytesPerSec: gbit(1) }, clock);
    let aborted = 0;
    const stuck = wrap(driver, {
      poll: async () => ({ ...(await driver.poll()), status: 'setup' as const }),
      abort: async () => void aborted++,
    });
    await expect(orchestrateMigration({ driver: stuck, policy: policy({ timeoutPerGiB: '10s' }), memoryMiB: 2048, clock, pollMs: 500 })).rejects.toMatchObject({ code: 'Timeout' });
    expect(aborted).toBe(1);
    expect(clock.now()).toBe(40_000); // twice the 20 s timeout: once for set-up, once for memory
  });

  it('switches to post-copy after the allowed rounds when pre-copy will not converge', async () => {
    const { result } = await migrate(heavy, { bandwidthBytesPerSec: gbit(1) }, policy({ autoConverge: false, postCopy: { allowed: true, afterRounds: 3 } }));
    expect(result.postCopy).toBe(true);
    expect(result.actions.at(-1)).toMatchObject({ kind: 'post-copy', reason: 'not converging' });
    expect(result.downtimeMs).toBeLessThan(20);
  });

  it('moves far fewer bytes with multifd-zstd on a compressible guest', async () => {
    const compressible = { ...heavy, dirtyRateBytesPerSec: 20 * MiB, compressibility: 0.2 };
    const plain = await migrate(compressible, { bandwidthBytesPerSec: gbit(1) }, policy());
    const wan = await migrate(compressible, { bandwidthBytesPerSec: gbit(1) }, policy({ wanProfile: 'wan' }));
    expect(wan.result.bytesTransferred).toBeLessThan(0.5 * plain.result.bytesTransferred);
  });

  it('follows the measured throughput with the adaptive profile', async () => {
    // Unpaced: the stream starts at the 1 Gbit/s cap, five times what the path carries.
    const { result } = await migrate(idle, { bandwidthBytesPerSec: gbit(0.2) }, policy({ wanProfile: 'adaptive', bandwidthMbps: 1000, pacing: 1 }));
    const rates = result.actions.filter((a) => a.kind === 'bandwidth');
    expect(rates.length).toBeGreaterThan(0);
    expect((rates.at(-1) as { bytesPerSec: number }).bytesPerSec).toBeLessThanOrEqual(gbit(0.2) * 1.3);
  });

  it("paces the stream at the policy's share of the path's measured capacity, under the policy's cap", async () => {
    const started: MigrationSettings[] = [];
    const run = async (link: number | undefined, p: MigrationPolicy) => {
      const clock = virtualClock();
      const sim = new SimulatedMigrationDriver(idle, { bandwidthBytesPerSec: gbit(1) }, clock);
      const driver = wrap(sim, { start: (s) => (started.push(s), sim.start(s)), ...(link === undefined ? {} : { linkBytesPerSec: link }) });
      return orchestrateMigration({ driver, policy: p, memoryMiB: 2048, clock, pollMs: 100 });
    };
    await run(gbit(1), policy());
    await run(gbit(1), policy({ pacing: 0.9 }));
    await run(gbit(1), policy({ bandwidthMbps: 500 }));
    await run(gbit(1), policy({ pacing: 1 }));
    await run(undefined, policy());
    expect(started.map((s) => s.bandwidthBytesPerSec)).toEqual([gbit(0.8), gbit(0.9), gbit(0.5), undefined, undefined]);
  });

  it('reports a broken link as a retryable failure with the VM still on the source', async () => {
    await expect(migrate(heavy, { bandwidthBytesPerSec: gbit(1), failAfterMs: 2000 }, policy())).rejects.toMatchObject({ retryable: true, message: expect.stringMatching(/connection to the destination lost; the VM keeps running on the source/) });
  });

  it('aborts on the signal and cancels the job', async () => {
    const controller = new AbortController();
    const clock = virtualClock();
    const driver = new SimulatedMigrationDriver(heavy, { bandwidthBytesPerSec: gbit(1) }, clock);
    const sleep = clock.sleep;
    let polls = 0;
    const counting: Clock = { now: clock.now, sleep: async (ms, signal) => { if (++polls === 5) controller.abort(); return sleep(ms, signal); } };
    await expect(orchestrateMigration({ driver, policy: policy(), memoryMiB: 4096, clock: counting, signal: controller.signal })).rejects.toMatchObject({ code: 'Aborted' });
    expect((await driver.poll()).status).toBe('cancelled');
  });

  it('refuses an impossible policy before anything moves', async () => {
    const clock = virtualClock();
    const driver = new SimulatedMigrationDriver(idle, { bandwidthBytesPerSec: gbit(1) }, clock);
    await expect(orchestrateMigration({ driver, policy: policy({ onTimeout: 'postcopy' }), memoryMiB: 2048, clock })).rejects.toThrow(/onTimeout is "postcopy" but migration.postCopy.allowed is false/);
    await expect(orchestrateMigration({ driver, policy: policy({ compression: 'xbzrle', parallelConnections: 4 }), memoryMiB: 2048, clock })).rejects.toThrow(/one connection only/);
    await expect(orchestrateMigration({ driver, policy: policy({ bandwidthMbps: 1, timeoutPerGiB: '1s' }), memoryMiB: 2048, clock })).rejects.toThrow(/cannot move 2048 MiB even once/);
    expect((await driver.poll()).status).toBe('setup');
  });
});

describe('predictPreCopy', () => {
  it('predicts what the simulated migration measures, within 25%', async () => {
    for (const guest of [idle, { ...heavy, dirtyRateBytesPerSec: 40 * MiB }]) {
      const prediction = predictPreCopy({
        memoryBytes: guest.memoryBytes, workingSetBytes: guest.workingSetBytes, dirtyRateBytesPerSec: guest.dirtyRateBytesPerSec,
        bandwidthBytesPerSec: gbit(1), maxDowntimeMs: 300, zeroFraction: guest.zeroFraction ?? 0,
      });
      const { result } = await migrate(guest, { bandwidthBytesPerSec: gbit(1) }, policy());
      expect(prediction.converges).toBe(true);
      expect(Math.abs(prediction.totalMs - result.durationMs) / result.durationMs).toBeLessThan(0.25);
    }
  });

  it('adds the set-up and the storage copy before the memory rounds', () => {
    const base = { memoryBytes: 256 * MiB, workingSetBytes: 8 * MiB, dirtyRateBytesPerSec: 0, bandwidthBytesPerSec: 32 * MiB, maxDowntimeMs: 300, switchoverMs: 150 };
    const plain = predictPreCopy(base);
    const withDisk = predictPreCopy({ ...base, setupMs: 700, storageCopyBytes: 64 * MiB, storageBandwidthBytesPerSec: 16 * MiB });
    expect(withDisk.totalMs - plain.totalMs).toBeCloseTo(700 + 4000, 6);
    expect(withDisk.downtimeMs).toBe(plain.downtimeMs);
    expect(plain.downtimeMs).toBeGreaterThanOrEqual(150);
  });

  it('says when pre-copy cannot converge, and why', () => {
    const p = predictPreCopy({ memoryBytes: 4 * GiB, workingSetBytes: 1 * GiB, dirtyRateBytesPerSec: 200 * MiB, bandwidthBytesPerSec: gbit(1), maxDowntimeMs: 300 });
    expect(p.converges).toBe(false);
    expect(p.reason).toMatch(/dirties 200MiB\/s of a 1\.0GiB working set/);
    const withPostCopy = predictPreCopy({ memoryBytes: 4 * GiB, workingSetBytes: 1 * GiB, dirtyRateBytesPerSec: 200 * MiB, bandwidthBytesPerSec: gbit(1), maxDowntimeMs: 300, postCopyAfterRounds: 3 });
    expect(withPostCopy).toMatchObject({ converges: true, strategy: 'post-copy', rounds: 3 });
    const withAutoConverge = predictPreCopy({ memoryBytes: 4 * GiB, workingSetBytes: 1 * GiB, dirtyRateBytesPerSec: 200 * MiB, bandwidthBytesPerSec: gbit(1), maxDowntimeMs: 300, autoConverge: true });
    expect(withAutoConverge).toMatchObject({ converges: true, strategy: 'auto-converge' });
  });
});
