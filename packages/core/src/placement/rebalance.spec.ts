import { describe, expect, it } from 'vitest';
import { host } from '../../../../bench/placement/instances.ts';
import { InvalidInputError } from '../errors/index.js';
import type { PlacementRules } from '../model/fleet.js';
import type { Host } from '../model/records.js';
import { rebalance, type RunningVm } from './rebalance.js';

const GiB = 1024;

/** Hosts with their `allocated` set from the VMs on them, as providers report it. */
function world(hostList: Host[], vms: RunningVm[]): Host[] {
  return hostList.map((h) => {
    const mine = vms.filter((v) => v.host === h.id);
    return {
      ...h,
      allocated: {
        cpu: mine.reduce((s, v) => s + v.resources.cpu, 0),
        memoryMiB: mine.reduce((s, v) => s + v.resources.memoryMiB, 0),
        diskGiB: mine.reduce((s, v) => s + v.resources.diskGiB, 0),
        gpu: 0,
      },
    };
  });
}

const vm = (id: string, hostId: string, memGiB = 4, group = 'app', rules?: PlacementRules): RunningVm => ({
  id,
  group,
  host: hostId,
  resources: { cpu: 2, memoryMiB: memGiB * GiB, diskGiB: 10, gpu: 0 },
  ...(rules ? { rules } : {}),
});

describe('rebalance', () => {
  it('drains a host: moves only its VMs, within its provider, each to a host that meets every rule', () => {
    const vms = [vm('a1', 'h0'), vm('a2', 'h0', 8), vm('b1', 'h1'), vm('db1', 'h2', 4, 'db', { antiAffinity: 'host' }), vm('db2', 'h0', 4, 'db', { antiAffinity: 'host' })];
    const hosts = world([host('h0'), host('h1'), host('h2'), host('other', { provider: 'elsewhere' })], vms);
    const r = rebalance({ hosts, vms, target: { kind: 'drain', hosts: ['h0'] } });
    expect(r.reached).toBe(true);
    expect(r.migrations.map((m) => m.vm).sort()).toEqual(['a1', 'a2', 'db2']);
    for (const m of r.migrations) {
      expect(m.from).toBe('h0');
      expect(['h1', 'h2']).toContain(m.to);
      expect(m.reason).toBe('drain h0');
    }
    expect(r.migrations.find((m) => m.vm === 'db2')!.to).toBe('h1'); // h2 holds db1
    expect(r.memoryMovedMiB).toBe(16 * GiB);
    expect(r.message).toBe('drained h0 with 3 migration(s)');
  });

  it('reports the VMs a drain cannot move, with the rules that stop them', () => {
    const vms = [vm('big', 'h0', 100), vm('small', 'h0', 2)];
    const hosts = world([host('h0'), host('h1', { memoryMiB: 64 * GiB })], vms);
    const r = rebalance({ hosts, vms, target: { kind: 'drain', hosts: ['h0'] } });
    expect(r.reached).toBe(false);
    expect(r.migrations.map((m) => m.vm)).toEqual(['small']);
    expect(r.stuck).toEqual([expect.objectContaining({ id: 'big', reasons: { draining: 1, memory: 1 } })]);
  });

  it('cuts active hosts emptying the lightest first, and moves nothing it need not', () => {
    const vms = [vm('a', 'h0', 16), vm('b', 'h0', 16), vm('c', 'h1', 16), vm('d', 'h2', 2), vm('e', 'h3', 4)];
    const hosts = world([host('h0'), host('h1'), host('h2'), host('h3')], vms);
    const r = rebalance({ hosts, vms, target: { kind: 'consolidate', maxActiveHosts: 2 } });
    expect(r.reached).toBe(true);
    expect(r.after.activeHosts).toBe(2);
    expect(r.migrations.map((m) => m.vm).sort()).toEqual(['d', 'e']); // the two lightest hosts, 6 GiB in all
    expect(r.memoryMovedMiB).toBe(6 * GiB);
  });

  it('evens out load, stopping at the target', () => {
    const vms = Array.from({ length: 8 }, (_, i) => vm(`v${i}`, 'h0', 8));
    const hosts = world([host('h0'), host('h1'), host('h2'), host('h3')], vms);
    const r = rebalance({ hosts, vms, target: { kind: 'balance', maxImbalance: 0.05 } });
    expect(r.reached).toBe(true);
    expect(r.after.imbalance).toBeLessThanOrEqual(0.05);
    expect(r.before.imbalance).toBeGreaterThan(0.2);
    expect(r.migrations.length).toBeLessThanOrEqual(6);
    expect(new Set(r.migrations.map((m) => m.vm)).size).toBe(r.migrations.length); // no VM moves twice
  });

  it('leaves VMs that cannot move where they are, and never moves to or from elastic hosts', () => {
    const vms = [{ ...vm('fixed', 'h0'), movable: false }, vm('free', 'h0')];
    const hosts = world([host('h0'), host('h1')], vms);
    const r = rebalance({ hosts, vms, target: { kind: 'drain', hosts: ['h0'] } });
    expect(r.migrations.map((m) => m.vm)).toEqual(['free']);
    expect(r.assignments['fixed']).toBe('h0');
  });

  it('names unknown hosts and bad targets', () => {
    const hosts = [host('h0')];
    expect(() => rebalance({ hosts, vms: [], target: { kind: 'drain', hosts: ['nope'] } })).toThrow(InvalidInputError);
    expect(() => rebalance({ hosts, vms: [], target: { kind: 'drain', hosts: ['nope'] } })).toThrow('cannot drain host "nope": it is not in the inventory');
    expect(() => rebalance({ hosts, vms: [vm('x', 'gone')], target: { kind: 'balance' } })).toThrow(/VM "x" runs on host "gone", which is not in the inventory/);
    expect(() => rebalance({ hosts, vms: [], target: { kind: 'balance', maxImbalance: 2 } })).toThrow(/maxImbalance must be between 0 and 1/);
  });
});
