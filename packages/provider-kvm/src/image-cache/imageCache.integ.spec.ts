// Images on the hosts and concurrency that knows them, on the testbed: an image fetched
// once for three VMs on three hosts (the others get it host to host), a volume pushed from
// the one host that has it, full clones made on the host, and two applies of two fleets in
// two processes at once against the same hosts and the same image.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostId, kvmProviderConfig, type CreateVmRequest, type KvmProviderConfig } from '@novacron/core';
import { execOnHost, kvmProviderConfigFor, loadTestbed, virshOnHost, waitForGuestMarker, type TestbedHost } from '../../../../test/testbed/index.ts';
import { buildCli, runCli } from '../../../../test/support/cli.ts';
import { tempDir } from '../../../../test/support/sim.ts';
import { KvmProvider } from '../KvmProvider.js';

const tb = loadTestbed();
const RUN = `nci${randomBytes(2).toString('hex')}`;
const BOOT_MS = 180_000;
const baseFile = join(tb.dir, 'guest', tb.guest.baseVolume);
const sha = createHash('sha256').update(readFileSync(baseFile)).digest('hex');
const opened: KvmProvider[] = [];
let server: Server;
let requests = 0;
let url = '';

beforeAll(async () => {
  // The hosts fetch from the testbed's root namespace (10.77.0.1), as from any web server they can reach.
  server = createServer((_req, res) => {
    requests++;
    res.setHeader('content-length', String(readFileSync(baseFile).length));
    createReadStream(baseFile).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, tb.bridge.address, resolve));
  url = `http://${tb.bridge.address}:${(server.address() as AddressInfo).port}/${RUN}/tiny.qcow2`;
  await scrub();
  await buildCli();
}, 300_000);
afterAll(async () => {
  await Promise.all(opened.map((p) => p.close()));
  server?.close();
  await scrub();
});

function kvm(patch: Partial<KvmProviderConfig> = {}): KvmProvider {
  const p = new KvmProvider({ name: 'lab', config: { ...kvmProviderConfig.parse(kvmProviderConfigFor(tb)), ...patch }, cwd: process.cwd(), env: process.env });
  opened.push(p);
  return p;
}
const tiny = () => kvmProviderConfig.parse(kvmProviderConfigFor(tb)).images['tiny']!;
const byUrl = () => ({ ...tiny(), volume: undefined, url, checksum: `sha256:${sha}` }) as KvmProviderConfig['images'][string];

function request(name: string, host: TestbedHost, image: string, fleet = RUN): CreateVmRequest {
  return { name, ownership: { fleet, group: 'g', index: 0, specHash: 'h' }, host: hostId('lab', host.name), resources: { cpu: 1, memoryMiB: 128, diskGiB: 1, gpu: 0 }, image, labels: {} };
}
async function volumes(host: TestbedHost): Promise<string[]> {
  return (await virshOnHost(host, ['vol-list', tb.guest.pool])).split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter(Boolean);
}
async function scrub(): Promise<void> {
  await Promise.all(
    tb.hosts.map(async (host) => {
      const domains = (await virshOnHost(host, ['list', '--all', '--name'])).split('\n').map((s) => s.trim()).filter((n) => n.startsWith(RUN));
      for (const d of domains) {
        await execOnHost(host, ['virsh', '-q', 'destroy', d]);
        await execOnHost(host, ['virsh', '-q', 'undefine', d]);
      }
      for (const v of (await volumes(host)).filter((n) => n.startsWith(RUN) || n.startsWith('novacron-image-web-') || n.startsWith('novacron-image-shared-'))) {
        await execOnHost(host, ['virsh', '-q', 'vol-delete', v, '--pool', tb.guest.pool]);
      }
    }),
  );
}
async function backingOf(host: TestbedHost, volume: string): Promise<string> {
  const xml = await virshOnHost(host, ['vol-dumpxml', volume, '--pool', tb.guest.pool]);
  return /<backingStore>[\s\S]*?<path>([^<]+)<\/path>/.exec(xml)?.[1] ?? '';
}

describe('images on the hosts', () => {
  it('fetches an image once for three VMs on three hosts: one host fetches, the others copy from it host to host', { timeout: 600_000 }, async () => {
    requests = 0;
    const p = kvm({ images: { web: byUrl() } });
    const names = tb.hosts.map((h) => `${RUN}-web-${h.index}`);
    const made = await Promise.all(tb.hosts.map((h, i) => p.create(request(names[i]!, h, 'web'))));
    expect(made.every((vm) => vm.state === 'running')).toBe(true);
    expect(requests).toBe(1);
    expect(p.imageStats).toEqual({ hits: 0, fetches: 1, pushes: 2 });
    for (const [i, h] of tb.hosts.entries()) {
      const cached = (await volumes(h)).filter((v) => v.startsWith('novacron-image-web-'));
      expect(cached).toHaveLength(1);
      expect(await backingOf(h, `${names[i]}-root.qcow2`)).toMatch(new RegExp(`/${cached[0]}$`));
      // The copy is the image, byte for byte.
      expect((await execOnHost(h, ['sha256sum', `${tb.guest.poolPath}/${cached[0]}`])).stdout.split(' ')[0]).toBe(sha);
    }
    await Promise.all(tb.hosts.map((h, i) => waitForGuestMarker(h, names[i]!, BOOT_MS)));

    // A fourth VM: the image is there already (a hit); a full clone is made on the host, with no backing file.
    const full = kvm({ images: { web: { ...byUrl(), clone: 'full' } } });
    await full.create(request(`${RUN}-full`, tb.hosts[1]!, 'web'));
    expect(requests).toBe(1);
    expect(full.imageStats).toEqual({ hits: 1, fetches: 0, pushes: 0 });
    expect(await backingOf(tb.hosts[1]!, `${RUN}-full-root.qcow2`)).toBe('');
    expect(await virshOnHost(tb.hosts[1]!, ['vol-info', `${RUN}-full-root.qcow2`, '--pool', tb.guest.pool, '--bytes'])).toMatch(/Capacity:\s+1073741824 bytes/);
    await waitForGuestMarker(tb.hosts[1]!, `${RUN}-full`, BOOT_MS);
    await Promise.all([...names, `${RUN}-full`].map((name) => p.delete({ name, fleet: RUN })));
  });

  it('pushes a volume from the one host that has it to a host that lacks it, never through this machine', { timeout: 300_000 }, async () => {
    const [h1, , h3] = tb.hosts as [TestbedHost, TestbedHost, TestbedHost];
    const volume = `${RUN}-golden.qcow2`;
    await virshOnHost(h1, ['vol-clone', '--pool', tb.guest.pool, tb.guest.baseVolume, volume]);
    const p = kvm({ images: { golden: { ...tiny(), volume } } });
    const vm = await p.create(request(`${RUN}-golden`, h3, 'golden'));
    expect(vm.host).toBe(`lab/${h3.name}`);
    expect(p.imageStats).toEqual({ hits: 0, fetches: 0, pushes: 1 });
    expect(await volumes(h3)).toContain(volume);
    expect(await volumes(tb.hosts[1]!)).not.toContain(volume);
    await waitForGuestMarker(h3, `${RUN}-golden`, BOOT_MS);
    await p.delete({ name: `${RUN}-golden`, fleet: RUN });
  });
});

describe('concurrency that knows the hosts', () => {
  it('runs two applies of two fleets at once, in two processes, on the same hosts and image: both converge, nothing collides', { timeout: 900_000 }, async () => {
    requests = 0;
    const cwd = tempDir('novacron-two-');
    const provider = { ...kvmProviderConfigFor(tb), images: { shared: { ...tiny(), volume: undefined, url, checksum: `sha256:${sha}` } } };
    const fleets = ['a', 'b'].map((x) => `${RUN}${x}`);
    for (const name of fleets) {
      writeFileSync(join(cwd, `${name}.json`), JSON.stringify({ name, providers: { lab: provider }, groups: { app: { count: 3, cpu: 1, memory: '128MiB', disk: '1GiB', image: 'shared', placement: { antiAffinity: 'host' } } } }));
    }
    const t0 = Date.now();
    const [a, b] = await Promise.all(fleets.map((name) => runCli(['apply', '-f', `${name}.json`, '--json'], { cwd })));
    const seconds = (Date.now() - t0) / 1000;
    for (const run of [a!, b!]) {
      const result = JSON.parse(run.stdout) as { ok: boolean; outcomes: { status: string; error?: { message: string } }[] };
      expect(result.outcomes.map((o) => o.error?.message ?? o.status), run.stderr).toEqual(['done', 'done', 'done']);
    }
    // Every host holds the image once, fetched or copied once (never twice into one pool).
    for (const h of tb.hosts) expect((await volumes(h)).filter((v) => v.startsWith('novacron-image-shared-'))).toHaveLength(1);
    expect(requests).toBeGreaterThanOrEqual(1);
    expect(requests).toBeLessThanOrEqual(tb.hosts.length);
    // Six VMs, each once, each fleet one per host; no claim left behind.
    const all = (await Promise.all(tb.hosts.map(async (h) => (await virshOnHost(h, ['list', '--all', '--name'])).split('\n').map((s) => s.trim()).filter((n) => n.startsWith(RUN)).map((n) => `${h.name}:${n}`)))).flat();
    expect(all).toHaveLength(6);
    expect(new Set(all.map((x) => x.split(':')[1])).size).toBe(6);
    for (const h of tb.hosts) {
      const claims = await execOnHost(h, ['sh', '-c', 'ls /var/lib/libvirt/novacron/claims 2>/dev/null']);
      expect(claims.stdout.split('\n').filter((n) => n.startsWith(RUN))).toEqual([]);
    }
    // Both plans are empty afterwards.
    for (const name of fleets) expect(JSON.parse((await runCli(['plan', '-f', `${name}.json`, '--json'], { cwd })).stdout)).toMatchObject({ changes: 0 });
    console.log(`two applies of 3 VMs each at once: ${seconds.toFixed(1)} s, ${requests} image fetch(es) for 3 hosts`);
    for (const name of fleets) expect((await runCli(['destroy', '-f', `${name}.json`, '--yes'], { cwd })).code).toBe(0);
  });
});
