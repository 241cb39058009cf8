// The Vm provider's methods against the KVM testbed: real libvirt hosts behind real sshd,
// reached through @novacron/provider-kvm as the Pulumi host would load it (by the registry).
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseFleet, type FleetSpecInput } from '@novacron/core';
import { execOnHost, getHost, kvmProviderConfigFor, loadTestbed, scrubTestbed, virshOnHost } from '../../../../test/testbed/index.ts';
import { layoutFleet, observeProviders } from '../layout.js';
import { testSessions, vmInputsOf } from '../testing/fixtures.js';
import { classifyVmChange } from './changes.js';
import { createVmHandlers } from './handlers.js';
import { createRegistry } from './sessions.js';
import type { VmInputs, VmOutputs } from './vmInputs.js';

const tb = loadTestbed();
const RUN = `ncp${randomBytes(2).toString('hex')}`; // the fleet name: every domain and volume of this file starts with it

const spec: FleetSpecInput = {
  name: RUN,
  providers: { lab: kvmProviderConfigFor(tb) },
  groups: { tiny: { count: 1, cpu: 1, memory: 128, disk: 1, image: 'tiny', labels: { run: RUN } } },
};

const scrub = () => scrubTestbed(tb, RUN);

beforeAll(scrub);
afterAll(scrub);

describe('the Vm provider methods on the KVM testbed', () => {
  it('creates, reads after an out-of-band stop, restarts, grows the disk live and deletes a real VM', { timeout: 600_000 }, async () => {
    const fleet = parseFleet(spec);
    const layout = layoutFleet(fleet, await observeProviders(fleet, createRegistry(), process.env), 'providers');
    const handlers = createVmHandlers({ sessions: testSessions() });
    const vm = `${RUN}-tiny-0`;
    const want = vmInputsOf(fleet, layout, vm) as unknown as Record<string, unknown>;
    expect((await handlers.check({}, want)).failures).toEqual([]);

    const { id, outs } = await handlers.create(want);
    expect(outs).toMatchObject({ vmName: vm, host: layout.vms[vm]!.host, state: 'running', providerName: 'lab' });
    const host = getHost(tb, outs.host.split('/')[1]!);
    expect((await virshOnHost(host, ['domstate', vm])).trim()).toBe('running');
    expect((await handlers.create(want)).outs.vmId).toBe(outs.vmId);

    // Behind Pulumi's back: the domain is powered off.
    await execOnHost(host, ['virsh', '-q', 'destroy', vm]);
    const read = await handlers.read(id, outs as unknown as Record<string, unknown>);
    expect(read.props).toMatchObject({ state: 'stopped', host: outs.host });
    const refreshed = read.props as VmOutputs;
    expect(classifyVmChange(refreshed, want as Partial<VmInputs>, refreshed.capabilities)).toMatchObject({ class: 'in-place', actions: ['start'] });
    const started = await handlers.update(id, refreshed as unknown as Record<string, unknown>, want);
    expect(started.outs.state).toBe('running');
    expect((await virshOnHost(host, ['domstate', vm])).trim()).toBe('running');

    // A bigger disk is grown while the guest runs (hot-plug), and recorded on the domain.
    const bigger = { ...want, resources: { cpu: 1, memoryMiB: 128, diskGiB: 2, gpu: 0 }, specHash: 'bigger-disk' };
    expect(classifyVmChange(started.outs, bigger as Partial<VmInputs>, started.outs.capabilities)).toMatchObject({ class: 'hot-plug', actions: ['update'] });
    const grown = await handlers.update(id, started.outs as unknown as Record<string, unknown>, bigger);
    expect(grown.outs).toMatchObject({ state: 'running', resources: { diskGiB: 2 }, lastChange: { class: 'hot-plug' } });
    expect(await virshOnHost(host, ['domblkinfo', vm, 'vda'])).toMatch(/Capacity:\s+2147483648/);

    await handlers.delete(id, grown.outs as unknown as Record<string, unknown>);
    expect(await handlers.read(id, grown.outs as unknown as Record<string, unknown>)).toEqual({});
    await handlers.delete(id, grown.outs as unknown as Record<string, unknown>);
    expect((await virshOnHost(host, ['list', '--all', '--name'])).includes(vm)).toBe(false);
  });
});
