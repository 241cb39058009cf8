import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { recordingTransport } from '../testing.js';
import { pushStream, SparseFileWriter } from './streams.js';
import { importedVolumeName } from './KvmImages.js';

const MiB = 1024 * 1024;

describe('streams', () => {
  it('writes a raw image sparse: zero blocks become holes, the length and the sha256 are the stream\'s', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nc-sparse-'));
    try {
      const data = Buffer.alloc(8 * MiB + 123);
      data.fill(7, 3 * MiB, 3 * MiB + 4096);
      data.fill(9, 8 * MiB, 8 * MiB + 100);
      // Odd-sized chunks, as a network stream delivers them.
      const chunks: Buffer[] = [];
      for (let at = 0; at < data.length; at += 300_007) chunks.push(data.subarray(at, at + 300_007));
      const sink = new SparseFileWriter(join(dir, 'disk.raw'));
      await pipeline(Readable.from(chunks), sink);
      const path = join(dir, 'disk.raw');
      expect(statSync(path).size).toBe(data.length);
      expect(readFileSync(path).equals(data)).toBe(true);
      expect(statSync(path).blocks * 512).toBeLessThan(3 * MiB);
      expect(sink.bytes).toBe(data.length);
      expect(sink.sha256).toBe(createHash('sha256').update(data).digest('hex'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('needs the SSH transport to stream', async () => {
    const endpoint = { label: 'h', address: '127.0.0.1', port: 22, user: 'root', auth: {} as never };
    await expect(pushStream(recordingTransport(), endpoint, 'cat', Readable.from([]))).rejects.toThrow(/streaming a file needs the SSH transport/);
  });

  it('names imported volumes safely', () => {
    expect(importedVolumeName('shop-web-0-1a2b3c4d')).toBe('novacron-image-shop-web-0-1a2b3c4d.qcow2');
    expect(importedVolumeName('a/b c')).toBe('novacron-image-a_b_c.qcow2');
  });
});
