import { defaultMiddlewareStack, gcpProviderConfig, NovaCronError, type Clock, type CreateVmRequest } from '@novacron/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GcpProvider, type GcpProviderOptions } from './GcpProvider.js';
import { apiError, FakeCompute, type FakeComputeOptions } from './testing/fakeCompute.js';

const instantClock: Clock = { now: () => Date.now(), sleep: async (_ms, signal) => signal?.throwIfAborted() };

let fake: FakeCompute;
let providers: GcpProvider[] = [];

async function setup(fakeOptions: FakeComputeOptions = {}, config: Record<string, unknown> = {}, options: Partial<GcpProviderOptions> = {}) {
  fake = await FakeCompute.start({ project: 'novacron-test', zones: ['us-central1-a', 'us-central1-b'], ...fakeOptions });
  const provider = new GcpProvider({
    name: 'gcp',
    config: gcpProviderConfig.parse({
      type: 'gcp',
      project: 'novacron-test',
      zones: fakeOptions.zones ?? ['us-central1-a', 'us-central1-b'],
      endpoint: fake.endpoint,
      images: { 'debian-12': 'projects/debian-cloud/global/images/family/debian-12' },
      imageBucket: 'novacron-images',
      ...config,
    }),
    clock: instantClock,
    authClient: fake.authClient(),
    pollMs: 1,
    ...options,
  });
  providers.push(provider);
  return provider;
}

afterEach(async () => {
  for (const p of providers) await p.close();
  providers = [];
  await fake?.close();
});

function createRequest(overrides: Partial<CreateVmRequest> = {}): CreateVmRequest {
  return {
    name: 'shop-web-0',
    ownership: { fleet: 'shop', group: 'web', index: 0, specHash: 'abc123' },
    host: 'gcp/us-central1-a',
    resources: { cpu: 2, memoryMiB: 8192, diskGiB: 20, gpu: 0 },
    image: 'debian-12',
    labels: { tier: 'web', Owner: 'Team.Blue' },
    instanceType: 'e2-standard-2',
    cloudInit: { userData: '#!/bin/sh\necho hello\n', sshAuthorizedKeys: ['ssh-ed25519 AAAAC3Nza test@example'], onChange: 'ignore' },
    ...overrides,
  };
}

describe('GcpProvider inventory', () => {
  it('reports each zone as an elastic host offering the catalog types it lists, reading every page', async () => {
    const provider = await setup({ pageSize: 7 });
    const hosts = await provider.inventory();
    expect(hosts.map((h) => [h.id, h.region, h.state])).toEqual([
      ['gcp/us-central1-a', 'us-central1', 'up'],
      ['gcp/us-central1-b', 'us-central1', 'up'],
    ]);
    const types = hosts[0]!.instanceTypes!;
    expect(types.find((t) => t.name === 'e2-standard-2')).toEqual({ name: 'e2-standard-2', cpu: 2, memoryMiB: 8192, pricePerHour: 0.067006 });
    expect(types.some((t) => t.name === 'e2-micro')).toBe(false);
    expect(types.some((t) => t.name === 'c3-standard-4')).toBe(false);
    // 40+ machine types at 7 a page: several requests, each with the previous page's token.
    const pages = fake.calls('GET', /zones\/us-central1-a\/machineTypes$/);
    expect(pages.length).toBeGreaterThan(3);
    expect(pages[1]!.query['pageToken']).toBe('7');
  });

  it('names the zone that does not exist', async () => {
    const provider = await setup({}, { zones: ['us-central1-a', 'us-central1-z'] });
    await expect(provider.inventory()).rejects.toMatchObject({ code: 'InvalidInput', message: expect.stringMatching(/us-central1-z/) });
  });
});

describe('GcpProvider create and list', () => {
  let provider: GcpProvider;
  beforeEach(async () => {
    provider = await setup({ opPolls: 3 });
  });

  it('inserts with a UUID request id, ownership labels and cloud-init metadata, polling the zone operation until done', async () => {
    const vm = await provider.create(createRequest());

    expect(vm).toMatchObject({ name: 'shop-web-0', state: 'running', host: 'gcp/us-central1-a', zone: 'us-central1-a', instanceType: 'e2-standard-2', fleet: 'shop', group: 'web', index: 0, image: 'debian-12' });
    expect(vm.labels).toEqual({ tier: 'web', Owner: 'Team.Blue' });
    const [insert] = fake.calls('POST', /zones\/us-central1-a\/instances$/);
    expect(insert!.query['requestId']).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const body = insert!.body!;
    expect(body['machineType']).toBe('zones/us-central1-a/machineTypes/e2-standard-2');
    expect(body['labels']).toEqual({ tier: 'web', owner: 'team_blue', 'novacron-fleet': 'shop', 'novacron-group': 'web', 'novacron-index': '0', 'novacron-spec': 'abc123' });
    const items = new Map(((body['metadata'] as { items: { key: string; value: string }[] }).items).map((i) => [i.key, i.value]));
    expect(items.get('novacron-image')).toBe('debian-12');
    expect(items.get('novacron-resources')).toBe('2/8192/20/0');
    expect(items.get('startup-script')).toBe('#!/bin/sh\necho hello\n');
    expect(items.get('user-data')).toContain('ssh_authorized_keys');
    expect(items.get('ssh-keys')).toBe('novacron:ssh-ed25519 AAAAC3Nza test@example');
    expect((body['disks'] as { initializeParams: Record<string, unknown> }[])[0]!.initializeParams).toMatchObject({ diskSizeGb: 20, diskType: 'zones/us-central1-a/diskTypes/pd-balanced', sourceImage: 'projects/debian-cloud/global/images/family/debian-12' });
    // The operation took three polls, through the operations' wait method.
    expect(fake.calls('POST', /zones\/us-central1-a\/operations\/.*\/wait$/)).toHaveLength(3);
  });

  it('inserts the declared NICs, one per VPC network in order, reports them back, and refuses a network that is no name before any call', async () => {
    const vm = await provider.create(createRequest({ nics: [{ network: 'prod-vpc' }, { network: 'backend' }] }));
    const [insert] = fake.calls('POST', /zones\/us-central1-a\/instances$/);
    expect(insert!.body!['networkInterfaces']).toEqual([{ network: 'global/networks/prod-vpc' }, { network: 'global/networks/backend' }]);
    expect(vm.nics).toEqual([{ network: 'prod-vpc', id: 'nic0' }, { network: 'backend', id: 'nic1' }]);
    const inserts = fake.calls('POST', /instances$/).length;
    await expect(provider.create(createRequest({ name: 'shop-web-1', nics: [{ network: 'projects/p/global/networks/x' }] }))).rejects.toThrow(/is not a Compute Engine network name; nothing was made$/);
    expect(fake.calls('POST', /instances$/)).toHaveLength(inserts);
  });

  it('is idempotent: the same request id gets the same operation, and an existing VM is returned as it is', async () => {
    // The insert succeeds but its answer is lost on the way back.
    fake.fail({ method: 'POST', path: /instances$/ }, 503, apiError(503, 'The service is currently unavailable.', 'backendError', 'UNAVAILABLE'));
    const first = await provider.create(createRequest()).catch((e: unknown) => e);
    expect(first).toMatchObject({ code: 'Unreachable', retryable: true, context: { vm: 'shop-web-0', operation: 'create' } });

    const vm = await provider.create(createRequest());
    const again = await provider.create(createRequest());

    expect(again.id).toBe(vm.id);
    expect(fake.instances.size).toBe(1);
    const ids = fake.calls('POST', /instances$/).map((r) => r.query['requestId']);
    expect(new Set(ids).size).toBe(1);
  });

  it('replays an operation for a repeated request id instead of inserting twice', async () => {
    const request = createRequest();
    const vm = await provider.create(request);
    fake.instances.delete(`us-central1-a/${vm.name}`);
    // The instance is gone but the request id is remembered: the operation is replayed, nothing new is made.
    await provider.create(request).catch(() => undefined);
    expect(fake.calls('POST', /instances$/).length).toBe(2);
    expect(fake.instances.size).toBe(0);
  });

  it('lists the fleet by label across zones and pages, with exact labels from metadata', async () => {
    await fake.close();
    provider = await setup({ pageSize: 1 });
    await provider.create(createRequest());
    await provider.create(createRequest({ name: 'shop-web-1', host: 'gcp/us-central1-b', ownership: { fleet: 'shop', group: 'web', index: 1, specHash: 'abc123' } }));
    await provider.create(createRequest({ name: 'other-web-0', ownership: { fleet: 'other', group: 'web', index: 0, specHash: 'x' } }));

    const vms = await provider.list('shop');

    expect(vms.map((v) => [v.name, v.zone]).sort()).toEqual([
      ['shop-web-0', 'us-central1-a'],
      ['shop-web-1', 'us-central1-b'],
    ]);
    const pages = fake.calls('GET', /aggregated\/instances$/);
    expect(pages[0]!.query['filter']).toBe('labels.novacron-fleet = "shop"');
    expect(pages.length).toBeGreaterThanOrEqual(2);
  });

  it('on ZONE_RESOURCE_POOL_EXHAUSTED tries the next cheapest machine type in the zone, and keeps the pair out of the inventory', async () => {
    await provider.inventory();
    fake.noCapacity.add('us-central1-a/e2-standard-2');
    const phases: string[] = [];
    const vm = await provider.create(createRequest(), { onProgress: (p) => p.phase === 'capacity-fallback' && phases.push(p.message ?? '') });
    expect(vm.instanceType).toBe('n2d-standard-2');
    expect(phases).toEqual(['e2-standard-2 in us-central1-a: ZONE_RESOURCE_POOL_EXHAUSTED']);
    const [a, b] = await provider.inventory();
    expect(a!.instanceTypes!.map((t) => t.name)).not.toContain('e2-standard-2');
    expect(b!.instanceTypes!.map((t) => t.name)).toContain('e2-standard-2');
  });

  it('tries the alternatives placement gave, and fails with CapacityExceeded naming each refusal when all are short', async () => {
    fake.noCapacity.add('us-central1-a/e2-standard-2');
    fake.noCapacity.add('us-central1-b/e2-standard-2');
    const error: unknown = await provider.create(createRequest({ alternatives: [{ host: 'gcp/us-central1-b', instanceType: 'e2-standard-2' }] })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NovaCronError);
    expect(error).toMatchObject({
      code: 'CapacityExceeded',
      context: { provider: 'gcp', vm: 'shop-web-0', operation: 'create' },
      message: 'no capacity for VM "shop-web-0": e2-standard-2 in us-central1-a: ZONE_RESOURCE_POOL_EXHAUSTED; e2-standard-2 in us-central1-b: ZONE_RESOURCE_POOL_EXHAUSTED',
    });
    expect(fake.instances.size).toBe(0);
  });

  it('refuses to take over a VM of the same name that another fleet owns', async () => {
    await provider.create(createRequest({ ownership: { fleet: 'other', group: 'web', index: 0, specHash: 'x' } }));
    await expect(provider.create(createRequest())).rejects.toMatchObject({ code: 'Conflict', message: expect.stringMatching(/belongs to "other"/) });
  });
});

describe('GcpProvider errors', () => {
  it('surfaces 429 as Throttled without retrying itself, and the core retry gets through', async () => {
    const provider = await setup();
    fake.rateLimit(1);
    await expect(provider.list('shop')).rejects.toMatchObject({ code: 'Throttled', retryable: true, context: { provider: 'gcp', operation: 'list' } });
    expect(fake.calls('GET', /aggregated\/instances$/)).toHaveLength(1);

    fake.rateLimit(2);
    const wrapped = defaultMiddlewareStack({ retry: { clock: instantClock }, breaker: false, tracing: false }).wrap(provider);
    await expect(wrapped.list('shop')).resolves.toEqual([]);
    expect(fake.calls('GET', /aggregated\/instances$/)).toHaveLength(4);
  });

  it('keeps waiting through a throttled operation poll', async () => {
    const provider = await setup({ opPolls: 2 });
    fake.fail({ method: 'POST', path: /operations\/.*\/wait$/ }, 429, apiError(429, 'Rate Limit Exceeded', 'rateLimitExceeded', 'RESOURCE_EXHAUSTED', 'usageLimits'));
    await expect(provider.create(createRequest())).resolves.toMatchObject({ state: 'running' });
  });

  it('maps a refused token to AuthFailed with a hint, and a missing permission likewise', async () => {
    const provider = await setup({}, {}, { authClient: undefined });
    void provider;
    const wrongToken = new GcpProvider({ name: 'gcp', config: gcpProviderConfig.parse({ type: 'gcp', project: 'novacron-test', zones: ['us-central1-a'], endpoint: fake.endpoint }), clock: instantClock, authClient: fake.authClient('expired'), pollMs: 1 });
    providers.push(wrongToken);
    await expect(wrongToken.list('shop')).rejects.toMatchObject({ code: 'AuthFailed', hint: expect.stringMatching(/gcloud auth application-default login/) });

    const right = await setup();
    fake.fail({ method: 'POST' }, 403, apiError(403, "Required 'compute.instances.create' permission for 'projects/novacron-test/zones/us-central1-a/instances/shop-web-0'", 'forbidden', 'PERMISSION_DENIED'));
    await expect(right.create(createRequest())).rejects.toMatchObject({ code: 'AuthFailed', context: { vm: 'shop-web-0', operation: 'create' }, hint: expect.stringMatching(/roles\/compute\.instanceAdmin\.v1/) });
  });

  it('maps quota to CapacityExceeded with a quota hint and unknown VMs to NotFound', async () => {
    const provider = await setup();
    fake.fail({ method: 'POST', path: /instances$/ }, 403, apiError(403, "Quota 'CPUS' exceeded.  Limit: 24.0 in region us-central1.", 'quotaExceeded', 'PERMISSION_DENIED'));
    await expect(provider.create(createRequest())).rejects.toMatchObject({ code: 'CapacityExceeded', hint: expect.stringMatching(/quota/) });
    await expect(provider.start({ name: 'shop-web-7', fleet: 'shop' })).rejects.toMatchObject({ code: 'NotFound', context: { vm: 'shop-web-7', operation: 'start' } });
  });

  it('honours an abort while it polls an operation', async () => {
    const provider = await setup({ opPolls: 1000 });
    const controller = new AbortController();
    let polls = 0;
    const pending = provider.create(createRequest(), { signal: controller.signal, onProgress: () => ++polls === 3 && controller.abort() });
    await expect(pending).rejects.toMatchObject({ code: 'Aborted' });
  });
});

describe('GcpProvider lifecycle', () => {
  it('stops, starts, resizes (stop, setMachineType, grow disk, labels, metadata, start) and deletes', async () => {
    const provider = await setup();
    const vm = await provider.create(createRequest());
    const ref = { name: vm.name, fleet: 'shop', host: vm.host };

    expect((await provider.stop(ref)).state).toBe('stopped');
    expect((await provider.start(ref)).state).toBe('running');

    const resized = await provider.resize(ref, { resources: { cpu: 4, memoryMiB: 16384, diskGiB: 40, gpu: 0 }, specHash: 'def456', allowReboot: true, labels: { tier: 'web2' } });

    expect(resized).toMatchObject({ instanceType: 'e2-standard-4', state: 'running', specHash: 'def456', resources: { cpu: 4, memoryMiB: 16384, diskGiB: 40, gpu: 0 } });
    expect(resized.labels).toEqual({ tier: 'web2', Owner: 'Team.Blue' });
    const order = fake.requests.filter((r) => r.method === 'POST' && /instances\/shop-web-0\/|disks\/.*\/resize/.test(r.path)).map((r) => r.path.split('/').at(-1));
    expect(order.slice(-6)).toEqual(['stop', 'setMachineType', 'resize', 'setLabels', 'setMetadata', 'start']);
    expect(fake.disks.get('us-central1-a/shop-web-0')!['sizeGb']).toBe('40');

    await provider.delete(ref);
    await provider.delete(ref);
    expect(fake.instances.size).toBe(0);
    expect(fake.disks.size).toBe(0);
  });

  it('snapshots the boot disk with labels, lists, verifies, restores in place and as a new VM, and deletes', async () => {
    const provider = await setup();
    const vm = await provider.create(createRequest());
    const ref = { name: vm.name, fleet: 'shop', host: vm.host };

    const snap = await provider.snapshot(ref, { kind: 'full', id: 'shop-web-0-Nightly_1', scheduledFor: '2026-11-27T03:00:00Z' });
    expect(snap).toMatchObject({ id: 'shop-web-0-nightly-1', vm: 'shop-web-0', fleet: 'shop', group: 'web', kind: 'disk', state: 'complete', diskBytes: 20 * 1024 ** 3, scheduledFor: '2026-11-27T03:00:00.000Z' });
    const labels = fake.snapshots.get('shop-web-0-nightly-1')!['labels'];
    expect(labels).toMatchObject({ 'novacron-fleet': 'shop', 'novacron-group': 'web', 'novacron-vm': 'shop-web-0', 'novacron-zone': 'us-central1-a', 'novacron-type': 'e2-standard-2' });
    expect(await provider.snapshot(ref, { kind: 'full', id: 'shop-web-0-Nightly_1' })).toMatchObject({ id: 'shop-web-0-nightly-1' });
    expect(fake.calls('POST', /global\/snapshots$/)).toHaveLength(1);
    expect((await provider.listSnapshots('shop')).map((s) => s.id)).toEqual(['shop-web-0-nightly-1']);

    const verified = await provider.recordVerification('shop-web-0-nightly-1', { at: '2026-11-27T04:00:00Z', ok: true, method: 'checksum' });
    expect(verified.verified?.ok).toBe(true);
    expect((await provider.listSnapshots('shop'))[0]!.verified).toEqual({ at: '2026-11-27T04:00:00.000Z', ok: true, method: 'checksum' });

    const inPlace = await provider.restore(ref, { snapshot: 'shop-web-0-nightly-1' });
    expect(inPlace.vm).toMatchObject({ name: 'shop-web-0', state: 'running' });
    expect(fake.disks.has('us-central1-a/shop-web-0')).toBe(false);

    const copy = await provider.restore(ref, { snapshot: 'shop-web-0-nightly-1', asName: 'shop-web-0-check', scratch: true });
    expect(copy.vm).toMatchObject({ name: 'shop-web-0-check', fleet: '', state: 'running' });
    expect((await provider.list('shop')).map((v) => v.name)).toEqual(['shop-web-0']);

    await provider.deleteSnapshot('shop-web-0-nightly-1');
    await provider.deleteSnapshot('shop-web-0-nightly-1');
    expect(await provider.listSnapshots('shop')).toEqual([]);
  });
});
