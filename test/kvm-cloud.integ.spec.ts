// KVM and the clouds in one fleet, through the core's observe → plan → apply: the KVM
// testbed's real libvirt hosts, EC2 through its SDK client answered by the stateful fake
// (aws-sdk-client-mock), Compute Engine through its real client against the loopback fake,
// and the simulated racks. A VM moves from KVM to EC2 with its disk (qemu-img export, S3
// upload, ImportSnapshot, AMI) and back (EC2 export, import into a KVM pool, boot), and a
// fleet spanning all four plans and applies end to end.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EC2Client } from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  apply,
  defaultMiddlewareStack,
  observe,
  parseFleet,
  plan,
  ProviderSet,
  seededRandom,
  systemClock,
  type AwsProviderConfig,
  type Clock,
  type CreateStep,
  type FleetSpec,
  type FleetSpecInput,
  type GcpProviderConfig,
  type ImageArtifact,
  type KvmProviderConfig,
  type OperationContext,
  type Plan,
  type Provider,
  type SimProviderConfig,
  type VmRef,
} from '@novacron/core';
import { AwsProvider } from '@novacron/provider-aws';
import { FakeEc2 } from '@novacron/provider-aws/testing';
import { GcpProvider } from '@novacron/provider-gcp';
import { FakeCompute } from '@novacron/provider-gcp/testing';
import { KvmProvider } from '@novacron/provider-kvm';
import { SimProvider } from '@novacron/provider-sim';
import { execOnHost, guestHttpGet, kvmProviderConfigFor, loadTestbed, parseKeyValues, virshOnHost, waitForGuestMarker, type TestbedHost } from './testbed/index.ts';

const tb = loadTestbed();
const RUN = `nckc${randomBytes(2).toString('hex')}`;
const MiB = 1024 * 1024;
const imageDir = mkdtempSync(join(tmpdir(), `${RUN}-`));
const instantClock: Clock = { now: () => Date.now(), sleep: async (_ms, signal) => signal?.throwIfAborted() };

/** Testbed hosts, those with the most free DHCP leases first (each host has 50, held for an hour). */
async function hostsByFreeLeases(): Promise<TestbedHost[]> {
  const used = await Promise.all(tb.hosts.map(async (h) => (await virshOnHost(h, ['net-dhcp-leases', tb.guest.network])).split('\n').filter((l) => l.trim()).length));
  return tb.hosts.map((h, i) => ({ h, n: used[i]! })).sort((a, b) => a.n - b.n).map((x) => x.h);
}
/** The testbed (its two hosts with the most free DHCP leases) as a provider of the fleet, with its tiny guest as image `tiny`. */
const usable = new Set((await hostsByFreeLeases()).slice(0, 2).map((h) => h.name));
const lab = { ...kvmProviderConfigFor(tb), hosts: kvmProviderConfigFor(tb).hosts.filter((h) => usable.has(h.name)), imageDir, backupDir: `/var/tmp/${RUN}-backups` };
const aws = { type: 'aws' as const, region: 'us-east-1', zones: ['us-east-1a', 'us-east-1b'], images: { tiny: '136693071363/debian-12-amd64-*' }, imageBucket: `${RUN}-images`, imageDir };
const gcp = { type: 'gcp' as const, project: `${RUN}-project`, zones: ['us-central1-a'], images: { tiny: 'projects/debian-cloud/global/images/family/debian-12' }, imageBucket: `${RUN}-images` };

/** KVM and EC2 providers that keep what they export, so the test can follow the bytes. */
class WatchedKvm extends KvmProvider {
  readonly exported: ImageArtifact[] = [];
  /** sha256 of the 2 MiB at 40 MiB of each export, read before the move deletes the file. */
  readonly region: string[] = [];
  override async exportImage(ref: VmRef, ctx?: OperationContext): Promise<ImageArtifact> {
    const artifact = await super.exportImage(ref, ctx);
    this.exported.push(artifact);
    this.region.push(sha256OfFile(artifact.path, 40 * MiB, 2 * MiB));
    return artifact;
  }
}
class WatchedAws extends AwsProvider {
  readonly exported: ImageArtifact[] = [];
  override async exportImage(ref: VmRef, ctx?: OperationContext): Promise<ImageArtifact> {
    const artifact = await super.exportImage(ref, ctx);
    this.exported.push(artifact);
    return artifact;
  }
}

let gce: FakeCompute | undefined;
const opened: Provider[] = [];
afterEach(async () => {
  await gce?.close();
  gce = undefined;
  for (const p of opened.splice(0)) await p.close?.();
});
afterAll(async () => {
  await Promise.all(
    tb.hosts.map(async (h) => {
      const names = (await virshOnHost(h, ['list', '--all', '--name'])).split('\n').map((s) => s.trim()).filter((n) => n.startsWith(RUN));
      for (const d of names) {
        await execOnHost(h, ['virsh', '-q', 'destroy', d]);
        await execOnHost(h, ['virsh', '-q', 'undefine', d]);
      }
      const vols = (await virshOnHost(h, ['vol-list', tb.guest.pool])).split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n.startsWith(RUN) || n.startsWith(`novacron-image-${RUN}`));
      for (const v of vols) await execOnHost(h, ['virsh', '-q', 'vol-delete', v, '--pool', tb.guest.pool]);
    }),
  );
  rmSync(imageDir, { recursive: true, force: true });
  rmSync(`/var/tmp/${RUN}-backups`, { recursive: true, force: true });
}, 200_000);

async function world(fleet: FleetSpec) {
  const providers = new Map<string, Provider>();
  const kvm = new WatchedKvm({ name: 'lab', config: fleet.providers['lab'] as KvmProviderConfig, cwd: process.cwd(), env: process.env, clock: systemClock });
  providers.set('lab', kvm);
  const awsConfig = fleet.providers['aws'] as AwsProviderConfig | undefined;
  let ec2Fake: FakeEc2 | undefined;
  let awsProvider: WatchedAws | undefined;
  if (awsConfig) {
    ec2Fake = new FakeEc2({
      region: awsConfig.region,
      zones: awsConfig.zones!,
      images: [{ ImageId: 'ami-0d3b1a9e5f0c2a001', Name: 'debian-12-amd64-20261101-1920', OwnerId: '136693071363', RootDeviceName: '/dev/xvda', State: 'available', CreationDate: '2026-11-01T19:20:00.000Z' }],
    });
    const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' };
    const ec2 = new EC2Client({ region: awsConfig.region, credentials });
    mockClient(ec2).send.callsFake(ec2Fake.send);
    const s3 = new S3Client({ region: awsConfig.region, credentials });
    mockClient(s3).send.callsFake(ec2Fake.send);
    awsProvider = new WatchedAws({ name: 'aws', config: awsConfig, clock: instantClock, clients: { ec2: () => ec2, s3: () => s3 }, pollMs: 1, batchWindowMs: 1 });
    providers.set('aws', awsProvider);
  }
  const gcpConfig = fleet.providers['gcp'] as GcpProviderConfig | undefined;
  if (gcpConfig) {
    gce = await FakeCompute.start({ project: gcpConfig.project, zones: gcpConfig.zones });
    providers.set('gcp', new GcpProvider({ name: 'gcp', config: { ...gcpConfig, endpoint: gce.endpoint }, clock: instantClock, authClient: gce.authClient(), pollMs: 1 }));
  }
  const simConfig = fleet.providers['onprem'] as SimProviderConfig | undefined;
  if (simConfig) providers.set('onprem', SimProvider.open({ name: 'onprem', config: simConfig, stateDir: mkdtempSync(join(imageDir, 'sim-')), clock: instantClock }));
  opened.push(...providers.values());
  return { providers: new ProviderSet(providers), kvm, ec2Fake, aws: awsProvider };
}

async function reconcile(fleet: FleetSpec, providers: ProviderSet, options: { destroy?: boolean } = {}): Promise<{ planned: Plan; failures: string[] }> {
  const middleware = defaultMiddlewareStack({ retry: { clock: instantClock, maxAttempts: 4, random: seededRandom(7) }, breaker: { clock: instantClock, threshold: 1000 }, tracing: false });
  const planned = plan(fleet, await observe(fleet, providers.map((p) => middleware.wrap(p))), options);
  const result = await apply(planned, providers, { clock: instantClock, middleware, concurrency: 6 });
  return { planned, failures: result.outcomes.filter((o) => o.status !== 'done').map((o) => `${o.step.id}: ${o.error?.describe() ?? o.status}`) };
}

function edit(fleet: FleetSpec, change: (input: FleetSpecInput) => void): FleetSpec {
  const input = structuredClone(fleet) as unknown as FleetSpecInput;
  change(input);
  return parseFleet(input);
}

async function hostOf(vm: string): Promise<TestbedHost> {
  for (const h of tb.hosts) if ((await virshOnHost(h, ['list', '--all', '--name'])).split('\n').some((n) => n.trim() === vm)) return h;
  throw new Error(`${vm} is on no testbed host`);
}

function sha256OfFile(path: string, offset = 0, length?: number): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  const buf = Buffer.alloc(16 * MiB);
  let at = offset;
  const end = length === undefined ? Infinity : offset + length;
  for (let n; at < end && (n = readSync(fd, buf, 0, Math.min(buf.length, end - at), at)) > 0; at += n) hash.update(buf.subarray(0, n));
  closeSync(fd);
  return hash.digest('hex');
}

describe('KVM with EC2 and Compute Engine in one fleet', { timeout: 900_000 }, () => {
  it('moves a VM from the KVM testbed to EC2 with its disk, and from EC2 back onto a KVM host, through plan and apply', async () => {
    const base = parseFleet({
      name: `${RUN}mv`,
      providers: { lab, aws },
      groups: { app: { count: 1, cpu: 1, memory: '128MiB', disk: '1GiB', image: 'tiny', placement: { providers: ['lab'] } } },
    });
    const on = (providers: string[]) => edit(base, (f) => void (f.groups['app']!.placement = { providers }));
    const { providers, kvm, ec2Fake, aws: awsProvider } = await world(base);
    const vm = `${RUN}mv-app-0`;

    expect((await reconcile(base, providers)).failures).toEqual([]);
    const first = await hostOf(vm);
    const ip = (await waitForGuestMarker(first, vm, 150_000)).ip!;
    const written = parseKeyValues(await guestHttpGet(first, ip, '/cgi-bin/diskwrite?mib=2&offset=40', { timeoutMs: 120_000 }))['sha256']!;

    // KVM → EC2: stop, qemu-img export, S3 upload, ImportSnapshot, AMI, RunInstances from it, retire the KVM VM.
    const toAws = await reconcile(on(['aws']), providers);
    expect(toAws.planned.steps.map((s) => `${s.kind} ${s.vm} → ${(s as { to?: string }).to}`)).toEqual([`migrate ${vm} → aws/us-east-1a`]);
    expect(toAws.planned.steps[0]!.reason).toMatch(/provider lab → aws/);
    expect(toAws.failures).toEqual([]);
    const [exported] = kvm.exported;
    expect(exported).toMatchObject({ format: 'raw', sizeBytes: 1024 * MiB });
    expect(kvm.region).toEqual([written]);
    expect(existsSync(exported!.path)).toBe(false); // the move removes the export once imported
    const ami = [...ec2Fake!.images.values()].find((i) => i.tags.get('novacron:image')?.startsWith(vm))!;
    expect(ami.tags.get('novacron:sha256')).toBe(exported!.sha256);
    const running = ec2Fake!.describe().filter((i) => i.State?.Name === 'running');
    expect(running.map((i) => i.ImageId)).toEqual([ami.ImageId]);
    expect((await virshOnHost(first, ['list', '--all', '--name'])).includes(vm)).toBe(false);
    expect(plan(on(['aws']), await observe(on(['aws']), providers)).steps).toEqual([]);

    // EC2 → KVM: EC2 export, import into a KVM pool (sha256 checked), create from it, boot, retire the instance.
    const toLab = await reconcile(on(['lab']), providers);
    expect(toLab.planned.steps.map((s) => `${s.kind} ${s.vm}`)).toEqual([`migrate ${vm}`]);
    expect(toLab.failures).toEqual([]);
    expect(ec2Fake!.describe().every((i) => i.State?.Name === 'terminated')).toBe(true);
    const back = await hostOf(vm);
    await waitForGuestMarker(back, vm, 150_000);
    const [fromAws] = awsProvider!.exported;
    // The imported volume holds the bytes EC2 exported (qcow2 of the raw, read back as raw here).
    const volume = (await virshOnHost(back, ['vol-list', tb.guest.pool])).split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').find((n) => n.startsWith(`novacron-image-${vm}`))!;
    expect(volume).toBeDefined();
    const path = (await virshOnHost(back, ['vol-path', '--pool', tb.guest.pool, volume])).trim();
    const raw = join(imageDir, 'readback.raw');
    await execOnHost(back, ['qemu-img', 'convert', '-O', 'raw', path, raw]);
    expect(sha256OfFile(raw, 0, fromAws!.sizeBytes)).toBe(fromAws!.sha256);
    const settled = await observe(on(['lab']), providers);
    expect(settled.vms.map((v) => [v.name, v.provider, v.state, v.image])).toEqual([[vm, 'lab', 'running', 'tiny']]);
    expect(plan(on(['lab']), settled).steps).toEqual([]);
    expect((await reconcile(on(['lab']), providers, { destroy: true })).failures).toEqual([]);
  });

  it('plans and applies a fleet spanning the simulated racks, the KVM testbed, EC2 and Compute Engine, then has nothing to do, then is destroyed', async () => {
    const fleet = parseFleet({
      name: `${RUN}all`,
      providers: {
        onprem: { type: 'sim', hosts: [{ name: 'rack1-a', zone: 'dc1', cpu: 32, memory: '128GiB', pricePerHour: 0.55 }, { name: 'rack1-b', zone: 'dc1', cpu: 32, memory: '128GiB', pricePerHour: 0.55 }] },
        lab: { ...lab, hosts: lab.hosts.map((h) => ({ ...h, pricePerHour: 0.05 })) },
        aws,
        gcp,
      },
      placement: { weights: { cost: 10, balance: 1, headroom: 1 } },
      groups: {
        db: { count: 2, cpu: 1, memory: '128MiB', disk: '1GiB', image: 'tiny', placement: { providers: ['lab'], antiAffinity: 'host' } },
        batch: { count: 2, cpu: 4, memory: '16GiB', disk: '40GiB', image: 'tiny', placement: { providers: ['onprem'] } },
        web: { count: 4, cpu: 2, memory: '4GiB', disk: '20GiB', image: 'tiny', placement: { providers: ['aws', 'gcp'], spread: { key: 'zone', maxSkew: 1 } } },
      },
    });
    const { providers, ec2Fake } = await world(fleet);
    const before = await observe(fleet, providers);
    const first = plan(fleet, before);
    expect(first.unplaced).toEqual([]);
    const creates = first.steps.filter((s): s is CreateStep => s.kind === 'create');
    const by = (p: string) => creates.filter((s) => s.provider === p).map((s) => s.vm).sort();
    expect(by('lab')).toEqual([`${RUN}all-db-0`, `${RUN}all-db-1`]);
    expect(by('onprem')).toEqual([`${RUN}all-batch-0`, `${RUN}all-batch-1`]);
    expect(by('aws').length + by('gcp').length).toBe(4);
    expect(by('aws').length).toBeGreaterThan(0);
    expect(by('gcp').length).toBeGreaterThan(0);
    // Two distinct KVM hosts (antiAffinity). The plan's hourly cost counts every provider:
    // each cloud VM's instance or machine type, and each rack and KVM host that carries VMs.
    expect(new Set(creates.filter((s) => s.provider === 'lab').map((s) => s.host)).size).toBe(2);
    const hosts = new Map(before.hosts.map((h) => [h.id, h]));
    let expected = 0;
    const used = new Set<string>();
    for (const step of creates) {
      const host = hosts.get(step.host)!;
      if (host.instanceTypes) expected += host.instanceTypes.find((t) => t.name === step.request.instanceType)!.pricePerHour;
      else used.add(host.id);
    }
    for (const id of used) expected += hosts.get(id)!.pricePerHour;
    expect(used.size).toBeGreaterThanOrEqual(3); // two KVM hosts and at least one rack
    expect(first.costPerHour).toBeCloseTo(expected, 4);

    const applied = await reconcile(fleet, providers);
    expect(applied.failures).toEqual([]);
    for (const vm of by('lab')) await waitForGuestMarker(await hostOf(vm), vm, 150_000);
    expect(ec2Fake!.describe().filter((i) => i.State?.Name === 'running')).toHaveLength(by('aws').length);
    expect([...gce!.instances.values()].filter((i) => i['status'] === 'RUNNING')).toHaveLength(by('gcp').length);
    const observed = await observe(fleet, providers);
    expect(observed.vms.map((v) => `${v.name}@${v.provider}:${v.state}`).sort()).toEqual(
      [...by('lab').map((v) => `${v}@lab:running`), ...by('onprem').map((v) => `${v}@onprem:running`), ...by('aws').map((v) => `${v}@aws:running`), ...by('gcp').map((v) => `${v}@gcp:running`)].sort(),
    );
    expect(plan(fleet, observed).steps.map((s) => `${s.id}: ${s.reason}`)).toEqual([]);

    const destroyed = await reconcile(fleet, providers, { destroy: true });
    expect(destroyed.failures).toEqual([]);
    expect((await observe(fleet, providers)).vms).toEqual([]);
    for (const h of tb.hosts) expect((await virshOnHost(h, ['list', '--all', '--name'])).includes(`${RUN}all`)).toBe(false);
  });
});
