import { describe, expect, it } from 'vitest';
import { apply, defaultMiddlewareStack, emptySummary, observe, planDrain, seededRandom, type MigrateStep, type Plan } from '@novacron/core';
import { FaultInjector } from '@novacron/provider-sim';
import { fleetOf, instantClock, openSim, reconcile, setOf, tempDir } from './support/sim.js';

const fleet = fleetOf({
  name: 'big',
  providers: { dc: { type: 'sim', generate: { count: 40, zones: ['a', 'b'], cpu: 256, memory: '1TiB' }, link: { bandwidthMbps: 10_000 } } },
  groups: {
    app: { count: 600, cpu: 2, memory: '4GiB', image: 'img', workload: { workingSet: '512MiB', dirtyRateMiBps: 50 } },
    hot: { count: 400, cpu: 2, memory: '8GiB', image: 'img', workload: { workingSet: '4GiB', dirtyRateMiBps: 900 }, migration: { postCopy: { allowed: true, afterRounds: 4 } } },
  },
});

describe('1,000 live migrations on the sim, with link faults and crashes', () => {
  it('leaves every VM on exactly one host, running, with host accounting exact', async () => {
    const dir = tempDir();
    let sim = openSim(fleet, dir);
    expect((await reconcile(fleet, sim)).result.ok).toBe(true);

    // Placement packed the VMs onto the first hosts; each moves to the host 20 along (empty),
    // and a seeded tenth of the moves lose their link midway.
    const random = seededRandom(42);
    const rules = [];
    for (let n = 1; n <= 1000; n++) if (random() < 0.1) rules.push({ operation: 'migrate', nth: n, stage: 'link', action: 'fail' as const });
    rules.push({ operation: 'migrate', nth: 500, stage: 'switch', action: 'crash' as const });
    sim.kill();
    sim = openSim(fleet, dir, new FaultInjector(rules));
    const observed = await observe(fleet, setOf(sim));
    const hosts = observed.hosts.map((h) => h.id).sort();
    const steps: MigrateStep[] = observed.vms.map((vm) => {
      const to = hosts[(hosts.indexOf(vm.host) + 20) % hosts.length]!;
      const policy = fleet.groups[vm.group]!.migration;
      return { id: `migrate:${vm.name}`, kind: 'migrate', vm: vm.name, group: vm.group, provider: 'dc', reason: 'test', dependsOn: [], ref: { name: vm.name, fleet: 'big', id: vm.id, host: vm.host }, from: vm.host, to, mode: 'live', policy, memoryMiB: vm.resources.memoryMiB };
    });
    expect(steps).toHaveLength(1000);
    const plan: Plan = { ...planDrain(fleet, observed, hosts[0]!), steps, summary: { ...emptySummary(), migrate: 1000 } };
    const result = await apply(plan, setOf(sim), {
      concurrency: 20,
      clock: instantClock,
      middleware: defaultMiddlewareStack({ retry: { clock: instantClock, maxAttempts: 3 }, breaker: false, tracing: false }),
    });
    const done = result.outcomes.filter((o) => o.status === 'done').length;
    // Link cuts are retried (a move cut on every attempt gives up, its VM still on the source); the crash is not.
    expect(result.outcomes.filter((o) => o.error && !/simulated crash|connection to the destination lost/.test(o.error.message)).map((o) => o.error!.message)).toEqual([]);
    expect(done).toBeGreaterThan(980);
    expect(rules.length).toBeGreaterThan(80);

    // The process "dies"; a new one recovers the VM whose migration was cut by the crash.
    sim.kill();
    sim = openSim(fleet, dir);
    const after = await observe(fleet, setOf(sim));
    expect(after.vms).toHaveLength(1000);
    expect(new Set(after.vms.map((v) => v.name)).size).toBe(1000);
    expect(after.vms.filter((v) => v.state !== 'running')).toEqual([]);
    for (const host of after.hosts) {
      const on = after.vms.filter((v) => v.host === host.id);
      expect(host.allocated.memoryMiB).toBe(on.reduce((s, v) => s + v.resources.memoryMiB, 0));
    }
    const moved = after.vms.filter((v) => v.host !== observed.vms.find((o) => o.name === v.name)!.host).length;
    expect(moved).toBe(done);
    expect(sim.orphanVolumes()).toEqual([]);
    for (const volume of sim.world.values('volumes')) expect(sim.world.get('vms', volume.vm)!.host).toBe(volume.host);
    await sim.close();
  }, 120_000);
});
