import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PlacementRules, PlacementWeights } from '../model/fleet.js';
import type { Host } from '../model/records.js';
import { place } from './place.js';
import { rebalance } from './rebalance.js';
import type { PlacedVm, PlacementRequest, PlacementVm } from './types.js';
import { validatePlacement } from './validate.js';

const GiB = 1024;
const ZONES = ['z1', 'z2', 'z3'];

const hostArb = (i: number) =>
  fc
    .record({
      cpu: fc.constantFrom(4, 8, 16, 32),
      mem: fc.constantFrom(8, 16, 32, 64),
      disk: fc.constantFrom(100, 500),
      gpu: fc.constantFrom(0, 0, 0, 2),
      zone: fc.constantFrom(...ZONES),
      rack: fc.constantFrom('r1', 'r2'),
      ssd: fc.boolean(),
      state: fc.constantFrom<Host['state']>('up', 'up', 'up', 'up', 'up', 'up', 'maintenance', 'draining'),
      cpuOver: fc.constantFrom(1, 1, 2),
      price: fc.constantFrom(0.5, 1, 2),
      elastic: fc.constantFrom(false, false, false, false, false, false, false, true),
    })
    .map(
      (h): Host => ({
        id: `h${i}`,
        provider: h.elastic ? 'cloud' : 'lab',
        name: `h${i}`,
        zone: h.zone,
        region: 'r',
        labels: { rack: h.rack, ...(h.ssd ? { ssd: 'true' } : {}) },
        capacity: { cpu: h.cpu, memoryMiB: h.mem * GiB, diskGiB: h.disk, gpu: h.gpu },
        allocated: { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 },
        overcommit: { cpu: h.cpuOver, memory: 1, disk: 1 },
        pricePerHour: h.price,
        state: h.state,
        ...(h.elastic
          ? {
              instanceTypes: [
                { name: 'small', cpu: 2, memoryMiB: 4 * GiB, pricePerHour: 0.1 },
                { name: 'large', cpu: 8, memoryMiB: 32 * GiB, pricePerHour: 0.4 },
              ],
            }
          : {}),
      }),
    );

const rulesArb = (g: number, groups: number) =>
  fc
    .record(
      {
        zones: fc.subarray(ZONES, { minLength: 1 }),
        antiAffinity: fc.constantFrom('host' as const, 'zone' as const),
        maxPerHost: fc.integer({ min: 1, max: 3 }),
        spread: fc.record({ key: fc.constantFrom('zone', 'rack'), maxSkew: fc.integer({ min: 1, max: 2 }) }),
        hostLabels: fc.constant({ ssd: 'true' }),
        preferLabels: fc.constant({ ssd: 'true' }),
        avoid: fc.record({ group: fc.integer({ min: 0, max: groups - 1 }), scope: fc.constantFrom('host' as const, 'zone' as const) }),
        // Only earlier groups (or itself): no cycles.
        with: fc.record({ group: fc.integer({ min: 0, max: g }), scope: fc.constantFrom('host' as const, 'zone' as const) }),
        near: fc.integer({ min: 0, max: groups - 1 }),
      },
      { requiredKeys: [] },
    )
    .map((r) => r);

type RawRules = {
  zones?: string[];
  antiAffinity?: 'host' | 'zone';
  maxPerHost?: number;
  spread?: { key: string; maxSkew: number };
  hostLabels?: Record<string, string>;
  preferLabels?: Record<string, string>;
  avoid?: { group: number; scope: 'host' | 'zone' };
  with?: { group: number; scope: 'host' | 'zone' };
  near?: number;
};

const instanceArb = fc
  .record({
    hostCount: fc.integer({ min: 1, max: 10 }),
    groupCount: fc.integer({ min: 1, max: 4 }),
    seed: fc.integer({ min: 0, max: 1000 }),
    weights: fc.record(
      {
        cost: fc.constantFrom(0, 0.5, 1),
        consolidation: fc.constantFrom(0, 0.5, 1),
        balance: fc.constantFrom(0, 0.5, 1),
        headroom: fc.constantFrom(0, 1),
        preferLabels: fc.constantFrom(0, 1),
        locality: fc.constantFrom(0, 1),
      },
      { requiredKeys: [] },
    ),
  })
  .chain(({ hostCount, groupCount, seed, weights }) =>
    fc.record({
      hosts: fc.tuple(...Array.from({ length: hostCount }, (_, i) => hostArb(i))),
      rules: fc.tuple(...Array.from({ length: groupCount }, (_, g) => rulesArb(g, groupCount))),
      vms: fc.array(
        fc.record({ group: fc.integer({ min: 0, max: groupCount - 1 }), cpu: fc.constantFrom(1, 2, 4, 8), mem: fc.constantFrom(1, 2, 4, 8, 16), gpu: fc.constantFrom(0, 0, 0, 0, 1) }),
        { maxLength: 30 },
      ),
      existing: fc.array(fc.record({ group: fc.integer({ min: 0, max: groupCount - 1 }), host: fc.integer({ min: 0, max: hostCount - 1 }) }), { maxLength: 5 }),
      seed: fc.constant(seed),
      weights: fc.constant(weights as PlacementWeights),
    }),
  )
  .map(({ hosts, rules, vms, existing, seed, weights }): PlacementRequest => {
    const groupName = (g: number) => `g${g}`;
    const has = new Set([...vms.map((v) => v.group), ...existing.map((e) => e.group)]);
    const toRules = (raw: RawRules, g: number): PlacementRules => {
      const out: { -readonly [K in keyof PlacementRules]: PlacementRules[K] } = {};
      if (raw.zones) out.zones = raw.zones;
      if (raw.antiAffinity) out.antiAffinity = raw.antiAffinity;
      if (raw.maxPerHost) out.maxPerHost = raw.maxPerHost;
      if (raw.spread) out.spread = raw.spread;
      if (raw.hostLabels) out.hostLabels = raw.hostLabels;
      if (raw.preferLabels) out.preferLabels = raw.preferLabels;
      if (raw.near !== undefined) out.near = [groupName(raw.near)];
      if (raw.with && has.has(raw.with.group)) out.withGroups = [{ group: groupName(raw.with.group), scope: raw.with.scope }];
      // Avoiding a group it must run with is an error (tested elsewhere), not a placement.
      if (raw.avoid && !(raw.with && raw.with.group === raw.avoid.group) && raw.avoid.group !== g) out.avoidGroups = [{ group: groupName(raw.avoid.group), scope: raw.avoid.scope }];
      return out;
    };
    const groupRules = Object.fromEntries(rules.map((r, g) => [groupName(g), toRules(r as RawRules, g)]));
    const placedVms: PlacementVm[] = vms.map((v, i) => ({
      id: `vm${i}`,
      group: groupName(v.group),
      resources: { cpu: v.cpu, memoryMiB: v.mem * GiB, diskGiB: 10, gpu: v.gpu },
      rules: groupRules[groupName(v.group)]!,
    }));
    // Running VMs: their resources are part of their host's allocation.
    const allocatedHosts = hosts.map((h) => ({ ...h, allocated: { ...h.allocated } }));
    const running: PlacedVm[] = existing.map((e, i) => {
      const h = allocatedHosts[e.host]!;
      if (!h.instanceTypes) h.allocated = { cpu: h.allocated.cpu + 1, memoryMiB: h.allocated.memoryMiB + GiB, diskGiB: h.allocated.diskGiB + 10, gpu: 0 };
      return { id: `old${i}`, group: groupName(e.group), host: h.id };
    });
    return { hosts: allocatedHosts, vms: placedVms, existing: running, groupRules, seed, weights };
  });

/** `FC_RUNS=10` runs ten times as many cases (locally, with `FC_SEED=random`); CI runs the counts below. */
const scale = Number(process.env['FC_RUNS'] ?? 1);
const runs = (n: number) => Math.round(n * scale);
const timeout = 30_000 * Math.max(1, scale);

describe('place (property)', () => {
  it('never breaks a hard rule, accounts for every VM, and explains every unplaced one by every host', () => {
    fc.assert(
      fc.property(instanceArb, (request) => {
        const result = place(request);
        expect(validatePlacement(request, result)).toEqual([]);
        for (const u of result.unplaced) expect(Object.values(u.reasons).reduce((s, n) => s + n, 0)).toBe(request.hosts.length);
        for (const [id, e] of Object.entries(result.explanations)) {
          expect(e.host).toBe(result.assignments[id]);
          if (e.eligibleHosts !== undefined) expect(e.eligibleHosts).toBeGreaterThan(0);
        }
        expect(Object.keys(result.assignments).length + result.unplaced.length).toBe(request.vms.length);
      }),
      { numRuns: runs(300) },
    );
  }, timeout);

  it('is deterministic, whatever the order of hosts and VMs', () => {
    fc.assert(
      fc.property(instanceArb, (request) => {
        const a = place(request);
        const b = place({ ...request, hosts: [...request.hosts].reverse(), vms: [...request.vms].reverse() });
        expect(JSON.stringify(b)).toBe(JSON.stringify(a));
      }),
      { numRuns: runs(100) },
    );
  }, timeout);

  it('rebalance keeps every hard rule and moves only within a provider', () => {
    fc.assert(
      fc.property(instanceArb, fc.constantFrom('consolidate', 'balance', 'drain'), (request, kind) => {
        // Place first, then treat the placement as the running fleet.
        const result = place({ ...request, alternatives: false });
        const hostById = new Map(request.hosts.map((h) => [h.id, h]));
        const vms = request.vms.filter((v) => result.assignments[v.id]);
        const hosts = request.hosts.map((h) => {
          const mine = vms.filter((v) => result.assignments[v.id] === h.id);
          return {
            ...h,
            allocated: {
              cpu: h.allocated.cpu + mine.reduce((s, v) => s + v.resources.cpu, 0),
              memoryMiB: h.allocated.memoryMiB + mine.reduce((s, v) => s + v.resources.memoryMiB, 0),
              diskGiB: h.allocated.diskGiB + mine.reduce((s, v) => s + v.resources.diskGiB, 0),
              gpu: h.allocated.gpu + mine.reduce((s, v) => s + v.resources.gpu, 0),
            },
          };
        });
        const target =
          kind === 'drain' ? { kind, hosts: [...new Set(vms.map((v) => result.assignments[v.id]!))].slice(0, 1) } : kind === 'consolidate' ? { kind } : { kind };
        const out = rebalance({
          hosts,
          vms: [
            ...vms.map((v) => ({ id: v.id, group: v.group, host: result.assignments[v.id]!, resources: v.resources, ...(v.rules ? { rules: v.rules } : {}) })),
            // The VMs that were running already stay where they are.
            ...(request.existing ?? []).map((e) => ({ ...e, resources: { cpu: 1, memoryMiB: GiB, diskGiB: 10, gpu: 0 }, movable: false })),
          ],
          target,
          ...(request.groupRules ? { groupRules: request.groupRules } : {}),
        });
        for (const m of out.migrations) expect(hostById.get(m.from)!.provider).toBe(hostById.get(m.to)!.provider);
        // The moved VMs, as new placements onto the hosts without them, must meet every rule.
        const moved = new Set(out.migrations.map((m) => m.vm));
        const stay = vms.filter((v) => !moved.has(v.id));
        const freedHosts = hosts.map((h) => {
          const leaving = vms.filter((v) => moved.has(v.id) && result.assignments[v.id] === h.id);
          return {
            ...h,
            state: target.kind === 'drain' && target.hosts.includes(h.id) ? ('draining' as const) : h.state,
            allocated: {
              cpu: h.allocated.cpu - leaving.reduce((s, v) => s + v.resources.cpu, 0),
              memoryMiB: h.allocated.memoryMiB - leaving.reduce((s, v) => s + v.resources.memoryMiB, 0),
              diskGiB: h.allocated.diskGiB - leaving.reduce((s, v) => s + v.resources.diskGiB, 0),
              gpu: h.allocated.gpu - leaving.reduce((s, v) => s + v.resources.gpu, 0),
            },
          };
        });
        const check: PlacementRequest = {
          hosts: freedHosts,
          vms: vms.filter((v) => moved.has(v.id)),
          existing: [...(request.existing ?? []), ...stay.map((v) => ({ id: v.id, group: v.group, host: result.assignments[v.id]! }))],
          ...(request.groupRules ? { groupRules: request.groupRules } : {}),
        };
        const assignments = Object.fromEntries(out.migrations.map((m) => [m.vm, m.to]));
        expect(validatePlacement(check, { assignments, unplaced: [] }).filter((v) => v.rule !== 'spread' && v.rule !== 'with-groups')).toEqual([]);
      }),
      { numRuns: runs(150) },
    );
  }, timeout);
});
