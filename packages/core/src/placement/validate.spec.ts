import { describe, expect, it } from 'vitest';
import { host } from '../../../../bench/placement/instances.ts';
import type { PlacementRules } from '../model/fleet.js';
import type { PlacementRequest, PlacementVm } from './types.js';
import { validatePlacement } from './validate.js';

/** The validator must catch each kind of violation, or a clean report from it means nothing. */
const GiB = 1024;
const vm = (id: string, group: string, rules?: PlacementRules, cpu = 2): PlacementVm => ({
  id,
  group,
  resources: { cpu, memoryMiB: 4 * GiB, diskGiB: 10, gpu: 0 },
  ...(rules ? { rules } : {}),
});
const hosts = [
  host('a', { zone: 'z1', labels: { ssd: 'true', rack: 'r1' } }),
  host('b', { zone: 'z1', labels: { rack: 'r2' } }),
  host('c', { zone: 'z2', state: 'maintenance' }),
  host('d', { zone: 'z2', cpu: 4 }),
];
const rules = (violations: ReturnType<typeof validatePlacement>) => violations.map((v) => v.rule);

describe('validatePlacement', () => {
  it('passes a valid placement', () => {
    const request: PlacementRequest = { hosts, vms: [vm('x', 'g'), vm('y', 'g')] };
    expect(validatePlacement(request, { assignments: { x: 'a', y: 'b' }, unplaced: [] })).toEqual([]);
  });

  it('catches VMs dropped, doubled, invented, or put on hosts that do not exist', () => {
    const request: PlacementRequest = { hosts, vms: [vm('x', 'g'), vm('y', 'g'), vm('z', 'g')] };
    const found = validatePlacement(request, {
      assignments: { x: 'a', y: 'nowhere', ghost: 'a' },
      unplaced: [{ id: 'x', reasons: {}, message: '' }],
    });
    expect(rules(found).sort()).toEqual(['accounting', 'accounting', 'accounting', 'accounting']);
    expect(found.map((v) => v.vm).sort()).toEqual(['ghost', 'x', 'y', 'z']);
  });

  it('catches capacity, host state and host rules', () => {
    const request: PlacementRequest = {
      hosts: [...hosts.slice(0, 3), { ...hosts[3]!, allocated: { cpu: 3, memoryMiB: 0, diskGiB: 0, gpu: 0 } }],
      vms: [vm('big', 'g'), vm('m', 'g'), vm('z', 'z', { zones: ['z2'] }), vm('l', 'l', { hostLabels: { ssd: 'true' } }), vm('p', 'p', { providers: ['aws'] })],
    };
    const found = validatePlacement(request, { assignments: { big: 'd', m: 'c', z: 'a', l: 'b', p: 'a' }, unplaced: [] });
    expect(rules(found).sort()).toEqual(['cpu', 'labels', 'maintenance', 'provider', 'zone']);
  });

  it('catches anti-affinity, maxPerHost, avoidance both ways, run-with and spread', () => {
    const request: PlacementRequest = {
      hosts,
      existing: [{ id: 'db-old', group: 'db', host: 'b' }],
      vms: [
        vm('anti1', 'anti', { antiAffinity: 'host' }),
        vm('anti2', 'anti', { antiAffinity: 'host' }),
        vm('zone1', 'zonal', { antiAffinity: 'zone' }),
        vm('zone2', 'zonal', { antiAffinity: 'zone' }),
        vm('cap1', 'capped', { maxPerHost: 1 }),
        vm('cap2', 'capped', { maxPerHost: 1 }),
        vm('db1', 'db', { avoidGroups: [{ group: 'noisy', scope: 'host' }] }),
        vm('noisy1', 'noisy'),
        vm('with1', 'with', { withGroups: [{ group: 'db', scope: 'host' }] }),
        vm('s1', 'spread', { spread: { key: 'rack', maxSkew: 1 } }),
        vm('s2', 'spread', { spread: { key: 'rack', maxSkew: 1 } }),
      ],
    };
    const found = validatePlacement(request, {
      assignments: { anti1: 'a', anti2: 'a', zone1: 'a', zone2: 'b', cap1: 'b', cap2: 'b', db1: 'd', noisy1: 'd', with1: 'a', s1: 'a', s2: 'a' },
      unplaced: [],
    });
    const kinds = new Set(rules(found));
    expect(kinds).toEqual(new Set(['anti-affinity', 'max-per-host', 'avoid-groups', 'with-groups', 'spread']));
    expect(found.find((v) => v.rule === 'spread')!.message).toBe('group spread spreads over rack with skew 2, at most 1');
  });

  it('allows a skew the running VMs already had, and no more', () => {
    const request: PlacementRequest = {
      hosts,
      existing: [1, 2, 3].map((i) => ({ id: `old${i}`, group: 'web', host: 'a' })),
      vms: [vm('new1', 'web', { spread: { key: 'rack', maxSkew: 1 } })],
    };
    expect(validatePlacement(request, { assignments: { new1: 'b' }, unplaced: [] })).toEqual([]);
    expect(rules(validatePlacement(request, { assignments: { new1: 'a' }, unplaced: [] }))).toEqual(['spread']);
  });

  it('checks instance types on elastic hosts', () => {
    const cloud = { ...host('cloud'), instanceTypes: [{ name: 'small', cpu: 1, memoryMiB: 2 * GiB, pricePerHour: 0.05 }] };
    const found = validatePlacement({ hosts: [cloud], vms: [vm('x', 'g')] }, { assignments: { x: 'cloud' }, instanceTypes: { x: 'small' }, unplaced: [] });
    expect(found).toEqual([expect.objectContaining({ rule: 'instance-type', message: 'instance type small is smaller than the VM' })]);
  });
});
