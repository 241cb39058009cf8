// NICs on the testbed's real libvirt hosts: a VM whose NIC list grows gets the new NIC
// hot-plugged (same boot id: no reboot), a model change is a detach and attach with the same
// MAC, a removed NIC is hot-unplugged, and a network the host lacks is refused before
// anything changes, at create and at a change.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apply, kvmProviderConfig, observe, parseFleet, plan, ProviderSet, type FleetSpec, type FleetSpecInput, type KvmProviderConfig, type UpdateStep } from '@novacron/core';
import { guestHttpGet, kvmProviderConfigFor, loadTestbed, parseKeyValues, scrubTestbed, virshOnHost, waitForGuestMarker, type TestbedHost } from '../../../test/testbed/index.ts';
import { KvmProvider } from './KvmProvider.js';

const tb = loadTestbed();
const RUN = `ncn${randomBytes(2).toString('hex')}`; // every domain and volume of this file starts with it
const BOOT_MS = 180_000;
const IP = '192.168.122.247';
const NET = tb.guest.network;
const NET2 = tb.guest.network2;
const opened: KvmProvider[] = [];

function images(): KvmProviderConfig['images'] {
  const base = kvmProviderConfig.parse(kvmProviderConfigFor(tb)).images['tiny']!;
  return { tiny: { ...base, cmdline: `${tb.guest.cmdlineBase} nc.net=static nc.ip=${IP}/24` } };
}
const provider = new KvmProvider({ name: 'lab', config: { ...kvmProviderConfig.parse(kvmProviderConfigFor(tb)), images: images() }, cwd: process.cwd(), env: process.env });
opened.push(provider);
const providers = new ProviderSet(new Map([['lab', provider]]));
const fleet = (nics: FleetSpecInput['groups'][string]['nics']): FleetSpec =>
  parseFleet({ name: RUN, providers: { lab: { ...kvmProviderConfigFor(tb), images: images() } }, groups: { n: { count: 1, cpu: 1, memory: '128MiB', disk: '1GiB', image: 'tiny', ...(nics ? { nics } : {}) } } } as FleetSpecInput);
const hostOf = (id: string): TestbedHost => tb.hosts.find((h) => `lab/${h.name}` === id)!;
const bootId = async (host: TestbedHost) => parseKeyValues(await guestHttpGet(host, IP, '/cgi-bin/id'))['boot_id'];
/** The running domain's interfaces as libvirt has them live: `network model mac`. */
async function liveInterfaces(host: TestbedHost, vm: string): Promise<string[]> {
  const out = await virshOnHost(host, ['domiflist', vm]);
  return out.split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 5 && /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(f[4]!)).map((f) => `${f[2]} ${f[3]} ${f[4]!.toLowerCase()}`);
}

const scrub = () => scrubTestbed(tb, RUN);
beforeAll(scrub);
afterAll(async () => {
  await Promise.all(opened.map((p) => p.close()));
  await scrub();
});

describe('NICs on KVM', () => {
  it('hot-plugs an added NIC without a reboot, changes a model by detach and attach with the same MAC, and hot-unplugs a removed one', { timeout: 900_000 }, async () => {
    if (!NET2) throw new Error('the testbed has no second guest network: run test/testbed/testbed.sh up');
    const name = `${RUN}-n-0`;
    const run = async (f: FleetSpec) => {
      const p = plan(f, await observe(f, providers));
      const result = await apply(p, providers);
      expect(result.outcomes.filter((o) => o.status !== 'done').map((o) => o.error?.describe())).toEqual([]);
      return p;
    };

    // Made with one declared NIC, booted.
    const first = await run(fleet([{ network: NET }]));
    expect(first.steps.map((s) => s.kind)).toEqual(['create']);
    const host = hostOf((first.steps[0] as { host: string }).host);
    await waitForGuestMarker(host, name, BOOT_MS);
    const boot = await bootId(host);
    const [vm1] = await provider.list(RUN);
    expect(vm1!.nics).toEqual([{ network: NET, model: 'virtio', mac: expect.stringMatching(/^52:54:00:/) }]);
    const mac0 = vm1!.nics![0]!.mac!;
    // Undeclared NICs are never compared: the same VM under a group without `nics` is no drift.
    expect(plan(fleet(undefined), await observe(fleet(undefined), providers)).steps).toEqual([]);

    // Grown: the second NIC is hot-plugged, live and in the config.
    const two = fleet([{ network: NET }, { network: NET2 }]);
    const grow = await run(two);
    expect(grow.steps).toHaveLength(1);
    expect(grow.steps[0]).toMatchObject({ kind: 'update', changeClass: 'hot-plug', reason: `nics ${NET}(virtio) → ${NET},${NET2} [hot-plug: attach ${NET2}: hot-plugged into the running guest]` });
    expect(await bootId(host)).toBe(boot);
    const live2 = await liveInterfaces(host, name);
    expect(live2).toEqual([`${NET} virtio ${mac0}`, expect.stringMatching(new RegExp(`^${NET2} virtio 52:54:00:`))]);
    const [vm2] = await provider.list(RUN); // the persistent config, as list reads it
    expect(vm2!.nics!.map((n) => `${n.network} ${n.model} ${n.mac}`)).toEqual(live2);
    expect(plan(two, await observe(two, providers)).steps).toEqual([]);
    const mac1 = vm2!.nics![1]!.mac!;

    // The second NIC's model changes: detached and attached again with its MAC.
    const remodelled = fleet([{ network: NET }, { network: NET2, model: 'e1000' }]);
    const model = await run(remodelled);
    expect((model.steps[0] as UpdateStep).changes).toEqual([expect.objectContaining({ field: 'nics', class: 'hot-plug', reason: expect.stringContaining(`${NET2} ${mac1} model virtio → e1000`) })]);
    expect(await liveInterfaces(host, name)).toEqual([`${NET} virtio ${mac0}`, `${NET2} e1000 ${mac1}`]);
    expect(await bootId(host)).toBe(boot);

    // A network the host lacks: refused before anything changes.
    const missing = fleet([{ network: NET }, { network: `${RUN}-nonet` }]);
    const refused = await apply(plan(missing, await observe(missing, providers)), providers);
    expect(refused.ok).toBe(false);
    expect(refused.outcomes[0]!.error!.message).toMatch(new RegExp(`libvirt network "${RUN}-nonet" does not exist; nothing was changed`));
    expect(await liveInterfaces(host, name)).toEqual([`${NET} virtio ${mac0}`, `${NET2} e1000 ${mac1}`]);

    // Shrunk back: the NIC is hot-unplugged, live and in the config; still the same boot.
    const one = fleet([{ network: NET }]);
    const shrink = await run(one);
    expect(shrink.steps[0]).toMatchObject({ kind: 'update', changeClass: 'hot-plug', reason: expect.stringContaining(`detach ${NET2}(e1000) ${mac1}`) });
    expect(await liveInterfaces(host, name)).toEqual([`${NET} virtio ${mac0}`]);
    expect((await provider.list(RUN))[0]!.nics).toEqual([{ network: NET, model: 'virtio', mac: mac0 }]);
    expect(await bootId(host)).toBe(boot);
    expect((await provider.list(RUN))[0]!.id).toBe(vm1!.id);

    expect((await apply(plan(one, await observe(one, providers), { destroy: true }), providers)).ok).toBe(true);
  });

  it('refuses to create a VM on a network the host lacks, and makes nothing', { timeout: 300_000 }, async () => {
    const f = fleet([{ network: NET }, { network: `${RUN}-nonet` }]);
    const result = await apply(plan(f, await observe(f, providers)), providers);
    expect(result.ok).toBe(false);
    const error = result.outcomes[0]!.error!;
    expect(error.code).toBe('NotFound');
    expect(error.message).toMatch(new RegExp(`^nc-h\\d: libvirt network "${RUN}-nonet" does not exist; nothing was changed$`));
    for (const host of tb.hosts) {
      expect(await virshOnHost(host, ['list', '--all', '--name'])).not.toContain(RUN);
      expect(await virshOnHost(host, ['vol-list', tb.guest.pool])).not.toContain(RUN);
    }
  });
});
