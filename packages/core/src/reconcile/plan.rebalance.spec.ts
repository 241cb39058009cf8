import { describe, expect, it } from 'vitest';
import { NO_CAPABILITIES, parseFleet, plan, type Host, type MigrateStep, type Observed, type VmRecord } from '../index.js';
import { groupSpecHash } from './desired.js';

/** Rebalance through the plan: running VMs move as migrate steps, new VMs are placed around them. */
const GiB = 1024;
const hostList = (allocated: Record<string, number>): Host[] =>
  ['h1', 'h2', 'h3', 'h4'].map((name) => ({
    id: `lab/${name}`, provider: 'lab', name, zone: 'a', labels: {}, state: 'up', pricePerHour: 1,
    capacity: { cpu: 32, memoryMiB: 64 * GiB, diskGiB: 1000, gpu: 0 },
    allocated: { cpu: 2 * (allocated[name] ?? 0), memoryMiB: 4 * GiB * (allocated[name] ?? 0), diskGiB: 10 * (allocated[name] ?? 0), gpu: 0 },
    overcommit: { cpu: 1, memory: 1, disk: 1 },
  }));

const fleet = (count: number) =>
  parseFleet({ name: 'f', providers: { lab: { type: 'sim' } }, groups: { web: { count, cpu: 2, memory: '4GiB', image: 'img', migration: { mode: 'auto' } } } });

function vm(index: number, host: string): VmRecord {
  return {
    name: `f-web-${index}`, id: `id-${index}`, provider: 'lab', fleet: 'f', group: 'web', index, specHash: groupSpecHash(fleet(1).groups.web!),
    host: `lab/${host}`, zone: 'a', state: 'running', resources: { cpu: 2, memoryMiB: 4 * GiB, diskGiB: 10, gpu: 0 }, image: 'img', labels: {}, addresses: [],
  };
}

const live = { ...NO_CAPABILITIES, liveMigration: true, coldMigration: true };

describe('plan with rebalance', () => {
  it('drains a host into migrate steps with the group policy and live mode', () => {
    const vms = [vm(0, 'h1'), vm(1, 'h1'), vm(2, 'h2')];
    const observed: Observed = { hosts: hostList({ h1: 2, h2: 1 }), vms, capabilities: { lab: live } };
    const p = plan(fleet(3), observed, { rebalance: { kind: 'drain', hosts: ['lab/h1'] } });
    const migrates = p.steps.filter((s): s is MigrateStep => s.kind === 'migrate');
    expect(migrates.map((m) => [m.vm, m.from, m.mode])).toEqual([
      ['f-web-0', 'lab/h1', 'live'],
      ['f-web-1', 'lab/h1', 'live'],
    ]);
    expect(migrates.every((m) => m.to !== 'lab/h1' && m.reason === 'drain lab/h1' && m.memoryMiB === 4 * GiB)).toBe(true);
    expect(p.summary).toMatchObject({ migrate: 2, unchanged: 1 });
  });

  it('places new VMs around the moves, after the moves off their host', () => {
    const vms = [vm(0, 'h1'), vm(1, 'h2')];
    const observed: Observed = { hosts: hostList({ h1: 1, h2: 1 }), vms, capabilities: { lab: live } };
    const p = plan(fleet(3), observed, { rebalance: { kind: 'consolidate' } });
    const migrate = p.steps.find((s): s is MigrateStep => s.kind === 'migrate')!;
    expect(migrate).toBeDefined();
    const create = p.steps.find((s) => s.kind === 'create')!;
    expect(create.kind === 'create' && create.host).toBe(migrate.to); // joins the host that stays active
    expect(p.costPerHour).toBe(1);
  });

  it('moves nothing the provider cannot migrate', () => {
    const vms = [vm(0, 'h1'), vm(1, 'h2')];
    const p = plan(fleet(2), { hosts: hostList({ h1: 1, h2: 1 }), vms, capabilities: { lab: NO_CAPABILITIES } }, { rebalance: { kind: 'consolidate' } });
    expect(p.steps).toEqual([]);
  });

  it('reports VMs a drain cannot move as unplaced, so apply refuses the plan', () => {
    const vms = [vm(0, 'h1')];
    const hosts = hostList({ h1: 1 }).map((h) => (h.id === 'lab/h1' ? h : { ...h, state: 'maintenance' as const }));
    const p = plan(fleet(1), { hosts, vms, capabilities: { lab: live } }, { rebalance: { kind: 'drain', hosts: ['lab/h1'] } });
    expect(p.unplaced).toEqual([expect.objectContaining({ id: 'f-web-0', reasons: { draining: 1, maintenance: 3 } })]);
  });
});
