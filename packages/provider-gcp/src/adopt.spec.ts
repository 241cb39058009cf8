import { applyAdoption, observe, observeUnowned, parseFleet, plan, planAdoption, ProviderSet, type Clock, type GcpProviderConfig } from '@novacron/core';
import { afterEach, describe, expect, it } from 'vitest';
import { GcpProvider } from './GcpProvider.js';
import { FakeCompute } from './testing/fakeCompute.js';

const instantClock: Clock = { now: () => Date.now(), sleep: async (_ms, signal) => signal?.throwIfAborted() };
const DEBIAN = 'projects/debian-cloud/global/images/debian-12-bookworm-v20260110';

let fake: FakeCompute;
let provider: GcpProvider | undefined;
afterEach(async () => {
  await provider?.close();
  await fake?.close();
});

const fleet = parseFleet({
  name: 'shop',
  providers: { gcp: { type: 'gcp', project: 'novacron-test', zones: ['us-central1-a', 'us-central1-b'], images: { 'debian-12': DEBIAN } } },
  groups: { web: { count: 2, cpu: 2, memory: '8GiB', disk: 20, image: 'debian-12', labels: { tier: 'web', owner: 'team.blue' } } },
});

async function setup(pageSize = 500) {
  fake = await FakeCompute.start({ project: 'novacron-test', zones: ['us-central1-a', 'us-central1-b', 'us-central1-c'], pageSize });
  provider = new GcpProvider({ name: 'gcp', config: { ...(fleet.providers.gcp as GcpProviderConfig), endpoint: fake.endpoint }, clock: instantClock, authClient: fake.authClient(), pollMs: 1 });
  return { provider, providers: new ProviderSet(new Map([['gcp', provider]])) };
}

const slot = (index: number) => ({ ownership: { fleet: 'shop', group: 'web', index, specHash: 'x' }, image: 'debian-12', labels: {} });
const mutations = () => fake.requests.filter((r) => (r.method === 'POST' && !/\/operations\//.test(r.path)) || r.method === 'DELETE').map((r) => `${r.method} ${r.path.replace(/^.*\/zones\/[^/]+\//, '')}`);

describe('GcpProvider: adoption', () => {
  it('lists instances without the fleet label in the configured zones, every page, sized from the machine type and boot disk', async () => {
    const { provider } = await setup(2);
    fake.addInstance('us-central1-a', 'legacy-web', { machineType: 'e2-standard-2', diskGb: 20, sourceImage: DEBIAN, labels: { team: 'shop' } });
    fake.addInstance('us-central1-b', 'custom-box', { machineType: 'n2-custom-4-16384', diskGb: 30, sourceImage: 'projects/ubuntu-os-cloud/global/images/ubuntu-2404-noble-amd64-v20260301', status: 'TERMINATED' });
    fake.addInstance('us-central1-c', 'elsewhere', { sourceImage: DEBIAN });
    fake.addInstance('us-central1-a', 'theirs', { labels: { 'novacron-fleet': 'other', 'novacron-group': 'db', 'novacron-index': '0' } });
    fake.addInstance('us-central1-a', 'restored', { labels: { 'novacron-restored-from': 'snap-1', 'novacron-scratch': 'true' } });
    await provider.create({ name: 'shop-web-0', ownership: { fleet: 'shop', group: 'web', index: 0, specHash: 'x' }, host: 'gcp/us-central1-a', resources: { cpu: 2, memoryMiB: 8192, diskGiB: 20, gpu: 0 }, image: 'debian-12', labels: {}, instanceType: 'e2-standard-2' });

    const unowned = await provider.listUnowned();

    expect(fake.calls('GET', /aggregated\/instances/).length).toBeGreaterThanOrEqual(3); // 6 instances, 2 a page
    expect(unowned.map((v) => v.name).sort()).toEqual(['custom-box', 'legacy-web']);
    expect(unowned.find((v) => v.name === 'legacy-web')).toEqual({
      name: 'legacy-web', id: expect.any(String), provider: 'gcp', host: 'gcp/us-central1-a', zone: 'us-central1-a', state: 'running',
      resources: { cpu: 2, memoryMiB: 8192, diskGiB: 20, gpu: 0 }, image: 'debian-12', imageSource: `image ${DEBIAN}`,
      labels: { team: 'shop' }, addresses: [expect.objectContaining({ source: 'api' })],
    });
    expect(unowned.find((v) => v.name === 'custom-box')).toMatchObject({
      state: 'stopped', resources: { cpu: 4, memoryMiB: 16384, diskGiB: 30, gpu: 0 },
      imageSource: 'image projects/ubuntu-os-cloud/global/images/ubuntu-2404-noble-amd64-v20260301',
      imageSuggestion: { name: 'ubuntu-2404-noble-amd64-v20260301', config: 'projects/ubuntu-os-cloud/global/images/ubuntu-2404-noble-amd64-v20260301' },
    });
    expect(unowned.find((v) => v.name === 'custom-box')!.image).toBeUndefined();
  });

  it('adopts with setMetadata and setLabels (fingerprinted), never a stop or start; the next plan has nothing to change on it', async () => {
    const { provider, providers } = await setup();
    fake.addInstance('us-central1-b', 'legacy-web', { machineType: 'e2-standard-2', diskGb: 20, sourceImage: DEBIAN, labels: { team: 'shop' }, metadata: [{ key: 'startup-script', value: '#!/bin/sh\necho mine\n' }] });
    fake.addInstance('us-central1-a', 'too-big', { machineType: 'e2-standard-4', diskGb: 20, sourceImage: DEBIAN });

    const adoption = planAdoption(fleet, (await observe(fleet, providers)).vms, await observeUnowned(fleet, providers));
    expect(adoption.adoptions.map((a) => [a.vm.name, a.group, a.index])).toEqual([['legacy-web', 'web', 0]]);
    expect(adoption.skipped.map((s) => s.vm.name)).toEqual(['too-big']);
    const outcomes = await applyAdoption(fleet, adoption, providers);

    expect(outcomes.map((o) => o.status)).toEqual(['done']);
    expect(outcomes[0]!.vm).toMatchObject({ name: 'legacy-web', fleet: 'shop', group: 'web', index: 0, state: 'running', image: 'debian-12', host: 'gcp/us-central1-b', resources: { cpu: 2, memoryMiB: 8192, diskGiB: 20, gpu: 0 }, labels: { team: 'shop', tier: 'web', owner: 'team.blue' } });
    expect(mutations()).toEqual(['POST instances/legacy-web/setMetadata', 'POST disks/legacy-web/setLabels', 'POST instances/legacy-web/setLabels']);
    const instance = fake.instance('us-central1-b', 'legacy-web')!;
    expect(instance['status']).toBe('RUNNING');
    expect(instance['labels']).toEqual({ team: 'shop', tier: 'web', owner: 'team_blue', 'novacron-fleet': 'shop', 'novacron-group': 'web', 'novacron-index': '0', 'novacron-spec': expect.any(String) });
    // Someone else's metadata stays.
    expect((instance['metadata'] as { items: { key: string }[] }).items.map((i) => i.key)).toEqual(['startup-script', 'novacron-image', 'novacron-resources', 'novacron-labels']);
    expect(fake.disks.get('us-central1-b/legacy-web')!['labels']).toEqual({ 'novacron-fleet': 'shop', 'novacron-vm': 'legacy-web' });

    expect((await provider.listUnowned()).map((v) => v.name)).toEqual(['too-big']);
    const next = plan(fleet, await observe(fleet, providers));
    expect(next.steps.map((s) => `${s.kind} ${s.vm}`)).toEqual(['create shop-web-1']);
    expect(next.summary.unchanged).toBe(1);
  });

  it('adopting again into the same slot changes nothing; another fleet\'s, another slot\'s or a restored VM is a Conflict', async () => {
    const { provider } = await setup();
    fake.addInstance('us-central1-a', 'legacy', { diskGb: 20, sourceImage: DEBIAN });
    const first = await provider.adopt({ name: 'legacy', fleet: 'shop', host: 'gcp/us-central1-a' }, slot(1));
    expect(first).toMatchObject({ name: 'legacy', fleet: 'shop', group: 'web', index: 1 });
    const before = mutations().length;
    expect(await provider.adopt({ name: 'legacy', fleet: 'shop' }, slot(1))).toEqual(first);
    await expect(provider.adopt({ name: 'legacy', fleet: 'shop' }, slot(0))).rejects.toMatchObject({ code: 'Conflict', message: expect.stringMatching(/already owned \(fleet "shop", group "web", index 1\)/) });
    fake.addInstance('us-central1-b', 'theirs', { labels: { 'novacron-fleet': 'other', 'novacron-group': 'db', 'novacron-index': '0' } });
    await expect(provider.adopt({ name: 'theirs', fleet: 'shop' }, slot(0))).rejects.toMatchObject({ code: 'Conflict', message: expect.stringMatching(/already owned \(fleet "other"/) });
    fake.addInstance('us-central1-b', 'restored', { labels: { 'novacron-restored-from': 'snap-1' } });
    await expect(provider.adopt({ name: 'restored', fleet: 'shop' }, slot(0))).rejects.toMatchObject({ code: 'Conflict', message: expect.stringMatching(/restored by NovaCron/) });
    expect(mutations().length).toBe(before);
    await expect(provider.adopt({ name: 'nothing-here', fleet: 'shop' }, slot(0))).rejects.toMatchObject({ code: 'NotFound' });
  });
});
