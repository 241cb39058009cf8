import { describe, expect, it } from 'vitest';
import { observe, plan, systemClock, type ApplyEvent, type FleetSpec } from '@novacron/core';
import { FaultInjector, type FaultRule, type SimProvider } from '@novacron/provider-sim';
import { simFleet } from './support/fleets.js';
import { fleetOf, openSim, reconcile, setOf, tempDir } from './support/sim.js';

/**
 * The reconciler under injected faults at every step: whatever breaks and wherever, a
 * fresh run converges, with no duplicate VM, no leaked disk, and the VMs of others untouched.
 */
const base = fleetOf(simFleet());

type Scenario = { name: string; before?: FleetSpec; after: FleetSpec; prepare?: (sim: SimProvider) => void };
const withWeb = (patch: Record<string, unknown>) => fleetOf({ ...simFleet(), groups: { ...simFleet().groups, web: { ...simFleet().groups.web, ...patch } } });

const scenarios: { op: string; stages: string[]; scenario: Scenario }[] = [
  { op: 'create', stages: ['start', 'volume', 'define', 'end'], scenario: { name: 'a fresh fleet', after: base } },
  { op: 'delete', stages: ['start', 'volumes-deleted'], scenario: { name: 'a scale-down', before: base, after: withWeb({ count: 1 }) } },
  { op: 'resize', stages: ['start'], scenario: { name: 'a resize', before: base, after: withWeb({ cpu: 4, memory: '8GiB' }) } },
  { op: 'delete', stages: ['start', 'volumes-deleted'], scenario: { name: 'a replace (delete half)', before: base, after: withWeb({ image: 'debian-13' }) } },
  { op: 'create', stages: ['start', 'volume', 'define', 'end'], scenario: { name: 'a replace (create half)', before: base, after: withWeb({ image: 'debian-13' }) } },
  {
    op: 'resize',
    stages: ['start', 'nics', 'nics-detached'],
    scenario: {
      name: 'a NIC change (attach, detach, model)',
      before: withWeb({ nics: [{ network: 'default' }, { network: 'old' }] }),
      after: withWeb({ nics: [{ network: 'default', model: 'e1000e' }, { network: 'lan2' }] }),
    },
  },
  {
    op: 'start',
    stages: ['start'],
    scenario: { name: 'restarting stopped VMs', before: base, after: base, prepare: (sim) => stopAll(sim) },
  },
];
const actions: FaultRule['action'][] = ['fail', 'crash', 'hang', 'throttle', 'unreachable'];

function stopAll(sim: SimProvider) {
  for (const vm of [...sim.world.values('vms')]) if (vm.fleet === 'shop') sim.world.put('vms', vm.name, { ...vm, state: 'stopped' });
}

function snapshotForeign(sim: SimProvider) {
  return [...sim.world.values('vms')].filter((v) => v.fleet !== 'shop').map((v) => JSON.stringify(v)).sort();
}

async function expectConverged(fleet: FleetSpec, sim: SimProvider, foreign: string[]) {
  const observed = await observe(fleet, setOf(sim));
  const again = plan(fleet, observed);
  expect(again.steps.map((s) => s.id)).toEqual([]);
  for (const [group, spec] of Object.entries(fleet.groups)) {
    const vms = observed.vms.filter((v) => v.group === group);
    expect(vms).toHaveLength(spec.count);
    expect(new Set(vms.map((v) => v.index)).size).toBe(spec.count);
    for (const vm of vms) {
      expect(vm.state).toBe('running');
      expect(vm.image).toBe(spec.image);
      expect(vm.resources.cpu).toBe(spec.cpu);
    }
  }
  expect(sim.orphanVolumes()).toEqual([]);
  const volumes = [...sim.world.values('volumes')].filter((v) => v.fleet === 'shop');
  expect(volumes).toHaveLength(observed.vms.length);
  expect(snapshotForeign(sim)).toEqual(foreign);
}

describe('reconcile under injected faults', () => {
  for (const { op, stages, scenario } of scenarios) {
    for (const stage of stages) {
      for (const action of actions) {
        for (const nth of [1, 2]) {
          it(`${scenario.name}: ${action} in ${op} call ${nth} at ${stage}; a re-run converges`, async () => {
            const dir = tempDir();
            let sim = openSim(scenario.after, dir);
            sim.addForeignVm({ name: 'someone-elses-vm', host: 'host-1', resources: { cpu: 2, memoryMiB: 2048, diskGiB: 10, gpu: 0 } });
            sim.addForeignVm({ name: 'other-fleet-web-0', fleet: 'other', host: 'host-2', resources: { cpu: 2, memoryMiB: 2048, diskGiB: 10, gpu: 0 } });
            if (scenario.before) expect((await reconcile(scenario.before, sim)).result.ok).toBe(true);
            scenario.prepare?.(sim);
            const foreign = snapshotForeign(sim);
            sim.kill();

            // The faulty run, in a "new process".
            const faults = new FaultInjector([{ operation: op, nth, stage, action }]);
            sim = openSim(scenario.after, dir, faults);
            const controller = new AbortController();
            const hang = action === 'hang' ? setTimeout(() => controller.abort(), 30) : undefined;
            const first = await reconcile(scenario.after, sim, { signal: controller.signal });
            clearTimeout(hang);
            expect(faults.calls(op)).toBeGreaterThanOrEqual(nth);
            if (action === 'fail' || action === 'crash' || action === 'hang') expect(first.result.ok).toBe(false);
            else expect(first.result.ok).toBe(true); // retryable: the retry middleware mends it
            if (action === 'crash') sim.kill();
            else await sim.close();

            // A clean re-run converges.
            sim = openSim(scenario.after, dir);
            const second = await reconcile(scenario.after, sim);
            expect(second.result.outcomes.filter((o) => o.status !== 'done')).toEqual([]);
            await expectConverged(scenario.after, sim, foreign);
            await sim.close();
          });
        }
      }
    }
  }

  it('an apply aborted midway starts nothing more, and a re-run converges', async () => {
    const dir = tempDir();
    const fleet = fleetOf({ ...simFleet(), providers: { lab: { type: 'sim', generate: { count: 4, cpu: 64, memory: '512GiB' }, latency: { create: '20ms' } } }, groups: { web: { count: 40, cpu: 1, memory: '1GiB', image: 'debian-12' } } });
    let sim = openSim(fleet, dir, undefined, systemClock);
    // Abort once eight creates are done, while others are under way (each takes 20 ms).
    const controller = new AbortController();
    let finished = 0;
    const onEvent = (event: ApplyEvent) => {
      if (event.type === 'step.done' && ++finished === 8) controller.abort();
    };
    const first = await reconcile(fleet, sim, { signal: controller.signal, concurrency: 4, onEvent });
    expect(first.result.aborted).toBe(true);
    const done = first.result.outcomes.filter((o) => o.status === 'done').length;
    expect(done).toBeGreaterThanOrEqual(8);
    expect(done).toBeLessThanOrEqual(12); // at most the steps under way when it fired
    expect(first.result.outcomes.filter((o) => o.status === 'skipped').length).toBe(40 - done - first.result.outcomes.filter((o) => o.status === 'failed').length);
    sim.kill();
    sim = openSim(fleet, dir);
    expect((await reconcile(fleet, sim)).result.ok).toBe(true);
    await expectConverged(fleet, sim, []);
  });
});
