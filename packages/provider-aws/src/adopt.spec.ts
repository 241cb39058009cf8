import { CreateTagsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import { applyAdoption, observe, observeUnowned, parseFleet, plan, planAdoption, ProviderSet, type AwsProviderConfig, type Clock } from '@novacron/core';
import { mockClient } from 'aws-sdk-client-mock';
import { describe, expect, it } from 'vitest';
import { AwsProvider } from './AwsProvider.js';
import { FakeEc2 } from './testing/fakeEc2.js';

const instantClock: Clock = { now: () => Date.now(), sleep: async (_ms, signal) => signal?.throwIfAborted() };
const AMI = 'ami-0123456789abcdef0';
const UBUNTU = 'ami-0000000000000ub01';
const OTHER = 'ami-0000000000000aaaa';

const fleet = parseFleet({
  name: 'shop',
  providers: {
    aws: { type: 'aws', region: 'us-east-1', zones: ['us-east-1a', 'us-east-1b'], images: { 'debian-12': AMI, ubuntu: '099720109477/ubuntu/images/hvm-ssd/ubuntu-noble-*' } },
  },
  groups: { web: { count: 2, cpu: 2, memory: '8GiB', disk: 20, image: 'debian-12', labels: { tier: 'web' } } },
});

function withFake(options: { pageSize?: number } = {}) {
  const fake = new FakeEc2({
    pageSize: options.pageSize ?? 1000,
    images: [
      { ImageId: AMI, Name: 'debian-12-amd64-20260101', RootDeviceName: '/dev/xvda', State: 'available', OwnerId: '136693071363', CreationDate: '2026-01-01T00:00:00.000Z' },
      { ImageId: UBUNTU, Name: 'ubuntu/images/hvm-ssd/ubuntu-noble-24.04-amd64-server-20260301', RootDeviceName: '/dev/sda1', State: 'available', OwnerId: '099720109477', CreationDate: '2026-03-01T00:00:00.000Z' },
      { ImageId: OTHER, Name: 'Team Base Image 7', RootDeviceName: '/dev/xvda', State: 'available', OwnerId: '444455556666', CreationDate: '2026-02-01T00:00:00.000Z' },
    ],
  });
  const ec2 = new EC2Client({ region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } });
  const s3 = new S3Client({ region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } });
  const mock = mockClient(ec2);
  mock.send.callsFake(fake.send);
  const provider = new AwsProvider({ name: 'aws', config: fleet.providers.aws as AwsProviderConfig, clock: instantClock, clients: { ec2: () => ec2, s3: () => s3 }, pollMs: 1, batchWindowMs: 0 });
  return { fake, provider, mock, providers: new ProviderSet(new Map([['aws', provider]])) };
}

const slot = (index: number, fleetName = 'shop') => ({ ownership: { fleet: fleetName, group: 'web', index, specHash: 'x' }, image: 'debian-12', labels: {} });

describe('AwsProvider: adoption', () => {
  it('lists live instances without the fleet tag in the configured zones, every page, sized from the catalog and root volume', async () => {
    const { fake, provider } = withFake({ pageSize: 2 });
    const legacy = fake.addInstance({ type: 'm6a.large', diskGiB: 20, tags: { Name: 'legacy-web', team: 'shop' } });
    const noName = fake.addInstance({ type: 'm6a.xlarge', zone: 'us-east-1b', imageId: UBUNTU, diskGiB: 30, state: 'stopped' });
    const odd = fake.addInstance({ type: 'm6a.large', imageId: OTHER, diskGiB: 20, tags: { Name: 'odd' } });
    fake.addInstance({ type: 'm6a.large', tags: { Name: 'elsewhere' }, zone: 'us-east-1c' });
    fake.addInstance({ type: 'm6a.large', tags: { Name: 'gone' }, state: 'terminated' });
    fake.addInstance({ type: 'm6a.large', tags: { Name: 'theirs', 'novacron:fleet': 'other', 'novacron:group': 'db', 'novacron:index': '0' } });
    fake.addInstance({ type: 'm6a.large', tags: { Name: 'restored', 'novacron:fleet': 'shop', 'novacron:restored-from': 'snap-1' } });
    fake.addInstance({ type: 'm6a.large', tags: { Name: 'scratch-old', 'novacron:restored-from': 'snap-2', 'novacron:scratch': 'true' } });
    await provider.create({ name: 'shop-web-0', ownership: { fleet: 'shop', group: 'web', index: 0, specHash: 'x' }, host: 'aws/us-east-1a', resources: { cpu: 2, memoryMiB: 8192, diskGiB: 20, gpu: 0 }, image: 'debian-12', labels: {} });
    const pagesBefore = fake.count('DescribeInstances');

    const unowned = await provider.listUnowned();

    expect(fake.count('DescribeInstances') - pagesBefore).toBeGreaterThanOrEqual(4); // 8 live instances in the zones, 2 a page
    expect(unowned.map((v) => v.name).sort()).toEqual([noName, 'legacy-web', 'odd'].sort());
    expect(unowned.find((v) => v.id === legacy)).toEqual({
      name: 'legacy-web', id: legacy, provider: 'aws', host: 'aws/us-east-1a', zone: 'us-east-1a', state: 'running',
      resources: { cpu: 2, memoryMiB: 8192, diskGiB: 20, gpu: 0 }, image: 'debian-12', imageSource: `AMI ${AMI} (debian-12-amd64-20260101)`,
      labels: { team: 'shop' }, addresses: [{ address: expect.any(String), source: 'api', interface: 'private' }],
    });
    // An owner/name-pattern image entry the AMI matches names it too.
    expect(unowned.find((v) => v.id === noName)).toMatchObject({ name: noName, state: 'stopped', host: 'aws/us-east-1b', image: 'ubuntu', resources: { cpu: 4, memoryMiB: 16384, diskGiB: 30, gpu: 0 } });
    // An AMI the config does not name: left to --group, with an entry to suggest for a new fleet file.
    const oddVm = unowned.find((v) => v.id === odd)!;
    expect(oddVm.image).toBeUndefined();
    expect(oddVm).toMatchObject({ imageSource: `AMI ${OTHER} (Team Base Image 7)`, imageSuggestion: { name: 'team-base-image-7', config: OTHER } });
  });

  it('adopts by tagging the instance and its volumes, with no stop, start or terminate; the next plan has nothing to change on it', async () => {
    const { fake, provider, providers, mock } = withFake();
    const legacy = fake.addInstance({ type: 'm6a.large', diskGiB: 20, tags: { Name: 'legacy-web', team: 'shop' }, volumeTags: { Name: 'legacy-root' } });
    fake.addInstance({ type: 'm6a.large', diskGiB: 50, tags: { Name: 'too-big' } });

    const adoption = planAdoption(fleet, (await observe(fleet, providers)).vms, await observeUnowned(fleet, providers));
    expect(adoption.adoptions.map((a) => [a.vm.name, a.group, a.index])).toEqual([['legacy-web', 'web', 0]]);
    expect(adoption.skipped.map((s) => [s.vm.name, s.reason])).toEqual([['too-big', 'group "web": size differs (diskGiB 50 ≠ 20)']]);
    const outcomes = await applyAdoption(fleet, adoption, providers);

    expect(outcomes.map((o) => o.status)).toEqual(['done']);
    expect(outcomes[0]!.vm).toMatchObject({ name: 'legacy-web', id: legacy, fleet: 'shop', group: 'web', index: 0, state: 'running', image: 'debian-12', resources: { cpu: 2, memoryMiB: 8192, diskGiB: 20, gpu: 0 }, labels: { team: 'shop', tier: 'web' } });
    for (const api of ['StopInstances', 'StartInstances', 'TerminateInstances', 'RunInstances', 'ModifyInstanceAttribute', 'RebootInstances']) expect(fake.count(api)).toBe(0);
    const instanceTags = Object.fromEntries(fake.instances.get(legacy)!.tags);
    expect(instanceTags).toMatchObject({ Name: 'legacy-web', team: 'shop', tier: 'web', 'novacron:fleet': 'shop', 'novacron:group': 'web', 'novacron:index': '0', 'novacron:image': 'debian-12', 'novacron:resources': '2/8192/20/0' });
    expect(instanceTags['novacron:spec-hash']).toMatch(/.+/);
    // The volume: NovaCron's tags, its own name kept; tagged before the instance.
    expect(Object.fromEntries(fake.instances.get(legacy)!.volumes[0]!.tags)).toMatchObject({ Name: 'legacy-root', 'novacron:fleet': 'shop', 'novacron:group': 'web', 'novacron:index': '0' });
    const tagCalls = mock.commandCalls(CreateTagsCommand).map((c) => c.args[0].input.Resources);
    expect(tagCalls).toEqual([[fake.instances.get(legacy)!.volumes[0]!.volumeId], [legacy]]);

    expect((await provider.listUnowned()).map((v) => v.name)).toEqual(['too-big']);
    const next = plan(fleet, await observe(fleet, providers));
    expect(next.steps.map((s) => `${s.kind} ${s.vm}`)).toEqual(['create shop-web-1']);
    expect(next.summary.unchanged).toBe(1);
  });

  it('adopting again into the same slot changes nothing; another fleet\'s, another slot\'s or a restored VM is a Conflict', async () => {
    const { fake, provider } = withFake();
    const legacy = fake.addInstance({ type: 'm6a.large', diskGiB: 20 });
    const first = await provider.adopt({ name: legacy, fleet: 'shop', id: legacy }, slot(1));
    expect(first).toMatchObject({ name: legacy, fleet: 'shop', group: 'web', index: 1 });
    const tagged = fake.count('CreateTags');
    expect(await provider.adopt({ name: legacy, fleet: 'shop', id: legacy }, slot(1))).toEqual(first);
    expect(fake.count('CreateTags')).toBe(tagged);
    await expect(provider.adopt({ name: legacy, fleet: 'shop', id: legacy }, slot(0))).rejects.toMatchObject({ code: 'Conflict', message: expect.stringMatching(/already owned \(fleet "shop", group "web", index 1\)/) });

    const theirs = fake.addInstance({ type: 'm6a.large', tags: { Name: 'theirs', 'novacron:fleet': 'other', 'novacron:group': 'db', 'novacron:index': '0' } });
    await expect(provider.adopt({ name: 'theirs', fleet: 'shop', id: theirs }, slot(0))).rejects.toMatchObject({ code: 'Conflict', message: expect.stringMatching(/already owned \(fleet "other"/) });
    const restored = fake.addInstance({ type: 'm6a.large', tags: { Name: 'restored', 'novacron:fleet': 'shop', 'novacron:restored-from': 'snap-1' } });
    await expect(provider.adopt({ name: 'restored', fleet: 'shop', id: restored }, slot(0))).rejects.toMatchObject({ code: 'Conflict', message: expect.stringMatching(/restored by NovaCron/) });
    expect(Object.fromEntries(fake.instances.get(theirs)!.tags)['novacron:fleet']).toBe('other');
    expect(fake.count('CreateTags')).toBe(tagged);
  });

  it('finds the VM by name without an id, and refuses one that is gone or outside the configured zones', async () => {
    const { fake, provider } = withFake();
    const legacy = fake.addInstance({ type: 'm6a.large', diskGiB: 20, tags: { Name: 'legacy' } });
    expect(await provider.adopt({ name: 'legacy', fleet: 'shop' }, slot(0))).toMatchObject({ id: legacy, fleet: 'shop' });
    const gone = fake.addInstance({ type: 'm6a.large', tags: { Name: 'gone' }, state: 'terminated' });
    await expect(provider.adopt({ name: 'gone', fleet: 'shop', id: gone }, slot(1))).rejects.toMatchObject({ code: 'NotFound' });
    const far = fake.addInstance({ type: 'm6a.large', tags: { Name: 'far' }, zone: 'us-east-1c' });
    await expect(provider.adopt({ name: 'far', fleet: 'shop', id: far }, slot(1))).rejects.toMatchObject({ code: 'NotFound' });
    expect(fake.instances.get(far)!.tags.has('novacron:fleet')).toBe(false);
  });
});
