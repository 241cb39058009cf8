// The KVM provider against the testbed's three real libvirt hosts behind real sshd:
// lifecycle on every host with the guest really booting, idempotency, foreign VMs left
// alone, transactional create under injected faults, capacity, and SSH failures.
import { randomBytes } from 'node:crypto';
import { createHash } from 'node:crypto';
import { createReadStream, writeFileSync, readFileSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AbortedError,
  AuthFailedError,
  CapacityExceededError,
  ConflictError,
  hostId,
  kvmProviderConfig,
  NotFoundError,
  UnreachableError,
  type CreateVmRequest,
  type KvmProviderConfig,
  type OperationProgress,
} from '@novacron/core';
import { rejection } from '../../../test/support/rejection.ts';
import {
  defineDomainOnHost,
  domainsOn,
  execOnHost,
  hostPath,
  kvmProviderConfigFor,
  loadTestbed,
  scrubTestbed,
  tinyGuestDomainXml,
  virshOnHost,
  volumesOn,
  waitForGuestMarker,
  type TestbedHost,
} from '../../../test/testbed/index.ts';
import { KvmProvider } from './KvmProvider.js';
import { SshPool } from './ssh/SshPool.js';
import { failingTransport } from './testing.js';

const tb = loadTestbed();
const RUN = `nct${randomBytes(2).toString('hex')}`; // every domain and volume of this file starts with it
const FLEET = RUN;
const BOOT_MS = 150_000;

function config(patch: Partial<KvmProviderConfig> = {}): KvmProviderConfig {
  return { ...kvmProviderConfig.parse(kvmProviderConfigFor(tb)), ...patch };
}
function provider(patch: Partial<KvmProviderConfig> = {}, transport?: ConstructorParameters<typeof KvmProvider>[0]['transport']): KvmProvider {
  const p = new KvmProvider({ name: 'lab', config: config(patch), cwd: process.cwd(), env: process.env, ...(transport ? { transport } : {}) });
  opened.push(p);
  return p;
}
const opened: KvmProvider[] = [];

function request(name: string, host: TestbedHost, patch: Partial<CreateVmRequest> = {}): CreateVmRequest {
  return {
    name,
    ownership: { fleet: FLEET, group: 'g', index: 0, specHash: 'h1' },
    host: hostId('lab', host.name),
    resources: { cpu: 1, memoryMiB: 128, diskGiB: 1, gpu: 0 },
    image: 'tiny',
    labels: { run: RUN },
    ...patch,
  };
}

/**
 * Runs `fn` on every host at once and waits for all of them (none is left running when the
 * test fails), then fails with every host's error, each named.
 */
async function onEveryHost<T>(fn: (host: TestbedHost, i: number) => Promise<T>): Promise<T[]> {
  const results = await Promise.allSettled(tb.hosts.map((h, i) => fn(h, i)));
  const values: T[] = [];
  const failed: string[] = [];
  for (const [i, r] of results.entries()) {
    if (r.status === 'fulfilled') values.push(r.value);
    else failed.push(`${tb.hosts[i]!.name}: ${r.reason instanceof Error ? (r.reason.stack ?? r.reason.message) : String(r.reason)}`);
  }
  if (failed.length > 0) throw new Error(`failed on ${failed.length} of ${tb.hosts.length} hosts:\n${failed.join('\n\n')}`);
  return values;
}

const domainsOf = (host: TestbedHost) => domainsOn(host, RUN);
const volumesOf = (host: TestbedHost) => volumesOn(tb, host, RUN);
/** Out of band: remove everything this file made, whatever state a failed test left. */
const scrub = () => scrubTestbed(tb, RUN);

beforeAll(scrub);
afterAll(async () => {
  await Promise.all(opened.map((p) => p.close()));
  await scrub();
});

describe('KvmProvider on the testbed', () => {
  it('reports every host: cpu, memory, free memory, pools, running VMs, labels and zone from config', async () => {
    const p = provider({ hosts: tb.hosts.map((h, i) => ({ name: h.name, address: h.address, zone: `z${i}`, labels: { rack: `r${i}` }, pricePerHour: 0.5 })) } as Partial<KvmProviderConfig>);
    const hosts = await p.inventory();
    expect(hosts.map((h) => h.name)).toEqual(tb.hosts.map((h) => h.name));
    for (const [i, h] of hosts.entries()) {
      expect(h).toMatchObject({ id: `lab/${tb.hosts[i]!.name}`, state: 'up', zone: `z${i}`, labels: { rack: `r${i}` }, pricePerHour: 0.5 });
      expect(h.capacity.cpu).toBe(tb.hosts[i]!.resources.cpus);
      // Compared with nodeinfo read out of band now (the testbed's state.json holds it as of `up`).
      const kib = Number(/Memory size:\s+(\d+) KiB/.exec(await virshOnHost(tb.hosts[i]!, ['nodeinfo']))?.[1]);
      expect(Math.abs(h.capacity.memoryMiB - Math.floor(kib / 1024))).toBeLessThanOrEqual(64);
      expect(h.capacity.diskGiB).toBeGreaterThan(0);
      expect(h.freeMemoryMiB).toBeGreaterThan(256);
      // Every pool on the host; the configured one is active, and is what capacity.diskGiB counts.
      const pool = h.storagePools?.find((sp) => sp.name === tb.guest.pool);
      expect(pool, `${h.name}: pools ${JSON.stringify(h.storagePools)}`).toMatchObject({ active: true });
      expect(Math.abs(pool!.capacityGiB - h.capacity.diskGiB)).toBeLessThanOrEqual(1); // two decimals against whole GiB
      expect(pool!.freeGiB).toBeGreaterThanOrEqual(0);
      expect(pool!.freeGiB).toBeLessThanOrEqual(pool!.capacityGiB);
      // Other test files run guests on these hosts meanwhile: a count, not an exact one.
      expect(Number.isInteger(h.runningVms)).toBe(true);
      expect(h.runningVms).toBeGreaterThanOrEqual(0);
    }
  });

  it('runs the whole lifecycle on every host, and the guest really boots', { timeout: 600_000 }, async () => {
    const p = provider();
    const names = tb.hosts.map((h) => `${RUN}-life-${h.index}`);
    const events: OperationProgress[] = [];
    const created = await Promise.all(tb.hosts.map((h, i) => p.create(request(names[i]!, h, { ownership: { fleet: FLEET, group: 'life', index: i, specHash: 'h1' } }), { onProgress: (e) => events.push(e) })));
    expect(events.some((e) => e.phase === 'define')).toBe(true);
    for (const [i, vm] of created.entries()) {
      expect(vm).toMatchObject({ name: names[i], host: `lab/${tb.hosts[i]!.name}`, state: 'running', fleet: FLEET, group: 'life', index: i, image: 'tiny', labels: { run: RUN } });
      expect(vm.id).toMatch(/^[0-9a-f-]{36}$/);
    }
    // The marker on each guest's serial log, read on the host out of band.
    const ready = await Promise.all(tb.hosts.map((h, i) => waitForGuestMarker(h, names[i]!, BOOT_MS)));
    expect(ready.every((r) => r.log.includes(tb.guest.marker))).toBe(true);

    // The seed is attached and is a valid NoCloud volume (blkid on the host reads it).
    const xml = await virshOnHost(tb.hosts[0]!, ['dumpxml', names[0]!]);
    expect(xml).toMatch(/<disk type='volume' device='cdrom'>[\s\S]*?volume='[^']+-seed\.iso'/);
    expect(xml).toContain(`<log file='/var/log/libvirt/qemu/${names[0]}-serial.log' append='off'/>`);
    const blkid = await execOnHost(tb.hosts[0]!, ['blkid', '-p', '-o', 'export', `${tb.guest.poolPath}/${names[0]}-seed.iso`]);
    expect(blkid.stdout).toMatch(/TYPE=iso9660/);
    expect(blkid.stdout).toMatch(/LABEL=cidata/);

    // list finds them by their metadata, with their DHCP addresses.
    const listed = await p.list(FLEET);
    expect(listed.filter((v) => v.group === 'life').map((v) => v.name).sort()).toEqual([...names].sort());
    expect(listed.find((v) => v.name === names[0])?.addresses[0]?.address).toMatch(/^192\.168\.122\./);

    // Inventory counts each host's running domains: ours at least (other files' guests come and go).
    for (const h of await p.inventory()) expect(h.runningVms, h.name).toBeGreaterThanOrEqual(1);

    // The rest of the lifecycle on every host at once, so three hosts take the time of one.
    await onEveryHost(async (host, i) => {
      const name = names[i]!;
      const ref = { name, fleet: FLEET, host: `lab/${host.name}` };
      // Graceful stop: the guest handles the ACPI power button, well before the timeout.
      const t0 = Date.now();
      expect((await p.stop(ref, { gracefulTimeoutMs: 60_000 })).state).toBe('stopped');
      expect(Date.now() - t0).toBeLessThan(60_000);
      expect((await p.stop(ref)).state).toBe('stopped'); // idempotent

      // Resize while stopped (config), then start and see it booted again.
      const resized = await p.resize(ref, { resources: { cpu: 2, memoryMiB: 160, diskGiB: 2, gpu: 0 }, specHash: 'h2', allowReboot: false });
      expect(resized).toMatchObject({ state: 'stopped', specHash: 'h2', resources: { cpu: 2, memoryMiB: 160, diskGiB: 2 } });
      const volInfo = await virshOnHost(host, ['vol-info', `${name}-root.qcow2`, '--pool', tb.guest.pool, '--bytes']);
      expect(volInfo).toMatch(/Capacity:\s+2147483648 bytes/);
      expect((await p.start(ref)).state).toBe('running');
      expect((await p.start(ref)).state).toBe('running'); // idempotent
      await waitForGuestMarker(host, name, BOOT_MS);

      // A running VM without hot-plug ceilings needs a reboot for more vCPUs: refused unless allowed.
      expect(await rejection(p.resize(ref, { resources: { cpu: 3, memoryMiB: 160, diskGiB: 2, gpu: 0 }, specHash: 'h3', allowReboot: false }))).toBeInstanceOf(ConflictError);
      // A disk grows live.
      expect((await p.resize(ref, { resources: { cpu: 2, memoryMiB: 160, diskGiB: 3, gpu: 0 }, specHash: 'h3', allowReboot: false })).resources.diskGiB).toBe(3);

      // Forced stop, found without its host.
      expect((await p.stop({ name, fleet: FLEET }, { force: true })).state).toBe('stopped');
    });

    // Delete everything, twice.
    await Promise.all(names.map((name, i) => p.delete({ name, fleet: FLEET, host: `lab/${tb.hosts[i]!.name}` })));
    await Promise.all(names.map((name) => p.delete({ name, fleet: FLEET })));
    for (const h of tb.hosts) {
      expect(await domainsOf(h)).toEqual([]);
      expect(await volumesOf(h)).toEqual([]);
    }
    expect(await p.list(FLEET)).toEqual([]);
  });

  it('is idempotent on the name, and one SSH connection per host carries everything', { timeout: 300_000 }, async () => {
    const pool = new SshPool({ env: process.env });
    const p = provider({}, pool);
    const host = tb.hosts[1]!;
    const name = `${RUN}-idem`;
    const first = await p.create(request(name, host));
    const again = await p.create(request(name, host));
    expect(again.id).toBe(first.id);
    expect(await domainsOf(host)).toEqual([name]);
    await Promise.all([p.list(FLEET), p.list(FLEET), p.inventory(), p.inventory()]);
    expect(pool.stats.connectionsOpened).toBe(tb.hosts.length);
    await p.delete({ name, fleet: FLEET });
    expect(await volumesOf(host)).toEqual([]);
  });

  it('never touches VMs the fleet does not own', { timeout: 300_000 }, async () => {
    const p = provider();
    const host = tb.hosts[2]!;
    const nobody = `${RUN}-nobody`;
    await defineDomainOnHost(host, tinyGuestDomainXml(tb, { name: nobody, memoryMiB: 64 }));
    // Another fleet's VM: NovaCron metadata, another fleet.
    const other = provider();
    await other.create(request(`${RUN}-other`, host, { ownership: { fleet: `${FLEET}x`, group: 'g', index: 0, specHash: 'h' } }));
    const before = await Promise.all([virshOnHost(host, ['dumpxml', nobody]), virshOnHost(host, ['dumpxml', `${RUN}-other`])]);

    expect((await p.list(FLEET)).map((v) => v.name)).not.toContain(nobody);
    for (const name of [nobody, `${RUN}-other`]) {
      const ref = { name, fleet: FLEET, host: `lab/${host.name}` };
      for (const attempt of [
        () => p.create(request(name, host)),
        () => p.start(ref),
        () => p.stop(ref, { force: true }),
        () => p.resize(ref, { resources: { cpu: 1, memoryMiB: 128, diskGiB: 5, gpu: 0 }, specHash: 'x', allowReboot: true }),
        () => p.delete(ref),
        () => p.delete({ name, fleet: FLEET }),
      ]) {
        const error = await rejection(attempt());
        expect(error).toBeInstanceOf(ConflictError);
        expect(error.context.host).toBe(host.name);
        expect(error.message).toMatch(/not owned by fleet/);
      }
    }
    const after = await Promise.all([virshOnHost(host, ['dumpxml', nobody]), virshOnHost(host, ['dumpxml', `${RUN}-other`])]);
    expect(after).toEqual(before);
    await other.delete({ name: `${RUN}-other`, fleet: `${FLEET}x` });
    await virshOnHost(host, ['undefine', nobody]);
  });

  it.each([
    ['define', / define /],
    ['start', / start /],
    ['the seed upload', / vol-upload /],
  ])('leaves nothing behind when %s fails mid-create', { timeout: 300_000 }, async (_step, pattern) => {
    const host = tb.hosts[0]!;
    const inner = new SshPool({ env: process.env });
    // The domain XML travels on stdin, so `define` is recognised by the command alone.
    const faulty = failingTransport(inner, (command) => pattern.test(command), 'error: internal error: injected by the test');
    const p = provider({}, faulty);
    const name = `${RUN}-fault`;
    const error = await rejection(p.create(request(name, host)));
    expect(error.message).toMatch(/injected by the test/);
    expect(error.context).toMatchObject({ host: host.name, vm: name, operation: 'create' });
    expect(faulty.failed).toHaveLength(1);
    expect(await domainsOf(host)).toEqual([]);
    expect(await volumesOf(host)).toEqual([]);
  });

  it('leaves nothing behind when libvirt itself refuses the domain (a kernel path that does not exist)', { timeout: 120_000 }, async () => {
    const host = tb.hosts[1]!;
    const base = config();
    const p = provider({ images: { tiny: { ...base.images['tiny']!, kernel: '/nonexistent/vmlinuz' } } });
    const error = await rejection(p.create(request(`${RUN}-badkernel`, host)));
    expect(error.context.host).toBe(host.name);
    expect(await domainsOf(host)).toEqual([]);
    expect(await volumesOf(host)).toEqual([]);
  });

  it('refuses a VM larger than the host before making anything, and tries alternatives', { timeout: 300_000 }, async () => {
    const p = provider();
    const host = tb.hosts[0]!;
    const error = await rejection(p.create(request(`${RUN}-huge`, host, { resources: { cpu: 1, memoryMiB: 64 * 1024, diskGiB: 1, gpu: 0 } })));
    expect(error).toBeInstanceOf(CapacityExceededError);
    expect(error.context.host).toBe(host.name);
    expect(error.message).toMatch(/memory/);
    expect(await volumesOf(host)).toEqual([]);
    // nc-h1 allows 1 vCPU here (2 cpus × overcommit 0.5): a 2-vCPU VM goes to the alternative.
    const base = config();
    const p2 = provider({ hosts: base.hosts.map((h) => (h.name === host.name ? { ...h, overcommit: { cpu: 0.5, memory: 1, disk: 1 } } : h)) });
    const moved = await p2.create(request(`${RUN}-alt`, host, { resources: { cpu: 2, memoryMiB: 128, diskGiB: 1, gpu: 0 }, alternatives: [{ host: hostId('lab', tb.hosts[2]!.name) }] }));
    expect(moved.host).toBe(hostId('lab', tb.hosts[2]!.name));
    expect(await domainsOf(host)).toEqual([]);
    await p2.delete({ name: `${RUN}-alt`, fleet: FLEET });
  });

  it('refuses a host whose key does not match known_hosts, naming the host', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nc-kvm-'));
    const lines = readFileSync(tb.knownHosts, 'utf8').trim().split('\n');
    // Every address recorded with the next host's key.
    const swapped = lines.map((l, i) => `${l.split(' ')[0]} ${lines[(i + 1) % lines.length]!.split(' ').slice(1).join(' ')}`);
    const file = join(dir, 'known_hosts');
    writeFileSync(file, `${swapped.join('\n')}\n`);
    const p = provider({ ssh: { ...config().ssh, knownHosts: file } });
    const error = await rejection(p.list(FLEET));
    expect(error).toBeInstanceOf(AuthFailedError);
    expect(tb.hosts.map((h) => h.name)).toContain(error.context.host);
    expect(error.message).toMatch(/HOST KEY MISMATCH/);
    await expect(p.inventory()).rejects.toBeInstanceOf(AuthFailedError);
  });

  it('fails fast with Unreachable for a host nobody answers, and inventory marks it down', { timeout: 90_000 }, async () => {
    const base = config();
    const p = provider({ hosts: [...base.hosts, { name: 'ghost', address: '10.77.0.99', zone: 'default', labels: {}, pricePerHour: 0 }], ssh: { ...base.ssh, connectTimeout: 4_000 } });
    const t0 = Date.now();
    const error = await rejection(p.list(FLEET));
    expect(error).toBeInstanceOf(UnreachableError);
    expect(error.retryable).toBe(true);
    expect(error.context.host).toBe('ghost');
    expect(error.hint).toBeTruthy();
    expect(Date.now() - t0).toBeLessThan(10_000);
    const hosts = await p.inventory();
    expect(hosts.find((h) => h.name === 'ghost')?.state).toBe('down');
    expect(hosts.filter((h) => h.state === 'up')).toHaveLength(tb.hosts.length);
    expect(await rejection(p.start({ name: `${RUN}-nope`, fleet: FLEET, host: 'lab/nc-h1' }))).toBeInstanceOf(UnreachableError); // searching all hosts meets the ghost
  });

  it('reports a VM that does not exist as NotFound, and a missing image with the known ones', async () => {
    const p = provider();
    expect(await rejection(p.start({ name: `${RUN}-nope`, fleet: FLEET, host: 'lab/nc-h1' }))).toBeInstanceOf(NotFoundError);
    const error = await rejection(p.create(request(`${RUN}-img`, tb.hosts[0]!, { image: 'debian-13' })));
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error.hint).toMatch(/tiny/);
    expect(hostPath).toBeTypeOf('function');
  });
  it('grows vCPUs and memory live within the hotplug ceilings, without a reboot', { timeout: 300_000 }, async () => {
    const p = provider({ hotplug: { cpu: 2, memory: 256 } });
    expect(p.capabilities).toMatchObject({ resize: true, hotplugCpu: true, hotplugMemory: true, liveMigration: true, coldMigration: true, snapshots: true, incrementalSnapshots: true });
    const host = tb.hosts[2]!;
    const name = `${RUN}-hot`;
    await p.create(request(name, host));
    const booted = await waitForGuestMarker(host, name, BOOT_MS);
    const ref = { name, fleet: FLEET, host: `lab/${host.name}` };
    const resized = await p.resize(ref, { resources: { cpu: 2, memoryMiB: 192, diskGiB: 1, gpu: 0 }, specHash: 'h2', allowReboot: false });
    expect(resized).toMatchObject({ state: 'running', specHash: 'h2', resources: { cpu: 2, memoryMiB: 192 } });
    expect((await virshOnHost(host, ['vcpucount', name, '--live', '--active'])).trim()).toBe('2');
    expect(await virshOnHost(host, ['dumpxml', name, '--inactive'])).toMatch(/<currentMemory unit='KiB'>196608<\/currentMemory>/);
    // The guest's balloon driver gives the memory back within moments (live, not just config).
    for (let i = 0; i < 40 && !/actual 196608/.test(await virshOnHost(host, ['dommemstat', name])); i++) await new Promise((r) => setTimeout(r, 500));
    expect(await virshOnHost(host, ['dommemstat', name])).toMatch(/actual 196608/);
    // Not rebooted: the serial log still holds the first boot only.
    const log = readFileSync(hostPath(host, `/var/log/libvirt/qemu/${name}-serial.log`), 'utf8');
    expect(log.split(tb.guest.marker)).toHaveLength(2);
    expect(booted.log.length).toBeGreaterThan(0);
    await p.delete(ref);
  });

  it('replaces leftover volumes of an interrupted create, but not volumes a domain uses', { timeout: 300_000 }, async () => {
    const p = provider();
    const host = tb.hosts[1]!;
    const name = `${RUN}-left`;
    // What a crash between vol-create-as and define leaves: volumes named after the VM, no domain.
    await virshOnHost(host, ['vol-create-as', tb.guest.pool, `${name}-root.qcow2`, '1M', '--format', 'qcow2']);
    await virshOnHost(host, ['vol-create-as', tb.guest.pool, `${name}-seed.iso`, '1M', '--format', 'raw']);
    const vm = await p.create(request(name, host));
    expect(vm.state).toBe('running');
    await p.delete({ name, fleet: FLEET });
    expect(await volumesOf(host)).toEqual([]);

    // delete of a VM that never got its domain removes such leftovers too.
    await virshOnHost(host, ['vol-create-as', tb.guest.pool, `${name}-root.qcow2`, '1M', '--format', 'qcow2']);
    await p.delete({ name, fleet: FLEET });
    expect(await volumesOf(host)).toEqual([]);

    // A volume of that name that a domain uses is not a leftover.
    const squatter = `${RUN}-squat`;
    await virshOnHost(host, ['vol-create-as', tb.guest.pool, `${name}-root.qcow2`, '1M', '--format', 'qcow2']);
    await defineDomainOnHost(host, tinyGuestDomainXml(tb, { name: squatter, memoryMiB: 64, volume: `${name}-root.qcow2` }));
    const error = await rejection(p.create(request(name, host)));
    expect(error).toBeInstanceOf(ConflictError);
    expect(error.message).toMatch(/a domain uses it/);
    expect(await volumesOf(host)).toEqual([`${name}-root.qcow2`]);
    await virshOnHost(host, ['undefine', squatter]);
    await virshOnHost(host, ['vol-delete', `${name}-root.qcow2`, '--pool', tb.guest.pool]);
  });

  it('cleans up when the caller aborts mid-create', { timeout: 120_000 }, async () => {
    const p = provider();
    const host = tb.hosts[0]!;
    const controller = new AbortController();
    const error = await rejection(p.create(request(`${RUN}-abort`, host), { signal: controller.signal, onProgress: (e) => e.phase === 'seed' && controller.abort() }));
    expect(error).toBeInstanceOf(AbortedError);
    expect(await domainsOf(host)).toEqual([]);
    expect(await volumesOf(host)).toEqual([]);
  });

  it('fetches an image given by URL once, checks its checksum, and backs new disks with it', { timeout: 300_000 }, async () => {
    const file = join(tb.dir, 'guest', tb.guest.baseVolume);
    const sha = createHash('sha256').update(readFileSync(file)).digest('hex');
    let requests = 0;
    const server = createServer((_req, res) => {
      requests++;
      createReadStream(file).pipe(res);
    });
    await new Promise<void>((resolve) => server.listen(0, tb.bridge.address, resolve));
    const url = `http://${tb.bridge.address}:${(server.address() as AddressInfo).port}/${RUN}.qcow2`;
    try {
      const base = config().images['tiny']!;
      const host = tb.hosts[0]!;
      const bad = provider({ images: { tiny: { ...base, volume: undefined, url, checksum: `sha256:${'0'.repeat(64)}` } } as never });
      const mismatch = await rejection(bad.create(request(`${RUN}-url`, host)));
      expect(mismatch.message).toMatch(/checksum mismatch/);
      expect((await virshOnHost(host, ['vol-list', tb.guest.pool])).includes('novacron-image-')).toBe(false);

      const p = provider({ images: { tiny: { ...base, volume: undefined, url, checksum: `sha256:${sha}` } } as never });
      await p.create(request(`${RUN}-url`, host));
      await p.create(request(`${RUN}-url2`, host));
      expect(requests).toBe(2); // the bad one, then once for both VMs
      const xml = await virshOnHost(host, ['vol-dumpxml', `${RUN}-url-root.qcow2`, '--pool', tb.guest.pool]);
      expect(xml).toMatch(/<backingStore>[\s\S]*novacron-image-tiny-[0-9a-f]{12}\.qcow2/);
      await waitForGuestMarker(host, `${RUN}-url`, BOOT_MS);
      await Promise.all([p.delete({ name: `${RUN}-url`, fleet: FLEET }), p.delete({ name: `${RUN}-url2`, fleet: FLEET })]);
    } finally {
      server.close();
      const host = tb.hosts[0]!;
      for (const v of await volumesOn(tb, host, 'novacron-image-tiny-')) {
        await execOnHost(host, ['virsh', '-q', 'vol-delete', v, '--pool', tb.guest.pool]);
      }
    }
  });
  it('never lets two concurrent creates in one process take the last room on a host', { timeout: 300_000 }, async () => {
    const host = tb.hosts[1]!;
    const probe = provider();
    const before = (await probe.inventory()).find((h) => h.name === host.name)!;
    // Room for exactly one more vCPU on this host, whatever else runs there now.
    const overcommit = (before.allocated.cpu + 1) / before.capacity.cpu;
    const base = config();
    const p = provider({ hosts: base.hosts.map((h) => (h.name === host.name ? { ...h, overcommit: { cpu: overcommit, memory: 1, disk: 1 } } : h)) });
    const results = await Promise.allSettled([p.create(request(`${RUN}-race-0`, host)), p.create(request(`${RUN}-race-1`, host))]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    // Exactly one, unless another test file took the room meanwhile (CI runs files in
    // parallel on the same hosts): then none. Never two.
    expect(won.length).toBeLessThanOrEqual(1);
    expect(lost.length).toBeGreaterThanOrEqual(1);
    expect(lost.every((r) => r.reason instanceof CapacityExceededError)).toBe(true);
    expect(await domainsOf(host)).toHaveLength(won.length);
    await Promise.all([p.delete({ name: `${RUN}-race-0`, fleet: FLEET }), p.delete({ name: `${RUN}-race-1`, fleet: FLEET })]);
  });
});
