import {
  AttachNetworkInterfaceCommand,
  CreateNetworkInterfaceCommand,
  EC2Client,
  ModifyNetworkInterfaceAttributeCommand,
} from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import {
  apply,
  awsProviderConfig,
  MiddlewareStack,
  parseFleet,
  plan,
  ProviderSet,
  type Clock,
  type CreateVmRequest,
  type NicSpec,
  type ResizeRequest,
  type UpdateStep,
  type VmRef,
} from '@novacron/core';
import { mockClient } from 'aws-sdk-client-mock';
import { describe, expect, it } from 'vitest';
import { AwsProvider } from './AwsProvider.js';
import { ec2Error, FakeEc2 } from './testing/fakeEc2.js';

/** NIC hot-plug on EC2 (nics.ts through AwsProvider.resize), against the stateful fake. */
const A = 'subnet-0aaaaaaaaaaaaaaa1';
const B = 'subnet-0bbbbbbbbbbbbbbb2';
const C = 'subnet-0ccccccccccccccc3';
const OTHER_ZONE = 'subnet-0ddddddddddddddd4';
const SUBNETS = { [A]: 'us-east-1a', [B]: 'us-east-1a', [C]: 'us-east-1a', [OTHER_ZONE]: 'us-east-1b' };
const SG = 'sg-0123456789abcdef0';
const ENI_CALLS = ['CreateNetworkInterface', 'AttachNetworkInterface', 'ModifyNetworkInterfaceAttribute', 'DetachNetworkInterface', 'DeleteNetworkInterface'];
const MUTATING = ['RunInstances', 'StartInstances', 'StopInstances', 'TerminateInstances', 'ModifyInstanceAttribute', 'CreateTags', ...ENI_CALLS];

/**
 * A provider on a fresh fake whose clock moves only when someone waits, so ENIs take
 * `transitionMs` to attach and detach and the provider has to wait for them.
 */
function setup(options: { transitionMs?: number; send?: (fake: FakeEc2) => (command: object) => Promise<never> } = {}) {
  let t = Date.UTC(2026, 0, 1);
  const clock: Clock = { now: () => t, sleep: async (ms, signal) => { signal?.throwIfAborted(); t += ms; } };
  const fake = new FakeEc2({ now: () => t, transitionMs: options.transitionMs ?? 0, subnets: SUBNETS });
  const ec2 = new EC2Client({ region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } });
  const s3 = new S3Client({ region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } });
  const mock = mockClient(ec2);
  mock.send.callsFake(options.send ? options.send(fake) : fake.send);
  const logs: string[] = [];
  const provider = new AwsProvider({
    name: 'aws',
    config: awsProviderConfig.parse({ type: 'aws', region: 'us-east-1', zones: ['us-east-1a', 'us-east-1b'], images: { 'debian-12': 'ami-0123456789abcdef0' }, securityGroupIds: [SG] }),
    clock,
    clients: { ec2: () => ec2, s3: () => s3 },
    pollMs: 1000,
    batchWindowMs: 0,
    log: (m) => logs.push(m),
  });
  return { provider, fake, mock, logs };
}

const ref: VmRef = { name: 'shop-web-0', fleet: 'shop' };
const nics = (...subnets: string[]): NicSpec[] => subnets.map((network) => ({ network }));
const create = (subnets: string[]): CreateVmRequest => ({
  name: 'shop-web-0',
  ownership: { fleet: 'shop', group: 'web', index: 0, specHash: 'abc123' },
  host: 'aws/us-east-1a',
  resources: { cpu: 2, memoryMiB: 4096, diskGiB: 20, gpu: 0 },
  image: 'debian-12',
  labels: {},
  instanceType: 'm6a.large',
  nics: nics(...subnets),
});
const resize = (subnets: string[], extra: Partial<ResizeRequest> = {}): ResizeRequest => ({
  resources: { cpu: 2, memoryMiB: 4096, diskGiB: 20, gpu: 0 }, specHash: 'abc123', allowReboot: false, instanceType: 'm6a.large', nics: nics(...subnets), ...extra,
});
const mutations = (fake: FakeEc2) => Object.fromEntries(MUTATING.map((api) => [api, fake.count(api)]));
/** The fake's ENIs as `subnet@device` (`subnet@-` when unattached), tagged ones marked `*`. */
function enis(fake: FakeEc2): string[] {
  return [...fake.networkInterfaces.values()]
    .map((e) => `${e.subnet}@${e.attachment ? e.attachment.deviceIndex : '-'}${e.tags.get('novacron:vm') === 'shop-web-0' ? '*' : ''}`)
    .sort();
}

describe('EC2 NIC hot-plug (resize with nics)', () => {
  it('declares hotplugNics and fixedPrimaryNic', () => {
    const { provider } = setup();
    expect(provider.capabilities).toMatchObject({ hotplugNics: true, fixedPrimaryNic: true, resize: true });
  });

  it('adds a NIC to the running instance: a tagged ENI with its security groups, attached at the next free device index, deleted with the instance; no stop, same instance', async () => {
    const { provider, fake, mock } = setup({ transitionMs: 3000 });
    const vm = await provider.create(create([A]));
    const stops = fake.count('StopInstances');

    const after = await provider.resize({ ...ref, id: vm.id }, resize([A, B]));

    expect(after.id).toBe(vm.id);
    expect(after.state).toBe('running');
    expect(fake.count('StopInstances')).toBe(stops);
    expect(fake.count('StartInstances')).toBe(0);
    expect(after.nics?.map((n) => n.network)).toEqual([A, B]);
    expect(after.nics?.[1]).toEqual({ network: B, mac: expect.any(String), id: expect.stringMatching(/^eni-/) });
    expect(mock.commandCalls(CreateNetworkInterfaceCommand)[0]!.args[0].input).toEqual({
      SubnetId: B,
      Groups: [SG],
      Description: 'NovaCron NIC of shop-web-0 (fleet shop)',
      TagSpecifications: [{ ResourceType: 'network-interface', Tags: [{ Key: 'Name', Value: 'shop-web-0' }, { Key: 'novacron:fleet', Value: 'shop' }, { Key: 'novacron:vm', Value: 'shop-web-0' }] }],
    });
    const eni = after.nics![1]!.id!;
    expect(mock.commandCalls(AttachNetworkInterfaceCommand)[0]!.args[0].input).toEqual({ InstanceId: vm.id, NetworkInterfaceId: eni, DeviceIndex: 1 });
    expect(mock.commandCalls(ModifyNetworkInterfaceAttributeCommand)[0]!.args[0].input).toMatchObject({ NetworkInterfaceId: eni, Attachment: { DeleteOnTermination: true } });
    // Waited until attached (the fake takes transitionMs), so the record is the truth.
    expect(fake.networkInterfaces.get(eni)?.attachment).toMatchObject({ state: 'attached', deviceIndex: 1, deleteOnTermination: true });
    expect((await provider.list('shop'))[0]?.nics?.map((n) => n.network)).toEqual([A, B]);
    // The launch's ENI is tagged as this VM's too.
    expect(enis(fake)).toEqual([`${A}@0*`, `${B}@1*`]);

    // Done already: a second run changes nothing.
    const before = mutations(fake);
    await provider.resize({ ...ref, id: vm.id }, resize([A, B]));
    expect(ENI_CALLS.map((api) => fake.count(api) - before[api]!)).toEqual([0, 0, 0, 0, 0]);

    await provider.delete({ ...ref, id: vm.id });
    expect(fake.networkInterfaces.size).toBe(0);
  });

  it('removes a NIC: detaches it, waits until it is available, deletes it; the others keep their device index', async () => {
    const { provider, fake, mock } = setup({ transitionMs: 3000 });
    const vm = await provider.create(create([A, B, C]));
    const gone = vm.nics![1]!.id!;

    const after = await provider.resize({ ...ref, id: vm.id }, resize([A, C]));

    expect(after.id).toBe(vm.id);
    expect(fake.count('StopInstances')).toBe(0);
    expect(after.nics?.map((n) => n.network)).toEqual([A, C]);
    expect(fake.networkInterfaces.has(gone)).toBe(false);
    expect(enis(fake)).toEqual([`${A}@0*`, `${C}@2*`]);
    // The delete came after a describe that saw it available (the fake refuses to delete an ENI in use).
    const apis = mock.calls().map((c) => (c.args[0] as { constructor: { name: string } }).constructor.name.replace('Command', ''));
    const detach = apis.indexOf('DetachNetworkInterface');
    const del = apis.indexOf('DeleteNetworkInterface');
    expect(detach).toBeGreaterThan(-1);
    expect(apis.slice(detach + 1, del).filter((a) => a === 'DescribeNetworkInterfaces').length).toBeGreaterThanOrEqual(2);

    // A NIC added later takes the free index 1.
    const again = await provider.resize({ ...ref, id: vm.id }, resize([A, C, B]));
    expect(again.nics?.map((n) => n.network)).toEqual([A, B, C]);
  });

  it('adds and removes in one change, ignores the NIC model (EC2 has none), and leaves the primary where it is', async () => {
    const { provider, fake } = setup();
    const vm = await provider.create(create([A, B]));
    const after = await provider.resize({ ...ref, id: vm.id }, { ...resize([]), nics: [{ network: A, model: 'e1000e' }, { network: C }] });
    expect(after.nics?.map((n) => n.network)).toEqual([A, C]);
    expect(after.nics?.[0]?.id).toBe(vm.nics?.[0]?.id);
    expect(enis(fake)).toEqual([`${A}@0*`, `${C}@1*`]);
  });

  describe('an interrupted change, re-run, converges', () => {
    // Adds B and removes C in one change: every ENI call of it is made once.
    const clean = async () => {
      const { provider, fake } = setup({ transitionMs: 2000 });
      const vm = await provider.create(create([A, C]));
      const before = mutations(fake);
      await provider.resize({ ...ref, id: vm.id }, resize([A, B]));
      return ENI_CALLS.reduce((n, api) => n + fake.count(api) - before[api]!, 0);
    };

    for (const when of ['before', 'after'] as const) {
      it(`when the process dies ${when} any one of the change's ENI calls`, async () => {
        const steps = await clean();
        expect(steps).toBe(5); // Detach, Delete, Create, Attach, Modify
        for (let k = 1; k <= steps; k++) {
          let seen = 0;
          let armed = false;
          let crashed = '';
          const { provider, fake, logs } = setup({
            transitionMs: 2000,
            send: (f) => async (command: object) => {
              const api = command.constructor.name.replace(/Command$/, '');
              const crash = armed && ENI_CALLS.includes(api) && ++seen === k;
              if (crash) crashed = api;
              if (crash && when === 'before') throw ec2Error('InternalError', `crash before ${api}`, 500);
              const answer = await f.send(command);
              if (crash) throw ec2Error('InternalError', `crash after ${api}`, 500);
              return answer;
            },
          });
          const vm = await provider.create(create([A, C]));
          armed = true;
          await expect(provider.resize({ ...ref, id: vm.id }, resize([A, B])), `step ${k}`).rejects.toThrow(/crash/);
          armed = false;

          const after = await provider.resize({ ...ref, id: vm.id }, resize([A, B]));

          expect(after.id, `step ${k}`).toBe(vm.id);
          expect(after.nics?.map((n) => n.network), `step ${k}`).toEqual([A, B]);
          // Nothing left over, nothing made twice, everything goes with the instance.
          expect(enis(fake), `step ${k} ${logs.join('\n')}`).toEqual([`${A}@0*`, `${B}@1*`]);
          // One ENI made, reused by the re-run; unless an attach failed outright, whose ENI was deleted then.
          expect(fake.count('CreateNetworkInterface'), `step ${k}: ${when} ${crashed}`).toBe(when === 'before' && crashed === 'AttachNetworkInterface' ? 2 : 1);
          expect([...fake.networkInterfaces.values()].every((e) => e.attachment?.deleteOnTermination), `step ${k}`).toBe(true);
          expect(fake.count('StopInstances'), `step ${k}`).toBe(0);
        }
      });
    }

    it('a failed attach deletes the ENI it made, and the error is the attach’s', async () => {
      const { provider, fake } = setup();
      const vm = await provider.create(create([A]));
      fake.fail('AttachNetworkInterface', ec2Error('AttachmentLimitExceeded', 'Interface count 2 exceeds the limit for m6a.large'));
      await expect(provider.resize({ ...ref, id: vm.id }, resize([A, B]))).rejects.toMatchObject({
        code: 'CapacityExceeded',
        message: expect.stringMatching(/^VM "shop-web-0" \(i-\w+\) takes no more network interfaces: EC2 refused resize: Interface count 2/),
        hint: expect.stringMatching(/declare fewer NICs or a larger size/),
      });
      expect(fake.count('CreateNetworkInterface')).toBe(1);
      expect(fake.count('DeleteNetworkInterface')).toBe(1);
      expect(enis(fake)).toEqual([`${A}@0*`]);
    });
  });

  describe('refused before anything changes', () => {
    it('a subnet in another zone, or one that does not exist, or no subnet id: a typed error naming the field', async () => {
      const { provider, fake } = setup();
      const vm = await provider.create(create([A, B]));
      const before = mutations(fake);
      // B's removal would be fine; the bad additions stop all of it.
      await expect(provider.resize({ ...ref, id: vm.id }, resize([A, OTHER_ZONE]))).rejects.toMatchObject({
        code: 'InvalidInput',
        message: `groups.web.nics[1].network: subnet ${OTHER_ZONE} is in us-east-1b, not in us-east-1a where VM "shop-web-0" (${vm.id}) runs; nothing was changed`,
        context: { path: 'groups.web.nics[1].network', vm: 'shop-web-0', operation: 'resize' },
        hint: expect.stringMatching(/^an ENI attaches only to an instance in its own zone/),
      });
      await expect(provider.resize({ ...ref, id: vm.id }, resize([A, 'subnet-0eeeeeeeeeeeeeee5', OTHER_ZONE]))).rejects.toMatchObject({
        code: 'InvalidInput',
        message: expect.stringMatching(/^groups\.web\.nics\[1\]\.network: subnet subnet-0eeeeeeeeeeeeeee5 does not exist .*; groups\.web\.nics\[2\]\.network: subnet subnet-0ddddddddddddddd4 is in us-east-1b/),
        context: { path: 'groups.web.nics[1].network' },
      });
      await expect(provider.resize({ ...ref, id: vm.id }, resize([A, 'lan2']))).rejects.toMatchObject({
        code: 'InvalidInput',
        message: 'groups.web.nics[1].network: "lan2" is not an EC2 subnet id; nothing was changed',
        context: { path: 'groups.web.nics[1].network' },
      });
      expect(mutations(fake)).toEqual(before);
      expect(enis(fake)).toEqual([`${A}@0*`, `${B}@1*`]);
    });

    it('a change that would detach the primary NIC (device 0 belongs to the instance)', async () => {
      const { provider, fake } = setup();
      const vm = await provider.create(create([A, B]));
      const before = mutations(fake);
      await expect(provider.resize({ ...ref, id: vm.id }, resize([B, C]))).rejects.toMatchObject({
        code: 'Unsupported',
        message: expect.stringMatching(/would lose its primary NIC \(eni-\w+ in subnet-0aaaaaaaaaaaaaaa1\); EC2 cannot detach device 0; nothing was changed$/),
        context: { path: 'groups.web.nics' },
      });
      expect(mutations(fake)).toEqual(before);
    });

    it('an ENI NovaCron did not make is never detached or deleted', async () => {
      const { provider, fake } = setup();
      const vm = await provider.create(create([A]));
      // Someone attaches their own ENI to the instance.
      const theirs = (await fake.handle(new CreateNetworkInterfaceCommand({ SubnetId: C, TagSpecifications: [{ ResourceType: 'network-interface', Tags: [{ Key: 'novacron:fleet', Value: 'shop' }] }] }))) as { NetworkInterface: { NetworkInterfaceId: string } };
      const id = theirs.NetworkInterface.NetworkInterfaceId;
      await fake.handle(new AttachNetworkInterfaceCommand({ InstanceId: vm.id, NetworkInterfaceId: id, DeviceIndex: 1 }));
      const before = mutations(fake);

      for (const want of [[A], [A, B]]) {
        await expect(provider.resize({ ...ref, id: vm.id }, resize(want))).rejects.toMatchObject({
          code: 'Conflict',
          message: expect.stringContaining(`network interface(s) NovaCron did not make that groups.web.nics no longer lists: ${id} in ${C} (device 1)`),
          hint: expect.stringMatching(/tag them novacron:fleet=shop and novacron:vm=shop-web-0/),
        });
      }
      expect(mutations(fake)).toEqual(before);
      expect(fake.networkInterfaces.get(id)?.attachment).toMatchObject({ instanceId: vm.id, deviceIndex: 1 });

      // Declared, it stays; the new NIC takes the next free index.
      const after = await provider.resize({ ...ref, id: vm.id }, resize([A, C, B]));
      expect(after.nics?.map((n) => n.network)).toEqual([A, C, B]);
      expect(fake.networkInterfaces.get(id)?.attachment).toMatchObject({ instanceId: vm.id, deviceIndex: 1 });
      // An unattached ENI in this VM's subnet that is not tagged as this VM's is not taken either.
      expect(fake.count('CreateNetworkInterface') - before['CreateNetworkInterface']!).toBe(1);
    });
  });
});

describe('plan and apply on EC2: nics', () => {
  const fleetWith = (subnets: string[]) =>
    parseFleet({
      name: 'shop',
      providers: { aws: { type: 'aws', region: 'us-east-1', zones: ['us-east-1a'], images: { 'debian-12': 'ami-0123456789abcdef0' }, securityGroupIds: [SG] } },
      groups: { web: { count: 1, cpu: 2, memory: '4GiB', disk: '20GiB', image: 'debian-12', nics: nics(...subnets) } },
    });

  async function observe(provider: AwsProvider) {
    return { hosts: await provider.inventory(), vms: await provider.list('shop'), capabilities: { aws: provider.capabilities } };
  }

  it('plans hot-plug for an added NIC and applies it through resize, the VM kept; a change to the primary NIC replaces', async () => {
    const { provider, fake } = setup();
    const providers = new ProviderSet(new Map([['aws', provider]]));
    const made = await apply(plan(fleetWith([A]), await observe(provider)), providers, { middleware: new MiddlewareStack() });
    expect(made.ok).toBe(true);
    const [vm] = await provider.list('shop');

    const add = plan(fleetWith([A, B]), await observe(provider));
    expect(add.steps.map((s) => s.kind)).toEqual(['update']);
    const update = add.steps[0] as UpdateStep;
    expect(update).toMatchObject({ changeClass: 'hot-plug', nics: nics(A, B) });
    expect(update.reason).toContain(`[hot-plug: attach ${B}: hot-plugged into the running guest]`);
    const applied = await apply(add, providers, { middleware: new MiddlewareStack() });
    expect(applied.ok).toBe(true);
    const [after] = await provider.list('shop');
    expect(after?.id).toBe(vm?.id);
    expect(after?.nics?.map((n) => n.network)).toEqual([A, B]);
    expect(fake.count('StopInstances')).toBe(0);
    expect(plan(fleetWith([A, B]), await observe(provider)).steps).toEqual([]);

    // Removing a secondary NIC is a hot-plug too; the primary's is a replacement, and says why.
    expect(plan(fleetWith([A]), await observe(provider)).steps[0]).toMatchObject({ kind: 'update', changeClass: 'hot-plug' });
    const primary = plan(fleetWith([B]), await observe(provider));
    expect(primary.steps.map((s) => s.kind)).toEqual(['delete', 'replace']);
    expect(primary.steps[1]!.reason).toMatch(new RegExp(`the primary NIC \\(${A}\\) cannot be detached from the VM`));
    expect(primary.steps[1]).toMatchObject({ kind: 'replace', request: { nics: nics(B) } });
  });
});
