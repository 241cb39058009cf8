import { effectivePolicy, NovaCronError, orchestrateMigration, toNovaCronError, UNMEASURED_COMPRESSIBILITY, type MigrateRequest, type MigrationResult, type OperationContext } from '@novacron/core';
import { KvmImages } from '../images/KvmImages.js';
import type { Virsh } from '../virsh/Virsh.js';
import type { MigrationEnv } from './access.js';
import { measureLink } from './estimate.js';
import { KvmMigrationDriver } from './KvmMigrationDriver.js';
import type { MovePlan } from './preflight.js';
import { baseName, copyVolume } from './volumes.js';

const POLL_MS = 500;

/**
 * A live move with the disks copied (no shared storage). The destination's volumes are
 * made first — same names, sizes and formats, on the same base image; the read-only seed
 * is copied with a checksum, since libvirt's storage copy skips read-only disks — then the
 * core's orchestrator drives KvmMigrationDriver. libvirt defines the domain on the
 * destination (persistent, with NovaCron's metadata) and undefines it on the source; only
 * then are the source's volumes removed. If the job fails or is aborted, the guest keeps
 * running on the source and the volumes made on the destination are removed.
 */
export async function migrateLive(env: MigrationEnv, plan: MovePlan, request: MigrateRequest, ctx: OperationContext): Promise<MigrationResult> {
  const { source, destination, destinationVirsh } = plan;
  const vm = source.view.info.name;
  const pools = { source: source.host.pool, destination: destination.pool };
  const opts = { ...(ctx.signal ? { signal: ctx.signal } : {}), vm, operation: 'migrate' };
  const context = { provider: env.provider.name, vm, host: destination.name, operation: 'migrate' };
  const made: string[] = [];
  const phase = (name: string, message?: string) => ctx.onProgress?.({ operation: 'migrate', phase: name, ...(message ? { message } : {}) });

  // What the path carries now, measured while the destination's volumes are made: the move
  // is paced below it (see the orchestrator), and a pace from an older measurement could be
  // far off (a link shaped then, or a busier one).
  const probe = measureLink(source.virsh, plan.link, ctx).catch(() => undefined);
  const compressed = effectivePolicy(request.policy).effectiveCompression.startsWith('multifd');
  const driver = new KvmMigrationDriver({
    domain: vm,
    source: source.virsh,
    destination: destinationVirsh,
    link: plan.link,
    copyStorage: plan.volumes.some((v) => !v.readonly),
    clock: env.clock,
    random: env.random,
    switchoverMs: env.calibration.switchoverMs,
    lifetimeSec: (request.policy.timeoutPerGiB / 1000) * Math.max(1, source.view.info.memoryMiB / 1024) * 3 + 600,
    ...(env.log ? { log: env.log } : {}),
  });
  try {
    phase('volumes', `making ${plan.volumes.length} volume(s) on ${destination.name}`);
    for (const v of plan.volumes.filter((x) => !x.readonly)) {
      const backing = v.backing ? ['--backing-vol', baseName(v.backing.path), '--backing-vol-format', v.backing.format] : [];
      await destinationVirsh.run(['vol-create-as', pools.destination, v.name, String(v.capacityBytes), '--format', v.format, ...backing], opts);
      made.push(v.name);
      // qcow2 v3 (libvirt makes v2): zero clusters keep the copy sparse, and dirty bitmaps (incremental backups) fit.
      if (v.format === 'qcow2') {
        const amended = await destinationVirsh.script(KvmImages.upgradeScript(destinationVirsh, pools.destination, v.name), { ...(ctx.signal ? { signal: ctx.signal } : {}) });
        if (amended.code !== 0) throw new NovaCronError('Provider', 'server', `${destination.name}: cannot make ${v.name} qcow2 v3: ${amended.stderr.trim().slice(0, 300)}`, { context, hint: 'qemu-img must be installed on the destination' });
      }
    }
    for (const v of plan.volumes.filter((x) => x.readonly)) {
      made.push(v.name);
      await copyVolume(source.virsh, destinationVirsh, plan.link, v, pools, { ...opts, context });
    }

    const measured = await probe;
    if (measured !== undefined) env.calibration.recordLink(source.host.name, destination.name, measured);
    const link = measured ?? env.calibration.capacity(source.host.name, destination.name);
    // QEMU 7.2 counts multifd's page bytes, before compression, against its rate limit: in
    // those units the link carries its bytes over what a page compresses to (a wire pace
    // held a stream compressed to 8% at a tenth of the link on the testbed: 18.9 s, not 6 s).
    driver.linkBytesPerSec = link === undefined || !compressed ? link : link / (env.calibration.compressibility(vm) ?? UNMEASURED_COMPRESSIBILITY);
    const result = await orchestrateMigration({
      driver,
      policy: request.policy,
      memoryMiB: source.view.info.memoryMiB,
      clock: env.clock,
      pollMs: POLL_MS,
      vm,
      provider: env.provider.name,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      ...(ctx.onProgress ? { onProgress: ctx.onProgress } : {}),
    });
    made.length = 0; // they hold the VM now

    phase('verify', `${vm} on ${destination.name}`);
    const moved = await env.provider.locate({ name: vm, fleet: '', host: `${env.provider.name}/${destination.name}` }, 'migrate', ctx);
    if (!moved || moved.host.name !== destination.name || moved.view.state !== 'running') {
      throw new NovaCronError('Provider', 'server', `${vm} was migrated but is ${moved ? `${moved.view.state} on ${moved.host.name}` : 'nowhere to be found'}`, { context, hint: 'check the domain on both hosts (virsh list --all); nothing was deleted' });
    }
    phase('cleanup', `removing ${vm}'s volumes from ${source.host.name}`);
    await removeVolumes(source.virsh, pools.source, plan.volumes.map((v) => v.name), opts, env);

    const outcome = driver.outcome;
    const memoryMs = result.durationMs - (outcome.toMemoryMs ?? 0);
    // QEMU's average over the memory phase when libvirt reports it; else processed over our own timing.
    const reported = outcome.completed?.numbers.get('memory_bps');
    const throughput = result.postCopy ? undefined : reported && reported > 0 ? reported : memoryMs > 0 ? result.final.dataProcessedBytes / (memoryMs / 1000) : undefined;
    // A compressed stream's rate says what QEMU compressed, not what the path carries.
    if (throughput && !compressed) env.calibration.recordThroughput(source.host.name, destination.name, throughput, outcome.lastCapBytesPerSec);
    // The fixed time of a move (tunnel, destination QEMU, libvirt's hand-over, seeing it done):
    // what it took less what the model computes from bytes and rates — the storage copy and
    // the memory rounds at the stream's rate — and the downtime.
    const rate = throughput ?? env.calibration.throughput(source.host.name, destination.name);
    if (rate && !result.postCopy) {
      // The storage copy is never paced or capped (see KvmMigrationDriver.start).
      const moving = (result.final.dataProcessedBytes / rate + (outcome.diskBytesOnWire ?? 0) / Math.max(rate, link ?? 0)) * 1000;
      env.calibration.recordSetup(result.durationMs - moving - result.downtimeMs);
    }
    if (!result.postCopy) env.calibration.recordDowntime(result.downtimeMs, outcome.lastLimitMs, request.policy.maxDowntimeMs);
    const zero = (outcome.completed?.numbers.get('memory_constant') ?? 0) * (outcome.completed?.numbers.get('memory_page_size') ?? 4096);
    if (result.final.dataTotalBytes > 0) env.calibration.recordZeroFraction(vm, Math.min(1, zero / result.final.dataTotalBytes));
    if (outcome.memoryBytesOnWire && result.final.dataProcessedBytes > 0 && request.policy.compression !== 'none') {
      env.calibration.recordCompressibility(vm, outcome.memoryBytesOnWire / result.final.dataProcessedBytes);
    }
    return {
      vm: env.provider.toRecord(moved),
      mode: 'live',
      durationMs: result.durationMs,
      downtimeMs: result.downtimeMs,
      bytesTransferred: outcome.memoryBytesOnWire ?? result.bytesTransferred,
      iterations: result.iterations,
      postCopy: result.postCopy,
      actions: result.actions,
    };
  } catch (thrown) {
    const error = toNovaCronError(thrown, context);
    await rollBack(env, plan, made, ctx).catch((e: unknown) => env.log?.(`kvm: rolling back the move of ${vm}: ${String(e)}`));
    throw error;
  } finally {
    await driver.close();
  }
}

/** After a failed live move: the volumes made on the destination go, unless a domain there uses them (then the VM did arrive). */
async function rollBack(env: MigrationEnv, plan: MovePlan, made: readonly string[], _ctx: OperationContext): Promise<void> {
  // No signal here: an aborted move must still be cleaned up.
  const vm = plan.source.view.info.name;
  const opts = { vm, operation: 'migrate' };
  // libvirt resumes the guest on the source after a failed pre-copy; make sure of it.
  const state = await plan.source.virsh.tryRun(['domstate', '--reason', vm], opts);
  if (!state.error && /^paused \((?:migration|user|unknown)/.test(state.stdout.trim())) {
    env.log?.(`kvm: ${plan.source.host.name}: resuming ${vm}, left ${state.stdout.trim()} by the failed move`);
    await plan.source.virsh.tryRun(['resume', vm], opts);
  }
  if (made.length === 0) return;
  const onDestination = await plan.destinationVirsh.tryRun(['domstate', vm], opts);
  if (!onDestination.error) {
    env.log?.(`kvm: ${vm} is defined on ${plan.destination.name} after a failed move; its volumes there are kept`);
    return;
  }
  await removeVolumes(plan.destinationVirsh, plan.destination.pool, made, opts, env);
}

export async function removeVolumes(virsh: Virsh, pool: string, names: readonly string[], opts: { vm: string; operation: string }, env: MigrationEnv): Promise<void> {
  if (names.length === 0) return;
  const results = await virsh.batch(
    names.map((n) => ['vol-delete', n, '--pool', pool]),
    opts,
  );
  for (const r of results) if (r.error && r.error.code !== 'NotFound') env.log?.(`kvm: ${virsh.host}: ${r.error.message}`);
}
