import { describe, expect, it } from 'vitest';
import { applyAdoption, observe, observeUnowned, parseFleet, plan, planAdoption, ProviderSet, type SimProviderConfig } from '@novacron/core';
import { SimProvider } from './index.js';

const fleet = parseFleet({
  name: 'f',
  providers: { lab: { type: 'sim', hosts: [{ name: 'h1', cpu: 8, memory: '16GiB', disk: 500 }, { name: 'h2', cpu: 8, memory: '16GiB', disk: 500 }] } },
  groups: { web: { count: 2, cpu: 1, memory: 1024, disk: 10, image: 'img', labels: { tier: 'web' } } },
});

describe('SimProvider: adoption', () => {
  it('lists VMs no fleet owns, adopts them without a restart, and the next plan has nothing to do for them', async () => {
    const sim = SimProvider.open({ name: 'lab', config: fleet.providers.lab as SimProviderConfig });
    const providers = new ProviderSet(new Map([['lab', sim]]));
    const before = sim.addForeignVm({ name: 'legacy-a', host: 'h2', resources: { cpu: 1, memoryMiB: 1024, diskGiB: 10, gpu: 0 }, image: 'img' });
    sim.addForeignVm({ name: 'other', host: 'h1', fleet: 'someone-else', resources: { cpu: 1, memoryMiB: 1024, diskGiB: 10, gpu: 0 }, image: 'img' });
    sim.addForeignVm({ name: 'too-big', host: 'h1', resources: { cpu: 4, memoryMiB: 1024, diskGiB: 10, gpu: 0 }, image: 'img' });

    const unowned = await observeUnowned(fleet, providers);
    expect(unowned.map((v) => v.name).sort()).toEqual(['legacy-a', 'too-big']);
    const adoption = planAdoption(fleet, (await observe(fleet, providers)).vms, unowned);
    expect(adoption.adoptions.map((a) => [a.vm.name, a.group, a.index])).toEqual([['legacy-a', 'web', 0]]);
    expect(adoption.skipped.map((s) => s.vm.name)).toEqual(['too-big']);

    const outcomes = await applyAdoption(fleet, adoption, providers);
    expect(outcomes.map((o) => o.status)).toEqual(['done']);
    expect(outcomes[0]!.vm).toMatchObject({ name: 'legacy-a', fleet: 'f', group: 'web', index: 0, id: before.id, state: 'running', host: 'lab/h2', labels: { tier: 'web' } });
    // Adopting again is a no-op; another fleet's VM is refused.
    expect((await sim.adopt({ name: 'legacy-a', fleet: 'f' }, { ownership: { fleet: 'f', group: 'web', index: 0, specHash: 'x' }, image: 'img', labels: {} })).id).toBe(before.id);
    await expect(sim.adopt({ name: 'other', fleet: 'f' }, { ownership: { fleet: 'f', group: 'web', index: 1, specHash: 'x' }, image: 'img', labels: {} })).rejects.toThrow(/already owned by fleet "someone-else"/);

    const next = plan(fleet, await observe(fleet, providers));
    expect(next.steps.map((s) => `${s.kind} ${s.vm}`)).toEqual(['create f-web-1']);
    expect(next.summary.unchanged).toBe(1);
  });
});
