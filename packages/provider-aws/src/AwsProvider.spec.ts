import {
  CreateSnapshotsCommand,
  CreateTagsCommand,
  DescribeAvailabilityZonesCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeInstanceStatusCommand,
  DescribeInstanceTypeOfferingsCommand,
  DescribeSnapshotsCommand,
  EC2Client,
  ModifyInstanceAttributeCommand,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  type Instance,
  type InstanceStateName,
} from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import {
  awsProviderConfig,
  defaultMiddlewareStack,
  NovaCronError,
  type Clock,
  type CreateVmRequest,
  type VmRecord,
} from '@novacron/core';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { AwsProvider, type AwsProviderOptions } from './AwsProvider.js';
import { ec2Error, FakeEc2 } from './testing/fakeEc2.js';

/** Sleeps return at once: waiters and backoff run without waiting. */
const instantClock: Clock = { now: () => Date.now(), sleep: async (_ms, signal) => signal?.throwIfAborted() };

const AMI = 'ami-0123456789abcdef0';
const image = { ImageId: AMI, Name: 'debian-12-amd64-20260101', RootDeviceName: '/dev/xvda', State: 'available' as const, CreationDate: '2026-01-01T00:00:00.000Z' };

function setup(config: Record<string, unknown> = {}, options: Partial<AwsProviderOptions> = {}) {
  const ec2 = new EC2Client({ region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } });
  const s3 = new S3Client({ region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } });
  const mock = mockClient(ec2);
  const logs: string[] = [];
  const provider = new AwsProvider({
    name: 'aws',
    config: awsProviderConfig.parse({ type: 'aws', region: 'us-east-1', images: { 'debian-12': AMI }, ...config }),
    clock: instantClock,
    clients: { ec2: () => ec2, s3: () => s3 },
    pollMs: 1,
    batchWindowMs: 0,
    log: (m) => logs.push(m),
    ...options,
  });
  return { provider, mock, ec2, s3, logs };
}

/** An instance as DescribeInstances returns it. */
function instance(id: string, name: string, state: InstanceStateName, extra: Partial<Instance> = {}): Instance {
  return {
    InstanceId: id,
    ImageId: AMI,
    InstanceType: 'm6a.large',
    State: { Name: state, Code: { pending: 0, running: 16, 'shutting-down': 32, terminated: 48, stopping: 64, stopped: 80 }[state] },
    Placement: { AvailabilityZone: 'us-east-1a', Tenancy: 'default' },
    PrivateIpAddress: '10.0.1.23',
    LaunchTime: new Date('2026-11-27T10:00:00Z'),
    RootDeviceName: '/dev/xvda',
    BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { VolumeId: `vol-${id.slice(2)}`, Status: 'attached', DeleteOnTermination: true } }],
    Tags: [
      { Key: 'Name', Value: name },
      { Key: 'novacron:fleet', Value: 'shop' },
      { Key: 'novacron:group', Value: 'web' },
      { Key: 'novacron:index', Value: name.split('-').at(-1)! },
      { Key: 'novacron:spec-hash', Value: 'abc123' },
      { Key: 'novacron:image', Value: 'debian-12' },
      { Key: 'novacron:resources', Value: '2/4096/20/0' },
      { Key: 'tier', Value: 'web' },
    ],
    ...extra,
  };
}

const reservations = (...instances: Instance[]) => ({ Reservations: instances.map((i) => ({ ReservationId: `r-${i.InstanceId}`, Instances: [i] })) });

function createRequest(overrides: Partial<CreateVmRequest> = {}): CreateVmRequest {
  return {
    name: 'shop-web-0',
    ownership: { fleet: 'shop', group: 'web', index: 0, specHash: 'abc123' },
    host: 'aws/us-east-1a',
    resources: { cpu: 2, memoryMiB: 4096, diskGiB: 20, gpu: 0 },
    image: 'debian-12',
    labels: { tier: 'web' },
    instanceType: 'm6a.large',
    cloudInit: { userData: '#!/bin/sh\necho hello\n', sshAuthorizedKeys: ['ssh-ed25519 AAAAC3Nza test@example'], onChange: 'ignore' },
    ...overrides,
  };
}

describe('AwsProvider inventory', () => {
  it('reports each zone as an elastic host with the catalog types it offers, over every page of offerings', async () => {
    const { provider, mock } = setup();
    mock.on(DescribeAvailabilityZonesCommand).resolves({
      AvailabilityZones: [
        { ZoneName: 'us-east-1a', State: 'available', RegionName: 'us-east-1', ZoneType: 'availability-zone' },
        { ZoneName: 'us-east-1b', State: 'available', RegionName: 'us-east-1', ZoneType: 'availability-zone' },
        { ZoneName: 'us-east-1c', State: 'impaired', RegionName: 'us-east-1', ZoneType: 'availability-zone' },
      ],
    });
    mock
      .on(DescribeInstanceTypeOfferingsCommand)
      .resolvesOnce({
        InstanceTypeOfferings: [
          { InstanceType: 'm6a.large', Location: 'us-east-1a', LocationType: 'availability-zone' },
          { InstanceType: 'm6i.large', Location: 'us-east-1a', LocationType: 'availability-zone' },
          { InstanceType: 'm6i.large', Location: 'us-east-1b', LocationType: 'availability-zone' },
        ],
        NextToken: 'page-2',
      })
      .resolvesOnce({ InstanceTypeOfferings: [{ InstanceType: 'c6i.large', Location: 'us-east-1b', LocationType: 'availability-zone' }] });

    const hosts = await provider.inventory();

    expect(hosts.map((h) => [h.id, h.state, h.instanceTypes?.map((t) => t.name)])).toEqual([
      ['aws/us-east-1a', 'up', ['m6a.large', 'm6i.large']],
      ['aws/us-east-1b', 'up', ['m6i.large', 'c6i.large']],
      ['aws/us-east-1c', 'down', []],
    ]);
    expect(hosts[0]!.instanceTypes![0]).toEqual({ name: 'm6a.large', cpu: 2, memoryMiB: 8192, pricePerHour: 0.0864 });
    const offerings = mock.commandCalls(DescribeInstanceTypeOfferingsCommand);
    expect(offerings).toHaveLength(2);
    expect(offerings[1]!.args[0].input.NextToken).toBe('page-2');
    // Burstable types are not offered unless named.
    expect(offerings[0]!.args[0].input.Filters?.find((f) => f.Name === 'instance-type')?.Values).not.toContain('t3.micro');
  });

  it('offers burstable types when named, and borrows us-east-1 prices (with a warning) in a region the catalog lacks', async () => {
    const { provider, mock, logs } = setup({ region: 'sa-east-1', instanceTypes: ['t3.micro', 'm6i.large'] });
    mock.on(DescribeAvailabilityZonesCommand).resolves({ AvailabilityZones: [{ ZoneName: 'sa-east-1a', State: 'available' }] });
    mock.on(DescribeInstanceTypeOfferingsCommand).resolves({
      InstanceTypeOfferings: [
        { InstanceType: 't3.micro', Location: 'sa-east-1a' },
        { InstanceType: 'm6i.large', Location: 'sa-east-1a' },
      ],
    });
    const [host] = await provider.inventory();
    expect(host!.instanceTypes!.map((t) => [t.name, t.pricePerHour])).toEqual([
      ['t3.micro', 0.0104],
      ['m6i.large', 0.096],
    ]);
    expect(logs.join('\n')).toMatch(/no prices for sa-east-1; using us-east-1 prices as an estimate/);
  });

  it('refuses a configured zone the region does not have', async () => {
    const { provider, mock } = setup({ zones: ['us-east-1a', 'us-east-1x'] });
    mock.on(DescribeAvailabilityZonesCommand).resolves({ AvailabilityZones: [{ ZoneName: 'us-east-1a', State: 'available' }] });
    await expect(provider.inventory()).rejects.toMatchObject({ code: 'InvalidInput', message: expect.stringMatching(/us-east-1x/) });
  });
});

describe('AwsProvider list', () => {
  it('finds the fleet by its tags over every page and reports what the group asked for', async () => {
    const { provider, mock } = setup();
    mock
      .on(DescribeInstancesCommand)
      .resolvesOnce({ ...reservations(instance('i-0aaa', 'shop-web-0', 'running')), NextToken: 'next-page' })
      .resolvesOnce(reservations(instance('i-0bbb', 'shop-web-1', 'stopped', { InstanceType: 'm6i.large', Placement: { AvailabilityZone: 'us-east-1b' } })));

    const vms = await provider.list('shop');

    expect(vms.map((v) => [v.name, v.id, v.state, v.host, v.instanceType])).toEqual([
      ['shop-web-0', 'i-0aaa', 'running', 'aws/us-east-1a', 'm6a.large'],
      ['shop-web-1', 'i-0bbb', 'stopped', 'aws/us-east-1b', 'm6i.large'],
    ]);
    expect(vms[0]).toMatchObject({
      fleet: 'shop',
      group: 'web',
      index: 0,
      specHash: 'abc123',
      image: 'debian-12',
      resources: { cpu: 2, memoryMiB: 4096, diskGiB: 20, gpu: 0 },
      labels: { tier: 'web' },
      addresses: [{ address: '10.0.1.23', source: 'api', interface: 'private' }],
    });
    const calls = mock.commandCalls(DescribeInstancesCommand);
    expect(calls[0]!.args[0].input.Filters).toEqual([
      { Name: 'tag:novacron:fleet', Values: ['shop'] },
      { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] },
    ]);
    expect(calls[1]!.args[0].input.NextToken).toBe('next-page');
  });

  it('fails as Throttled, once, and succeeds when the core retry middleware tries again', async () => {
    const { provider, mock } = setup();
    mock
      .on(DescribeInstancesCommand)
      .rejectsOnce(ec2Error('RequestLimitExceeded', 'Request limit exceeded.', 503))
      .resolves(reservations(instance('i-0aaa', 'shop-web-0', 'running')));

    // The provider itself does not retry: one call, one Throttled error with its context.
    const error = await provider.list('shop').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'Throttled', retryable: true, context: { provider: 'aws', operation: 'list' } });
    expect(mock.commandCalls(DescribeInstancesCommand)).toHaveLength(1);

    mock.reset();
    mock
      .on(DescribeInstancesCommand)
      .rejectsOnce(ec2Error('RequestLimitExceeded', 'Request limit exceeded.', 503))
      .rejectsOnce(ec2Error('RequestLimitExceeded', 'Request limit exceeded.', 503))
      .resolves(reservations(instance('i-0aaa', 'shop-web-0', 'running')));
    const retries: number[] = [];
    const wrapped = defaultMiddlewareStack({ retry: { clock: instantClock, random: () => 0.5 }, breaker: false, tracing: false }).wrap(provider);
    const vms = await wrapped.list('shop', { onRetry: ({ delayMs }) => retries.push(delayMs) });
    expect(vms).toHaveLength(1);
    expect(mock.commandCalls(DescribeInstancesCommand)).toHaveLength(3);
    // Exponential backoff with jitter from the core: base 200 ms, doubled, times the jitter.
    expect(retries).toEqual([100, 200]);
  });
});

describe('AwsProvider create', () => {
  let ctx: ReturnType<typeof setup>;
  beforeEach(() => {
    ctx = setup();
    ctx.mock.on(DescribeImagesCommand).resolves({ Images: [image] });
  });

  it('launches with a derived client token, ownership tags, cloud-init user data and the disk size, then waits for running', async () => {
    const { provider, mock } = ctx;
    mock
      .on(DescribeInstancesCommand)
      .resolvesOnce({ Reservations: [] }) // the lookup by name: nothing yet
      .resolvesOnce(reservations(instance('i-0new', 'shop-web-0', 'pending')))
      .resolves(reservations(instance('i-0new', 'shop-web-0', 'running')));
    mock.on(RunInstancesCommand).resolves({ Instances: [instance('i-0new', 'shop-web-0', 'pending')] });

    const vm = await provider.create(createRequest());

    expect(vm).toMatchObject({ id: 'i-0new', state: 'running', host: 'aws/us-east-1a', instanceType: 'm6a.large', fleet: 'shop' });
    const run = mock.commandCalls(RunInstancesCommand)[0]!.args[0].input;
    expect(run).toMatchObject({
      ImageId: AMI,
      InstanceType: 'm6a.large',
      MinCount: 1,
      MaxCount: 1,
      Placement: { AvailabilityZone: 'us-east-1a' },
      BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { VolumeSize: 20, VolumeType: 'gp3', DeleteOnTermination: true } }],
      MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled' },
    });
    expect(run.ClientToken).toMatch(/^nc-shop-web-0-[0-9a-f]{32}$/);
    expect(run.TagSpecifications?.[0]?.Tags).toEqual(
      expect.arrayContaining([
        { Key: 'Name', Value: 'shop-web-0' },
        { Key: 'novacron:fleet', Value: 'shop' },
        { Key: 'novacron:group', Value: 'web' },
        { Key: 'novacron:index', Value: '0' },
        { Key: 'novacron:spec-hash', Value: 'abc123' },
        { Key: 'novacron:image', Value: 'debian-12' },
        { Key: 'novacron:resources', Value: '2/4096/20/0' },
        { Key: 'tier', Value: 'web' },
      ]),
    );
    const userData = Buffer.from(run.UserData!, 'base64').toString('utf8');
    expect(userData).toContain('Content-Type: multipart/mixed');
    expect(userData).toContain('ssh_authorized_keys:\n  - "ssh-ed25519 AAAAC3Nza test@example"');
    expect(userData).toContain('Content-Type: text/x-shellscript');
  });

  it('is idempotent: a retry after a lost answer sends the same client token and gets the same instance', async () => {
    const { provider, mock } = ctx;
    mock.on(DescribeInstancesCommand, { Filters: [{ Name: 'tag:novacron:fleet', Values: ['shop'] }, { Name: 'tag:Name', Values: ['shop-web-0'] }, { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] }] })
      // Eventual consistency: the lookup does not see the instance the lost call made.
      .resolves({ Reservations: [] });
    mock.on(DescribeInstancesCommand, { Filters: [{ Name: 'instance-id', Values: ['i-0same'] }] }).resolves(reservations(instance('i-0same', 'shop-web-0', 'running')));
    mock
      .on(RunInstancesCommand)
      .rejectsOnce(Object.assign(new Error('socket hang up'), { name: 'Error', code: 'ECONNRESET' }))
      .resolves({ Instances: [instance('i-0same', 'shop-web-0', 'pending')] });

    const first = await provider.create(createRequest()).catch((e: unknown) => e);
    expect(first).toMatchObject({ code: 'Unreachable', retryable: true, context: { provider: 'aws', vm: 'shop-web-0', operation: 'create' } });
    const vm = await provider.create(createRequest());

    expect(vm.id).toBe('i-0same');
    const tokens = mock.commandCalls(RunInstancesCommand).map((c) => c.args[0].input.ClientToken);
    expect(tokens).toHaveLength(2);
    expect(tokens[0]).toBe(tokens[1]);
  });

  it('returns the VM that exists by name without launching another', async () => {
    const { provider, mock } = ctx;
    mock.on(DescribeInstancesCommand).resolves(reservations(instance('i-0old', 'shop-web-0', 'running')));
    const vm = await provider.create(createRequest());
    expect(vm.id).toBe('i-0old');
    expect(mock.commandCalls(RunInstancesCommand)).toHaveLength(0);
  });

  it('refuses to adopt a VM of that name owned by another fleet', async () => {
    const { provider, mock } = ctx;
    const foreign = instance('i-0x', 'shop-web-0', 'running');
    foreign.Tags = foreign.Tags!.map((t) => (t.Key === 'novacron:fleet' ? { Key: t.Key, Value: 'other' } : t));
    mock.on(DescribeInstancesCommand).resolves(reservations(foreign));
    await expect(provider.create(createRequest())).rejects.toMatchObject({ code: 'Conflict' });
  });

  it('follows the token chain past an instance a failed attempt left terminated', async () => {
    const { provider, mock } = ctx;
    mock.on(DescribeInstancesCommand).resolvesOnce({ Reservations: [] }).resolves(reservations(instance('i-0second', 'shop-web-0', 'running')));
    mock
      .on(RunInstancesCommand)
      .resolvesOnce({ Instances: [instance('i-0first', 'shop-web-0', 'terminated')] })
      .resolves({ Instances: [instance('i-0second', 'shop-web-0', 'pending')] });
    const vm = await provider.create(createRequest());
    expect(vm.id).toBe('i-0second');
    const [a, b] = mock.commandCalls(RunInstancesCommand).map((c) => c.args[0].input.ClientToken);
    expect(a).not.toBe(b);
  });

  it('on InsufficientInstanceCapacity tries the next cheapest type in the zone that fits, and keeps the refusing pair out of the inventory', async () => {
    const { provider, mock } = ctx;
    mock.on(DescribeAvailabilityZonesCommand).resolves({ AvailabilityZones: [{ ZoneName: 'us-east-1a', State: 'available' }, { ZoneName: 'us-east-1b', State: 'available' }] });
    mock.on(DescribeInstanceTypeOfferingsCommand).resolves({
      InstanceTypeOfferings: ['us-east-1a', 'us-east-1b'].flatMap((z) => (['m6a.large', 'm6i.large', 'c6i.large'] as const).map((t) => ({ InstanceType: t, Location: z }))),
    });
    await provider.inventory();
    mock.on(DescribeInstancesCommand).resolvesOnce({ Reservations: [] }).resolves(reservations(instance('i-0m6a', 'shop-web-0', 'running')));
    mock
      .on(RunInstancesCommand, { InstanceType: 'c6i.large' })
      .rejects(ec2Error('InsufficientInstanceCapacity', 'We currently do not have sufficient c6i.large capacity in the Availability Zone you requested (us-east-1a). Our system will be working on provisioning additional capacity. You can currently get c6i.large capacity by not specifying an Availability Zone in your request or choosing us-east-1b.', 500));
    mock.on(RunInstancesCommand, { InstanceType: 'm6a.large' }).resolves({ Instances: [instance('i-0m6a', 'shop-web-0', 'pending')] });
    const progress: string[] = [];

    // 2 vCPU / 4 GiB: c6i.large ($0.085) fits exactly and is the cheapest; m6a.large ($0.0864) next.
    const vm = await provider.create(createRequest({ instanceType: 'c6i.large' }), { onProgress: (p) => progress.push(`${p.phase}: ${p.message}`) });

    expect(vm.instanceType).toBe('m6a.large');
    expect(mock.commandCalls(RunInstancesCommand).map((c) => c.args[0].input.InstanceType)).toEqual(['c6i.large', 'm6a.large']);
    expect(progress[0]).toBe('capacity-fallback: c6i.large in us-east-1a: InsufficientInstanceCapacity');
    const hosts = await provider.inventory();
    expect(hosts.find((h) => h.zone === 'us-east-1a')!.instanceTypes!.map((t) => t.name)).not.toContain('c6i.large');
    expect(hosts.find((h) => h.zone === 'us-east-1b')!.instanceTypes!.map((t) => t.name)).toContain('c6i.large');
  });

  it('tries the alternatives placement gave, and fails with CapacityExceeded naming every refusal when all are short', async () => {
    const { provider, mock } = ctx;
    mock.on(DescribeInstancesCommand).resolves({ Reservations: [] });
    mock.on(RunInstancesCommand).rejects(ec2Error('InsufficientInstanceCapacity', 'We currently do not have sufficient capacity.', 500));

    // The second alternative names no type: the cheapest that fits (c6i.large) is tried.
    const error: unknown = await provider
      .create(createRequest({ alternatives: [{ host: 'aws/us-east-1b', instanceType: 'm6a.large' }, { host: 'aws/us-east-1c' }] }))
      .catch((e: unknown) => e);

    expect(mock.commandCalls(RunInstancesCommand).map((c) => c.args[0].input.Placement?.AvailabilityZone)).toEqual(['us-east-1a', 'us-east-1b', 'us-east-1c']);
    expect(error).toBeInstanceOf(NovaCronError);
    expect(error).toMatchObject({
      code: 'CapacityExceeded',
      context: { provider: 'aws', vm: 'shop-web-0', operation: 'create' },
      message: expect.stringMatching(/m6a\.large in us-east-1a: InsufficientInstanceCapacity; m6a\.large in us-east-1b: InsufficientInstanceCapacity; c6i\.large in us-east-1c/),
      hint: expect.stringMatching(/new plan places the VM elsewhere/),
    });
  });

  it('treats a launch that EC2 terminates for want of capacity as a refusal and moves on', async () => {
    const { provider, mock } = ctx;
    mock
      .on(DescribeInstancesCommand)
      .resolvesOnce({ Reservations: [] })
      .resolvesOnce(reservations(instance('i-0late', 'shop-web-0', 'terminated', { StateReason: { Code: 'Server.InsufficientInstanceCapacity', Message: 'Server.InsufficientInstanceCapacity: Insufficient capacity.' } })))
      .resolves(reservations(instance('i-0ok', 'shop-web-0', 'running', { InstanceType: 'm6i.large' })));
    mock
      .on(RunInstancesCommand)
      .resolvesOnce({ Instances: [instance('i-0late', 'shop-web-0', 'pending')] })
      .resolves({ Instances: [instance('i-0ok', 'shop-web-0', 'pending', { InstanceType: 'm6i.large' })] });
    const vm = await provider.create(createRequest());
    expect(vm.id).toBe('i-0ok');
  });

  it('terminates what it launched when the wait fails, so a failed create leaves nothing', async () => {
    const { provider, mock } = ctx;
    mock
      .on(DescribeInstancesCommand)
      .resolvesOnce({ Reservations: [] })
      .rejectsOnce(ec2Error('UnauthorizedOperation', 'You are not authorized to perform this operation. Encoded authorization failure message: xyz', 403));
    mock.on(RunInstancesCommand).resolves({ Instances: [instance('i-0gone', 'shop-web-0', 'pending')] });
    mock.on(TerminateInstancesCommand).resolves({ TerminatingInstances: [{ InstanceId: 'i-0gone' }] });

    const error = await provider.create(createRequest()).catch((e: unknown) => e);

    expect(error).toMatchObject({ code: 'AuthFailed', hint: expect.stringMatching(/IAM permission.*docs\/aws\.md/) });
    expect(mock.commandCalls(TerminateInstancesCommand)[0]!.args[0].input.InstanceIds).toEqual(['i-0gone']);
  });
});

describe('AwsProvider resize', () => {
  it('stops, changes the type, tags the new size and starts again', async () => {
    const { provider, mock } = setup();
    mock
      .on(DescribeInstancesCommand)
      .resolvesOnce(reservations(instance('i-0r', 'shop-web-0', 'running'))) // the lookup by id
      .resolvesOnce(reservations(instance('i-0r', 'shop-web-0', 'stopping')))
      .resolvesOnce(reservations(instance('i-0r', 'shop-web-0', 'stopped')))
      .resolves(reservations(instance('i-0r', 'shop-web-0', 'running', { InstanceType: 'm6a.xlarge', Tags: [...instance('i-0r', 'shop-web-0', 'running').Tags!.filter((t) => t.Key !== 'novacron:resources'), { Key: 'novacron:resources', Value: '4/16384/20/0' }] })));
    mock.on(StopInstancesCommand).resolves({});
    mock.on(ModifyInstanceAttributeCommand).resolves({});
    mock.on(CreateTagsCommand).resolves({});
    mock.on(StartInstancesCommand).resolves({});

    const vm = await provider.resize({ name: 'shop-web-0', fleet: 'shop', id: 'i-0r' }, { resources: { cpu: 4, memoryMiB: 16384, diskGiB: 20, gpu: 0 }, specHash: 'def456', allowReboot: true, labels: { tier: 'web2' } });

    const sequence = mock.calls().map((c) => (c.args[0] as { constructor: { name: string } }).constructor.name.replace('Command', ''));
    expect(sequence.filter((n) => n !== 'DescribeInstances')).toEqual(['StopInstances', 'ModifyInstanceAttribute', 'CreateTags', 'StartInstances']);
    expect(mock.commandCalls(ModifyInstanceAttributeCommand)[0]!.args[0].input).toEqual({ InstanceId: 'i-0r', InstanceType: { Value: 'm6a.xlarge' } });
    expect(mock.commandCalls(CreateTagsCommand)[0]!.args[0].input.Tags).toEqual([
      { Key: 'tier', Value: 'web2' },
      { Key: 'novacron:resources', Value: '4/16384/20/0' },
      { Key: 'novacron:spec-hash', Value: 'def456' },
    ]);
    expect(vm).toMatchObject({ instanceType: 'm6a.xlarge', state: 'running', resources: { cpu: 4, memoryMiB: 16384 } });
  });

  it('puts the old type back and starts it when the new type has no capacity', async () => {
    const { provider, mock } = setup();
    mock.on(DescribeInstancesCommand).resolvesOnce(reservations(instance('i-0r', 'shop-web-0', 'running'))).resolves(reservations(instance('i-0r', 'shop-web-0', 'stopped')));
    mock.on(StopInstancesCommand).resolves({});
    mock.on(ModifyInstanceAttributeCommand).resolves({});
    mock.on(CreateTagsCommand).resolves({});
    mock.on(StartInstancesCommand).rejectsOnce(ec2Error('InsufficientInstanceCapacity', 'We currently do not have sufficient m6a.xlarge capacity in the Availability Zone you requested (us-east-1a).', 500)).resolves({});

    await expect(
      provider.resize({ name: 'shop-web-0', fleet: 'shop' }, { resources: { cpu: 4, memoryMiB: 16384, diskGiB: 20, gpu: 0 }, specHash: 'def456', allowReboot: true }),
    ).rejects.toMatchObject({ code: 'CapacityExceeded' });
    expect(mock.commandCalls(ModifyInstanceAttributeCommand).map((c) => c.args[0].input.InstanceType?.Value)).toEqual(['m6a.xlarge', 'm6a.large']);
    expect(mock.commandCalls(StartInstancesCommand)).toHaveLength(2);
  });

  it('will not stop a running VM when reboots are not allowed', async () => {
    const { provider, mock } = setup();
    mock.on(DescribeInstancesCommand).resolves(reservations(instance('i-0r', 'shop-web-0', 'running')));
    await expect(
      provider.resize({ name: 'shop-web-0', fleet: 'shop' }, { resources: { cpu: 4, memoryMiB: 16384, diskGiB: 20, gpu: 0 }, specHash: 'x', allowReboot: false }),
    ).rejects.toMatchObject({ code: 'Unsupported', hint: expect.stringMatching(/allowReboot/) });
    expect(mock.commandCalls(StopInstancesCommand)).toHaveLength(0);
  });
});

describe('AwsProvider snapshots', () => {
  it('snapshots every volume at once with CreateSnapshots, tagged with fleet, group, VM and snapshot id, and waits for completed', async () => {
    const { provider, mock } = setup();
    mock.on(DescribeInstancesCommand).resolves(reservations(instance('i-0s', 'shop-web-0', 'running')));
    mock
      .on(DescribeSnapshotsCommand)
      .resolvesOnce({ Snapshots: [] })
      .resolvesOnce({ Snapshots: [{ SnapshotId: 'snap-1', VolumeId: 'vol-0s', VolumeSize: 20, State: 'pending', Progress: '40%', StartTime: new Date('2026-11-27T03:00:00Z'), Tags: [{ Key: 'novacron:snapshot', Value: 'shop-web-0-nightly' }, { Key: 'novacron:vm', Value: 'shop-web-0' }, { Key: 'novacron:fleet', Value: 'shop' }, { Key: 'novacron:group', Value: 'web' }] }] })
      .resolves({ Snapshots: [{ SnapshotId: 'snap-1', VolumeId: 'vol-0s', VolumeSize: 20, State: 'completed', Progress: '100%', FullSnapshotSizeInBytes: 3 * 1024 ** 3, StartTime: new Date('2026-11-27T03:00:00Z'), Tags: [{ Key: 'novacron:snapshot', Value: 'shop-web-0-nightly' }, { Key: 'novacron:vm', Value: 'shop-web-0' }, { Key: 'novacron:fleet', Value: 'shop' }, { Key: 'novacron:group', Value: 'web' }] }] });
    mock.on(CreateSnapshotsCommand).resolves({ Snapshots: [{ SnapshotId: 'snap-1', VolumeId: 'vol-0s', VolumeSize: 20, State: 'pending', StartTime: new Date('2026-11-27T03:00:00Z') }] });
    mock.on(CreateTagsCommand).resolves({});

    const record = await provider.snapshot({ name: 'shop-web-0', fleet: 'shop' }, { kind: 'full', id: 'shop-web-0-nightly', scheduledFor: '2026-11-27T03:00:00Z' });

    const input = mock.commandCalls(CreateSnapshotsCommand)[0]!.args[0].input;
    expect(input.InstanceSpecification).toEqual({ InstanceId: 'i-0s', ExcludeBootVolume: false });
    expect(input.TagSpecifications?.[0]).toMatchObject({ ResourceType: 'snapshot' });
    expect(input.TagSpecifications?.[0]?.Tags).toEqual(
      expect.arrayContaining([
        { Key: 'novacron:snapshot', Value: 'shop-web-0-nightly' },
        { Key: 'novacron:vm', Value: 'shop-web-0' },
        { Key: 'novacron:fleet', Value: 'shop' },
        { Key: 'novacron:group', Value: 'web' },
        { Key: 'novacron:scheduled-for', Value: '2026-11-27T03:00:00Z' },
      ]),
    );
    expect(mock.commandCalls(CreateTagsCommand)[0]!.args[0].input).toEqual({ Resources: ['snap-1'], Tags: [{ Key: 'novacron:device', Value: '/dev/xvda' }] });
    expect(record).toMatchObject({ id: 'shop-web-0-nightly', vm: 'shop-web-0', fleet: 'shop', kind: 'disk', state: 'complete', consistency: 'crash', sizeBytes: 3 * 1024 ** 3, diskBytes: 20 * 1024 ** 3 });
  });
});

describe('AwsProvider against the stateful fake', () => {
  function withFake(fake = new FakeEc2(), config: Record<string, unknown> = {}) {
    const ctx = setup(config);
    ctx.mock.send.callsFake(fake.send);
    return { ...ctx, fake };
  }

  it('shares one TerminateInstances call and one poll per pass among concurrent deletes', async () => {
    const { provider, fake } = withFake();
    const vms: VmRecord[] = [];
    for (let i = 0; i < 5; i++) vms.push(await provider.create(createRequest({ name: `shop-web-${i}`, ownership: { fleet: 'shop', group: 'web', index: i, specHash: 'abc123' } })));
    const before = fake.count('DescribeInstances');

    await Promise.all(vms.map((vm) => provider.delete({ name: vm.name, fleet: 'shop', id: vm.id })));

    expect(fake.count('TerminateInstances')).toBe(1);
    expect(fake.describe().every((i) => i.State?.Name === 'terminated')).toBe(true);
    // Five lookups by id, one coalesced lookup by name, then shared polls.
    expect(fake.count('DescribeInstances') - before).toBeLessThanOrEqual(5 + 1 + 2);
    expect(await provider.list('shop')).toEqual([]);
  });

  it('honours an abort while waiting, and terminates the half-made VM', async () => {
    const fake = new FakeEc2({ transitionMs: 60_000 });
    const { provider } = withFake(fake);
    const controller = new AbortController();
    const pending = provider.create(createRequest(), { signal: controller.signal, onProgress: (p) => p.phase === 'waiting' && controller.abort() });
    await expect(pending).rejects.toMatchObject({ code: 'Aborted' });
    const [made] = fake.describe();
    expect(made?.State?.Name).toBe('shutting-down');
  });

  it('launches with the declared NICs, one interface per subnet in order, reports them back, and refuses a network that is no subnet before any call', async () => {
    const { provider, fake, mock } = withFake(new FakeEc2(), { securityGroupIds: ['sg-0123456789abcdef0'] });
    const nics = [{ network: 'subnet-0aaaaaaaaaaaaaaa1' }, { network: 'subnet-0bbbbbbbbbbbbbbb2' }];
    const vm = await provider.create(createRequest({ nics }));
    const run = mock.commandCalls(RunInstancesCommand)[0]!.args[0].input as unknown as Record<string, unknown>;
    expect(run['NetworkInterfaces']).toEqual([
      { DeviceIndex: 0, SubnetId: 'subnet-0aaaaaaaaaaaaaaa1', DeleteOnTermination: true, Groups: ['sg-0123456789abcdef0'] },
      { DeviceIndex: 1, SubnetId: 'subnet-0bbbbbbbbbbbbbbb2', DeleteOnTermination: true, Groups: ['sg-0123456789abcdef0'] },
    ]);
    // EC2 refuses SubnetId or SecurityGroupIds beside NetworkInterfaces.
    expect(run).not.toHaveProperty('SubnetId');
    expect(run).not.toHaveProperty('SecurityGroupIds');
    expect(run['Placement']).toEqual({ AvailabilityZone: 'us-east-1a' });
    expect(vm.nics).toEqual([
      { network: 'subnet-0aaaaaaaaaaaaaaa1', mac: expect.any(String), id: expect.stringMatching(/^eni-/) },
      { network: 'subnet-0bbbbbbbbbbbbbbb2', mac: expect.any(String), id: expect.stringMatching(/^eni-/) },
    ]);
    const calls = fake.count('RunInstances');
    await expect(provider.create(createRequest({ name: 'shop-web-1', nics: [{ network: 'vpc-lan' }] }))).rejects.toThrow(/^NIC network "vpc-lan" is not an EC2 subnet id; nothing was made$/);
    expect(fake.count('RunInstances')).toBe(calls);
  });

  it('resumes a VM left pending by an interrupted create instead of launching another', async () => {
    const fake = new FakeEc2();
    const { provider } = withFake(fake);
    await provider.create(createRequest());
    const again = await provider.create(createRequest());
    expect(fake.count('RunInstances')).toBe(1);
    expect(again.state).toBe('running');
  });

  it('stops (forcing after the grace period) and starts', async () => {
    const fake = new FakeEc2();
    const { provider } = withFake(fake);
    const vm = await provider.create(createRequest());
    const stopped = await provider.stop({ name: vm.name, fleet: 'shop' }, { gracefulTimeoutMs: 1000 });
    expect(stopped.state).toBe('stopped');
    const started = await provider.start({ name: vm.name, fleet: 'shop' });
    expect(started.state).toBe('running');
    await expect(provider.start({ name: 'shop-web-9', fleet: 'shop' })).rejects.toMatchObject({ code: 'NotFound', context: { vm: 'shop-web-9', operation: 'start' } });
  });

  it('deleting what is gone succeeds', async () => {
    const { provider } = withFake();
    await expect(provider.delete({ name: 'shop-web-7', fleet: 'shop' })).resolves.toBeUndefined();
  });

  it('tags a VM restored as a new one with the fleet the documented IAM policy requires, keeps it out of the fleet and deletes it by name', async () => {
    const fake = new FakeEc2();
    const { provider, mock } = withFake(fake);
    const vm = await provider.create(createRequest());
    await provider.snapshot({ name: vm.name, fleet: 'shop' }, { kind: 'full', id: 's1' });
    const launches = () => mock.commandCalls(RunInstancesCommand).map((c) => c.args[0].input);
    const before = launches().length;

    // What the snapshot engine's restore test does: restore into a scratch VM, then delete it by name and fleet.
    const scratch = await provider.restore({ name: vm.name, fleet: 'shop' }, { snapshot: 's1', asName: 'shop-web-0-verify', scratch: true });
    const restoreTags = [
      { Key: 'Name', Value: 'shop-web-0-verify' },
      { Key: 'novacron:fleet', Value: 'shop' },
      { Key: 'novacron:restored-from', Value: 's1' },
      { Key: 'novacron:scratch', Value: 'true' },
    ];
    // The policy's Launch statement asks for novacron:fleet on the instance and on its volume.
    expect(launches().slice(before).at(-1)!.TagSpecifications).toEqual([
      { ResourceType: 'instance', Tags: restoreTags },
      { ResourceType: 'volume', Tags: restoreTags },
    ]);
    expect(scratch.vm).toMatchObject({ name: 'shop-web-0-verify', fleet: 'shop', group: '' });
    // Not a fleet VM: list leaves it out (reconcile would otherwise delete it as surplus).
    expect((await provider.list('shop')).map((v) => v.name)).toEqual(['shop-web-0']);

    // Restoring the scratch VM again replaces the one an earlier run left (terminated under ChangeOwnedInstances).
    const again = await provider.restore({ name: vm.name, fleet: 'shop' }, { snapshot: 's1', asName: 'shop-web-0-verify', scratch: true });
    expect(again.vm.id).not.toBe(scratch.vm.id);
    expect(fake.describe().find((i) => i.InstanceId === scratch.vm.id)?.State?.Name).toBe('terminated');

    await provider.delete({ name: again.vm.name, fleet: again.vm.fleet });
    expect(fake.describe().find((i) => i.InstanceId === again.vm.id)?.State?.Name).toBe('terminated');
    expect(fake.describe().find((i) => i.InstanceId === vm.id)?.State?.Name).toBe('running');

    // A restore that is not a scratch VM carries no scratch marker.
    const kept = await provider.restore({ name: vm.name, fleet: 'shop' }, { snapshot: 's1', asName: 'shop-web-0-copy' });
    expect(fake.describe().find((i) => i.InstanceId === kept.vm.id)?.Tags).toEqual(
      expect.arrayContaining([{ Key: 'novacron:fleet', Value: 'shop' }, { Key: 'novacron:restored-from', Value: 's1' }]),
    );
    expect(fake.describe().find((i) => i.InstanceId === kept.vm.id)?.Tags?.some((t) => t.Key === 'novacron:scratch')).toBe(false);
  });

  it('never takes a restored VM for the fleet VM of the same name', async () => {
    const fake = new FakeEc2();
    const { provider } = withFake(fake);
    const vm = await provider.create(createRequest());
    await provider.snapshot({ name: vm.name, fleet: 'shop' }, { kind: 'full', id: 's1' });
    const restored = await provider.restore({ name: vm.name, fleet: 'shop' }, { snapshot: 's1', asName: 'shop-web-1' });
    // A fleet VM later made with that name is a new instance, and deleting it leaves the restored one.
    const made = await provider.create(createRequest({ name: 'shop-web-1', ownership: { fleet: 'shop', group: 'web', index: 1, specHash: 'abc123' } }));
    expect(made.id).not.toBe(restored.vm.id);
    await provider.delete({ name: 'shop-web-1', fleet: 'shop', id: made.id });
    await provider.delete({ name: 'shop-web-1', fleet: 'shop' });
    expect(fake.describe().find((i) => i.InstanceId === made.id)?.State?.Name).toBe('terminated');
    expect(fake.describe().find((i) => i.InstanceId === restored.vm.id)?.State?.Name).toBe('running');
    // By its id, the restored VM goes, and only it.
    const again = await provider.create(createRequest({ name: 'shop-web-1', ownership: { fleet: 'shop', group: 'web', index: 1, specHash: 'abc123' } }));
    await provider.delete({ name: 'shop-web-1', fleet: 'shop', id: restored.vm.id });
    expect(fake.describe().find((i) => i.InstanceId === restored.vm.id)?.State?.Name).toBe('terminated');
    expect(fake.describe().find((i) => i.InstanceId === again.id)?.State?.Name).toBe('running');
  });

  it('lists, restores in place and as a new VM, records verification and deletes snapshots', async () => {
    const fake = new FakeEc2();
    const { provider } = withFake(fake);
    const vm = await provider.create(createRequest());
    const snap = await provider.snapshot({ name: vm.name, fleet: 'shop' }, { kind: 'full', id: 's1' });
    expect(snap.state).toBe('complete');
    expect(await provider.snapshot({ name: vm.name, fleet: 'shop' }, { kind: 'full', id: 's1' })).toMatchObject({ id: 's1' });
    expect(fake.count('CreateSnapshots')).toBe(1);
    expect((await provider.listSnapshots('shop')).map((s) => s.id)).toEqual(['s1']);

    const inPlace = await provider.restore({ name: vm.name, fleet: 'shop' }, { snapshot: 's1' });
    expect(inPlace.vm.id).toBe(vm.id);
    const copy = await provider.restore({ name: vm.name, fleet: 'shop' }, { snapshot: 's1', asName: 'shop-web-0-check', scratch: true });
    expect(copy.vm).toMatchObject({ name: 'shop-web-0-check', fleet: 'shop', group: '', state: 'running' });
    expect(await provider.list('shop')).toHaveLength(1);

    const verified = await provider.recordVerification('s1', { at: '2026-11-27T04:00:00.000Z', ok: true, method: 'checksum', detail: 'digest matches' });
    expect(verified.verified).toEqual({ at: '2026-11-27T04:00:00.000Z', ok: true, method: 'checksum', detail: 'digest matches' });
    expect((await provider.listSnapshots('shop'))[0]!.verified?.ok).toBe(true);

    await provider.deleteSnapshot('s1');
    await provider.deleteSnapshot('s1');
    expect(await provider.listSnapshots('shop')).toEqual([]);
  });
});

describe('AwsProvider awaitReady (EC2 status checks)', () => {
  /** EC2 and the provider on one simulated time line: sleeps move it on. */
  function timed(options: { statusCheckMs?: number } = {}) {
    let now = Date.parse('2026-11-27T10:00:00Z');
    const clock: Clock = { now: () => now, sleep: async (ms, signal) => { signal?.throwIfAborted(); now += ms; } };
    const fake = new FakeEc2({ now: () => now, statusCheckMs: options.statusCheckMs ?? 150_000 });
    const ctx = setup({}, { clock });
    ctx.mock.send.callsFake(fake.send);
    return { ...ctx, fake, clock };
  }
  const ref = { name: 'shop-web-0', fleet: 'shop' };

  it('is ready once both status checks are ok, polling DescribeInstanceStatus while they initialize', async () => {
    const { provider, fake, mock } = timed();
    const vm = await provider.create(createRequest());
    const ready = await provider.awaitReady({ ...ref, id: vm.id });
    expect(ready.ok).toBe(true);
    expect(ready.detail).toMatch(new RegExp(`^instance ${vm.id} passed both EC2 status checks after \\d+\\.\\d s$`));
    expect(ready.durationMs).toBeGreaterThanOrEqual(150_000);
    expect(mock.commandCalls(DescribeInstanceStatusCommand)[0]!.args[0].input).toEqual({ InstanceIds: [vm.id], IncludeAllInstances: true });
    // Backing off to 15 s between polls: about a dozen calls for two and a half minutes.
    expect(fake.count('DescribeInstanceStatus')).toBeLessThan(20);
  });

  it('is not ready, without waiting out the timeout, when the instance check is impaired (the disk did not boot)', async () => {
    const { provider, fake } = timed();
    const image = fake.images.keys().next().value!;
    fake.unbootableImages.add(image);
    const vm = await provider.create(createRequest());
    const ready = await provider.awaitReady(ref);
    expect(ready).toMatchObject({ ok: false, detail: `EC2 status checks of instance ${vm.id} failed: system ok, instance impaired (reachability failed)` });
    expect(ready.durationMs).toBeLessThan(200_000);
  });

  it('is not ready when the checks are still initializing at the timeout, or the instance is not running', async () => {
    const { provider } = timed({ statusCheckMs: 3_600_000 });
    const vm = await provider.create(createRequest());
    const late = await provider.awaitReady(ref, { timeoutMs: 60_000 });
    expect(late).toMatchObject({ ok: false, detail: `EC2 status checks of instance ${vm.id} not ok within 60 s (last: system initializing, instance initializing)` });
    expect(late.durationMs).toBe(60_000);
    await provider.stop(ref, { force: true });
    expect(await provider.awaitReady(ref)).toMatchObject({ ok: false, detail: `instance ${vm.id} is stopped, not running` });
  });

  it('polls on through throttling, and refuses a VM that does not exist', async () => {
    const { provider, fake } = timed({ statusCheckMs: 0 });
    await provider.create(createRequest());
    fake.fail('DescribeInstanceStatus', ec2Error('RequestLimitExceeded', 'Request limit exceeded.', 503), ec2Error('RequestLimitExceeded', 'Request limit exceeded.', 503));
    expect(await provider.awaitReady(ref)).toMatchObject({ ok: true });
    expect(fake.count('DescribeInstanceStatus')).toBe(3);
    await expect(provider.awaitReady({ name: 'shop-web-9', fleet: 'shop' })).rejects.toMatchObject({ code: 'NotFound', context: { vm: 'shop-web-9', operation: 'awaitReady' } });
  });
});
