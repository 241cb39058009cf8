import { diffNics, NotFoundError, type ErrorContext, type NicSpec, type VmNic } from '@novacron/core';
import { networkState, type NetworkState } from '../virsh/hostState.js';
import type { Virsh, VirshCallOptions } from '../virsh/Virsh.js';
import { assertName } from '../names.js';
import type { DomainInterfaceInfo, DomainNic } from './domainXml.js';

/**
 * NICs on KVM: declared NICs become `<interface type='network'>` devices at create, and are
 * hot-plugged later with `virsh attach-interface` / `detach-interface`, live and in the
 * persistent config at once. What to do is always worked out from the domain as it is now
 * (matched by network and model, each current NIC named by its MAC), so a re-run after an
 * interruption does only what is left.
 */

/** The NIC model libvirt gets when the fleet names none. */
export const DEFAULT_NIC_MODEL = 'virtio';

/** The domain's interfaces as the fleet model reports NICs: a network interface by its network, others by their bridge or device. */
export function nicsOfInterfaces(interfaces: readonly DomainInterfaceInfo[]): VmNic[] {
  return interfaces.map((i) => ({ network: i.source ?? i.type, ...(i.mac ? { mac: i.mac } : {}), ...(i.model ? { model: i.model } : {}) }));
}

/** The domain spec's NICs for a create: undefined keeps the host's configured network (one virtio NIC). */
export function domainNics(nics: readonly NicSpec[] | undefined, context: ErrorContext): DomainNic[] | undefined {
  return nics?.map((n) => ({ network: assertName('object', n.network, 'network', context), model: n.model ?? DEFAULT_NIC_MODEL }));
}

/** Every network the NICs use must be defined and active on the host: checked before anything is made or changed. */
export function assertNetworks(nics: readonly NicSpec[], networks: ReadonlyMap<string, NetworkState> | undefined, host: string, context: ErrorContext): void {
  for (const nic of nics) {
    const state = networks?.get(nic.network);
    if (!state?.defined) {
      throw new NotFoundError(`${host}: libvirt network "${nic.network}" does not exist; nothing was changed`, {
        context,
        hint: `define it on ${host} (virsh net-define, net-start, net-autostart), or use one that exists (virsh net-list --all)`,
      });
    }
    if (!state.active) {
      throw new NotFoundError(`${host}: libvirt network "${nic.network}" is not active; nothing was changed`, {
        context,
        hint: `start it on ${host}: virsh net-start ${nic.network} (and net-autostart so it survives a restart)`,
      });
    }
  }
}

export interface NicChanges {
  /** Interfaces to remove, by MAC (each with its `<interface type>`, which detach-interface needs). */
  readonly detach: readonly { readonly type: string; readonly mac: string; readonly network: string }[];
  /** NICs to add; a model change keeps its MAC. */
  readonly attach: readonly DomainNic[];
}

/**
 * What turns the domain's interfaces into the declared NICs. A NIC whose model changes is
 * detached and attached again with the same MAC: the guest sees the device go and come back,
 * and a DHCP reservation by MAC still holds.
 */
export function nicChanges(want: readonly NicSpec[], have: readonly DomainInterfaceInfo[]): NicChanges {
  const current = nicsOfInterfaces(have);
  const diff = diffNics(want, current);
  const typeOf = (nic: VmNic) => have[current.indexOf(nic)]?.type ?? 'network';
  const detach = [...diff.detach, ...diff.remodel.map((r) => r.from)].flatMap((nic) => (nic.mac ? [{ type: typeOf(nic), mac: nic.mac, network: nic.network }] : []));
  const attach: DomainNic[] = [
    ...diff.remodel.map((r) => ({ network: r.to.network, model: r.to.model ?? DEFAULT_NIC_MODEL, ...(r.from.mac ? { mac: r.from.mac } : {}) })),
    ...diff.attach.map((n) => ({ network: n.network, model: n.model ?? DEFAULT_NIC_MODEL })),
  ];
  return { detach, attach };
}

/** `--config` always (the change outlives a restart), `--live` too while the domain runs. */
function scope(running: boolean): string[] {
  return running ? ['--live', '--config'] : ['--config'];
}

export function detachInterfaceArgs(domain: string, nic: { type: string; mac: string }, running: boolean, liveOnly = false): string[] {
  return ['detach-interface', domain, nic.type, '--mac', nic.mac, ...(liveOnly ? ['--live'] : scope(running))];
}

export function attachInterfaceArgs(domain: string, nic: DomainNic, running: boolean): string[] {
  return ['attach-interface', domain, 'network', nic.network, '--model', nic.model, ...(nic.mac ? ['--mac', nic.mac] : []), ...scope(running)];
}

/** `net-info` of each network in one virsh process: defined (exit 0) and active (`Active: yes`). */
export async function readNetworks(virsh: { batch: Virsh['batch'] }, names: readonly string[], options: VirshCallOptions): Promise<Map<string, NetworkState>> {
  const unique = [...new Set(names)];
  const results = await virsh.batch(unique.map((n) => ['net-info', n]), options);
  return new Map(unique.map((n, i) => [n, networkState(results[i] !== undefined && !results[i].error, results[i]?.stdout ?? '')]));
}
