import { describe, expect, it } from 'vitest';
import { NO_CAPABILITIES, parseFleet, plan, type Host, type MigrateStep, type Observed, type VmRecord } from '../index.js';
import { groupSpecHash } from './desired.js';

/** Day-2: moved VMs are not drift, broken rules are repaired by migrate steps, adopted VMs fill slots by ownership. */
const hosts: Host[] = ['h1', 'h2', 'h3'].map((name) => ({
  id: `lab/${name}`, provider: 'lab', name, zone: name === 'h3' ? 'b' : 'a', labels: {}, state: 'up', pricePerHour: 1,
  capacity: { cpu: 16, memoryMiB: 32768, diskGiB: 1000, gpu: 0 }, allocated: { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 },
  overcommit: { cpu: 1, memory: 1, disk: 1 },
}));
const fleet = (placement: Record<string, unknown> = {}) =>
  parseFleet({ name: 'f', providers: { lab: { type: 'sim' } }, groups: { web: { count: 2, cpu: 2, memory: '4GiB', image: 'img', labels: { tier: 'web' }, placement } } });
function vm(index: number, host: string, patch: Partial<VmRecord> = {}): VmRecord {
  return {
    name: `f-web-${index}`, id: `id-${index}`, provider: 'lab', fleet: 'f', group: 'web', index, specHash: groupSpecHash(fleet().groups.web!),
    host: `lab/${host}`, zone: 'a', state: 'running', resources: { cpu: 2, memoryMiB: 4096, diskGiB: 10, gpu: 0 }, image: 'img', labels: { tier: 'web' }, addresses: [], ...patch,
  };
}
const withAllocation = (vms: VmRecord[]) => hosts.map((h) => ({ ...h, allocated: { ...h.allocated, cpu: vms.filter((v) => v.host === h.id).length * 2, memoryMiB: vms.filter((v) => v.host === h.id).length * 4096 } }));
const movable = { ...NO_CAPABILITIES, resize: true, liveMigration: true, coldMigration: true };
const observed = (vms: VmRecord[], capabilities = movable): Observed => ({ hosts: withAllocation(vms), vms, capabilities: { lab: capabilities } });

describe('plan: desired host versus current host', () => {
  it('does not report a VM moved to another host as drift', () => {
    // Placement would have spread them; one was moved by hand next to the other. No rule asks otherwise.
    expect(plan(fleet(), observed([vm(0, 'h1'), vm(1, 'h1')])).steps).toEqual([]);
    expect(plan(fleet(), observed([vm(0, 'h3'), vm(1, 'h2')])).steps).toEqual([]);
  });

  it('moves a VM back when it breaks a hard rule where it runs now, with the rule as the reason', () => {
    const p = plan(fleet({ antiAffinity: 'host' }), observed([vm(0, 'h1'), vm(1, 'h1')]));
    const migrates = p.steps.filter((s): s is MigrateStep => s.kind === 'migrate');
    expect(migrates).toHaveLength(1);
    expect(migrates[0]).toMatchObject({ vm: 'f-web-1', from: 'lab/h1', mode: 'live' });
    expect(migrates[0]!.to).not.toBe('lab/h1');
    expect(migrates[0]!.reason).toMatch(/^rule anti-affinity broken: 2 VMs of group web on host lab\/h1; moved to lab\/h[23], where it holds$/);
    expect(p.violations).toEqual([expect.objectContaining({ vm: 'f-web-1', rule: 'anti-affinity', action: 'migrate' })]);
    expect(p.summary).toMatchObject({ migrate: 1, unchanged: 1 });
  });

  it('repairs zone rules too, and says so when the provider cannot move the VM', () => {
    const zoned = fleet({ zones: ['a'] });
    const p = plan(zoned, observed([vm(0, 'h3'), vm(1, 'h1')]));
    expect(p.steps).toEqual([expect.objectContaining({ kind: 'migrate', vm: 'f-web-0', from: 'lab/h3', reason: expect.stringMatching(/^rule zone broken: zone b is not among a/) })]);
    const stuck = plan(zoned, observed([vm(0, 'h3'), vm(1, 'h1')], { ...NO_CAPABILITIES, resize: true }));
    expect(stuck.steps).toEqual([]);
    expect(stuck.violations).toEqual([expect.objectContaining({ vm: 'f-web-0', rule: 'zone', action: 'none', reason: expect.stringMatching(/cannot migrate/) })]);
  });

  it('compares only declared fields: labels set outside the fleet are not drift', () => {
    expect(plan(fleet(), observed([vm(0, 'h1', { labels: { tier: 'web', owner: 'ops' } }), vm(1, 'h2')])).steps).toEqual([]);
  });
});

describe('plan: slots by ownership', () => {
  it('keeps an adopted VM whose name is not its slot name, and creates only the missing slot', () => {
    const p = plan(fleet(), observed([vm(1, 'h1', { name: 'legacy-web' })]));
    expect(p.steps.map((s) => `${s.kind} ${s.vm}`)).toEqual(['create f-web-0']);
    expect(p.summary.unchanged).toBe(1);
  });

  it('changes an adopted VM under its own name, and replaces it under the slot name', () => {
    const bigger = parseFleet({ name: 'f', providers: { lab: { type: 'sim' } }, groups: { web: { count: 1, cpu: 4, memory: '4GiB', image: 'img', labels: { tier: 'web' } } } });
    const hot = plan(bigger, observed([vm(0, 'h1', { name: 'legacy-web' })], { ...movable, hotplugCpu: true }));
    expect(hot.steps).toEqual([expect.objectContaining({ kind: 'update', vm: 'legacy-web', ref: expect.objectContaining({ name: 'legacy-web' }) })]);
    const newImage = parseFleet({ name: 'f', providers: { lab: { type: 'sim' } }, groups: { web: { count: 1, cpu: 2, memory: '4GiB', image: 'img2', labels: { tier: 'web' } } } });
    const rep = plan(newImage, observed([vm(0, 'h1', { name: 'legacy-web' })]));
    expect(rep.steps.map((s) => s.kind)).toEqual(['delete', 'replace']);
    const replace = rep.steps[1]!;
    expect(replace.kind === 'replace' && replace.request.name).toBe('f-web-0');
    expect(replace.kind === 'replace' && replace.changes?.map((c) => [c.field, c.class])).toEqual([['image', 'replace']]);
  });

  it('deletes the second VM that claims a slot', () => {
    const p = plan(fleet(), observed([vm(0, 'h1'), vm(1, 'h2'), vm(1, 'h3', { name: 'zz-copy' })]));
    expect(p.steps).toEqual([expect.objectContaining({ kind: 'delete', vm: 'zz-copy', reason: 'duplicate of f-web-1 on lab/h2' })]);
  });
});
