import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseDomainXml } from '../domain/domainXml.js';
import { backupXml, checkpointXml, jobActive, parseJobInfo } from './backupJob.js';
import {
  assembleManifest,
  blocksToRead,
  classifyBlocks,
  digestOfManifest,
  formatManifest,
  hashRunsScript,
  parseChunkHashes,
  parseImageMap,
  parseManifest,
  runsOf,
  zeroHash,
} from './blockHashes.js';
import { assertSnapshotId, checkpointName, defaultSnapshotId, parentBacking, snapshotDir } from './layout.js';
import { parseMeta, serializeMeta, toRecord, type BackupMeta } from './meta.js';
import { formatNodeName, readRestored, restoredDomainXml } from './restoredDomain.js';
import { decideKind } from './KvmSnapshots.js';
import { buildDomainXml } from '../domain/domainXml.js';

const MiB = 1024 * 1024;

describe('block manifests and digests', () => {
  const map = parseImageMap(
    JSON.stringify([
      { start: 0, length: MiB, depth: 1, present: true, zero: true, data: false },
      { start: MiB, length: MiB, depth: 1, present: true, zero: false, data: true, offset: 327680 },
      { start: 2 * MiB, length: 14 * MiB, depth: 1, present: true, zero: true, data: false },
      { start: 16 * MiB, length: 4 * MiB - 65536, depth: 0, present: true, zero: false, data: true, offset: 1376256 },
      { start: 20 * MiB - 65536, length: 65536, depth: 0, present: true, zero: true, data: false },
      { start: 20 * MiB, length: 44 * MiB, depth: 2, present: false, zero: true, data: false },
    ]),
  );

  it('classifies blocks as zero or not, and as held by the image itself (dirty in an incremental) or by a backing file', () => {
    const c = classifyBlocks(map, 64 * MiB);
    expect(c.count).toBe(64);
    expect([...c.zero.slice(0, 3)]).toEqual([1, 0, 1]);
    expect([...c.zero.slice(16, 21)]).toEqual([0, 0, 0, 0, 1]);
    expect([...c.top.slice(15, 21)]).toEqual([0, 1, 1, 1, 1, 0]);
    expect(blocksToRead(c, 'all')).toEqual([1, 16, 17, 18, 19]);
    expect(blocksToRead(c, 'top')).toEqual([16, 17, 18, 19]);
  });

  it('assembles a full manifest from zero hashes and read blocks, and an incremental one on its parent', () => {
    const c = classifyBlocks(map, 64 * MiB);
    const hashed = new Map([1, 16, 17, 18, 19].map((b) => [b, b.toString(16).padStart(64, 'a')]));
    const full = assembleManifest(c, 64 * MiB, hashed, 'all');
    expect(full[0]).toBe(zeroHash(MiB));
    expect(full[0]).toBe(createHash('sha256').update(Buffer.alloc(MiB)).digest('hex'));
    expect(full[16]).toBe(hashed.get(16));
    const parent = Array.from({ length: 64 }, (_, i) => i.toString(16).padStart(64, 'f'));
    const incremental = assembleManifest(c, 64 * MiB, hashed, 'top', parent);
    expect(incremental[1]).toBe(parent[1]);
    expect(incremental[17]).toBe(hashed.get(17));
    expect(() => assembleManifest(c, 64 * MiB, hashed, 'top', parent.slice(1))).toThrow(/parent's manifest has 63 blocks/);
    expect(() => assembleManifest(c, 64 * MiB, new Map(), 'all')).toThrow(/block 1 was not hashed/);
  });

  it('hashes a last block shorter than 1 MiB as the bytes it has', () => {
    const c = classifyBlocks([{ start: 0, length: MiB + 512, depth: 0, zero: true, data: false }], MiB + 512);
    expect(c.count).toBe(2);
    expect(assembleManifest(c, MiB + 512, new Map(), 'all')[1]).toBe(createHash('sha256').update(Buffer.alloc(512)).digest('hex'));
  });

  it('writes the manifest as hex lines and digests it in the form the sim records', () => {
    const text = formatManifest([zeroHash(MiB), zeroHash(MiB)]);
    expect(parseManifest(text)).toEqual([zeroHash(MiB), zeroHash(MiB)]);
    expect(digestOfManifest(text)).toBe(`sha256-blocks:1048576:${createHash('sha256').update(text).digest('hex')}`);
    expect(() => parseManifest('nonsense\n')).toThrow(/not a block manifest line/);
  });

  it('cuts block lists into bounded runs', () => {
    expect(runsOf([1, 2, 3, 7, 8, 20])).toEqual([[1, 3], [7, 2], [20, 1]]);
    expect(runsOf([0, 1, 2, 3, 4], 2)).toEqual([[0, 2], [2, 2], [4, 1]]);
  });

  it('hashes blocks of a real image with the script the hosts run (qemu-img, split, sha256sum)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nc-hash-'));
    try {
      const raw = join(dir, 'd,isk.raw'); // a comma, as QEMU's option syntax needs doubled
      const data = Buffer.alloc(3 * MiB + 4096);
      for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i * 2654435761 >>> 0, i);
      writeFileSync(raw, data);
      const script = hashRunsScript(raw, 'raw', [[0, 2], [3, 1]], data.length, dir);
      const out = execFileSync('sh', ['-c', script], { encoding: 'utf8' });
      const hashes = parseChunkHashes(out);
      const expected = (from: number, to: number) => createHash('sha256').update(data.subarray(from, to)).digest('hex');
      expect(hashes.get(0)).toBe(expected(0, MiB));
      expect(hashes.get(1)).toBe(expected(MiB, 2 * MiB));
      expect(hashes.has(2)).toBe(false);
      expect(hashes.get(3)).toBe(expected(3 * MiB, data.length));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('backup jobs', () => {
  it('builds push-mode backup and checkpoint XML, leaving the other disks out', () => {
    const full = backupXml({ target: '/b/vm/s0/vda.qcow2', otherDisks: ['sda'] });
    expect(full).toContain('<domainbackup mode="push">');
    expect(full).not.toContain('<incremental>');
    expect(full).toMatch(/<disk name="vda" backup="yes" type="file">\s*<target file="\/b\/vm\/s0\/vda.qcow2"\/>\s*<driver type="qcow2"\/>/);
    expect(full).toContain('<disk name="sda" backup="no"/>');
    expect(backupXml({ target: '/t', incrementalFrom: 'vm@1', otherDisks: [] })).toContain('<incremental>vm@1</incremental>');
    const cp = checkpointXml({ name: 'vm@2', otherDisks: ['sda'] });
    expect(cp).toContain('<name>vm@2</name>');
    expect(cp).toContain('<disk name="vda" checkpoint="bitmap"/>');
    expect(cp).toContain('<disk name="sda" checkpoint="no"/>');
  });

  it('reads domjobinfo as virsh prints it', () => {
    const running = parseJobInfo('Job type:         Unbounded   \nOperation:        Backup      \nTime elapsed:     117          ms\nFile processed:   1.500 MiB\nFile remaining:   126.500 MiB\nFile total:       128.000 MiB\n');
    expect(running).toEqual({ type: 'Unbounded', operation: 'Backup', processedBytes: 1.5 * MiB, totalBytes: 128 * MiB });
    expect(jobActive(running)).toBe(true);
    expect(jobActive(parseJobInfo('Job type:         None        \n'))).toBe(false);
    expect(parseJobInfo('Job type:         Failed      \nOperation:        Backup\nError message:    No space left on device\n')).toMatchObject({ type: 'Failed', error: 'No space left on device' });
  });
});

describe('backup folders and records', () => {
  it('names folders, checkpoints and backing files by snapshot id', () => {
    expect(assertSnapshotId('shop-db-0@20250102T0200Z', {})).toBe('shop-db-0@20250102T0200Z');
    expect(() => assertSnapshotId('../etc', {})).toThrow(/not valid on KVM hosts/);
    expect(() => assertSnapshotId('a b', {})).toThrow();
    expect(defaultSnapshotId('vm', Date.parse('2025-01-02T03:04:05.678Z'))).toBe('vm@20250102T030405Z');
    expect(snapshotDir('/var/lib/novacron/backups', 'vm', 's1')).toBe('/var/lib/novacron/backups/vm/s1');
    expect(parentBacking('s0')).toBe('../s0/vda.qcow2');
    // libvirt's checkpoint names: [a-zA-Z0-9_-][a-zA-Z0-9_.-]*, escaped one to one.
    expect(checkpointName('shop-db-0@20250102T0200Z')).toBe('shop-db-0_a20250102T0200Z');
    expect(checkpointName('a_b+c@d')).toBe('a__b_pc_ad');
    expect(checkpointName('a_ab')).not.toBe(checkpointName('a@b'));
  });

  const meta: BackupMeta = {
    format: 1, id: 's1', vm: 'shop-db-0', fleet: 'shop', group: 'db', kind: 'incremental', parent: 's0', consistency: 'crash', state: 'complete',
    takenAt: '2025-01-02T03:00:00.000Z', scheduledFor: '2025-01-02T03:00:00.000Z', digest: 'sha256-blocks:1048576:ab', blockSize: MiB, sizeBytes: 5 * MiB,
    diskBytes: 1024 * MiB, host: 'hv2', location: 'hv2:/b/shop-db-0/s1', sourceHost: 'hv1', domainUuid: 'u', checkpoint: 's1', image: 'debian-12',
    resources: { cpu: 1, memoryMiB: 128, diskGiB: 1 },
  };

  it('keeps the record as JSON and reports it in the contract\'s shape', () => {
    expect(parseMeta(serializeMeta(meta))).toEqual(meta);
    expect(parseMeta('{"format":2}')).toBeUndefined();
    expect(parseMeta('not json')).toBeUndefined();
    expect(toRecord('lab', meta)).toEqual({
      id: 's1', provider: 'lab', vm: 'shop-db-0', fleet: 'shop', group: 'db', takenAt: '2025-01-02T03:00:00.000Z', kind: 'incremental', parent: 's0',
      consistency: 'crash', state: 'complete', sizeBytes: 5 * MiB, diskBytes: 1024 * MiB, digest: 'sha256-blocks:1048576:ab', location: 'hv2:/b/shop-db-0/s1',
      scheduledFor: '2025-01-02T03:00:00.000Z',
    });
  });
});

describe('restored domains', () => {
  const source = buildDomainXml({
    name: 'shop-db-0', type: 'qemu', vcpus: 2, maxVcpus: 4, memoryMiB: 256, maxMemoryMiB: 512,
    kernel: { kernel: '/boot/vmlinuz', initrd: '/boot/initrd', cmdline: 'console=ttyS0' },
    disks: [{ device: 'disk', pool: 'default', volume: 'shop-db-0-root.qcow2', format: 'qcow2', target: 'vda', bus: 'virtio' }, { device: 'cdrom', pool: 'default', volume: 'shop-db-0-seed.iso', format: 'raw', target: 'sda', bus: 'sata' }],
    network: 'default', mac: '52:54:00:00:00:01', serialLog: '/var/log/libvirt/qemu/shop-db-0-serial.log',
    metadata: { fleet: 'shop', group: 'db', index: 0, specHash: 'h', image: 'debian-12', diskGiB: 1, labels: {}, createdAt: '2025-01-01T00:00:00.000Z' },
  });

  it('keeps the source\'s size and boot, gets its own disk and log, and carries no fleet\'s ownership', () => {
    const xml = restoredDomainXml(source, { name: 'rescue', pool: 'default', volume: 'rescue-root.qcow2', network: 'novacron', record: { from: 'shop-db-0', snapshot: 's1', scratch: true, image: 'debian-12' } });
    const info = parseDomainXml(xml);
    expect(info).toMatchObject({ name: 'rescue', type: 'qemu', vcpus: 2, maxVcpus: 4, memoryMiB: 256, maxMemoryMiB: 512, networks: ['novacron'], macs: [] });
    expect(info.metadata).toBeUndefined();
    expect(info.disks).toEqual([{ device: 'disk', target: 'vda', format: 'qcow2', pool: 'default', volume: 'rescue-root.qcow2' }]);
    expect(xml).toContain('<kernel>/boot/vmlinuz</kernel>');
    expect(xml).toContain('/var/log/libvirt/qemu/rescue-serial.log');
    expect(readRestored(xml)).toEqual({ from: 'shop-db-0', snapshot: 's1', scratch: true, image: 'debian-12' });
    expect(readRestored(source)).toBeUndefined();
  });

  it('finds the block node libvirt gave a disk', () => {
    const live = `<domain><devices><disk type='volume' device='disk'><source pool='default' volume='x' index='3'/><target dev='vda' bus='virtio'/></disk></devices></domain>`;
    expect(formatNodeName(live, 'vda')).toBe('libvirt-3-format');
    expect(formatNodeName(live, 'vdb')).toBeUndefined();
  });
});

describe('full or incremental', () => {
  const meta = (id: string, patch: Partial<BackupMeta> = {}): BackupMeta => ({
    format: 1, id, vm: 'vm', fleet: 'f', group: 'g', kind: 'full', consistency: 'crash', state: 'complete', takenAt: '2025-01-01T00:00:00.000Z', blockSize: MiB,
    sizeBytes: 1, diskBytes: 1024 * MiB, host: 'h1', location: '', sourceHost: 'h1', domainUuid: 'u', checkpoint: checkpointName(id), image: 'i', resources: { cpu: 1, memoryMiB: 1, diskGiB: 1 }, ...patch,
  });
  const chain = [meta('a'), meta('b', { kind: 'incremental', parent: 'a' }), meta('c', { kind: 'incremental', parent: 'b' })];
  const vm = { format: 'qcow2', bitmapsPossible: true, checkpoints: chain.map((m) => m.checkpoint!), virtualSize: 1024 * MiB };
  const inc = { kind: 'incremental' as const, parent: 'c' };

  it('builds on a complete parent whose checkpoint is on the domain and whose chain is whole', () => {
    expect(decideKind(inc, vm, chain, 'h1', true)).toMatchObject({ kind: 'incremental', parent: { id: 'c' } });
    expect(decideKind({ kind: 'full' }, vm, chain, 'h1', true)).toEqual({ kind: 'full' });
  });

  it('takes a full, and says why, when it cannot', () => {
    const why = (r: { why?: string }) => r.why;
    expect(why(decideKind({ kind: 'incremental' }, vm, chain, 'h1', true))).toBe('no parent named');
    expect(why(decideKind(inc, vm, chain, 'h1', false))).toMatch(/shut off/);
    expect(why(decideKind(inc, { ...vm, bitmapsPossible: false }, chain, 'h1', true))).toMatch(/qcow2 v2/);
    expect(why(decideKind({ kind: 'incremental', parent: 'x' }, vm, chain, 'h2', true))).toMatch(/not in h2's backup folder/);
    expect(why(decideKind(inc, vm, [...chain.slice(0, 2), meta('c', { kind: 'incremental', parent: 'b', state: 'incomplete' })], 'h1', true))).toMatch(/incomplete/);
    expect(why(decideKind(inc, { ...vm, checkpoints: [] }, chain, 'h1', true))).toMatch(/checkpoint of c is gone/);
    expect(why(decideKind(inc, { ...vm, virtualSize: 2048 * MiB }, chain, 'h1', true))).toMatch(/resized/);
    expect(why(decideKind(inc, vm, chain.slice(1), 'h1', true))).toMatch(/chain of c is broken at a/);
    expect(why(decideKind({ kind: 'incremental', parent: 'd' }, vm, [...chain, meta('d', { kind: 'disk', checkpoint: undefined })], 'h1', true))).toMatch(/disk snapshot/);
  });
});
