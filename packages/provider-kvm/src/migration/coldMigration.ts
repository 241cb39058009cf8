import { NovaCronError, toNovaCronError, type MigrateRequest, type MigrationResult, type OperationContext } from '@novacron/core';
import { consoleTail, readyMarkerFor, serialLogOf, watchGuest } from '../domain/guestReady.js';
import type { Virsh } from '../virsh/Virsh.js';
import type { MigrationEnv } from './access.js';
import { removeVolumes } from './liveMigration.js';
import type { MovePlan } from './preflight.js';
import { copyVolume } from './volumes.js';

/** How long a started copy may take to reach its ready marker. @default the provider's bootTimeout */
export interface ColdOptions {
  readonly verifyTimeoutMs?: number;
}

/**
 * A cold move: stop the guest (ACPI first, forced after the provider's stopTimeout), copy
 * every volume host to host with a sha256 on both ends, define the same domain (NovaCron's
 * metadata included) on the destination, start it if it ran, and verify it — running, still
 * running a moment later, and, for a guest whose console showed its image's ready marker on
 * the source (`images.*.readyMarker`, else the same default as restore tests), showing it
 * again; a guest that printed something else must print again. Only then is the source
 * undefined and its volumes removed. Any failure before that removes what was made on the
 * destination and starts the source again.
 */
export async function migrateCold(env: MigrationEnv, plan: MovePlan, _request: MigrateRequest, ctx: OperationContext, options: ColdOptions = {}): Promise<MigrationResult> {
  const { source, destination, destinationVirsh } = plan;
  const vm = source.view.info.name;
  const started = env.clock.now();
  const wasRunning = source.view.state !== 'shut off';
  const context = { provider: env.provider.name, vm, host: destination.name, operation: 'migrate' };
  const opts = { vm, operation: 'migrate' };
  const signal = ctx.signal;
  const phase = (name: string, fraction: number, message?: string) => ctx.onProgress?.({ operation: 'migrate', phase: name, fraction, ...(message ? { message } : {}) });
  const pools = { source: source.host.pool, destination: destination.pool };
  const made: string[] = [];
  let defined = false;
  let stoppedAt: number | undefined;
  let bytes = 0;
  const serialLog = await serialLogOf(source.virsh, vm, opts);
  const { marker, configured } = readyMarkerFor(env.config, source.view.info.metadata?.image);
  const onSource = wasRunning ? await consoleTail(source.virsh, serialLog) : '';
  // What proves the guest is up on the destination: the marker its image declares, or the
  // default one if the console showed it here, else any output if it printed any. (After a
  // live move the console log starts empty: only a declared marker is then known.)
  const expect: RegExp | undefined = configured || marker.test(onSource) ? marker : onSource.trim() !== '' ? /\S/ : undefined;
  try {
    const xml = await source.virsh.run(['dumpxml', '--inactive', '--migratable', vm], opts);
    if (wasRunning) {
      phase('stop', 0.05, `stopping ${vm} on ${source.host.name}`);
      await env.provider.stop({ name: vm, fleet: source.view.info.metadata?.fleet ?? '', host: `${env.provider.name}/${source.host.name}` }, {}, ctx);
      stoppedAt = env.clock.now();
    }
    for (const [i, v] of plan.volumes.entries()) {
      signal?.throwIfAborted();
      phase('copy', 0.1 + (0.6 * i) / plan.volumes.length, `copying ${v.name} (${Math.ceil(v.physicalBytes / 1048576)} MiB) to ${destination.name} with sha256 on both ends`);
      made.push(v.name);
      bytes += (await copyVolume(source.virsh, destinationVirsh, plan.link, v, pools, { ...(signal ? { signal } : {}), vm, context })).bytes;
    }
    phase('define', 0.75, `defining ${vm} on ${destination.name}`);
    signal?.throwIfAborted();
    await destinationVirsh.run(['define', '/dev/stdin'], { ...opts, stdin: xml });
    defined = true;
    if (wasRunning) {
      phase('start', 0.8, `starting ${vm} on ${destination.name}`);
      await destinationVirsh.run(['start', vm], opts);
      phase('verify', 0.85, `${vm} runs on ${destination.name}${expect ? `; waiting for its console to show ${expect.source}` : ''}`);
      await verifyRunning(env, destinationVirsh, vm, serialLog, expect, options.verifyTimeoutMs ?? env.config.bootTimeout, signal);
    }
  } catch (thrown) {
    const error = toNovaCronError(thrown, context);
    phase('rollback', 1, `${vm} stays on ${source.host.name}`);
    if (defined) {
      await destinationVirsh.tryRun(['destroy', vm], opts);
      await destinationVirsh.tryRun(['undefine', vm, '--managed-save', '--snapshots-metadata', '--checkpoints-metadata'], opts);
    }
    await removeVolumes(destinationVirsh, destination.pool, made, opts, env).catch(() => undefined);
    if (wasRunning) {
      const r = await source.virsh.tryRun(['start', vm], opts);
      if (r.error && !/already (?:running|active)/.test(r.stderr)) env.log?.(`kvm: restarting ${vm} on ${source.host.name} after a failed cold move: ${r.error.message}`);
    }
    throw error;
  }
  // Verified on the destination: only now does the source go.
  phase('cleanup', 0.95, `removing ${vm} from ${source.host.name}`);
  const u = await source.virsh.tryRun(['undefine', vm, '--managed-save', '--snapshots-metadata', '--checkpoints-metadata'], opts);
  if (u.error && u.error.code !== 'NotFound') env.log?.(`kvm: ${source.host.name}: undefine ${vm} after the move: ${u.error.message}`);
  await removeVolumes(source.virsh, pools.source, plan.volumes.map((v) => v.name), opts, env);
  const moved = await env.provider.locate({ name: vm, fleet: '', host: `${env.provider.name}/${destination.name}` }, 'migrate', ctx);
  if (!moved) throw new NovaCronError('NotFound', 'server', `${vm} vanished from ${destination.name} after its move`, { context, hint: 'something removed it meanwhile' });
  phase('done', 1);
  const now = env.clock.now();
  return {
    vm: env.provider.toRecord(moved),
    mode: 'cold',
    durationMs: now - started,
    downtimeMs: stoppedAt === undefined ? 0 : now - stoppedAt,
    bytesTransferred: bytes,
    iterations: 1,
    postCopy: false,
  };
}

/** Running now and a few seconds later, and (when asked) the console shows `expect`: the guest came up (see watchGuest). */
async function verifyRunning(env: MigrationEnv, virsh: Virsh, vm: string, serialLog: string, expect: RegExp | undefined, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const context = virsh.context({ vm, operation: 'migrate' });
  const seen = await watchGuest({ virsh, vm, serialLog, expect, timeoutMs, clock: env.clock, operation: 'migrate', ...(signal ? { signal } : {}) });
  if (seen.ok) return;
  if (seen.reason === 'stopped') {
    throw new NovaCronError('Provider', 'server', `${vm} is ${seen.state || 'gone'} on ${virsh.host} right after its start there`, { context, hint: 'see the domain log on the destination (/var/log/libvirt/qemu); the VM was started again on the source' });
  }
  const what = expect ? `its console did not show ${expect.source}` : 'it did not stay up';
  throw new NovaCronError('Timeout', 'server', `${vm} runs on ${virsh.host} but ${what} within ${Math.round(timeoutMs / 1000)} s${expect ? ' (it did on the source)' : ''}`, { context, hint: 'the guest may be stuck in boot; the VM was started again on the source' });
}
