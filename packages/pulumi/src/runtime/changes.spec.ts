import { describe, expect, it } from 'vitest';
import { NO_CAPABILITIES, specHashOf, type Capabilities, type CloudInit } from '@novacron/core';
import { classifyVmChange } from './changes.js';
import { UNKNOWN, type VmInputs, type VmOutputs } from './vmInputs.js';

const full: Capabilities = { ...NO_CAPABILITIES, resize: true, hotplugCpu: true, hotplugMemory: true, liveMigration: true, coldMigration: true };
const base: VmOutputs = {
  fleet: 'shop',
  group: 'web',
  index: 0,
  vmName: 'shop-web-0',
  providerName: 'lab',
  providerConfig: { type: 'sim' } as VmOutputs['providerConfig'],
  host: 'lab/host-1',
  resources: { cpu: 2, memoryMiB: 4096, diskGiB: 20, gpu: 0 },
  image: 'debian-12',
  labels: { tier: 'web' },
  specHash: 'h1',
  migration: { mode: 'auto' } as VmOutputs['migration'],
  vmId: 'sim-1',
  zone: 'zone-a',
  addresses: ['10.0.0.1'],
  state: 'running',
};
const next = (patch: Partial<VmInputs>): Partial<VmInputs> => ({ ...base, specHash: 'h2', ...patch });

describe('classifyVmChange', () => {
  const cases: [string, Partial<VmInputs>, Partial<Capabilities>, string, string[]][] = [
    ['nothing', { ...base }, full, 'none', []],
    ['labels only', { ...base, labels: { tier: 'front' } }, full, 'in-place', []],
    ['more cpu and memory, hot-pluggable', next({ resources: { cpu: 4, memoryMiB: 8192, diskGiB: 20, gpu: 0 } }), full, 'hot-plug', []],
    ['more memory, no memory hot-plug', next({ resources: { cpu: 2, memoryMiB: 8192, diskGiB: 20, gpu: 0 } }), { ...full, hotplugMemory: false }, 'reboot', []],
    ['less cpu', next({ resources: { cpu: 1, memoryMiB: 4096, diskGiB: 20, gpu: 0 } }), full, 'reboot', []],
    ['a gpu', next({ resources: { cpu: 2, memoryMiB: 4096, diskGiB: 20, gpu: 1 } }), full, 'reboot', []],
    ['a bigger disk', next({ resources: { cpu: 2, memoryMiB: 4096, diskGiB: 40, gpu: 0 } }), full, 'hot-plug', []],
    ['a smaller disk', next({ resources: { cpu: 2, memoryMiB: 4096, diskGiB: 10, gpu: 0 } }), full, 'replace', ['resources']],
    ['a resize the provider cannot make', next({ resources: { cpu: 4, memoryMiB: 4096, diskGiB: 20, gpu: 0 } }), NO_CAPABILITIES, 'replace', ['resources']],
    ['another host, live migration', { ...base, host: 'lab/host-2' }, full, 'migrate', []],
    ['another host, no migration', { ...base, host: 'lab/host-2' }, NO_CAPABILITIES, 'replace', ['host']],
    ['another host, policy says cold', { ...base, host: 'lab/host-2', migration: { mode: 'cold' } as VmInputs['migration'] }, full, 'migrate', []],
    ['another image', next({ image: 'debian-13' }), full, 'replace', ['image']],
    ['another provider', { ...base, providerName: 'cloud', host: 'cloud/us-east-1a' }, full, 'replace', ['providerName']],
    ['another name', { ...base, index: 1, vmName: 'shop-web-1' }, full, 'replace', ['index', 'vmName']],
    ['a bigger disk and another image', next({ image: 'debian-13', resources: { cpu: 2, memoryMiB: 4096, diskGiB: 40, gpu: 0 } }), full, 'replace', ['image']],
    ['cloud-init, replace on change', next({ cloudInit: { userData: 'x', onChange: 'replace' } }), full, 'replace', ['cloudInit']],
    ['cloud-init, reboot on change', next({ cloudInit: { userData: 'x', onChange: 'reboot' } }), full, 'reboot', []],
    ['cloud-init, ignored (as the core plans it)', next({ cloudInit: { userData: 'x', onChange: 'ignore' } }), full, 'none', []],
    ['a new instance type on a cloud zone', { ...base, instanceType: 't3.large' }, full, 'none', []],
    ['an image not known yet (preview)', { ...base, image: UNKNOWN }, full, 'replace', ['image']],
  ];
  it.each(cases)('%s', (_name, news, capabilities, expected, replaces) => {
    const change = classifyVmChange(base, news, capabilities);
    expect(change.class).toBe(expected);
    expect(change.replaces).toEqual(replaces);
    expect(change.reasons.length).toBe(expected === 'none' ? 0 : change.reasons.length || 1);
  });

  it('does every action of a change that migrates and resizes, in order', () => {
    const change = classifyVmChange({ ...base, state: 'stopped' }, next({ host: 'lab/host-2', resources: { cpu: 4, memoryMiB: 4096, diskGiB: 20, gpu: 0 } }), full);
    expect(change.class).toBe('migrate');
    expect(change.actions).toEqual(['migrate', 'update', 'start']);
    expect(change.migrationMode).toBe('live');
    expect(change.reasons).toEqual([
      'cpu 2 → 4 [hot-plug: cpu is added to the running guest]',
      'moves from lab/host-1 to lab/host-2 (live migration)',
      'the VM is stopped; it is started',
    ]);
  });

  it('classifies field changes exactly as the core planner does', () => {
    const grown = next({ resources: { cpu: 4, memoryMiB: 8192, diskGiB: 20, gpu: 0 } });
    const change = classifyVmChange(base, grown, full);
    expect(change.fields.map((f) => [f.field, f.class])).toEqual([
      ['cpu', 'hot-plug'],
      ['memory', 'hot-plug'],
    ]);
  });

  it('holds a reboot the group does not allow', () => {
    const change = classifyVmChange(base, next({ resources: { cpu: 1, memoryMiB: 4096, diskGiB: 20, gpu: 0 }, changes: { allowReboot: false, fallbackToReplace: false } }), full);
    expect(change).toMatchObject({ class: 'reboot', held: 'needs a reboot and groups.web.changes.allowReboot is false' });
  });

  describe('cloud-init data changed together with memory', () => {
    const data = (userData: string, onChange: CloudInit['onChange']): CloudInit => ({ userData, onChange });
    // Real spec hashes, as VmFleet records them: the old VM's over its data and size, the new one's over the new.
    const made = (onChange: CloudInit['onChange']): VmOutputs => {
      const cloudInit = data('#cloud-config\n# old\n', onChange);
      return { ...base, cloudInit, specHash: specHashOf(base.resources, base.image, cloudInit) };
    };
    const wanted = (onChange: CloudInit['onChange'], patch: Partial<VmInputs> = {}): Partial<VmInputs> => {
      const cloudInit = data('#cloud-config\n# new\n', onChange);
      const resources = { ...base.resources, memoryMiB: 8192 };
      return { ...base, cloudInit, resources, specHash: specHashOf(resources, base.image, cloudInit), ...patch };
    };

    it('replace: the VM is replaced for its cloud-init data', () => {
      const change = classifyVmChange(made('replace'), wanted('replace'), full);
      expect(change).toMatchObject({ class: 'replace', replaces: ['cloudInit'], actions: [] });
      expect(change.fields.map((f) => [f.field, f.class])).toEqual([['memory', 'hot-plug'], ['cloudInit', 'replace']]);
    });

    it('reboot: one update that reboots with the new seed', () => {
      const change = classifyVmChange(made('reboot'), wanted('reboot'), full);
      expect(change).toMatchObject({ class: 'reboot', replaces: [], actions: ['update'] });
      expect(change.fields.map((f) => [f.field, f.class])).toEqual([['memory', 'hot-plug'], ['cloudInit', 'reboot']]);
      expect(change.held).toBeUndefined();
    });

    it('reboot, with reboots not allowed: held', () => {
      const change = classifyVmChange(made('reboot'), wanted('reboot', { changes: { allowReboot: false, fallbackToReplace: false } }), full);
      expect(change).toMatchObject({ class: 'reboot', held: 'needs a reboot and groups.web.changes.allowReboot is false' });
    });

    it('ignore: only memory is hot-plugged', () => {
      const change = classifyVmChange(made('ignore'), wanted('ignore'), full);
      expect(change).toMatchObject({ class: 'hot-plug', actions: ['update'] });
      expect(change.fields.map((f) => f.field)).toEqual(['memory']);
    });

    it('memory alone, with replace on change: hot-plugged, not replaced', () => {
      const old = made('replace');
      const resources = { ...base.resources, memoryMiB: 8192 };
      const change = classifyVmChange(old, { ...old, resources, specHash: specHashOf(resources, base.image, old.cloudInit) }, full);
      expect(change).toMatchObject({ class: 'hot-plug', replaces: [] });
    });
  });

  it('changes instance type on a cloud zone with a stop and start', () => {
    const cloud = { ...base, instanceType: 't3.medium' };
    expect(classifyVmChange(cloud, { ...cloud, instanceType: 't3.large' }, full)).toMatchObject({ class: 'reboot', actions: ['update'] });
  });
});
