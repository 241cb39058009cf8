import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EC2Client } from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import {
  defaultMiddlewareStack,
  loadFleetFile,
  observe,
  parseFleet,
  plan,
  ProviderRegistry,
  ProviderSet,
  reconcile as reconcileFleet,
  seededRandom,
  type ApplyEvent,
  type ApplyListener,
  type AwsProviderConfig,
  type Clock,
  type CreateStep,
  type FleetSpec,
  type FleetSpecInput,
  type GcpProviderConfig,
  type Plan,
  type ReconcileResult,
  type SimProviderConfig,
} from '@novacron/core';
import { AwsProvider } from '@novacron/provider-aws';
import { FakeEc2 } from '@novacron/provider-aws/testing';
import { GcpProvider } from '@novacron/provider-gcp';
import { FakeCompute } from '@novacron/provider-gcp/testing';
import { SimProvider } from '@novacron/provider-sim';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';

/**
 * examples/multi-cloud/fleet.yaml planned and applied end to end through the core's
 * reconcile (observe, plan, apply, and again for what a zone had no capacity for): the sim provider for the racks, EC2 through its SDK client answered by
 * a stateful fake (aws-sdk-client-mock), Compute Engine through its real client talking to
 * a fake of its REST API on loopback. (With the KVM testbed as a fourth provider: test/kvm-cloud.integ.spec.ts.)
 */
const instantClock: Clock = { now: () => Date.now(), sleep: async (_ms, signal) => signal?.throwIfAborted() };

/** Time that passes only when someone sleeps: backoff waits let the fake's rate buckets refill, instantly. */
function virtualClock(): Clock {
  let now = Date.parse('2026-11-27T10:00:00Z');
  return {
    now: () => now,
    sleep: async (ms, signal) => {
      signal?.throwIfAborted();
      now += ms;
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}
const FLEET_FILE = join(import.meta.dirname, 'fleet.yaml');

let gce: FakeCompute | undefined;
afterEach(async () => {
  await gce?.close();
  gce = undefined;
});

async function world(fleet: FleetSpec, faults: { ec2Throttle?: boolean } = {}, clock: Clock = instantClock) {
  const onprem = SimProvider.open({ name: 'onprem', config: fleet.providers['onprem'] as SimProviderConfig, clock: instantClock });
  const awsConfig = fleet.providers['aws'] as AwsProviderConfig;
  const ec2Fake = new FakeEc2({
    region: awsConfig.region,
    zones: awsConfig.zones!,
    images: [{ ImageId: 'ami-0d3b1a9e5f0c2a001', Name: 'debian-12-amd64-20261101-1920', OwnerId: '136693071363', RootDeviceName: '/dev/xvda', State: 'available', CreationDate: '2026-11-01T19:20:00.000Z' }],
    now: () => clock.now(),
    // EC2's request-rate buckets, scaled down so a 12-VM fleet meets them.
    ...(faults.ec2Throttle ? { throttle: { mutating: { capacity: 2, refillPerSec: 1 }, describe: { capacity: 4, refillPerSec: 2 } } } : {}),
  });
  const ec2 = new EC2Client({ region: awsConfig.region, credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } });
  mockClient(ec2).send.callsFake(ec2Fake.send);
  const s3 = new S3Client({ region: awsConfig.region, credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } });
  mockClient(s3).send.callsFake(ec2Fake.send);
  const aws = new AwsProvider({ name: 'aws', config: awsConfig, clock, clients: { ec2: () => ec2, s3: () => s3 }, pollMs: 1, batchWindowMs: 1 });
  const gcpConfig = fleet.providers['gcp'] as GcpProviderConfig;
  gce = await FakeCompute.start({ project: gcpConfig.project, zones: gcpConfig.zones });
  const gcp = new GcpProvider({ name: 'gcp', config: { ...gcpConfig, endpoint: gce.endpoint }, clock: instantClock, authClient: gce.authClient(), pollMs: 1 });
  const providers = new ProviderSet(new Map<string, SimProvider | AwsProvider | GcpProvider>([['onprem', onprem], ['aws', aws], ['gcp', gcp]]));
  return { providers, ec2Fake, gce, aws, gcp, onprem };
}

/** The core's reconcile: observe, plan, apply, and again for VMs a zone had no capacity for. */
async function reconcile(fleet: FleetSpec, providers: ProviderSet, options: { destroy?: boolean; clock?: Clock; onEvent?: ApplyListener } = {}): Promise<{ planned: Plan; ok: boolean; failures: string[]; result: ReconcileResult }> {
  const clock = options.clock ?? instantClock;
  const middleware = defaultMiddlewareStack({ retry: { clock, maxAttempts: 10, random: seededRandom(7) }, breaker: { clock, threshold: 1000 }, tracing: false });
  const result = await reconcileFleet(fleet, providers, { clock, middleware, plan: { ...(options.destroy ? { destroy: true } : {}) }, ...(options.onEvent ? { onEvent: options.onEvent } : {}) });
  const failures = [...result.outcomes.filter((o) => o.status !== 'done').map((o) => `${o.step.id}: ${o.error?.describe() ?? o.status}`), ...result.unplaced.map((u) => `unplaced ${u.message}`)];
  return { planned: result.plan, ok: result.ok, failures, result };
}

/** Providers behind the core's retry middleware, with seeded jitter so runs repeat. */
function retrying(providers: ProviderSet, clock: Clock): ProviderSet {
  const stack = defaultMiddlewareStack({ retry: { clock, maxAttempts: 10, random: seededRandom(11) }, breaker: false, tracing: false });
  return providers.map((p) => stack.wrap(p));
}

function edit(fleet: FleetSpec, change: (input: FleetSpecInput) => void): FleetSpec {
  const input = structuredClone(fleet) as unknown as FleetSpecInput;
  change(input);
  return parseFleet(input);
}

describe('examples/multi-cloud: one fleet over racks, EC2 and Compute Engine', () => {
  it('plans with each cloud VM on the cheapest type that fits, the prices in the plan cost, applies, and then has nothing to do', async () => {
    const fleet = await loadFleetFile(FLEET_FILE);
    const { providers, ec2Fake, gce } = await world(fleet);
    const observed = await observe(fleet, providers);

    const first = plan(fleet, observed);

    expect(first.unplaced).toEqual([]);
    const creates = first.steps.filter((s): s is CreateStep => s.kind === 'create');
    expect(creates).toHaveLength(12);
    expect(creates.filter((s) => s.group === 'db').every((s) => s.provider === 'onprem')).toBe(true);
    expect(creates.filter((s) => s.group === 'web').every((s) => s.provider === 'aws' || s.provider === 'gcp')).toBe(true);
    // Every cloud VM gets the cheapest type its zone offers that fits it, and the plan's
    // hourly cost is those prices plus the racks that carry VMs.
    const hosts = new Map(observed.hosts.map((h) => [h.id, h]));
    let expected = 0;
    const racks = new Set<string>();
    for (const step of creates) {
      const host = hosts.get(step.host)!;
      if (!host.instanceTypes) {
        racks.add(host.id);
        continue;
      }
      const fits = host.instanceTypes.filter((t) => t.cpu >= step.request.resources.cpu && t.memoryMiB >= step.request.resources.memoryMiB);
      const cheapest = Math.min(...fits.map((t) => t.pricePerHour));
      const chosen = host.instanceTypes.find((t) => t.name === step.request.instanceType)!;
      expect(chosen.pricePerHour, `${step.vm} on ${step.host}`).toBe(cheapest);
      expected += chosen.pricePerHour;
    }
    for (const rack of racks) expected += hosts.get(rack)!.pricePerHour;
    expect(first.costPerHour).toBeCloseTo(expected, 4);
    expect(first.costPerHour).toBeGreaterThan(1.1);

    const applied = await reconcile(fleet, providers);
    expect(applied.failures).toEqual([]);

    // The clouds hold what the plan said, owned by tags and labels.
    const webOnAws = creates.filter((s) => s.provider === 'aws').length;
    const webOnGcp = creates.filter((s) => s.provider === 'gcp').length;
    expect(ec2Fake.describe().filter((i) => i.State?.Name === 'running')).toHaveLength(webOnAws);
    expect([...gce.instances.values()].filter((i) => i['status'] === 'RUNNING')).toHaveLength(webOnGcp);
    expect(ec2Fake.describe()[0]?.Tags).toEqual(expect.arrayContaining([{ Key: 'novacron:fleet', Value: 'shop' }, { Key: 'tier', Value: expect.any(String) }]));

    // Read back from the providers alone (no state file), the fleet matches its spec.
    const again = plan(fleet, await observe(fleet, providers));
    expect(again.steps.map((s) => `${s.id}: ${s.reason}`)).toEqual([]);
    expect(again.costPerHour).toBeCloseTo(first.costPerHour, 4);
  });

  it('converges through EC2 throttling and a Compute Engine zone short of capacity, then scales, resizes and is destroyed', async () => {
    const fleet = await loadFleetFile(FLEET_FILE);
    const clock = virtualClock();
    const { providers, ec2Fake, gce } = await world(fleet, { ec2Throttle: true }, clock);
    gce.noCapacity.add('us-central1-a/e2-standard-2');

    const applied = await reconcile(fleet, providers, { clock });

    expect(applied.failures).toEqual([]);
    expect(ec2Fake.throttled).toBeGreaterThan(0);
    expect([...gce.instances.values()].filter((i) => String(i['zone']).endsWith('us-central1-a')).every((i) => !String(i['machineType']).endsWith('/e2-standard-2'))).toBe(true);
    expect((await reconcile(fleet, providers, { clock })).planned.steps).toEqual([]);

    const smaller = edit(fleet, (f) => {
      f.groups['web']!.count = 4;
      f.groups['batch']!.cpu = 8;
      f.groups['batch']!.memory = '32GiB';
    });
    const changed = await reconcile(smaller, providers, { clock });
    expect(changed.failures).toEqual([]);
    expect(changed.planned.summary).toMatchObject({ delete: 2 });
    const after = await observe(smaller, retrying(providers, clock));
    expect(after.vms.filter((v) => v.group === 'batch').every((v) => v.resources.cpu === 8 && v.resources.memoryMiB === 32768)).toBe(true);
    expect(plan(smaller, after).steps).toEqual([]);

    const destroyed = await reconcile(smaller, providers, { destroy: true, clock });
    expect(destroyed.failures).toEqual([]);
    expect((await observe(smaller, retrying(providers, clock))).vms).toEqual([]);
    expect(ec2Fake.describe().every((i) => i.State?.Name === 'terminated')).toBe(true);
    expect(gce.instances.size).toBe(0);
  });

  it('a zone out of capacity fails the create with CapacityExceeded, and the same apply places the VM in another zone', async () => {
    const fleet = parseFleet({
      name: 'cap',
      providers: {
        onprem: { type: 'sim', hosts: [] },
        aws: { type: 'aws', region: 'us-east-1', zones: ['us-east-1a', 'us-east-1b'], instanceTypes: ['c6i.large'], images: { 'debian-12': '136693071363/debian-12-amd64-*' } },
        gcp: { type: 'gcp', project: 'cap-project', zones: ['us-central1-a'], images: { 'debian-12': 'projects/debian-cloud/global/images/family/debian-12' } },
      },
      groups: { web: { count: 1, cpu: 2, memory: '4GiB', image: 'debian-12', placement: { providers: ['aws'] } } },
    });
    const { providers, ec2Fake } = await world(fleet);
    ec2Fake.noCapacity.add('us-east-1a/c6i.large');

    const events: ApplyEvent[] = [];
    const applied = await reconcile(fleet, providers, { onEvent: (e) => events.push(e) });

    // One apply: the first round's create is refused in us-east-1a, the second places it in us-east-1b.
    expect(applied.failures).toEqual([]);
    expect(applied.ok).toBe(true);
    expect(applied.planned.steps.map((s) => (s as CreateStep).host)).toEqual(['aws/us-east-1a']);
    const [first, second] = applied.result.rounds;
    expect(applied.result.rounds).toHaveLength(2);
    expect(first!.result.outcomes.map((o) => `${o.step.id}: ${o.error?.describe()}`)).toEqual([expect.stringMatching(/^create:cap-web-0: no capacity for VM "cap-web-0": c6i\.large in us-east-1a: InsufficientInstanceCapacity /)]);
    expect(second!.plan.steps.map((s) => `${s.id} → ${(s as CreateStep).host}`)).toEqual(['create:cap-web-0 → aws/us-east-1b']);
    expect(events.flatMap((e) => (e.type === 'capacity.replan' ? [e.message] : []))).toEqual(['us-east-1a has no capacity for c6i.large: placing cap-web-0 again (us-east-1b, c6i.large)']);
    expect(ec2Fake.describe().filter((i) => i.State?.Name === 'running').map((i) => i.Placement?.AvailabilityZone)).toEqual(['us-east-1b']);
    expect((await reconcile(fleet, providers)).planned.steps).toEqual([]);
  });

  it('a web tier spread over the zones keeps its spread when a zone runs out: every VM runs after one apply', async () => {
    const fleet = parseFleet({
      name: 'spread',
      providers: {
        onprem: { type: 'sim', hosts: [] },
        aws: { type: 'aws', region: 'us-east-1', zones: ['us-east-1a', 'us-east-1b', 'us-east-1c'], instanceTypes: ['c6i.large'], images: { 'debian-12': '136693071363/debian-12-amd64-*' } },
        gcp: { type: 'gcp', project: 'cap-project', zones: ['us-central1-a'], images: { 'debian-12': 'projects/debian-cloud/global/images/family/debian-12' } },
      },
      groups: { web: { count: 4, cpu: 2, memory: '4GiB', image: 'debian-12', placement: { providers: ['aws'], spread: { key: 'zone', maxSkew: 2 } } } },
    });
    const { providers, ec2Fake } = await world(fleet);
    const short = plan(fleet, await observe(fleet, providers)).steps.map((s) => (s as CreateStep).host.split('/')[1]!).sort()[0]!;
    ec2Fake.noCapacity.add(`${short}/c6i.large`);

    const applied = await reconcile(fleet, providers);

    expect(applied.failures).toEqual([]);
    expect(applied.result.rounds.length).toBeGreaterThan(1);
    const zones = ec2Fake.describe().filter((i) => i.State?.Name === 'running').map((i) => i.Placement!.AvailabilityZone!);
    expect(zones).toHaveLength(4);
    expect(zones).not.toContain(short);
    const perZone = [...new Set(zones)].map((z) => zones.filter((x) => x === z).length);
    expect(Math.max(...perZone) - Math.min(...perZone)).toBeLessThanOrEqual(2);
    expect((await reconcile(fleet, providers)).planned.steps).toEqual([]);
  });

  it('moves VMs between providers through disk images: racks → EC2 (S3 import) → Compute Engine (EC2 export, GCS tarball import)', async () => {
    const base = parseFleet({
      name: 'mv',
      providers: {
        onprem: { type: 'sim', hosts: [{ name: 'rack1-a', zone: 'dc1', cpu: 32, memory: '128GiB', pricePerHour: 0.55 }] },
        aws: { type: 'aws', region: 'us-east-1', zones: ['us-east-1a'], images: { 'debian-12': '136693071363/debian-12-amd64-*' }, imageBucket: 'mv-images', imageDir: join(tmpdir(), 'novacron-mv') },
        gcp: { type: 'gcp', project: 'mv-project', zones: ['us-central1-a'], images: { 'debian-12': 'projects/debian-cloud/global/images/family/debian-12' }, imageBucket: 'mv-images' },
      },
      groups: { app: { count: 2, cpu: 2, memory: '8GiB', disk: '20GiB', image: 'debian-12', placement: { providers: ['onprem'] } } },
    });
    const on = (providers: string[]) => edit(base, (f) => void (f.groups['app']!.placement = { providers }));
    const { providers, ec2Fake, gce } = await world(base);
    expect((await reconcile(base, providers)).failures).toEqual([]);

    const toAws = await reconcile(on(['aws']), providers);
    expect(toAws.planned.steps.map((s) => `${s.kind} ${s.vm} → ${(s as { to?: string }).to}`)).toEqual(['migrate mv-app-0 → aws/us-east-1a', 'migrate mv-app-1 → aws/us-east-1a']);
    expect(toAws.failures).toEqual([]);
    const amis = [...ec2Fake.images.values()].filter((i) => i.tags.get('novacron:image')?.startsWith('mv-app-'));
    expect(amis).toHaveLength(2);
    const onAws = ec2Fake.describe().filter((i) => i.State?.Name === 'running');
    expect(onAws.map((i) => i.ImageId).sort()).toEqual(amis.map((a) => a.ImageId).sort());
    expect(plan(on(['aws']), await observe(on(['aws']), providers)).steps).toEqual([]);

    const toGcp = await reconcile(on(['gcp']), providers);
    expect(toGcp.failures).toEqual([]);
    expect(ec2Fake.count('ExportImage')).toBe(2);
    const images = [...gce.images.values()].filter((i) => String(i['name']).startsWith('mv-app-'));
    expect(images.map((i) => i['status'])).toEqual(['READY', 'READY']);
    expect([...gce.instances.values()].map((i) => i['name']).sort()).toEqual(['mv-app-0', 'mv-app-1']);
    expect(ec2Fake.describe().every((i) => i.State?.Name === 'terminated')).toBe(true);
    const settled = await observe(on(['gcp']), providers);
    expect(settled.vms.map((v) => [v.name, v.provider, v.image]).sort()).toEqual([
      ['mv-app-0', 'gcp', 'debian-12'],
      ['mv-app-1', 'gcp', 'debian-12'],
    ]);
    expect(plan(on(['gcp']), settled).steps).toEqual([]);
  });

  it('is what the CLI gets: the registry loads both cloud providers on demand by kind', async () => {
    const registry = new ProviderRegistry();
    expect((await registry.module('aws')).kind).toBe('aws');
    expect((await registry.module('gcp')).kind).toBe('gcp');
  });
});
