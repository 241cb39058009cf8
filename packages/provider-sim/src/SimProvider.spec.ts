import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NovaCronError, parseFleet, type CreateVmRequest, type SimProviderConfig } from '@novacron/core';
import { FaultInjector, SimProvider } from './index.js';

const config = parseFleet({
  name: 'f',
  providers: { lab: { type: 'sim', hosts: [{ name: 'h1', cpu: 4, memory: '8GiB', disk: 100 }, { name: 'h2', cpu: 4, memory: '8GiB', zone: 'zone-b' }], overcommit: { cpu: 1, memory: 1, disk: 1 } } },
  groups: { web: { count: 1, cpu: 1, memory: 512, image: 'img' } },
}).providers.lab as SimProviderConfig;

const dir = () => mkdtempSync(join(tmpdir(), 'novacron-sim-'));
const open = (stateDir?: string, faults?: FaultInjector) => SimProvider.open({ name: 'lab', config, ...(stateDir ? { stateDir } : {}), ...(faults ? { faults } : {}) });

function request(name: string, patch: Partial<CreateVmRequest> = {}): CreateVmRequest {
  return { name, ownership: { fleet: 'f', group: 'web', index: 0, specHash: 'h' }, host: 'lab/h1', resources: { cpu: 1, memoryMiB: 1024, diskGiB: 10, gpu: 0 }, image: 'img', labels: {}, ...patch };
}

describe('SimProvider', () => {
  it('runs the whole lifecycle and keeps host allocation exact', async () => {
    const sim = open();
    const vm = await sim.create(request('f-web-0'));
    expect(vm).toMatchObject({ state: 'running', host: 'lab/h1', fleet: 'f' });
    expect((await sim.inventory()).find((h) => h.name === 'h1')!.allocated).toEqual({ cpu: 1, memoryMiB: 1024, diskGiB: 10, gpu: 0 });
    expect((await sim.stop({ name: 'f-web-0', fleet: 'f' })).state).toBe('stopped');
    expect((await sim.start({ name: 'f-web-0', fleet: 'f' })).state).toBe('running');
    await sim.resize({ name: 'f-web-0', fleet: 'f' }, { resources: { cpu: 2, memoryMiB: 2048, diskGiB: 20, gpu: 0 }, specHash: 'h2', allowReboot: true });
    expect((await sim.list('f'))[0]).toMatchObject({ specHash: 'h2', resources: { cpu: 2, memoryMiB: 2048 } });
    await sim.delete({ name: 'f-web-0', fleet: 'f' });
    await sim.delete({ name: 'f-web-0', fleet: 'f' }); // deleting what is gone succeeds
    expect(await sim.list('f')).toEqual([]);
    expect((await sim.inventory()).find((h) => h.name === 'h1')!.allocated.cpu).toBe(0);
    expect(sim.orphanVolumes()).toEqual([]);
  });

  it('is idempotent on the VM name', async () => {
    const sim = open();
    const a = await sim.create(request('f-web-0'));
    const b = await sim.create(request('f-web-0'));
    expect(b.id).toBe(a.id);
    expect(await sim.list('f')).toHaveLength(1);
  });

  it('refuses to touch a VM another fleet owns', async () => {
    const sim = open();
    sim.addForeignVm({ name: 'f-web-0', host: 'h1', fleet: 'other', resources: { cpu: 1, memoryMiB: 512, diskGiB: 1, gpu: 0 } });
    await expect(sim.create(request('f-web-0'))).rejects.toThrow(/not owned by fleet "f" \(it belongs to "other"\)/);
    await expect(sim.delete({ name: 'f-web-0', fleet: 'f' })).rejects.toMatchObject({ code: 'Conflict' });
    expect(sim.world.get('vms', 'f-web-0')!.fleet).toBe('other');
  });

  it('reports a full host as CapacityExceeded and creates nothing', async () => {
    const sim = open();
    await expect(sim.create(request('big', { resources: { cpu: 1, memoryMiB: 9000, diskGiB: 1, gpu: 0 } }))).rejects.toMatchObject({ code: 'CapacityExceeded', context: { host: 'h1' } });
    expect(sim.world.count('vms')).toBe(0);
    expect(sim.world.count('volumes')).toBe(0);
  });

  it('reports running VMs and the disk as one pool per host, and neither for a host that is down', async () => {
    const sim = open();
    await sim.create(request('f-web-0'));
    await sim.create(request('f-web-1'));
    await sim.stop({ name: 'f-web-1', fleet: 'f' });
    const h1 = (await sim.inventory()).find((h) => h.name === 'h1')!;
    expect(h1.runningVms).toBe(1);
    expect(h1.storagePools).toEqual([{ name: 'default', capacityGiB: 100, freeGiB: 80, active: true }]);
    expect((await sim.inventory()).find((h) => h.name === 'h2')!.runningVms).toBe(0);
    sim.setHostState('h1', 'down');
    const down = (await sim.inventory()).find((h) => h.name === 'h1')!;
    expect(down.runningVms).toBeUndefined();
    expect(down.storagePools).toBeUndefined();
  });

  it('makes operations on a down host fail as retryable Unreachable', async () => {
    const sim = open();
    await sim.create(request('f-web-0'));
    sim.setHostState('h1', 'down');
    const error = await sim.stop({ name: 'f-web-0', fleet: 'f' }).catch((e: unknown) => e);
    expect(NovaCronError.isInstance(error) && error.code === 'Unreachable' && error.retryable).toBe(true);
    expect((await sim.inventory()).find((h) => h.name === 'h1')!.state).toBe('down');
  });

  it('cleans up after a failed create, but leaves the partial work of a crash for the next run', async () => {
    const faults = new FaultInjector([{ operation: 'create', nth: 1, stage: 'define', action: 'fail' }, { operation: 'create', nth: 2, stage: 'define', action: 'crash' }]);
    const sim = open(undefined, faults);
    await expect(sim.create(request('a'))).rejects.toThrow(/injected fail/);
    expect(sim.world.count('vms') + sim.world.count('volumes')).toBe(0);
    await expect(sim.create(request('b'))).rejects.toThrow(/simulated crash/);
    expect(sim.world.get('vms', 'b')!.state).toBe('creating');
    expect((await sim.create(request('b'))).state).toBe('running');
    expect(sim.orphanVolumes()).toEqual([]);
  });

  it('honours configured latency and the abort signal', async () => {
    const slow = SimProvider.open({ name: 'lab', config: { ...config, latency: { create: 5_000 } } });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    await expect(slow.create(request('x'), { signal: controller.signal })).rejects.toMatchObject({ code: 'Aborted' });
  });

  it('parses faults for the CLI from NOVACRON_SIM_FAULTS, and rejects bad ones clearly', () => {
    expect(FaultInjector.fromEnv('[{"operation":"create","nth":2,"action":"fail"}]')).toBeInstanceOf(FaultInjector);
    expect(() => FaultInjector.fromEnv('[{"operation":"create","action":"explode"}]')).toThrow(/NOVACRON_SIM_FAULTS: \[0.action\]/);
    expect(() => FaultInjector.fromEnv('{')).toThrow(/not valid JSON/);
  });
});

describe('the persisted world', () => {
  it('survives a restart: what one process made, the next sees', async () => {
    const stateDir = dir();
    const first = open(stateDir);
    await first.create(request('f-web-0'));
    await first.close();
    const second = open(stateDir);
    expect((await second.list('f')).map((v) => v.name)).toEqual(['f-web-0']);
    await second.close();
  });

  it('replays the journal after a kill, and drops a torn last line', async () => {
    const stateDir = dir();
    const first = open(stateDir);
    await first.create(request('f-web-0'));
    await first.create(request('f-web-1', { host: 'lab/h2' }));
    first.kill();
    appendFileSync(join(stateDir, 'sim', 'lab.journal.ndjson'), '{"seq":99,"op":"put","table":"vms","key":"torn');
    const second = open(stateDir);
    expect((await second.list('f')).map((v) => v.name).sort()).toEqual(['f-web-0', 'f-web-1']);
    await second.create(request('f-web-2'));
    second.kill();
    const third = open(stateDir);
    expect(await third.list('f')).toHaveLength(3);
    await third.close();
    expect(readFileSync(join(stateDir, 'sim', 'lab.journal.ndjson'), 'utf8')).toBe('');
  });

  it('keeps two live processes out of one world, and takes over from a dead one', async () => {
    const stateDir = dir();
    const first = open(stateDir);
    expect(() => open(stateDir)).toThrow(/already open in this process/);
    first.kill();
    writeFileSync(join(stateDir, 'sim', 'lab.lock'), String(2 ** 22 + 12345)); // a pid that is not running
    const second = open(stateDir);
    await second.close();
  });
});
