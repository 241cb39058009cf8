import { describe, expect, it } from 'vitest';
import { NO_CAPABILITIES, parseFleet, planDrain, type Host, type MigrateStep, type Observed, type VmRecord } from '../index.js';
import { groupSpecHash } from './desired.js';

/** planDrain is the engine's rebalance with a drain target: every group's rules hold, both ways. */
const GiB = 1024;
const live = { ...NO_CAPABILITIES, liveMigration: true, coldMigration: true };

const fleet = parseFleet({
  name: 'f',
  providers: { lab: { type: 'sim' }, other: { type: 'sim' } },
  groups: {
    web: { count: 2, cpu: 2, memory: '4GiB', image: 'img' },
    // A rule of db alone: no db VM leaves the drained host, yet web must keep away from db.
    db: { count: 1, cpu: 4, memory: '8GiB', image: 'img', placement: { avoidGroups: [{ group: 'web', scope: 'host' }] } },
    // A group scaled to 0 that web's neighbours name: known by its rules, it asks nothing.
    cache: { count: 0, cpu: 1, memory: '1GiB', image: 'img', placement: { avoidGroups: [{ group: 'web', scope: 'host' }] } },
  },
});

function host(name: string, provider = 'lab', allocatedGiB = 0): Host {
  return {
    id: `${provider}/${name}`, provider, name, zone: 'a', labels: {}, state: 'up', pricePerHour: 1,
    capacity: { cpu: 32, memoryMiB: 64 * GiB, diskGiB: 1000, gpu: 0 },
    allocated: { cpu: allocatedGiB / 2, memoryMiB: allocatedGiB * GiB, diskGiB: 0, gpu: 0 },
    overcommit: { cpu: 1, memory: 1, disk: 1 },
  };
}

function vm(group: 'web' | 'db', index: number, on: string, provider = 'lab'): VmRecord {
  const memory = group === 'web' ? 4 : 8;
  return {
    name: `f-${group}-${index}`, id: `id-${group}-${index}`, provider, fleet: 'f', group, index, specHash: groupSpecHash(fleet.groups[group]!),
    host: `${provider}/${on}`, zone: 'a', state: 'running', resources: { cpu: memory / 2, memoryMiB: memory * GiB, diskGiB: 10, gpu: 0 }, image: 'img', labels: {}, addresses: [],
  };
}

describe('planDrain (rebalance with a drain target)', () => {
  it("keeps a moving VM off hosts whose group avoids it, by that group's rule", () => {
    // h2 is active (db runs there) and the fullest: a drain that saw only web's rules took it.
    const observed: Observed = {
      hosts: [host('h1', 'lab', 4), host('h2', 'lab', 8), host('h3'), host('x1', 'other')],
      vms: [vm('web', 0, 'h1'), vm('db', 0, 'h2')],
      capabilities: { lab: live, other: live },
    };
    const p = planDrain(fleet, observed, 'h1');
    const moves = p.steps.filter((s): s is MigrateStep => s.kind === 'migrate');
    expect(moves.map((m) => [m.vm, m.from, m.to, m.mode, m.reason])).toEqual([['f-web-0', 'lab/h1', 'lab/h3', 'live', 'drain lab/h1']]);
    expect(p.unplaced).toEqual([]);
    expect(p.summary).toMatchObject({ migrate: 1, unchanged: 1 });
    expect(p.placement.assignments).toEqual({ 'f-web-0': 'lab/h3' });
  });

  it('stays within the provider and lists VMs with nowhere to go, with the rules that ruled each host out', () => {
    const observed: Observed = {
      hosts: [host('h1', 'lab', 4), host('h2', 'lab', 8), host('x1', 'other')],
      vms: [vm('web', 0, 'h1'), vm('db', 0, 'h2')],
      capabilities: { lab: live, other: live },
    };
    const p = planDrain(fleet, observed, 'lab/h1');
    expect(p.steps).toEqual([]);
    expect(p.unplaced).toEqual([expect.objectContaining({ id: 'f-web-0', reasons: { draining: 1, 'avoid-groups': 1, provider: 1 } })]);
  });

  it('names an unknown host', () => {
    expect(() => planDrain(fleet, { hosts: [host('h1')], vms: [], capabilities: { lab: live } }, 'h9')).toThrow(/no host "h9"/);
  });
});
