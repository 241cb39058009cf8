import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { host } from '../../../../bench/placement/instances.ts';
import { compileProblem } from './problem.js';
import { SolverState } from './state.js';
import type { PlacementRequest } from './types.js';

/** Locality as the scorer defines it, recomputed from scratch: what the running sum must equal. */
function localityFromScratch(s: SolverState): number {
  const p = s.p;
  let sum = 0;
  for (let v = 0; v < p.V; v++) {
    const h = s.assign[v]!;
    if (h < 0) continue;
    const g = p.groups[p.vmGroup[v]!]!;
    if (!g.near.length) continue;
    let best = 0;
    for (const t of g.near) {
      const self = t === g.index ? 1 : 0;
      if (s.hostCount[t]![h]! - self > 0) best = 1;
      else if (s.zoneCount[t]![p.zoneOf[h]!]! - self > 0) best = Math.max(best, 0.5);
    }
    sum += best;
  }
  return sum;
}

describe('SolverState locality', () => {
  it('keeps the locality of placed VMs exact through any adds and removes (near others, near itself, running VMs)', () => {
    const groups = ['a', 'b', 'c'];
    fc.assert(
      fc.property(
        fc.record({
          near: fc.tuple(...groups.map(() => fc.subarray(groups))),
          vms: fc.array(fc.constantFrom(...groups), { minLength: 1, maxLength: 12 }),
          existing: fc.array(fc.record({ group: fc.constantFrom(...groups), host: fc.integer({ min: 0, max: 5 }) }), { maxLength: 4 }),
          moves: fc.array(fc.record({ vm: fc.nat(), host: fc.integer({ min: 0, max: 5 }) }), { maxLength: 60 }),
        }),
        ({ near, vms, existing, moves }) => {
          const request: PlacementRequest = {
            hosts: Array.from({ length: 6 }, (_, i) => host(`h${i}`, { zone: `z${i % 3}` })),
            vms: vms.map((g, i) => ({ id: `v${i}`, group: g, resources: { cpu: 1, memoryMiB: 1024, diskGiB: 1, gpu: 0 } })),
            existing: existing.map((e, i) => ({ id: `old${i}`, group: e.group, host: `h${e.host}` })),
            groupRules: Object.fromEntries(groups.map((g, i) => [g, { near: near[i]! }])),
          };
          const p = compileProblem(request);
          const s = new SolverState(p);
          const byId = (id: string) => p.vms.findIndex((vm) => vm.id === id);
          for (const m of moves) {
            const v = byId(`v${m.vm % vms.length}`);
            const h = p.hostIndex.get(`h${m.host}`)!;
            if (s.assign[v]! >= 0) s.remove(v);
            else s.add(v, h);
            expect(s.locSum).toBeCloseTo(localityFromScratch(s), 9);
          }
          expect(s.nearPlaced).toBe([...s.assign].filter((h, v) => h >= 0 && p.groups[p.vmGroup[v]!]!.near.length > 0).length);
        },
      ),
      { numRuns: 200 },
    );
  });
});
