import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EC2Client } from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import { awsProviderConfig, type Clock } from '@novacron/core';
import { mockClient } from 'aws-sdk-client-mock';
import { describe, expect, it } from 'vitest';
import { AwsProvider } from './AwsProvider.js';
import { sha256File } from './images.js';
import { FakeEc2 } from './testing/fakeEc2.js';

const instantClock: Clock = { now: () => Date.now(), sleep: async (_ms, signal) => signal?.throwIfAborted() };

function setup(config: Record<string, unknown> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'novacron-aws-images-'));
  const fake = new FakeEc2();
  const ec2 = new EC2Client({ region: 'us-east-1' });
  const s3 = new S3Client({ region: 'us-east-1' });
  mockClient(ec2).send.callsFake(fake.send);
  mockClient(s3).send.callsFake(fake.send);
  const provider = new AwsProvider({
    name: 'aws',
    config: awsProviderConfig.parse({ type: 'aws', region: 'us-east-1', images: { 'debian-12': 'ami-0123456789abcdef0' }, imageBucket: 'novacron-images', imageDir: dir, ...config }),
    clock: instantClock,
    clients: { ec2: () => ec2, s3: () => s3 },
    pollMs: 1,
    batchWindowMs: 0,
  });
  return { provider, fake, dir };
}

function artifact(dir: string, bytes = 5 * 1024 * 1024 + 3) {
  const path = join(dir, 'disk.raw');
  const data = Buffer.alloc(bytes, 7);
  writeFileSync(path, data);
  return { path, format: 'raw' as const, sizeBytes: bytes, sha256: createHash('sha256').update(data).digest('hex') };
}

describe('AWS image import (the cloud half of a move from KVM)', () => {
  it('uploads to S3 in parts, imports a snapshot, registers a tagged AMI; a second import is a no-op; a VM can be made from it by name', async () => {
    const { provider, fake, dir } = setup();
    const disk = artifact(dir);
    const phases: string[] = [];

    const imageId = await provider.importImage(disk, 'moved-web', { onProgress: (p) => phases.push(p.phase) });

    expect(imageId).toMatch(/^ami-/);
    const stored = fake.s3.objects.get(`novacron-images/novacron/images/moved-web/${disk.sha256}.raw`);
    expect(stored?.equals(readFileSync(disk.path))).toBe(true);
    expect(fake.count('ImportSnapshot')).toBe(1);
    expect(fake.images.get(imageId)?.tags.get('novacron:image')).toBe('moved-web');
    expect(phases).toContain('upload');
    expect(fake.s3.openUploads).toBe(0);

    expect(await provider.importImage(disk, 'moved-web')).toBe(imageId);
    expect(fake.count('ImportSnapshot')).toBe(1);
    expect(fake.count('UploadPart')).toBe(1);

    const vm = await provider.create({
      name: 'shop-moved-0',
      ownership: { fleet: 'shop', group: 'moved', index: 0, specHash: 'h' },
      host: 'aws/us-east-1a',
      resources: { cpu: 2, memoryMiB: 4096, diskGiB: 10, gpu: 0 },
      image: 'moved-web',
      labels: {},
    });
    expect(fake.describe().find((i) => i.InstanceId === vm.id)?.ImageId).toBe(imageId);
  });

  it('refuses qcow2 (EC2 imports raw and VMDK) and a missing bucket, before any call', async () => {
    const { provider, fake, dir } = setup({ imageBucket: undefined });
    const disk = artifact(dir, 1024);
    await expect(provider.importImage({ ...disk, format: 'qcow2' }, 'x')).rejects.toMatchObject({ code: 'Unsupported', hint: expect.stringMatching(/qemu-img convert -O raw/) });
    await expect(provider.importImage(disk, 'x')).rejects.toMatchObject({ code: 'InvalidInput', hint: expect.stringMatching(/S3 bucket/) });
    expect(fake.totalCalls).toBe(0);
  });

  it('aborts the multipart upload when a part fails, so no parts are left billed', async () => {
    const { provider, fake, dir } = setup();
    fake.fail('UploadPart', Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
    await expect(provider.importImage(artifact(dir), 'moved-web')).rejects.toMatchObject({ code: 'Unreachable' });
    expect(fake.count('AbortMultipartUpload')).toBe(1);
    expect(fake.s3.openUploads).toBe(0);
  });
});

describe('AWS image export (the cloud half of a move to KVM)', () => {
  it('images the VM, exports it to S3 as raw, downloads it with its sha256 and cleans up the AMI', async () => {
    const { provider, fake } = setup();
    const vm = await provider.create({
      name: 'shop-web-0',
      ownership: { fleet: 'shop', group: 'web', index: 0, specHash: 'h' },
      host: 'aws/us-east-1a',
      resources: { cpu: 2, memoryMiB: 4096, diskGiB: 10, gpu: 0 },
      image: 'debian-12',
      labels: {},
    });

    const out = await provider.exportImage({ name: vm.name, fleet: 'shop' });

    expect(out.format).toBe('raw');
    expect(out.sizeBytes).toBe(3 * 1024 * 1024 + 17);
    expect(out.sha256).toBe(await sha256File(out.path));
    expect(fake.count('CreateImage')).toBe(1);
    expect(fake.count('DeregisterImage')).toBe(1);
    expect([...fake.images.keys()]).toEqual(['ami-0123456789abcdef0']);
    expect([...fake.s3.objects.keys()]).toEqual([]);
  });
});
