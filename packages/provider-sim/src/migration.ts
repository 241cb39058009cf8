import {
  UnreachableError,
  orchestrateMigration,
  predictPreCopy,
  SimulatedMigrationDriver,
  type Clock,
  type MigrateRequest,
  type MigrationEstimateInputs,
  type MigrationResult,
  type OperationContext,
  type SimProviderConfig,
} from '@novacron/core';
import type { SimVm } from './world.js';

const MiB = 1024 * 1024;

/**
 * Simulated time for long operations: each sleep moves virtual time forward by its full
 * length but waits only `1/scale` of it for real, so a 40-second migration takes 40 ms at
 * the default scale of 1000, and no time at all under an instant test clock.
 */
export function scaledClock(base: Clock, scale: number): Clock {
  let virtual = base.now();
  return {
    now: () => virtual,
    sleep: async (ms, signal) => {
      await base.sleep(ms / scale, signal);
      virtual += ms;
    },
  };
}

export function migrationInputs(vm: SimVm, config: SimProviderConfig): MigrationEstimateInputs {
  return {
    memoryBytes: vm.resources.memoryMiB * MiB,
    workingSetBytes: vm.workingSetMiB * MiB,
    dirtyRateBytesPerSec: vm.dirtyRateMiBps * MiB,
    bandwidthBytesPerSec: (config.link.bandwidthMbps * 1e6) / 8,
    diskBytes: vm.resources.diskGiB * 1024 * MiB,
  };
}

/**
 * Moves a simulated guest with the same orchestrator and pre-copy dynamics the KVM
 * provider uses, in scaled time. A cold move copies the disk at link speed while the
 * guest is stopped. `linkFailsAfterMs` models a link cut or a destination crash.
 */
export async function simulateMigration(
  vm: SimVm,
  request: MigrateRequest,
  config: SimProviderConfig,
  clock: Clock,
  ctx: OperationContext,
  linkFailsAfterMs: number | undefined,
): Promise<Omit<MigrationResult, 'vm'>> {
  const inputs = migrationInputs(vm, config);
  const virtual = scaledClock(clock, config.timeScale);
  const link = {
    bandwidthBytesPerSec: inputs.bandwidthBytesPerSec,
    ...(config.link.perConnectionMbps ? { perConnectionBytesPerSec: (config.link.perConnectionMbps * 1e6) / 8 } : {}),
    ...(linkFailsAfterMs === undefined ? {} : { failAfterMs: linkFailsAfterMs }),
  };
  if (request.mode === 'cold') {
    const copyMs = ((inputs.diskBytes ?? 0) / inputs.bandwidthBytesPerSec) * 1000;
    if (linkFailsAfterMs !== undefined && linkFailsAfterMs < copyMs) {
      await virtual.sleep(linkFailsAfterMs, ctx.signal);
      throw new UnreachableError('disk copy to the destination failed: connection lost; the VM stays on the source');
    }
    await virtual.sleep(copyMs, ctx.signal);
    return { mode: 'cold', durationMs: copyMs, downtimeMs: copyMs, bytesTransferred: inputs.diskBytes ?? 0, iterations: 1, postCopy: false };
  }
  const driver = new SimulatedMigrationDriver(
    { memoryBytes: inputs.memoryBytes, workingSetBytes: inputs.workingSetBytes, dirtyRateBytesPerSec: inputs.dirtyRateBytesPerSec },
    link,
    virtual,
  );
  const pollMs = Math.max(50, Math.min(1000, predictPreCopy({ ...inputs, maxDowntimeMs: request.policy.maxDowntimeMs }).totalMs / 50 || 250));
  const result = await orchestrateMigration({
    driver,
    policy: request.policy,
    memoryMiB: vm.resources.memoryMiB,
    clock: virtual,
    pollMs,
    vm: vm.name,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(ctx.onProgress ? { onProgress: ctx.onProgress } : {}),
  });
  return {
    mode: 'live',
    durationMs: result.durationMs,
    downtimeMs: result.downtimeMs,
    bytesTransferred: result.bytesTransferred,
    iterations: result.iterations,
    postCopy: result.postCopy,
    actions: result.actions,
  };
}
