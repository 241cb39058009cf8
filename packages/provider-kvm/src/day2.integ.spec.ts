// Day-2 operations on the testbed's real libvirt hosts: change classes (a memory change
// hot-plugged without a reboot, labels in place, cloud-init reboot/replace/ignore with a seed
// whose instance-id is a hash of its content), addresses that never block, adoption of a
// running VM without a restart, and a VM moved by hand that is not drift.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  apply,
  applyAdoption,
  hostId,
  kvmProviderConfig,
  observe,
  observeUnowned,
  parseFleet,
  plan,
  planAdoption,
  ProviderSet,
  type FleetSpec,
  type FleetSpecInput,
  type KvmProviderConfig,
  type OperationProgress,
  type UpdateStep,
} from '@novacron/core';
import {
  defineDomainOnHost,
  execOnHost,
  guestHttpGet,
  hostPath,
  kvmProviderConfigFor,
  loadTestbed,
  parseKeyValues,
  scrubTestbed,
  tinyGuestDomainXml,
  virshOnHost,
  waitForGuestMarker,
  type TestbedHost,
} from '../../../test/testbed/index.ts';
import { seedFiles } from './cloudinit/seed.js';
import { KvmProvider } from './KvmProvider.js';

const tb = loadTestbed();
const RUN = `ncd${randomBytes(2).toString('hex')}`; // every domain and volume of this file starts with it
const BOOT_MS = 180_000;
const opened: KvmProvider[] = [];

function providerConfig(patch: Partial<KvmProviderConfig> = {}): KvmProviderConfig {
  return { ...kvmProviderConfig.parse(kvmProviderConfigFor(tb)), ...patch };
}
function kvm(patch: Partial<KvmProviderConfig> = {}): KvmProvider {
  const p = new KvmProvider({ name: 'lab', config: providerConfig(patch), cwd: process.cwd(), env: process.env });
  opened.push(p);
  return p;
}
function fleetOf(input: Omit<FleetSpecInput, 'providers'>, provider: Record<string, unknown> = {}): FleetSpec {
  return parseFleet({ ...input, providers: { lab: { ...kvmProviderConfigFor(tb), ...provider } } } as FleetSpecInput);
}
/**
 * The tiny image with a static address: the testbed's DHCP ranges (50 leases per host, an
 * hour each) run dry when many test files boot guests, and these tests need to reach the guest.
 */
function staticTiny(ip: string): KvmProviderConfig['images'] {
  const base = providerConfig().images['tiny']!;
  return { tiny: { ...base, cmdline: `${tb.guest.cmdlineBase} nc.net=static nc.ip=${ip}/24` } };
}
const hostOf = (id: string): TestbedHost => tb.hosts.find((h) => `lab/${h.name}` === id)!;

const scrub = () => scrubTestbed(tb, RUN);
beforeAll(scrub);
afterAll(async () => {
  await Promise.all(opened.map((p) => p.close()));
  await scrub();
});

/** The guest's own view: boot id and uptime, over HTTP from inside its host. */
async function guestId(host: TestbedHost, ip: string): Promise<Record<string, string>> {
  return parseKeyValues(await guestHttpGet(host, ip, '/cgi-bin/id'));
}
/** The meta-data file inside a seed ISO on the host (the ISO stores files uncompressed). */
function seedInstanceIdOnHost(host: TestbedHost, vm: string): string | undefined {
  const iso = readFileSync(hostPath(host, `${tb.guest.poolPath}/${vm}-seed.iso`)).toString('latin1');
  return /instance-id: "([^"]+)"/.exec(iso)?.[1];
}

describe('day 2 on KVM', () => {
  it('plans each change with its class and reason, hot-plugs memory without a reboot, sets labels in place, and follows the cloud-init policy', { timeout: 900_000 }, async () => {
    const name = `${RUN}-ci-0`;
    const ip = '192.168.122.241';
    const provider = kvm({ hotplug: { cpu: 2, memory: 256 }, images: staticTiny(ip) });
    const providers = new ProviderSet(new Map([['lab', provider]]));
    const group = (patch: Record<string, unknown>) => ({
      count: 1, cpu: 1, memory: '128MiB', disk: '1GiB', image: 'tiny', labels: { tier: 'a' },
      cloudInit: { userData: '#cloud-config\n# v1\n', onChange: 'reboot' }, ...patch,
    });
    const spec = (patch: Record<string, unknown>) => fleetOf({ name: RUN, groups: { ci: group(patch) as FleetSpecInput['groups'][string] } }, { hotplug: { cpu: 2, memory: 256 }, images: staticTiny(ip) });
    const run = async (fleet: FleetSpec) => {
      const p = plan(fleet, await observe(fleet, providers));
      const result = await apply(p, providers);
      expect(result.outcomes.filter((o) => o.status !== 'done').map((o) => o.error?.describe())).toEqual([]);
      return p;
    };

    // v1: made, booted.
    const first = await run(spec({}));
    expect(first.steps.map((s) => s.kind)).toEqual(['create']);
    const host = hostOf((first.steps[0] as { host: string }).host);
    await waitForGuestMarker(host, name, BOOT_MS);
    const id1 = await guestId(host, ip);
    const [vm1] = await provider.list(RUN);
    const seed1 = seedInstanceIdOnHost(host, name);
    expect(seed1).toBe(seedFiles({ vmName: name, cloudInit: { userData: '#cloud-config\n# v1\n', onChange: 'reboot' }, date: new Date() }).instanceId);

    // v2: more memory (within the ceiling) and a new label: hot-plug + in place, no reboot.
    const second = await run(spec({ memory: '192MiB', labels: { tier: 'b' } }));
    expect(second.steps).toHaveLength(1);
    const update = second.steps[0] as UpdateStep;
    expect(update).toMatchObject({ kind: 'update', vm: name, changeClass: 'hot-plug' });
    expect(update.changes.map((c) => [c.field, c.class])).toEqual([['memory', 'hot-plug'], ['labels', 'in-place']]);
    expect(update.reason).toBe('memory 128MiB → 192MiB [hot-plug: memory is added to the running guest]; labels tier=a → tier=b [in-place: labels are metadata]');
    const id2 = await guestId(host, ip);
    expect(id2['boot_id']).toBe(id1['boot_id']);
    expect(Number(id2['uptime'])).toBeGreaterThan(Number(id1['uptime']));
    const [vm2] = await provider.list(RUN);
    expect(vm2).toMatchObject({ id: vm1!.id, resources: { memoryMiB: 192 }, labels: { tier: 'b' } });
    expect(await virshOnHost(host, ['metadata', name, 'https://novacron.dev/xmlns/vm/1'])).toContain('<label key="tier" value="b"/>');
    expect(plan(spec({ memory: '192MiB', labels: { tier: 'b' } }), await observe(spec({}), providers)).steps).toEqual([]);

    // v3: new cloud-init data, policy reboot: same VM, new seed (new instance-id), rebooted.
    const v3 = { memory: '192MiB', labels: { tier: 'b' }, cloudInit: { userData: '#cloud-config\n# v2\n', onChange: 'reboot' } };
    const third = await run(spec(v3));
    expect(third.steps).toEqual([expect.objectContaining({ kind: 'update', changeClass: 'reboot', reason: expect.stringContaining('[reboot: cloud-init data changed; the VM reboots with the new seed]') })]);
    await waitForGuestMarker(host, name, BOOT_MS);
    const id3 = await guestId(host, ip);
    expect(id3['boot_id']).not.toBe(id1['boot_id']);
    const seed3 = seedInstanceIdOnHost(host, name);
    expect(seed3).toBe(seedFiles({ vmName: name, cloudInit: { userData: '#cloud-config\n# v2\n', onChange: 'reboot' }, date: new Date() }).instanceId);
    expect(seed3).not.toBe(seed1);
    expect((await provider.list(RUN))[0]!.id).toBe(vm1!.id);

    // v4: new data, policy ignore: nothing to do.
    expect(plan(spec({ ...v3, cloudInit: { userData: '#cloud-config\n# v3\n', onChange: 'ignore' } }), await observe(spec({}), providers)).steps).toEqual([]);

    // v5: new data, policy replace: a new VM under the same name.
    const fifth = await run(spec({ ...v3, cloudInit: { userData: '#cloud-config\n# v3\n', onChange: 'replace' } }));
    expect(fifth.steps.map((s) => s.kind)).toEqual(['delete', 'replace']);
    expect(fifth.steps[1]).toMatchObject({ changes: [expect.objectContaining({ field: 'cloudInit', class: 'replace' })] });
    const [vm5] = await provider.list(RUN);
    expect(vm5!.id).not.toBe(vm1!.id);

    const gone = plan(spec({}), await observe(spec({}), providers), { destroy: true });
    expect((await apply(gone, providers)).ok).toBe(true);
  });

  it('stops the apply and says so when a hot-plug turns out to need a reboot, and replaces only when the group allows it', { timeout: 600_000 }, async () => {
    const FLEET = `${RUN}-cheap`;
    const name = `${FLEET}-g-0`;
    const ip = '192.168.122.242';
    const maker = kvm({ images: staticTiny(ip) }); // no ceilings: the VM is defined with its own size as its maximum
    const spec = (memory: string, changes: Record<string, unknown> = {}) =>
      fleetOf({ name: FLEET, groups: { g: { count: 1, cpu: 1, memory, disk: '1GiB', image: 'tiny', changes } } }, { hotplug: { memory: 512 }, images: staticTiny(ip) });
    const made = new ProviderSet(new Map([['lab', maker]]));
    expect((await apply(plan(spec('128MiB'), await observe(spec('128MiB'), made)), made)).ok).toBe(true);
    // The provider now has hot-plug ceilings, so more memory is planned as hot-plug; this VM's ceiling is its size.
    const provider = kvm({ hotplug: { memory: 512 }, images: staticTiny(ip) });
    const providers = new ProviderSet(new Map([['lab', provider]]));
    const host = hostOf((await provider.list(FLEET))[0]!.host);
    await waitForGuestMarker(host, name, BOOT_MS);
    const before = await guestId(host, ip);
    const [vm0] = await provider.list(FLEET);

    const p = plan(spec('192MiB'), await observe(spec('192MiB'), providers));
    expect(p.steps).toEqual([expect.objectContaining({ kind: 'update', changeClass: 'hot-plug' })]);
    const failed = await apply(p, providers);
    expect(failed.ok).toBe(false);
    const error = failed.outcomes[0]!.error!;
    expect(error.message).toMatch(/^hot-plug change failed \(.*needs a reboot to get 1 vCPUs \/ 192 MiB.*\); the VM was not replaced$/);
    expect(error.hint).toMatch(/groups\.g\.changes\.fallbackToReplace: true/);
    expect((await guestId(host, ip))['boot_id']).toBe(before['boot_id']); // not rebooted either
    expect((await provider.list(FLEET))[0]).toMatchObject({ id: vm0!.id, resources: { memoryMiB: 128 } });

    // With the fallback allowed, the failed cheap path becomes a replacement.
    const allowed = spec('192MiB', { fallbackToReplace: true });
    const replaced = await apply(plan(allowed, await observe(allowed, providers)), providers);
    expect(replaced.outcomes.map((o) => o.error?.describe() ?? o.status)).toEqual(['done']);
    const [vm1] = await provider.list(FLEET);
    expect(vm1).toMatchObject({ name, resources: { memoryMiB: 192 } });
    expect(vm1!.id).not.toBe(vm0!.id);
    expect((await apply(plan(allowed, await observe(allowed, providers), { destroy: true }), providers)).ok).toBe(true);
  });

  it('never blocks on a guest with no agent and no DHCP lease beyond its bound, and says where addresses came from', { timeout: 600_000 }, async () => {
    const host = tb.hosts[1]!;
    const base = providerConfig().images['tiny']!;
    const quiet = kvm({
      images: { tiny: { ...base, cmdline: `${tb.guest.cmdlineBase} nc.net=none` }, lan: { ...base, cmdline: `${tb.guest.cmdlineBase} nc.net=static nc.ip=192.168.122.231/24` } },
      addresses: { sources: ['lease', 'agent', 'arp'], sourceTimeout: 1_000, waitOnCreate: 4_000 },
    });
    const request = (name: string, image: string) => ({
      name, ownership: { fleet: RUN, group: 'addr', index: 0, specHash: 'h' }, host: hostId('lab', host.name), resources: { cpu: 1, memoryMiB: 128, diskGiB: 1, gpu: 0 }, image, labels: {},
    });
    const events: { at: number; e: OperationProgress }[] = [];
    const t0 = Date.now();
    const silent = await quiet.create(request(`${RUN}-none`, 'tiny'), { onProgress: (e) => events.push({ at: Date.now(), e }) });
    const waitedMs = events.find((x) => x.e.phase === 'done')!.at - events.find((x) => x.e.phase === 'addresses')!.at;
    expect(silent.addresses).toEqual([]);
    expect(waitedMs).toBeGreaterThanOrEqual(3_500);
    expect(waitedMs).toBeLessThan(4_000 + 1_000 + 3_000); // its bound, one source timeout, and a round trip
    expect(Date.now() - t0).toBeLessThan(60_000);
    await waitForGuestMarker(host, `${RUN}-none`, BOOT_MS);
    const t1 = Date.now();
    expect((await quiet.list(RUN)).find((v) => v.name === `${RUN}-none`)!.addresses).toEqual([]);
    expect(Date.now() - t1).toBeLessThan(15_000);

    // A static address is in no lease; once the guest has exchanged a packet, ARP knows it.
    await quiet.create(request(`${RUN}-arp`, 'lan'));
    await waitForGuestMarker(host, `${RUN}-arp`, BOOT_MS);
    expect(parseKeyValues(await guestHttpGet(host, '192.168.122.231', '/cgi-bin/id'))['ip']).toBe('192.168.122.231'); // traffic: the host learns its MAC
    const arp = (await quiet.list(RUN)).find((v) => v.name === `${RUN}-arp`)!;
    expect(arp.addresses).toEqual([{ address: '192.168.122.231', source: 'arp' }]);

    // A DHCP guest: the lease.
    const leased = kvm({ addresses: { sources: ['lease', 'agent', 'arp'], sourceTimeout: 1_000, waitOnCreate: 120_000 } });
    const dhcp = await leased.create(request(`${RUN}-dhcp`, 'tiny'));
    // Whichever answers first: the host may see the guest's packets (ARP) before dnsmasq's lease is listed.
    expect(dhcp.addresses).toEqual([expect.objectContaining({ source: expect.stringMatching(/^(lease|arp)$/), address: expect.stringMatching(/^192\.168\.122\./) })]);
    let listed = (await leased.list(RUN)).find((v) => v.name === `${RUN}-dhcp`)!;
    for (let i = 0; i < 30 && listed.addresses[0]?.source !== 'lease'; i++) {
      await new Promise((r) => setTimeout(r, 1_000));
      listed = (await leased.list(RUN)).find((v) => v.name === `${RUN}-dhcp`)!;
    }
    expect(listed.addresses).toEqual([{ address: dhcp.addresses[0]!.address, source: 'lease' }]);
    await Promise.all([`${RUN}-none`, `${RUN}-arp`, `${RUN}-dhcp`].map((n) => quiet.delete({ name: n, fleet: RUN })));
  });

  it('adopts a running VM made by hand without restarting it, and a later plan has no changes', { timeout: 600_000 }, async () => {
    const host = tb.hosts[2]!;
    const name = `${RUN}-legacy`;
    await virshOnHost(host, ['vol-create-as', tb.guest.pool, `${name}.qcow2`, '1G', '--format', 'qcow2', '--backing-vol', tb.guest.baseVolume, '--backing-vol-format', 'qcow2']);
    await defineDomainOnHost(host, tinyGuestDomainXml(tb, { name, memoryMiB: 128, volume: `${name}.qcow2`, cmdline: 'nc.net=static nc.ip=192.168.122.243/24' }));
    await virshOnHost(host, ['start', name]);
    const ready = await waitForGuestMarker(host, name, BOOT_MS);
    const legacyIp = ready.ip ?? '192.168.122.243';
    const before = await guestId(host, legacyIp);

    const FLEET = `${RUN}-adopt`;
    const fleet = fleetOf({ name: FLEET, groups: { legacy: { count: 1, cpu: 1, memory: '128MiB', disk: '1GiB', image: 'tiny', labels: { adopted: 'yes' } } } });
    const provider = kvm();
    const providers = new ProviderSet(new Map([['lab', provider]]));
    const unowned = (await observeUnowned(fleet, providers)).filter((v) => v.name.startsWith(RUN));
    expect(unowned).toEqual([expect.objectContaining({ name, host: `lab/${host.name}`, state: 'running', image: 'tiny', resources: { cpu: 1, memoryMiB: 128, diskGiB: 1, gpu: 0 } })]);
    const adoption = planAdoption(fleet, [], unowned);
    expect(adoption.adoptions).toEqual([expect.objectContaining({ group: 'legacy', index: 0, reason: 'matches group "legacy": 1 vCPU, 128 MiB, 1 GiB, image tiny' })]);
    const outcomes = await applyAdoption(fleet, adoption, providers);
    expect(outcomes.map((o) => o.error?.describe() ?? o.status)).toEqual(['done']);

    const after = await guestId(host, legacyIp);
    expect(after['boot_id']).toBe(before['boot_id']);
    const listed = await provider.list(FLEET);
    expect(listed).toEqual([expect.objectContaining({ name, fleet: FLEET, group: 'legacy', index: 0, image: 'tiny', labels: { adopted: 'yes' }, state: 'running' })]);
    const next = plan(fleet, await observe(fleet, providers));
    expect(next.steps).toEqual([]);
    expect(next.summary.unchanged).toBe(1);
    expect((await observeUnowned(fleet, providers)).filter((v) => v.name.startsWith(RUN))).toEqual([]);
    // Adopting again is a no-op.
    expect((await applyAdoption(fleet, planAdoption(fleet, listed, []), providers))).toEqual([]);
    await provider.delete({ name, fleet: FLEET });
    await execOnHost(host, ['virsh', '-q', 'vol-delete', `${name}.qcow2`, '--pool', tb.guest.pool]);
  });

  it('does not report a VM moved by hand (virsh migrate) as drift, and flags the anti-affinity rule it now breaks', { timeout: 900_000 }, async () => {
    const provider = kvm();
    const providers = new ProviderSet(new Map([['lab', provider]]));
    const FLEET = `${RUN}-mv`;
    const loose = fleetOf({ name: FLEET, groups: { mv: { count: 2, cpu: 1, memory: '128MiB', disk: '1GiB', image: 'tiny', placement: { antiAffinity: 'host' } } } });
    const made = await apply(plan(loose, await observe(loose, providers)), providers);
    expect(made.ok).toBe(true);
    const vms = [...(await provider.list(FLEET))].sort((a, b) => a.name.localeCompare(b.name));
    const [a, b] = vms as [typeof vms[0], typeof vms[0]];
    expect(a.host).not.toBe(b.host);
    const src = hostOf(b.host);
    const dst = hostOf(a.host);
    await waitForGuestMarker(src, b.name, BOOT_MS);
    // By hand, as an operator would: disks pre-created on the destination, then a live move with storage.
    const seedBytes = (await virshOnHost(src, ['vol-info', `${b.name}-seed.iso`, '--pool', tb.guest.pool, '--bytes'])).match(/Capacity:\s+(\d+)/)![1]!;
    await virshOnHost(dst, ['vol-create-as', tb.guest.pool, `${b.name}-root.qcow2`, '1G', '--format', 'qcow2', '--backing-vol', tb.guest.baseVolume, '--backing-vol-format', 'qcow2']);
    await virshOnHost(dst, ['vol-create-as', tb.guest.pool, `${b.name}-seed.iso`, seedBytes, '--format', 'raw']);
    const moved = await execOnHost(src, ['virsh', '-c', 'qemu:///system', 'migrate', '--live', '--persistent', '--undefinesource', '--copy-storage-all', '--migrateuri', `tcp://${dst.address}`, '--disks-uri', `tcp://${dst.address}`, b.name, `qemu+ssh://root@${dst.address}/system`], { timeoutMs: 300_000 });
    expect(moved.code, moved.stderr).toBe(0);
    await execOnHost(src, ['virsh', '-q', 'vol-delete', `${b.name}-root.qcow2`, '--pool', tb.guest.pool]);
    await execOnHost(src, ['virsh', '-q', 'vol-delete', `${b.name}-seed.iso`, '--pool', tb.guest.pool]);

    const observed = await observe(loose, providers);
    expect(observed.vms.find((v) => v.name === b.name)!.host).toBe(a.host);
    // Without the rule, where it runs is nobody's business: no drift.
    const norule = fleetOf({ name: FLEET, groups: { mv: { count: 2, cpu: 1, memory: '128MiB', disk: '1GiB', image: 'tiny' } } });
    expect(plan(norule, observed).steps).toEqual([]);
    // With it, the rule is broken: a migrate step where the provider can move VMs, else a violation that says why not.
    const p = plan(loose, observed);
    expect(p.violations).toEqual([expect.objectContaining({ vm: b.name, rule: 'anti-affinity', host: a.host })]);
    if (provider.capabilities.liveMigration) {
      expect(p.steps).toEqual([expect.objectContaining({ kind: 'migrate', vm: b.name, from: a.host, reason: expect.stringMatching(/^rule anti-affinity broken/) })]);
    } else {
      expect(p.steps).toEqual([]);
      expect(p.violations![0]).toMatchObject({ action: 'none', reason: expect.stringMatching(/cannot migrate/) });
    }
    expect((await apply(plan(loose, observed, { destroy: true }), providers)).ok).toBe(true);
  });
});
