import { describe, expect, it } from 'vitest';
import { NO_CAPABILITIES, parseFleet, plan, type FleetSpecInput, type Host, type Observed, type VmRecord } from '../index.js';
import { groupSpecHash } from './desired.js';

const hosts: Host[] = ['h1', 'h2', 'h3'].map((name) => ({
  id: `lab/${name}`, provider: 'lab', name, zone: 'a', labels: {}, state: 'up', pricePerHour: 1,
  capacity: { cpu: 16, memoryMiB: 32768, diskGiB: 1000, gpu: 0 }, allocated: { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 },
  overcommit: { cpu: 1, memory: 1, disk: 1 },
}));

const input: FleetSpecInput = {
  name: 'f',
  providers: { lab: { type: 'sim' } },
  groups: { web: { count: 3, cpu: 2, memory: '4GiB', image: 'img' } },
};
const fleet = parseFleet(input);
const web = fleet.groups.web!;

function vm(index: number, patch: Partial<VmRecord> = {}): VmRecord {
  return {
    name: `f-web-${index}`, id: `id-${index}`, provider: 'lab', fleet: 'f', group: 'web', index, specHash: groupSpecHash(web),
    host: 'lab/h1', zone: 'a', state: 'running', resources: { cpu: 2, memoryMiB: 4096, diskGiB: 10, gpu: 0 }, image: 'img', labels: {}, addresses: [],
    ...patch,
  };
}

const observed = (vms: VmRecord[], capabilities = { ...NO_CAPABILITIES, resize: true }): Observed => ({ hosts, vms, capabilities: { lab: capabilities } });

describe('plan', () => {
  it('creates what is missing, each step with its reason and host', () => {
    const p = plan(fleet, observed([vm(0)]));
    expect(p.steps.map((s) => `${s.kind} ${s.vm}`)).toEqual(['create f-web-1', 'create f-web-2']);
    expect(p.steps[0]!.reason).toBe('new VM 2 of 3 in group "web"');
    expect(p.summary).toMatchObject({ create: 2, unchanged: 1 });
  });

  it('reports no changes when the world matches the spec', () => {
    const p = plan(fleet, observed([vm(0), vm(1), vm(2)]));
    expect(p.steps).toEqual([]);
    expect(p.summary.unchanged).toBe(3);
  });

  it('scales down from the highest index and says why', () => {
    const small = parseFleet({ ...input, groups: { web: { ...input.groups.web!, count: 1 } } });
    const p = plan(small, observed([vm(0), vm(1), vm(2)]));
    expect(p.steps.map((s) => `${s.kind} ${s.vm}`)).toEqual(['delete f-web-1', 'delete f-web-2']);
    expect(p.steps[0]!.reason).toBe('group "web" has count 1');
  });

  it('removes the VMs of a group that left the fleet', () => {
    const p = plan(fleet, observed([vm(0), vm(1), vm(2), vm(0, { name: 'f-old-0', group: 'old' })]));
    expect(p.steps).toEqual([expect.objectContaining({ kind: 'delete', vm: 'f-old-0', reason: 'group "old" is no longer in the fleet' })]);
  });

  it('hot-plugs growth in place when the provider can, and replaces when it cannot resize at all', () => {
    const bigger = parseFleet({ ...input, groups: { web: { ...input.groups.web!, count: 1, cpu: 4 } } });
    const hot = plan(bigger, observed([vm(0)], { ...NO_CAPABILITIES, resize: true, hotplugCpu: true }));
    expect(hot.steps).toEqual([expect.objectContaining({ kind: 'update', vm: 'f-web-0', changeClass: 'hot-plug', reason: 'cpu 2 → 4 [hot-plug: cpu is added to the running guest]' })]);
    const cold = plan(bigger, observed([vm(0)], { ...NO_CAPABILITIES, resize: true }));
    expect(cold.steps).toEqual([expect.objectContaining({ kind: 'update', changeClass: 'reboot' })]);
    const replace = plan(bigger, observed([vm(0)], NO_CAPABILITIES));
    expect(replace.steps.map((s) => s.id)).toEqual(['delete:f-web-0', 'replace:f-web-0']);
    expect(replace.steps[1]!.dependsOn).toContain('delete:f-web-0');
    expect(replace.summary).toMatchObject({ replace: 1, delete: 0 });
  });

  it('classifies each changed field and takes the most expensive class', () => {
    const changed = parseFleet({ ...input, groups: { web: { ...input.groups.web!, count: 1, cpu: 1, memory: '8GiB', labels: { tier: 'web' } } } });
    const p = plan(changed, observed([vm(0)], { ...NO_CAPABILITIES, resize: true, hotplugCpu: true, hotplugMemory: true }));
    const step = p.steps[0]!;
    if (step.kind !== 'update') throw new Error('expected an update');
    expect(step.changes.map((c) => [c.field, c.class])).toEqual([['cpu', 'reboot'], ['memory', 'hot-plug'], ['labels', 'in-place']]);
    expect(step.changeClass).toBe('reboot');
  });

  it('changes labels in place, comparing only the keys the user declared', () => {
    const labelled = parseFleet({ ...input, groups: { web: { ...input.groups.web!, count: 1, labels: { tier: 'web' } } } });
    expect(plan(labelled, observed([vm(0, { labels: { tier: 'web', 'provider-default': 'x' } })])).steps).toEqual([]);
    expect(plan(labelled, observed([vm(0, { labels: { tier: 'db' } })])).steps).toEqual([expect.objectContaining({ kind: 'update', changeClass: 'in-place' })]);
  });

  it('never shrinks a disk in place', () => {
    const smaller = parseFleet({ ...input, groups: { web: { ...input.groups.web!, count: 1, disk: 5 } } });
    expect(plan(smaller, observed([vm(0)])).steps.map((s) => s.kind)).toEqual(['delete', 'replace']);
  });

  it('holds a change that needs a reboot when the group does not allow one', () => {
    const strict = parseFleet({ ...input, groups: { web: { ...input.groups.web!, count: 1, memory: '2GiB', changes: { allowReboot: false } } } });
    expect(plan(strict, observed([vm(0)])).steps).toEqual([expect.objectContaining({ kind: 'update', changeClass: 'reboot', held: 'needs a reboot and groups.web.changes.allowReboot is false' })]);
  });

  it('follows the cloud-init change policy: ignore, reboot with the new seed, or replace', () => {
    const withData = (onChange: string) => parseFleet({ ...input, groups: { web: { ...input.groups.web!, count: 1, cloudInit: { userData: '#cloud-config\n', onChange } } } });
    expect(plan(withData('ignore'), observed([vm(0)])).steps).toEqual([]);
    expect(plan(withData('reboot'), observed([vm(0)])).steps).toEqual([expect.objectContaining({ kind: 'update', changeClass: 'reboot', reboot: true })]);
    expect(plan(withData('replace'), observed([vm(0)])).steps.map((s) => s.kind)).toEqual(['delete', 'replace']);
  });

  describe('cloud-init data changed together with the size', () => {
    const hotplug = { ...NO_CAPABILITIES, resize: true, hotplugCpu: true, hotplugMemory: true };
    const group = (userData: string, onChange: string, more: Record<string, unknown> = {}) =>
      parseFleet({ ...input, groups: { web: { ...input.groups.web!, count: 1, cloudInit: { userData, onChange }, ...more } } });
    // Made from the old data at 4 GiB; the spec now asks for new data and 8 GiB.
    const made = (onChange: string) => vm(0, { specHash: groupSpecHash(group('#cloud-config\n# old\n', onChange).groups.web!) });
    const next = (onChange: string, more: Record<string, unknown> = {}) => group('#cloud-config\n# new\n', onChange, { memory: '8GiB', ...more });

    it('replace: one replacement makes both changes', () => {
      const p = plan(next('replace'), observed([made('replace')], hotplug));
      expect(p.steps.map((s) => s.id)).toEqual(['delete:f-web-0', 'replace:f-web-0']);
      expect(p.steps[0]!.reason).toMatch(/^to be replaced: cloudInit .*cloud-init data changed; the group replaces on change/);
      const replace = p.steps[1]!;
      if (replace.kind !== 'replace') throw new Error('expected a replace');
      expect(replace.request).toMatchObject({ resources: { memoryMiB: 8192 }, cloudInit: { userData: '#cloud-config\n# new\n' }, ownership: { specHash: groupSpecHash(next('replace').groups.web!) } });
    });

    it('reboot: one update that resizes and reboots with the new seed, and records the new hash', () => {
      const p = plan(next('reboot'), observed([made('reboot')], hotplug));
      expect(p.steps).toHaveLength(1);
      const step = p.steps[0]!;
      if (step.kind !== 'update') throw new Error('expected an update');
      expect(step.changes.map((c) => [c.field, c.class])).toEqual([['memory', 'hot-plug'], ['cloudInit', 'reboot']]);
      expect(step).toMatchObject({ changeClass: 'reboot', reboot: true, cloudInit: { userData: '#cloud-config\n# new\n' }, to: { memoryMiB: 8192 }, specHash: groupSpecHash(next('reboot').groups.web!) });
      expect(step.held).toBeUndefined();
      // Once made, the next plan has nothing to do.
      expect(plan(next('reboot'), observed([made('reboot')].map((v) => ({ ...v, resources: step.to, specHash: step.specHash })), hotplug)).steps).toEqual([]);
    });

    it('reboot, with reboots not allowed: the whole update is held', () => {
      const p = plan(next('reboot', { changes: { allowReboot: false } }), observed([made('reboot')], hotplug));
      expect(p.steps).toEqual([expect.objectContaining({ kind: 'update', changeClass: 'reboot', reboot: true, held: 'needs a reboot and groups.web.changes.allowReboot is false' })]);
    });

    it('ignore: only the size changes', () => {
      const p = plan(next('ignore'), observed([made('ignore')], hotplug));
      expect(p.steps).toEqual([expect.objectContaining({ kind: 'update', changeClass: 'hot-plug', changes: [expect.objectContaining({ field: 'memory' })] })]);
      expect(p.steps[0]).not.toHaveProperty('reboot');
    });

    it('is no cloud-init change when only the size or image changes, or the VM was resized by hand', () => {
      const same = (more: Record<string, unknown>) => group('#cloud-config\n# old\n', 'replace', more);
      const grown = plan(same({ memory: '8GiB' }), observed([made('replace')], hotplug));
      expect(grown.steps).toEqual([expect.objectContaining({ kind: 'update', changeClass: 'hot-plug', changes: [expect.objectContaining({ field: 'memory' })] })]);
      const reimaged = plan(same({ image: 'img2' }), observed([made('replace')], hotplug));
      expect(reimaged.steps[0]!.reason).toBe('to be replaced: image img → img2 [replace: a new image means a new root disk]');
      // The spec did not change; the VM has 6 GiB now. Its memory is put back, it is not replaced.
      const byHand = plan(same({}), observed([{ ...made('replace'), resources: { cpu: 2, memoryMiB: 6144, diskGiB: 10, gpu: 0 } }], hotplug));
      expect(byHand.steps).toEqual([expect.objectContaining({ kind: 'update', changeClass: 'reboot', changes: [expect.objectContaining({ field: 'memory' })] })]);
    });
  });

  it('replaces on an image change', () => {
    const newImage = parseFleet({ ...input, groups: { web: { ...input.groups.web!, count: 1, image: 'img2' } } });
    const p = plan(newImage, observed([vm(0)]));
    expect(p.steps.at(-1)).toMatchObject({ kind: 'replace', reason: 'image img → img2 [replace: a new image means a new root disk]' });
  });

  it('starts a stopped VM', () => {
    const p = plan(fleet, observed([vm(0), vm(1, { state: 'stopped' }), vm(2)]));
    expect(p.steps).toEqual([expect.objectContaining({ kind: 'start', vm: 'f-web-1', reason: 'VM is stopped' })]);
  });

  it('makes creates on a host wait for the deletes that free it', () => {
    const tight: Host[] = [{ ...hosts[0]!, capacity: { cpu: 4, memoryMiB: 8192, diskGiB: 100, gpu: 0 }, allocated: { cpu: 4, memoryMiB: 8192, diskGiB: 20, gpu: 0 } }];
    const next = parseFleet({ ...input, groups: { db: { count: 1, cpu: 4, memory: '8GiB', image: 'img' } } });
    const p = plan(next, { hosts: tight, vms: [vm(0), vm(1)], capabilities: { lab: NO_CAPABILITIES } });
    const create = p.steps.find((s) => s.kind === 'create')!;
    expect(create.dependsOn).toEqual(['delete:f-web-0', 'delete:f-web-1']);
  });

  it('lists what fits nowhere instead of dropping it', () => {
    const huge = parseFleet({ ...input, groups: { web: { ...input.groups.web!, count: 1, memory: '64GiB' } } });
    const p = plan(huge, observed([]));
    expect(p.steps).toEqual([]);
    expect(p.unplaced).toEqual([expect.objectContaining({ id: 'f-web-0', reasons: { memory: 3 }, message: expect.stringContaining('memory') })]);
  });

  it('plans the destruction of every owned VM, and of nothing else', () => {
    const p = plan(fleet, observed([vm(0), vm(1)]), { destroy: true });
    expect(p.steps.map((s) => s.id)).toEqual(['delete:f-web-0', 'delete:f-web-1']);
    expect(p.steps[0]!.reason).toBe('fleet "f" is being destroyed');
  });

  it('keeps a single copy when a VM name is reported twice', () => {
    const p = plan(fleet, observed([vm(0), vm(0, { id: 'dup', host: 'lab/h2' }), vm(1), vm(2)]));
    expect(p.steps).toEqual([expect.objectContaining({ kind: 'delete', vm: 'f-web-0', reason: 'duplicate of f-web-0 on lab/h1' })]);
  });
});

describe('plan cost', () => {
  const cloud: Host = {
    id: 'aws/eu-1a', provider: 'aws', name: 'eu-1a', zone: 'eu-1a', labels: {}, state: 'up', pricePerHour: 0,
    capacity: { cpu: 1e6, memoryMiB: 1e9, diskGiB: 1e9, gpu: 0 }, allocated: { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 }, overcommit: { cpu: 1, memory: 1, disk: 1 },
    instanceTypes: [{ name: 'small', cpu: 2, memoryMiB: 4096, pricePerHour: 0.05 }, { name: 'big', cpu: 8, memoryMiB: 32768, pricePerHour: 0.4 }],
  };
  const both = (vms: VmRecord[]): Observed => ({ hosts: [...hosts, cloud], vms, capabilities: { lab: { ...NO_CAPABILITIES, resize: true, imageExport: true }, aws: { ...NO_CAPABILITIES, resize: true, imageImport: true } } });
  const on = (provider: string, count = 3, cpu = 2) => parseFleet({ ...input, providers: { lab: { type: 'sim' }, aws: { type: 'aws', region: 'eu', images: { img: 'ami-1' } } }, groups: { web: { ...input.groups.web!, count, cpu, placement: { providers: [provider] } } } });

  it('counts the fixed hosts kept active and the cloud instances after the steps', () => {
    expect(plan(on('lab'), both([vm(0), vm(1, { host: 'lab/h2' }), vm(2, { host: 'lab/h2' })])).costPerHour).toBe(2);
    expect(plan(on('aws'), both([])).costPerHour).toBe(0.15);
  });

  it('prices VMs moved to a cloud at their instance type, not at the rack they leave', () => {
    const moved = plan(on('aws', 1), both([vm(0)]));
    expect(moved.steps.map((s) => s.kind)).toEqual(['migrate']);
    expect(moved.costPerHour).toBe(0.05);
  });

  it('moves an update on a cloud zone to the cheapest type of the new size', () => {
    const p = plan(on('aws', 1, 8), both([vm(0, { provider: 'aws', host: 'aws/eu-1a', instanceType: 'small', specHash: groupSpecHash(on('aws', 1).groups.web!) })]));
    expect(p.steps).toEqual([expect.objectContaining({ kind: 'update', instanceType: 'big' })]);
    expect(p.costPerHour).toBe(0.4);
  });
});
