// Disk images out of and into the testbed's hosts, for moves between providers: a stopped
// VM's qcow2 disk converted to raw by qemu-img on its host and pulled here (sparse, sha256
// checked), the same artifact imported into another host's pool and a VM created from it,
// which boots and reads the data the first one wrote.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostId, kvmProviderConfig } from '@novacron/core';
import { rejection } from '../../../../test/support/rejection.ts';
import { execOnHost, guestHttpGet, kvmProviderConfigFor, loadTestbed, parseKeyValues, virshOnHost, waitForGuestMarker, type TestbedHost } from '../../../../test/testbed/index.ts';
import { KvmProvider } from '../KvmProvider.js';
import { importedVolumeName } from './KvmImages.js';

const tb = loadTestbed();
const RUN = `ncim${randomBytes(2).toString('hex')}`;
const FLEET = RUN;
/** Testbed hosts, those with the most free DHCP leases first (each host has 50, held for an hour). */
async function hostsByFreeLeases(): Promise<TestbedHost[]> {
  const used = await Promise.all(tb.hosts.map(async (h) => (await virshOnHost(h, ['net-dhcp-leases', tb.guest.network])).split('\n').filter((l) => l.trim()).length));
  return tb.hosts.map((h, i) => ({ h, n: used[i]! })).sort((a, b) => a.n - b.n).map((x) => x.h);
}
const [h1, h2, h3] = (await hostsByFreeLeases()) as [TestbedHost, TestbedHost, TestbedHost];
const MiB = 1024 * 1024;
const imageDir = mkdtempSync(join(tmpdir(), `${RUN}-`));
const kvm = new KvmProvider({ name: 'lab', config: kvmProviderConfig.parse({ ...kvmProviderConfigFor(tb), imageDir, backupDir: `/var/tmp/${RUN}` }), cwd: process.cwd(), env: process.env });

function sha256OfRange(path: string, offset: number, length: number): string {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, offset);
    return createHash('sha256').update(buf).digest('hex');
  } finally {
    closeSync(fd);
  }
}
const create = (name: string, host: TestbedHost, fromImage?: string) =>
  kvm.create({ name, ownership: { fleet: FLEET, group: 'app', index: 0, specHash: 'h' }, host: hostId('lab', host.name), resources: { cpu: 1, memoryMiB: 128, diskGiB: 1, gpu: 0 }, image: 'tiny', labels: {}, ...(fromImage ? { fromImage } : {}) });

async function scrub(): Promise<void> {
  await Promise.all(
    tb.hosts.map(async (host) => {
      const names = (await virshOnHost(host, ['list', '--all', '--name'])).split('\n').map((s) => s.trim()).filter((n) => n.startsWith(RUN));
      for (const d of names) {
        await execOnHost(host, ['virsh', '-q', 'destroy', d]);
        await execOnHost(host, ['virsh', '-q', 'undefine', d]);
      }
      const vols = (await virshOnHost(host, ['vol-list', tb.guest.pool])).split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n.startsWith(RUN) || n.startsWith(`novacron-image-${RUN}`));
      for (const v of vols) await execOnHost(host, ['virsh', '-q', 'vol-delete', v, '--pool', tb.guest.pool]);
    }),
  );
  rmSync(imageDir, { recursive: true, force: true });
  rmSync(`/var/tmp/${RUN}`, { recursive: true, force: true });
}

let written = '';
beforeAll(async () => {
  await create(`${RUN}-src`, h1);
  const ip = (await waitForGuestMarker(h1, `${RUN}-src`, 150_000)).ip!;
  written = parseKeyValues(await guestHttpGet(h1, ip, '/cgi-bin/diskwrite?mib=4&offset=32', { timeoutMs: 120_000 }))['sha256']!;
}, 200_000);
afterAll(async () => {
  await kvm.close();
  await scrub();
}, 200_000);

describe('KVM image export and import (testbed)', { timeout: 600_000 }, () => {
  let artifact: Awaited<ReturnType<KvmProvider['exportImage']>>;

  it('refuses to export a running VM', async () => {
    const error = await rejection(kvm.exportImage({ name: `${RUN}-src`, fleet: FLEET }));
    expect(error.code).toBe('Conflict');
    expect(error.message).toMatch(/can be exported only while it is shut off/);
  });

  it('exports a stopped VM\'s disk as raw with qemu-img, pulled here sparse and checked by sha256', async () => {
    await kvm.stop({ name: `${RUN}-src`, fleet: FLEET }, { force: true });
    const phases: string[] = [];
    artifact = await kvm.exportImage({ name: `${RUN}-src`, fleet: FLEET }, { onProgress: (p) => phases.push(p.phase) });
    expect(artifact).toMatchObject({ format: 'raw', sizeBytes: 1024 * MiB });
    expect(artifact.path.startsWith(imageDir)).toBe(true);
    expect(statSync(artifact.path).size).toBe(1024 * MiB);
    // Sparse: the zeros were not written.
    expect(statSync(artifact.path).blocks * 512).toBeLessThan(64 * MiB);
    expect(phases).toEqual(['convert', 'download', 'done']);
    // What the guest wrote is in the image, and the base image's content under it.
    expect(sha256OfRange(artifact.path, 32 * MiB, 4 * MiB)).toBe(written);
    expect(sha256OfRange(artifact.path, tb.guest.baseContent.offsetMiB * MiB, tb.guest.baseContent.lengthMiB * MiB)).toBe(tb.guest.baseContent.sha256);
    const whole = createHash('sha256');
    const fd = openSync(artifact.path, 'r');
    const buf = Buffer.alloc(16 * MiB);
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) whole.update(buf.subarray(0, n));
    closeSync(fd);
    expect(whole.digest('hex')).toBe(artifact.sha256);
    // Nothing left on the host.
    expect((await execOnHost(h1, ['sh', '-c', `ls /var/tmp/${RUN}/.work 2>/dev/null | wc -l`])).stdout.trim()).toBe('0');
  });

  it('imports the artifact into one host\'s pool as qcow2 (checked by sha256), once', async () => {
    const volume = await kvm.importImage(artifact, `${RUN}-app`);
    expect(volume).toBe(importedVolumeName(`${RUN}-app`));
    const where = await Promise.all(tb.hosts.map(async (h) => ((await virshOnHost(h, ['vol-list', tb.guest.pool])).includes(volume) ? h.name : undefined)));
    expect(where.filter(Boolean)).toHaveLength(1);
    const host = tb.hosts.find((h) => h.name === where.find(Boolean))!;
    const path = (await virshOnHost(host, ['vol-path', '--pool', tb.guest.pool, volume])).trim();
    expect(JSON.parse((await execOnHost(host, ['qemu-img', 'info', '--output=json', path])).stdout)).toMatchObject({ format: 'qcow2', 'virtual-size': 1024 * MiB });
    // Byte for byte the exported raw.
    expect((await execOnHost(host, ['qemu-img', 'compare', '-U', '-f', 'qcow2', '-F', 'raw', path, artifact.path])).stdout).toMatch(/Images are identical/);
    expect(await kvm.importImage(artifact, `${RUN}-app`)).toBe(volume);
  });

  it('refuses an artifact whose bytes do not match its sha256, leaving nothing behind', async () => {
    const broken = join(imageDir, 'broken.raw');
    writeFileSync(broken, Buffer.alloc(MiB, 1));
    const error = await rejection(kvm.importImage({ path: broken, format: 'raw', sizeBytes: MiB, sha256: 'a'.repeat(64) }, `${RUN}-bad`));
    expect(error.code).toBe('Conflict');
    expect(error.message).toMatch(/checksum mismatch/);
    for (const h of tb.hosts) expect(await virshOnHost(h, ['vol-list', tb.guest.pool])).not.toMatch(new RegExp(`${RUN}-bad`));
    expect((await rejection(kvm.importImage({ ...artifact, format: 'tar.gz' }, `${RUN}-gz`))).code).toBe('Unsupported');
  });

  it('creates VMs from the imported image on any host (copied there when missing), and they read what the source wrote', async () => {
    const volume = importedVolumeName(`${RUN}-app`);
    for (const [name, host] of [[`${RUN}-c2`, h2], [`${RUN}-c3`, h3]] as const) {
      const vm = await create(name, host, volume);
      expect(vm).toMatchObject({ name, host: `lab/${host.name}`, state: 'running', image: 'tiny' });
      const ip = (await waitForGuestMarker(host, name, 150_000)).ip!;
      expect(parseKeyValues(await guestHttpGet(host, ip, '/cgi-bin/diskhash?offset=32&mib=4', { timeoutMs: 120_000 }))['sha256']).toBe(written);
      expect(await virshOnHost(host, ['vol-list', tb.guest.pool])).toContain(volume);
      await kvm.delete({ name, fleet: FLEET });
    }
    const missing = await rejection(create(`${RUN}-c4`, h2, importedVolumeName(`${RUN}-never`)));
    expect(missing.code).toBe('NotFound');
    expect(missing.message).toMatch(/was not imported on any host/);
  });
});
