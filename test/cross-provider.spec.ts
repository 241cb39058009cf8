import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { apply, defaultMiddlewareStack, observe, parseFleet, plan, ProviderRegistry, type FleetSpecInput, type SimProviderConfig } from '@novacron/core';
import { providerModule as sim, SimProvider } from '@novacron/provider-sim';
import { instantClock, tempDir } from './support/sim.js';

/** Two datacenters; the group's allowed provider decides where its VMs live. */
const fleetOn = (provider: string): FleetSpecInput => ({
  name: 'mover',
  providers: {
    dc: { type: 'sim', generate: { count: 2, cpu: 32, memory: '64GiB' } },
    edge: { type: 'sim', generate: { count: 2, cpu: 32, memory: '64GiB', prefix: 'edge' } },
  },
  groups: { app: { count: 3, cpu: 2, memory: '4GiB', image: 'debian-12', placement: { providers: [provider] } } },
});

async function open(dir: string, faults?: string) {
  return new ProviderRegistry().register(sim).open(parseFleet(fleetOn('dc')), {
    cwd: dir,
    env: { NOVACRON_STATE_DIR: dir, ...(faults ? { NOVACRON_SIM_FAULTS: faults } : {}) },
    clock: instantClock,
  });
}

async function converge(input: FleetSpecInput, dir: string, faults?: string) {
  const fleet = parseFleet(input);
  const providers = await open(dir, faults);
  try {
    const p = plan(fleet, await observe(fleet, providers));
    const result = await apply(p, providers, { clock: instantClock, middleware: defaultMiddlewareStack({ retry: { clock: instantClock, maxAttempts: 1 }, tracing: false }) });
    return { plan: p, result, after: await observe(fleet, providers) };
  } finally {
    await providers.close();
  }
}

describe('moves between providers', () => {
  it('moves VMs with their disks when only the provider changes, and retires the source last', async () => {
    const dir = tempDir();
    expect((await converge(fleetOn('dc'), dir)).result.ok).toBe(true);
    const moved = await converge(fleetOn('edge'), dir);
    expect(moved.plan.steps.map((s) => s.kind)).toEqual(['migrate', 'migrate', 'migrate']);
    expect(moved.plan.steps[0]!.reason).toMatch(/provider dc → edge \[replace: provider "dc" is no longer allowed/);
    expect(moved.result.ok).toBe(true);
    expect(moved.after.vms.map((v) => `${v.name}@${v.provider}:${v.state}`).sort()).toEqual(['mover-app-0@edge:running', 'mover-app-1@edge:running', 'mover-app-2@edge:running']);
    const again = await converge(fleetOn('edge'), dir);
    expect(again.plan.steps).toEqual([]);
    expect(readdirSync(join(dir, 'sim-exports', 'dc'))).toEqual([]); // exported disks are removed once imported
  });

  it('keeps the VM running on the source when the import fails', async () => {
    const dir = tempDir();
    await converge(fleetOn('dc'), dir);
    const failed = await converge(fleetOn('edge'), dir, '[{"operation":"importImage","nth":1,"action":"fail"}]');
    expect(failed.result.ok).toBe(false);
    const error = failed.result.outcomes.find((o) => o.error)!.error!;
    expect(error.message).toMatch(/moving mover-app-\d from dc to edge failed: injected fail .*; the VM stays on dc/);
    const vms = failed.after.vms.map((v) => `${v.name}@${v.provider}:${v.state}`).sort();
    expect(vms.filter((v) => v.includes('@dc'))).toHaveLength(1);
    expect(vms.every((v) => v.endsWith(':running'))).toBe(true);
    expect(new Set(failed.after.vms.map((v) => v.name)).size).toBe(3);
  });

  it('keeps the source when the new VM runs on the target but its guest never comes up, and leaves nothing there', async () => {
    const dir = tempDir();
    await converge(fleetOn('dc'), dir);
    // Every VM's disk "does not boot" on edge: edge reports it running, its guest never comes up.
    const failed = await converge(fleetOn('edge'), dir, '[{"operation":"awaitReady","stage":"guest","action":"fail","message":"no boot device"}]');
    expect(failed.plan.steps.map((s) => s.kind)).toEqual(['migrate', 'migrate', 'migrate']);
    expect(failed.result.ok).toBe(false);
    const errors = failed.result.outcomes.flatMap((o) => (o.error ? [o.error] : []));
    expect(errors).toHaveLength(3);
    for (const error of errors) {
      expect(error.message).toMatch(/moving mover-app-\d from dc to edge failed: mover-app-\d runs on edge but did not come up: the guest of mover-app-\d did not come up within 300 s \(no boot device\); the VM stays on dc/);
    }
    expect(failed.after.vms.map((v) => `${v.name}@${v.provider}:${v.state}`).sort()).toEqual(['mover-app-0@dc:running', 'mover-app-1@dc:running', 'mover-app-2@dc:running']);
    const edge = SimProvider.open({ name: 'edge', config: parseFleet(fleetOn('edge')).providers['edge'] as SimProviderConfig, stateDir: dir });
    try {
      expect([...edge.world.values('vms')]).toEqual([]);
      expect([...edge.world.values('volumes')]).toEqual([]);
    } finally {
      await edge.close();
    }
    // Once the disk boots there, the same plan moves them.
    const moved = await converge(fleetOn('edge'), dir);
    expect(moved.result.ok).toBe(true);
    expect(moved.after.vms.map((v) => `${v.name}@${v.provider}:${v.state}`).sort()).toEqual(['mover-app-0@edge:running', 'mover-app-1@edge:running', 'mover-app-2@edge:running']);
  });
});
