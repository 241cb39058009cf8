import { describe, expect, it } from 'vitest';
import { layoutFleet, observeProviders } from '../layout.js';
import { fleetOf, simSpec, tempDir, testSessions, vmInputsOf, withSim } from '../testing/fixtures.js';
import { classifyVmChange } from './changes.js';
import { createVmHandlers } from './handlers.js';
import { createRegistry } from './sessions.js';
import { UNKNOWN, type VmInputs, type VmOutputs } from './vmInputs.js';

async function setUp() {
  const fleet = fleetOf(simSpec(tempDir()));
  const layout = layoutFleet(fleet, await observeProviders(fleet, createRegistry(), process.env), 'providers');
  const handlers = createVmHandlers({ sessions: testSessions() });
  const inputs = (vm: string, patch: Partial<VmInputs> = {}): Record<string, unknown> => ({ ...vmInputsOf(fleet, layout, vm), ...patch });
  return { fleet, layout, handlers, inputs };
}

const simVm = (fleet: ReturnType<typeof fleetOf>, name: string) => withSim(fleet, async (sim) => (await sim.list(fleet.name)).find((v) => v.name === name));

describe('the Vm provider methods against the sim provider', () => {
  it('creates the VM where placement put it, and creating it again returns the same VM', async () => {
    const { fleet, layout, handlers, inputs } = await setUp();
    const first = await handlers.create(inputs('shop-web-0'));
    expect(first.id).toBe('shop-web-0');
    expect(first.outs).toMatchObject({ vmName: 'shop-web-0', host: layout.vms['shop-web-0']!.host, state: 'running', providerName: 'lab' });
    expect(first.outs.addresses.length).toBeGreaterThan(0);
    expect(first.outs.lastChange?.class).toBe('create');

    const again = await handlers.create(inputs('shop-web-0'));
    expect(again.outs.vmId).toBe(first.outs.vmId);
    const record = await simVm(fleet, 'shop-web-0');
    expect(record).toMatchObject({ host: layout.vms['shop-web-0']!.host, fleet: 'shop', group: 'web', index: 0 });
  });

  it('checks inputs with the fleet model and names the spec path of each problem', async () => {
    const { handlers, inputs } = await setUp();
    expect((await handlers.check({}, inputs('shop-db-0'))).failures).toEqual([]);

    const bad = inputs('shop-db-0', { resources: { cpu: 0, memoryMiB: 4096, diskGiB: 10, gpu: 0 }, host: 'elsewhere/h1', image: '' });
    const { failures } = await handlers.check({}, bad);
    expect(failures).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ property: 'resources.cpu', reason: expect.stringMatching(/^groups\.db\.cpu: /) }),
        expect.objectContaining({ property: 'image', reason: expect.stringMatching(/^groups\.db\.image: /) }),
        expect.objectContaining({ property: 'host', reason: expect.stringContaining('belongs to provider "elsewhere"') }),
      ]),
    );

    // In a preview, values not known yet are not checked.
    expect((await handlers.check({}, inputs('shop-db-0', { host: UNKNOWN }))).failures).toEqual([]);
  });

  it('grows a VM in place (hot-plug), and shrinking it takes a reboot', async () => {
    const { fleet, handlers, inputs } = await setUp();
    const { outs } = await handlers.create(inputs('shop-web-1'));
    const bigger = inputs('shop-web-1', { resources: { ...outs.resources, cpu: 4, memoryMiB: 8192 }, specHash: 'bigger' });

    const diff = await handlers.diff('shop-web-1', outs as unknown as Record<string, unknown>, bigger);
    expect(diff).toMatchObject({ changes: true, replaces: [] });
    expect(classifyVmChange(outs, bigger as Partial<VmInputs>, outs.capabilities).class).toBe('hot-plug');

    const grown = await handlers.update('shop-web-1', outs as unknown as Record<string, unknown>, bigger);
    expect(grown.outs.resources).toMatchObject({ cpu: 4, memoryMiB: 8192 });
    expect(grown.outs.lastChange).toMatchObject({ class: 'hot-plug' });
    expect((await simVm(fleet, 'shop-web-1'))?.resources).toMatchObject({ cpu: 4, memoryMiB: 8192 });

    const smaller = inputs('shop-web-1', { resources: { ...outs.resources, cpu: 1 }, specHash: 'smaller' });
    expect(classifyVmChange(grown.outs, smaller as Partial<VmInputs>, outs.capabilities)).toMatchObject({ class: 'reboot', actions: ['update'] });
    const shrunk = await handlers.update('shop-web-1', grown.outs as unknown as Record<string, unknown>, smaller);
    expect(shrunk.outs.resources.cpu).toBe(1);
  });

  it('replaces a VM whose image changes: diff asks for delete-before-replace, then delete and create converge', async () => {
    const { fleet, handlers, inputs } = await setUp();
    const { outs } = await handlers.create(inputs('shop-db-0'));
    const rebuilt = inputs('shop-db-0', { image: 'debian-13', specHash: 'new-image' });
    const diff = await handlers.diff('shop-db-0', outs as unknown as Record<string, unknown>, rebuilt);
    expect(diff).toMatchObject({ changes: true, replaces: ['image'], deleteBeforeReplace: true });

    await expect(handlers.update('shop-db-0', outs as unknown as Record<string, unknown>, rebuilt)).rejects.toThrow(/needs a replacement/);
    await handlers.delete('shop-db-0', outs as unknown as Record<string, unknown>);
    const created = await handlers.create(rebuilt);
    expect(created.outs.image).toBe('debian-13');
    expect(created.outs.vmId).not.toBe(outs.vmId);
    expect((await simVm(fleet, 'shop-db-0'))?.image).toBe('debian-13');
  });

  it('moves a VM to its new host by migration, not replacement', async () => {
    const { fleet, layout, handlers, inputs } = await setUp();
    const { outs } = await handlers.create(inputs('shop-db-0'));
    const other = Object.values(layout.vms).map((v) => v.host).find((h) => h !== outs.host) ?? 'lab/host-4';
    const moved = inputs('shop-db-0', { host: other });
    const diff = await handlers.diff('shop-db-0', outs as unknown as Record<string, unknown>, moved);
    expect(diff).toMatchObject({ changes: true, replaces: [] });
    expect(classifyVmChange(outs, moved as Partial<VmInputs>, outs.capabilities)).toMatchObject({ class: 'migrate', migrationMode: 'live' });

    const after = await handlers.update('shop-db-0', outs as unknown as Record<string, unknown>, moved);
    expect(after.outs.host).toBe(other);
    expect(after.outs.vmId).toBe(outs.vmId);
    expect((await simVm(fleet, 'shop-db-0'))?.host).toBe(other);
  });

  it('reads the real state after an out-of-band change, and the next update undoes the drift', async () => {
    const { fleet, handlers, inputs } = await setUp();
    const want = inputs('shop-web-2');
    const { id, outs } = await handlers.create(want);

    await withSim(fleet, async (sim) => {
      const ref = { name: 'shop-web-2', fleet: 'shop' };
      await sim.resize(ref, { resources: { ...outs.resources, cpu: 8 }, specHash: outs.specHash, allowReboot: true });
      await sim.stop(ref);
    });

    const read = await handlers.read(id, outs as unknown as Record<string, unknown>);
    expect(read.id).toBe(id);
    expect(read.props).toMatchObject({ state: 'stopped', resources: { cpu: 8 } });

    const refreshed = read.props as VmOutputs;
    const change = classifyVmChange(refreshed, want as Partial<VmInputs>, refreshed.capabilities);
    expect(change.class).toBe('reboot');
    expect(change.actions).toEqual(['update', 'start']);
    expect((await handlers.diff(id, refreshed as unknown as Record<string, unknown>, want)).changes).toBe(true);

    const fixed = await handlers.update(id, refreshed as unknown as Record<string, unknown>, want);
    expect(fixed.outs).toMatchObject({ state: 'running', resources: { cpu: 2 } });
    expect(await simVm(fleet, 'shop-web-2')).toMatchObject({ state: 'running', resources: { cpu: 2 } });
  });

  it('reads a VM deleted out of band as gone; an update recreates it and delete is idempotent', async () => {
    const { fleet, handlers, inputs } = await setUp();
    const want = inputs('shop-web-0');
    const { id, outs } = await handlers.create(want);
    await withSim(fleet, (sim) => sim.delete({ name: 'shop-web-0', fleet: 'shop' }));

    expect(await handlers.read(id, outs as unknown as Record<string, unknown>)).toEqual({});
    const again = await handlers.update(id, outs as unknown as Record<string, unknown>, want);
    expect(again.outs.lastChange?.reasons[0]).toMatch(/was gone; created again/);
    expect(await simVm(fleet, 'shop-web-0')).toBeDefined();

    await handlers.delete(id, again.outs as unknown as Record<string, unknown>);
    await handlers.delete(id, again.outs as unknown as Record<string, unknown>);
    expect(await simVm(fleet, 'shop-web-0')).toBeUndefined();
  });

  it('serves many calls at once over one open provider (the sim world is opened once per batch)', async () => {
    const { fleet, layout, handlers, inputs } = await setUp();
    const names = Object.keys(layout.vms);
    const created = await Promise.all(names.map((vm) => handlers.create(inputs(vm))));
    expect(created.map((c) => c.id).sort()).toEqual([...names].sort());
    const records = await withSim(fleet, (sim) => sim.list('shop'));
    expect(records.map((r) => r.name).sort()).toEqual([...names].sort());
  });

  it('says nothing changes when the inputs are those it made', async () => {
    const { handlers, inputs } = await setUp();
    const want = inputs('shop-db-0');
    const { outs } = await handlers.create(want);
    expect(await handlers.diff('shop-db-0', outs as unknown as Record<string, unknown>, want)).toMatchObject({ changes: false, replaces: [] });
  });

  it('holds a change that needs a reboot the group does not allow, and reports a failed cheap path without replacing', async () => {
    const { fleet, handlers, inputs } = await setUp();
    const { outs } = await handlers.create(inputs('shop-web-0'));
    const strict = { allowReboot: false, fallbackToReplace: false };
    const smaller = inputs('shop-web-0', { resources: { ...outs.resources, cpu: 1 }, specHash: 'smaller', changes: strict });
    await expect(handlers.update('shop-web-0', outs as unknown as Record<string, unknown>, smaller)).rejects.toThrow(/needs a reboot and groups\.web\.changes\.allowReboot is false/);
    expect((await simVm(fleet, 'shop-web-0'))?.resources.cpu).toBe(2);

    const huge = inputs('shop-web-0', { resources: { ...outs.resources, cpu: 1000 }, specHash: 'huge' });
    await expect(handlers.update('shop-web-0', outs as unknown as Record<string, unknown>, huge)).rejects.toThrow(/hot-plug change failed .*the VM was not replaced/);
    expect((await simVm(fleet, 'shop-web-0'))?.id).toBe(outs.vmId);
  });

  it('hot-plugs a NIC the inputs add, with the same classes as the core, and removes it again', async () => {
    const { fleet, handlers, inputs } = await setUp();
    const one = [{ network: 'default' }];
    const { outs } = await handlers.create(inputs('shop-web-2', { nics: one }));
    expect(outs.observedNics).toEqual([expect.objectContaining({ network: 'default', model: 'virtio', mac: expect.stringMatching(/^52:54:/) })]);
    // Declared as made: no drift, whatever the provider adds (MAC, model).
    expect(await handlers.diff('shop-web-2', outs as unknown as Record<string, unknown>, inputs('shop-web-2', { nics: one }))).toMatchObject({ changes: false });

    const two = inputs('shop-web-2', { nics: [...one, { network: 'lan2', model: 'e1000e' }] });
    expect(await handlers.diff('shop-web-2', outs as unknown as Record<string, unknown>, two)).toMatchObject({ changes: true, replaces: [] });
    const grown = await handlers.update('shop-web-2', outs as unknown as Record<string, unknown>, two);
    expect(grown.outs.lastChange).toMatchObject({ class: 'hot-plug', reasons: ['nics default(virtio) → default,lan2(e1000e) [hot-plug: attach lan2(e1000e): hot-plugged into the running guest]'] });
    expect((await simVm(fleet, 'shop-web-2'))?.nics?.map((n) => `${n.network}/${n.model}`)).toEqual(['default/virtio', 'lan2/e1000e']);
    expect(grown.outs.vmId).toBe(outs.vmId);

    const back = await handlers.update('shop-web-2', grown.outs as unknown as Record<string, unknown>, inputs('shop-web-2', { nics: one }));
    expect(back.outs.observedNics?.map((n) => n.network)).toEqual(['default']);
  });
});
