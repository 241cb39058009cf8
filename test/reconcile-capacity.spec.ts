import { describe, expect, it } from 'vitest';
import { CapacityMemory, observe, plan, type ApplyEvent, type CreateStep, type FleetSpecInput } from '@novacron/core';
import { FaultInjector } from '@novacron/provider-sim';
import { fleetOf, instantClock, openSim, reconcile, setOf, tempDir } from './support/sim.js';

/**
 * The core's reconcile when hosts run short of capacity: a create refused with
 * CapacityExceeded is placed again, in the same apply, on a host the rules still allow;
 * when none is left within the rounds allowed, the VM is reported unplaced with why.
 */
function capFleet(hosts: number, web: Partial<FleetSpecInput['groups'][string]> = {}) {
  return fleetOf({
    name: 'cap',
    providers: {
      lab: {
        type: 'sim',
        hosts: Array.from({ length: hosts }, (_, i) => ({ name: `h${i + 1}`, zone: i % 2 === 0 ? 'zone-a' : 'zone-b', cpu: 16, memory: '64GiB', pricePerHour: 0.5 })),
      },
    },
    groups: { web: { count: 2, cpu: 2, memory: '4GiB', image: 'debian-12', placement: { antiAffinity: 'host' }, ...web } },
  });
}

/** Where the first plan puts a VM: the host the test then makes short of capacity. */
async function plannedHost(fleet: ReturnType<typeof capFleet>, vm: string): Promise<string> {
  const sim = openSim(fleet, tempDir());
  const first = plan(fleet, await observe(fleet, setOf(sim)));
  return (first.steps.find((s) => s.vm === vm) as CreateStep).host.split('/')[1]!;
}

describe('reconcile: capacity shortages are placed again within one apply', () => {
  it('re-places a VM refused by its host on another host, keeping anti-affinity, and a second run has nothing to do', async () => {
    const fleet = capFleet(3);
    const short = await plannedHost(fleet, 'cap-web-0');
    const faults = new FaultInjector([{ operation: 'create', host: short, action: 'capacity' }]);
    const sim = openSim(fleet, tempDir(), faults);
    const events: ApplyEvent[] = [];

    const { result } = await reconcile(fleet, sim, { onEvent: (e) => events.push(e) });

    expect(result.ok).toBe(true);
    expect(result.unplaced).toEqual([]);
    expect(result.rounds.map((r) => r.shortages.map((s) => `${s.vm}@${s.host}`))).toEqual([[`cap-web-0@lab/${short}`], []]);
    expect(result.outcomes.map((o) => `${o.step.id} ${o.status}`).sort()).toEqual(['create:cap-web-0 done', 'create:cap-web-1 done']);
    const replan = events.filter((e) => e.type === 'capacity.replan');
    expect(replan).toHaveLength(1);
    expect(replan[0]).toMatchObject({ round: 2, maxRounds: 3, message: expect.stringMatching(new RegExp(`^${short} has no room for cap-web-0: placing it again \\(h\\d\\)$`)) });

    const observed = await observe(fleet, setOf(sim));
    const hosts = observed.vms.map((v) => v.host);
    expect(observed.vms.map((v) => v.state)).toEqual(['running', 'running']);
    expect(hosts).not.toContain(`lab/${short}`);
    expect(new Set(hosts).size).toBe(2); // anti-affinity held through the re-placement
    expect(sim.orphanVolumes()).toEqual([]);
    expect(plan(fleet, observed).steps).toEqual([]);
    expect((await reconcile(fleet, sim)).result.rounds.map((r) => r.plan.steps.length)).toEqual([0]);
  });

  it('reports the VM unplaced, with the host that refused it, when no other host the rules allow has room', async () => {
    const fleet = capFleet(2);
    const short = await plannedHost(fleet, 'cap-web-0');
    const sim = openSim(fleet, tempDir(), new FaultInjector([{ operation: 'create', host: short, action: 'capacity' }]));
    const events: ApplyEvent[] = [];

    const { result } = await reconcile(fleet, sim, { onEvent: (e) => events.push(e) });

    expect(result.ok).toBe(false);
    expect(result.rounds).toHaveLength(1);
    expect(result.unplaced).toEqual([{ id: 'cap-web-0', reasons: expect.objectContaining({ capacity: 1 }), message: expect.stringMatching(new RegExp(`^cap-web-0: no capacity \\(${short} has no room for cap-web-0\\); nowhere else fits`)) }]);
    expect(result.outcomes.find((o) => o.step.vm === 'cap-web-0')).toMatchObject({ status: 'failed', error: { code: 'CapacityExceeded' } });
    expect(events.filter((e) => e.type === 'capacity.unplaced').map((e) => e.type === 'capacity.unplaced' && e.vm)).toEqual(['cap-web-0']);
    expect((await observe(fleet, setOf(sim))).vms.map((v) => v.name)).toEqual(['cap-web-1']);
    expect(sim.orphanVolumes()).toEqual([]);
  });

  it('stops after maxRounds when every host it is placed on runs short, and reports what it tried', async () => {
    const fleet = capFleet(5, { count: 1 });
    const faults = new FaultInjector([{ operation: 'create', action: 'capacity' }]);
    const sim = openSim(fleet, tempDir(), faults);
    const capacity = new CapacityMemory(instantClock, 60_000);

    const { result } = await reconcile(fleet, sim, { capacity });

    expect(faults.calls('create')).toBe(3);
    expect(result.ok).toBe(false);
    expect(result.rounds).toHaveLength(3);
    const tried = result.rounds.map((r) => r.shortages[0]!.host);
    expect(new Set(tried).size).toBe(3);
    expect(result.unplaced).toEqual([{ id: 'cap-web-0', reasons: { capacity: 3 }, message: expect.stringMatching(/^cap-web-0: no capacity \(h\d has no room for cap-web-0; h\d .*; h\d .*\); no capacity left to try within 3 round\(s\)$/) }]);
    // The memory passed in keeps the refusing hosts: the next reconcile starts elsewhere.
    expect(tried.every((h) => capacity.isExhausted(h, '*'))).toBe(true);
    faults.clear();
    const next = await reconcile(fleet, sim, { capacity });
    expect(next.result.ok).toBe(true);
    expect(tried).not.toContain((next.plan.steps[0] as CreateStep).host);
  });

  it('an abort stops it between rounds; a quota is not a shortage; a VM that fits nowhere changes nothing', async () => {
    const fleet = capFleet(3);
    const short = await plannedHost(fleet, 'cap-web-0');
    const faults = new FaultInjector([{ operation: 'create', host: short, action: 'capacity' }]);
    const sim = openSim(fleet, tempDir(), faults);
    const controller = new AbortController();
    const aborted = await reconcile(fleet, sim, { signal: controller.signal, onEvent: (e) => e.type === 'capacity.replan' && controller.abort(new Error('stop')) });
    expect(aborted.result).toMatchObject({ ok: false, aborted: true });
    expect(faults.calls('create')).toBe(2);
    expect((await observe(fleet, setOf(sim))).vms).toHaveLength(1);

    const quota = capFleet(3, { count: 1 });
    const qsim = openSim(quota, tempDir(), new FaultInjector([{ operation: 'create', action: 'capacity', message: 'a quota is used up' }]));
    const q = await reconcile(quota, qsim);
    expect(q.result.rounds).toHaveLength(1);
    expect(q.result.outcomes[0]).toMatchObject({ status: 'failed', error: { code: 'CapacityExceeded' } });

    const huge = capFleet(3, { memory: '128GiB' });
    const hsim = openSim(huge, tempDir());
    await expect(reconcile(huge, hsim)).rejects.toMatchObject({ code: 'InvalidInput' });
    expect([...hsim.world.values('vms')]).toEqual([]);
  });
});
