import { rm } from 'node:fs/promises';
import { NovaCronError, toNovaCronError } from '../errors/NovaCronError.js';
import type { VmRecord } from '../model/records.js';
import { supports, type CreateVmRequest, type MigrationResult, type OperationContext, type ProviderWith, type VmRef } from '../provider/Provider.js';
import type { Clock } from '../util/clock.js';
import { stableHash } from '../util/hash.js';

export interface CrossProviderMove {
  readonly ref: VmRef;
  readonly source: ProviderWith<'imageExport'>;
  readonly target: ProviderWith<'imageImport'>;
  /** The VM to make on the target; its disk comes from the imported image. */
  readonly create: CreateVmRequest;
  readonly clock: Clock;
  readonly ctx?: OperationContext;
  /**
   * How long the new VM may take to report running and, on a target that can tell
   * (`awaitReady`), for its guest to come up. @default 10 minutes to run, then the target's
   * own limit for the guest (KVM: `bootTimeout`; EC2: `waitTimeout`)
   */
  readonly verifyTimeoutMs?: number;
}

/**
 * Moves a VM between providers (a KVM host and a cloud, say): stop it, export its disk,
 * import that as an image on the target, create the VM there from it, wait until it runs
 * and, where the target can tell (`awaitReady`), until its guest came up, and only then
 * delete the source. A target without `awaitReady` (Compute Engine) is trusted once it
 * reports `running`. If any step before the last fails (a guest that does not come up
 * included), what the move made on the target is removed and the source is started again:
 * the VM is never lost.
 */
export async function moveAcrossProviders(move: CrossProviderMove): Promise<MigrationResult> {
  const { ref, source, target, clock } = move;
  const ctx = move.ctx ?? {};
  const vm = (await source.list(ref.fleet, ctx)).find((v) => v.name === ref.name && v.provider === source.name);
  if (!vm) throw new NovaCronError('NotFound', 'client', `${ref.name} is not on ${source.name}`, { context: { vm: ref.name, provider: source.name } });
  const phase = (name: string, fraction: number) => ctx.onProgress?.({ operation: 'migrate', phase: name, fraction, message: `${name} (${source.name} → ${target.name})` });
  const started = clock.now();
  const wasRunning = vm.state === 'running';
  let created: VmRecord | undefined;
  try {
    phase('stop', 0);
    if (wasRunning) await source.stop(ref, { gracefulTimeoutMs: 60_000 }, ctx);
    phase('export', 0.1);
    const artifact = await source.exportImage(ref, ctx);
    phase('import', 0.4);
    const imageName = `${vm.name}-${stableHash({ sha: artifact.sha256 }, 8)}`;
    // The exported disk is a local copy made for this move only: gone once imported (or not).
    const image = await target.importImage(artifact, imageName, ctx).finally(() => rm(artifact.path, { force: true }));
    phase('create', 0.8);
    created = await target.create({ ...move.create, fromImage: image }, ctx);
    phase('verify', 0.9);
    const verifyStarted = clock.now();
    const running = await waitRunning(target, move.create, clock, move.verifyTimeoutMs ?? 600_000, ctx);
    if (supports(target, 'awaitReady')) {
      phase('ready', 0.92);
      const timeoutMs = move.verifyTimeoutMs === undefined ? undefined : Math.max(0, verifyStarted + move.verifyTimeoutMs - clock.now());
      const ready = await target.awaitReady({ name: running.name, fleet: move.create.ownership.fleet, id: running.id, host: running.host }, timeoutMs === undefined ? {} : { timeoutMs }, ctx);
      if (!ready.ok) {
        throw new NovaCronError('Provider', 'server', `${running.name} runs on ${target.name} but did not come up: ${ready.detail}`, {
          context: { vm: running.name, provider: target.name, operation: 'awaitReady' },
          hint: `check that the disk can boot on ${target.name} (its drivers, boot mode and console) before moving the VM again`,
        });
      }
    }
    phase('retire', 0.95);
    const downtimeMs = clock.now() - started;
    await source.delete(ref, ctx);
    return { vm: running, mode: 'cold', durationMs: clock.now() - started, downtimeMs, bytesTransferred: artifact.sizeBytes, iterations: 1, postCopy: false };
  } catch (thrown) {
    const error = toNovaCronError(thrown, { vm: vm.name, operation: 'migrate' });
    if (created) await target.delete({ name: move.create.name, fleet: ref.fleet, id: created.id, host: created.host }, {}).catch(() => undefined);
    if (wasRunning) await source.start(ref, {}).catch(() => undefined);
    throw new NovaCronError(error.code, error.fault, `moving ${vm.name} from ${source.name} to ${target.name} failed: ${error.message}; the VM stays on ${source.name}`, {
      context: { ...error.context, vm: vm.name, operation: 'migrate' },
      retryable: error.retryable,
      cause: error,
      ...(error.hint ? { hint: error.hint } : {}),
    });
  }
}

async function waitRunning(target: ProviderWith<'imageImport'>, create: CreateVmRequest, clock: Clock, timeoutMs: number, ctx: OperationContext): Promise<VmRecord> {
  const deadline = clock.now() + timeoutMs;
  for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) {
    const vm = (await target.list(create.ownership.fleet, ctx)).find((v) => v.name === create.name && v.provider === target.name);
    if (vm?.state === 'running') return vm;
    if (clock.now() >= deadline) {
      throw new NovaCronError('Timeout', 'server', `${create.name} did not report running on ${target.name} within ${Math.round(timeoutMs / 1000)} s`, { context: { vm: create.name, provider: target.name } });
    }
    await clock.sleep(delay, ctx.signal);
  }
}
