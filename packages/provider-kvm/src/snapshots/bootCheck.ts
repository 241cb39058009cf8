import {
  ConflictError,
  NotFoundError,
  type BootCheckOptions,
  type BootCheckResult,
  type OperationContext,
  type VmRef,
} from '@novacron/core';
import { HostOps, type OpOptions } from './hostOps.js';
import { ACTIVE_STATES, progress, restoredOf, sig, type BackupStore } from './store.js';

/** What a guest prints when it is up, when its image names nothing else: the test guest, a login prompt, cloud-init done. */
export const DEFAULT_READY_MARKER = /NOVACRON-GUEST-READY|^\S+ login: ?$|Cloud-init v\. \S+ finished/m;

/** Restore tests that boot: the restored VM started and watched until its guest is up. */
export class BootChecks {
  constructor(private readonly s: BackupStore) {}

  /**
   * Boots a VM restored for a restore test and waits for its guest's ready marker on the
   * serial console (the image's `readyMarker`), then powers it off again. Only VMs of
   * `ref.fleet` or, with no fleet, VMs NovaCron restored.
   */
  async bootCheck(ref: VmRef, options: BootCheckOptions = {}, ctx: OperationContext = {}): Promise<BootCheckResult> {
    const started = this.s.clock.now();
    const found = await this.s.p.locate(ref, 'bootCheck', ctx);
    const context = { provider: this.s.p.name, vm: ref.name, operation: 'bootCheck' };
    if (!found) throw new NotFoundError(`VM "${ref.name}" does not exist`, { context });
    const restored = await restoredOf(found, ctx);
    const fleet = found.view.info.metadata?.fleet ?? '';
    if (fleet !== ref.fleet || (fleet === '' && !restored)) {
      throw new ConflictError(`VM "${ref.name}" is not ${ref.fleet ? `owned by fleet "${ref.fleet}"` : 'a VM NovaCron restored'}; refusing to boot it`, { context: { ...context, host: found.host.name } });
    }
    const image = restored?.image || found.view.info.metadata?.image || '';
    const configured = this.s.config.images[image]?.readyMarker;
    const marker = configured ? new RegExp(configured, 'm') : DEFAULT_READY_MARKER;
    const timeoutMs = options.timeoutMs ?? this.s.config.bootTimeout;
    const virsh = found.virsh;
    const ops = new HostOps(virsh);
    const opts: OpOptions = { ...sig(ctx), vm: ref.name, operation: 'bootCheck' };
    const log = `/var/log/libvirt/qemu/${ref.name}-serial.log`;
    if (ACTIVE_STATES.has(found.view.state)) await virsh.tryRun(['destroy', ref.name], opts);
    await ops.run(`: > ${ops.q(log)} 2>/dev/null || true`, 'clearing the serial log', opts);
    progress(ctx, 'boot', 0.1, undefined, 'bootCheck');
    await virsh.run(['start', ref.name], opts);
    let text = '';
    let offset = 0;
    let ok = false;
    try {
      while (this.s.clock.now() - started < timeoutMs) {
        const chunk = await ops.run(`tail -c +${offset + 1} ${ops.q(log)} 2>/dev/null || true`, 'reading the serial log', opts);
        offset += Buffer.byteLength(chunk);
        text = (text + chunk).slice(-65_536);
        if (marker.test(text)) {
          ok = true;
          break;
        }
        await this.s.clock.sleep(1000, ctx.signal);
      }
    } finally {
      await virsh.tryRun(['destroy', ref.name], { vm: ref.name, operation: 'bootCheck' }).catch(() => undefined);
    }
    const durationMs = this.s.clock.now() - started;
    const detail = ok
      ? `booted on ${found.host.name} to its ready marker (${marker.source}) in ${(durationMs / 1000).toFixed(1)} s`
      : `no ready marker (${marker.source}) on the serial console within ${Math.round(timeoutMs / 1000)} s; last output: ${text.slice(-400).replace(/\s+/g, ' ').trim() || '(none)'}`;
    return { ok, detail, durationMs };
  }
}
