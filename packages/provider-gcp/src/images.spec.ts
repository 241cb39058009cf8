import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { gcpProviderConfig, type Clock } from '@novacron/core';
import { afterEach, describe, expect, it } from 'vitest';
import { GcpProvider } from './GcpProvider.js';
import { rawDiskTarball, tarHeader } from './tarball.js';
import { FakeCompute } from './testing/fakeCompute.js';

const instantClock: Clock = { now: () => Date.now(), sleep: async (_ms, signal) => signal?.throwIfAborted() };

function rawDisk(dir: string, bytes: number) {
  const path = join(dir, 'disk.raw');
  const data = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4096) data.writeUInt32LE(i, i);
  writeFileSync(path, data);
  return { path, format: 'raw' as const, sizeBytes: bytes, sha256: createHash('sha256').update(data).digest('hex') };
}

describe('the disk.raw tarball', () => {
  it('is a gzipped GNU tar that tar itself unpacks to the same bytes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'novacron-tar-'));
    const disk = rawDisk(dir, 1024 * 1024 + 123);
    const out = join(dir, 'disk.tar.gz');
    await pipeline(rawDiskTarball(disk.path, disk.sizeBytes, 1_700_000_000), createWriteStream(out));
    const listing = execFileSync('tar', ['-tvzf', out], { encoding: 'utf8' });
    expect(listing).toMatch(/disk\.raw/);
    const extracted = join(dir, 'x');
    execFileSync('mkdir', ['-p', extracted]);
    execFileSync('tar', ['-xzf', out, '-C', extracted]);
    expect(readFileSync(join(extracted, 'disk.raw')).equals(readFileSync(disk.path))).toBe(true);
  });

  it('writes sizes above 8 GiB in GNU base-256, which octal cannot hold', () => {
    const h = tarHeader('disk.raw', 20 * 1024 ** 3, 0);
    expect(h[124]).toBe(0x80);
    let size = 0n;
    for (let i = 125; i < 136; i++) size = (size << 8n) | BigInt(h[i]!);
    expect(Number(size)).toBe(20 * 1024 ** 3);
    expect(h.subarray(257, 265).toString('ascii')).toBe('ustar  \0');
  });
});

describe('GCP image import (the cloud half of a move from KVM)', () => {
  let fake: FakeCompute;
  let provider: GcpProvider;
  afterEach(async () => {
    await provider?.close();
    await fake?.close();
  });

  it('packs and uploads the disk to Cloud Storage, makes an image from it, skips a second import, and a VM boots from it by name', async () => {
    fake = await FakeCompute.start({ project: 'p', zones: ['us-central1-a'] });
    provider = new GcpProvider({
      name: 'gcp',
      config: gcpProviderConfig.parse({ type: 'gcp', project: 'p', zones: ['us-central1-a'], endpoint: fake.endpoint, imageBucket: 'novacron-images' }),
      clock: instantClock,
      authClient: fake.authClient(),
      pollMs: 1,
    });
    const dir = mkdtempSync(join(tmpdir(), 'novacron-gcp-img-'));
    const disk = rawDisk(dir, 2 * 1024 * 1024 + 5);

    const image = await provider.importImage(disk, 'Moved-Web');

    expect(image).toBe(`projects/p/global/images/moved-web-${disk.sha256.slice(0, 12)}`);
    const object = fake.objects.get(`novacron-images/novacron/images/moved-web/${disk.sha256}.tar.gz`);
    expect(object).toBeDefined();
    expect(fake.images.get(`moved-web-${disk.sha256.slice(0, 12)}`)).toMatchObject({ status: 'READY', labels: { 'novacron-image': 'moved-web' } });

    expect(await provider.importImage(disk, 'Moved-Web')).toBe(image);
    expect(fake.calls('POST', /global\/images$/)).toHaveLength(1);

    const vm = await provider.create({
      name: 'shop-moved-0',
      ownership: { fleet: 'shop', group: 'moved', index: 0, specHash: 'h' },
      host: 'gcp/us-central1-a',
      resources: { cpu: 2, memoryMiB: 8192, diskGiB: 10, gpu: 0 },
      image: 'Moved-Web',
      labels: {},
    });
    expect(vm.image).toBe('Moved-Web');
    const insert = fake.calls('POST', /zones\/us-central1-a\/instances$/)[0]!.body!;
    expect(JSON.stringify(insert['disks'])).toContain(image);
  });

  it('refuses formats Compute Engine cannot take, and a missing bucket, before any call', async () => {
    fake = await FakeCompute.start({ project: 'p', zones: ['us-central1-a'] });
    provider = new GcpProvider({ name: 'gcp', config: gcpProviderConfig.parse({ type: 'gcp', project: 'p', zones: ['us-central1-a'], endpoint: fake.endpoint }), clock: instantClock, authClient: fake.authClient() });
    const dir = mkdtempSync(join(tmpdir(), 'novacron-gcp-img-'));
    const disk = rawDisk(dir, 4096);
    await expect(provider.importImage({ ...disk, format: 'vmdk' }, 'x')).rejects.toMatchObject({ code: 'Unsupported', hint: expect.stringMatching(/qemu-img convert -O raw/) });
    await expect(provider.importImage(disk, 'x')).rejects.toMatchObject({ code: 'InvalidInput', hint: expect.stringMatching(/Cloud Storage bucket/) });
    expect(fake.requests).toHaveLength(0);
    expect(provider.capabilities.imageExport).toBe(false);
  });
});
