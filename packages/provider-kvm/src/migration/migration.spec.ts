import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { migrationPolicy } from '@novacron/core';
import { destinationXml, copiesSparsely } from './destinationXml.js';
import { compressibilityOf, dirtyingFrom, sampleOffsets } from './estimate.js';
import { parseDomState, parseRawJobStats, statusOf, toMigrationStats } from './jobStats.js';
import { bandwidthMiB, migrateArgs, preMigrationParameters } from './migrateArgs.js';
import { openScript } from './MigrationTunnel.js';
import { destinationUri, sshCommand } from './sshLink.js';
import { parseVolumeXml } from './volumes.js';
import { MigrationCalibration, TCG_DEFAULTS } from './calibration.js';

const MiB = 1024 * 1024;
const settings = { downtimeLimitMs: 50, autoConverge: false, autoConvergeNow: false, postCopy: false, compression: 'none', parallelConnections: 1 } as const;

describe('virsh migrate command line', () => {
  const base = { domain: 'web-0', destinationUri: 'qemu+ssh://root@10.0.0.2/system?no_tty=1', memoryPort: 50010, diskPort: 50011, copyStorage: true, xmlFile: '/tmp/d/live.xml', persistentXmlFile: '/tmp/d/persistent.xml' };

  it('sends memory and disks to the tunnel on loopback, keeps the VM defined on the destination only', () => {
    expect(migrateArgs({ ...base, settings })).toEqual([
      'migrate', '--live', '--persistent', '--undefinesource', '--abort-on-error',
      '--migrateuri', 'tcp://127.0.0.1:50010', '--listen-address', '127.0.0.1',
      '--copy-storage-all', '--disks-uri', 'tcp://127.0.0.1:50011',
      '--xml', '/tmp/d/live.xml', '--persistent-xml', '/tmp/d/persistent.xml',
      'web-0', 'qemu+ssh://root@10.0.0.2/system?no_tty=1',
    ]);
  });

  it('maps every policy feature to its flag', () => {
    const all = migrateArgs({ ...base, copyStorage: false, settings: { ...settings, autoConverge: true, postCopy: true, compression: 'xbzrle', bandwidthBytesPerSec: 12.5e6 } });
    expect(all).toEqual(expect.arrayContaining(['--auto-converge', '--postcopy', '--compressed', '--comp-methods', 'xbzrle', '--bandwidth', '12']));
    expect(all).not.toContain('--copy-storage-all');
    const multifd = migrateArgs({ ...base, settings: { ...settings, compression: 'multifd-zstd', parallelConnections: 4 } });
    expect(multifd.join(' ')).toContain('--parallel --parallel-connections 4');
    expect(multifd).not.toContain('--compressed');
  });

  it('sets what libvirt does not manage through QMP, holding auto-converge back until engaged', () => {
    expect(preMigrationParameters({ ...settings, compression: 'multifd-zstd', autoConverge: true })).toEqual({ 'downtime-limit': 50, 'multifd-compression': 'zstd', 'throttle-trigger-threshold': 100 });
    expect(preMigrationParameters({ ...settings, autoConverge: true, autoConvergeNow: true })['throttle-trigger-threshold']).toBe(50);
    expect(preMigrationParameters(settings)).toEqual({ 'downtime-limit': 50, 'multifd-compression': 'none' });
    expect(bandwidthMiB(1)).toBe(1);
  });

  it('reaches the destination through the hosts\' own ssh, host keys checked', () => {
    expect(destinationUri({ address: '10.0.0.2', port: 2222, user: 'ops' })).toBe('qemu+ssh://ops@10.0.0.2:2222/system?no_tty=1');
    expect(destinationUri({ address: 'fd00::2', port: 22, user: 'root' })).toBe('qemu+ssh://root@[fd00::2]/system?no_tty=1');
    expect(sshCommand({ address: 'h2', port: 22, user: 'root' }, "echo 'x'")).toBe("ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o ServerAliveInterval=3 -o ServerAliveCountMax=3 -o ConnectTimeout=10 -p 22 root@h2 'echo '\\''x'\\'''");
  });
});

const LIVE = `<domain type='qemu' id='7'>
  <name>web-0</name>
  <devices>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='default' volume='web-0-root.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='volume' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source pool='default' volume='web-0-seed.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
  </devices>
</domain>
`;

describe('destination definitions', () => {
  it('lets the storage copy skip zeroes on writable disks only', () => {
    const out = destinationXml(LIVE);
    expect(out).toContain("<driver name='qemu' type='qcow2' discard='unmap' detect_zeroes='unmap'/>");
    expect(out).toContain("<driver name='qemu' type='raw'/>");
    expect(copiesSparsely(LIVE)).toBe(false);
    expect(copiesSparsely(out)).toBe(true);
    expect(destinationXml(out)).toBe(out);
  });

  it('tells the destination QEMU the multifd compression, and never keeps a stale one', () => {
    const zstd = destinationXml(LIVE, { multifdCompression: 'zstd' });
    expect(zstd).toMatch(/<domain type='qemu' id='7' xmlns:qemu='http:\/\/libvirt.org\/schemas\/domain\/qemu\/1.0'>/);
    expect(zstd).toContain("<qemu:arg value='migration.multifd-compression=zstd'/>");
    const zlib = destinationXml(zstd, { multifdCompression: 'zlib' });
    expect(zlib.match(/multifd-compression=/g)).toHaveLength(1);
    expect(zlib).toContain('multifd-compression=zlib');
    const none = destinationXml(zstd);
    expect(none).not.toContain('qemu:commandline');
    // Someone else's QEMU arguments stay.
    const theirs = zstd.replace("<qemu:commandline>", "<qemu:commandline>\n    <qemu:arg value='-no-hpet'/>");
    expect(destinationXml(theirs)).toContain("<qemu:arg value='-no-hpet'/>");
    expect(destinationXml(theirs)).not.toContain('multifd');
  });
});

const RUNNING = `Job type: 2

operation: 5
time_elapsed: 2756
downtime: 100
data_total: 1342971904
data_processed: 1161122669
data_remaining: 136216576
memory_total: 269230080
memory_processed: 87380845
memory_remaining: 136216576
memory_bps: 34237726
memory_dirty_rate: 1617
memory_iteration: 3
memory_page_size: 4096
disk_total: 1073741824
disk_processed: 1073741824
disk_remaining: 0
`;

describe('job statistics', () => {
  it('reads libvirt\'s raw job statistics into the core\'s', () => {
    const raw = parseRawJobStats(RUNNING);
    expect(raw.type).toBe(2);
    const stats = toMigrationStats({ raw, domState: parseDomState('running (unpaused)'), atMs: 0 }, { elapsedMs: 2800, throughputBytesPerSec: 33e6, wireBytes: 9e7 });
    expect(stats).toEqual({
      status: 'active', iteration: 2, dataTotalBytes: 269230080, dataProcessedBytes: 87380845, dataRemainingBytes: 136216576,
      dirtyRateBytesPerSec: 1617 * 4096, throughputBytesPerSec: 33e6, expectedDowntimeMs: 100, wireBytes: 9e7, elapsedMs: 2800,
    });
  });

  it('is set-up until memory moves, post-copy once the source pauses for it', () => {
    const disk = parseRawJobStats('Job type: 2\n\noperation: 5\ntime_elapsed: 900\ndisk_total: 1073741824\ndisk_processed: 5000\n');
    expect(statusOf({ raw: disk, atMs: 0 })).toBe('setup');
    expect(statusOf({ raw: parseRawJobStats('Job type: 0\n'), atMs: 0 })).toBe('setup');
    expect(statusOf({ raw: parseRawJobStats(RUNNING), domState: parseDomState('paused (post-copy)'), atMs: 0 })).toBe('postcopy-active');
    expect(statusOf({ raw: parseRawJobStats(RUNNING), domState: parseDomState('paused (post-copy failed)'), atMs: 0 })).toBe('active');
    expect(parseDomState('shut off (destroyed)')).toEqual({ state: 'shut off', reason: 'destroyed' });
  });

  it('gives no expected downtime in round 0, where QEMU reports its limit', () => {
    const first = parseRawJobStats(RUNNING.replace('memory_iteration: 3', 'memory_iteration: 1'));
    expect(toMigrationStats({ raw: first, atMs: 0 }, { elapsedMs: 1, throughputBytesPerSec: 1 }).expectedDowntimeMs).toBeUndefined();
  });
});

describe('estimates', () => {
  it('finds the working set where dirtying saturates', () => {
    // 8000 pages/s over a 64 MiB set: 31 MiB in 1 s, the whole set (21 MiB/s) in 3 s.
    expect(dirtyingFrom(31 * MiB, 21 * MiB, 256 * MiB)).toEqual({ rate: 31 * MiB, workingSet: 63 * MiB });
    expect(dirtyingFrom(10 * MiB, 10 * MiB, 256 * MiB)).toEqual({ rate: 10 * MiB, workingSet: 256 * MiB });
    expect(dirtyingFrom(0, 0, 256 * MiB)).toEqual({ rate: 0, workingSet: 0 });
  });

  it('calibrates from what migrations measured', () => {
    const c = new MigrationCalibration(TCG_DEFAULTS);
    expect(c.switchoverMs).toBe(200);
    c.recordDowntime(180, 100, 300);
    expect(c.switchoverMs).toBe(Math.round(0.6 * 200 + 0.4 * 130));
    c.recordThroughput('a', 'b', 100);
    c.recordThroughput('a', 'b', 200);
    expect(c.throughput('b', 'a')).toBe(140);
  });

  it("knows a host pair's capacity from moves and link measurements, and does not learn its own pace as the path's", () => {
    const c = new MigrationCalibration(TCG_DEFAULTS);
    expect(c.capacity('a', 'b')).toBeUndefined();
    c.recordLink('a', 'b', 40);
    expect(c.capacity('b', 'a')).toBe(40);
    // A move held at its cap (the pace) says only that the path carries at least that much.
    c.recordThroughput('a', 'b', 31, 32);
    expect(c.capacity('a', 'b')).toBe(40);
    // One well under its cap was limited by the path (or QEMU's migration thread): the lower figure rules.
    c.recordThroughput('a', 'b', 20, 32);
    expect(c.capacity('a', 'b')).toBe(20);
    c.recordThroughput('a', 'c', 50);
    c.recordLink('a', 'c', 35);
    expect(c.capacity('a', 'c')).toBe(35);
  });

  it('samples many small pieces of guest memory that is mapped whatever the machine type', () => {
    let seed = 1;
    const random = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
    const KiB32 = 32 * 1024;
    const small = sampleOffsets(256 * MiB, random);
    expect(small).toHaveLength(256);
    expect(new Set(small).size).toBe(256);
    expect(small.every((at) => at % KiB32 === 0 && at + KiB32 <= 256 * MiB)).toBe(true);
    expect(sampleOffsets(4 * MiB, random)).toHaveLength(128);
    // 8 GiB: the first 2 GiB and, from 4 GiB up, the 4.5 GiB beyond 3.5 GiB of memory; never the hole in between.
    const big = sampleOffsets(8 * 1024 * MiB, random, 64);
    expect(big.every((at) => at + KiB32 <= 2 * 1024 * MiB || (at >= 4 * 1024 * MiB && at + KiB32 <= 8.5 * 1024 * MiB))).toBe(true);
    expect(big.some((at) => at >= 4 * 1024 * MiB)).toBe(true);
  });

  it("spreads a sample's compression over its pages that are not zero", () => {
    expect(compressibilityOf({ bytes: 8 * MiB, zeroBytes: 4 * MiB, compressedBytes: 2 * MiB, compressor: 'zstd -1' })).toBeCloseTo(0.5);
    expect(compressibilityOf({ bytes: 8 * MiB, zeroBytes: 0, compressedBytes: 2 * MiB, compressor: 'zstd -1' })).toBeCloseTo(0.25);
    expect(compressibilityOf({ bytes: 8 * MiB, zeroBytes: 7 * MiB, compressedBytes: 8 * MiB, compressor: 'gzip -1' })).toBe(1.2);
    expect(compressibilityOf({ bytes: 8 * MiB, zeroBytes: 8 * MiB, compressedBytes: 900, compressor: 'zstd -1' })).toBe(1);
  });

  it('reads a volume', () => {
    const v = parseVolumeXml(`<volume type='file'><name>x.qcow2</name><capacity unit='bytes'>1073741824</capacity><allocation unit='bytes'>1384448</allocation><physical unit='bytes'>1441792</physical>
      <target><path>/var/lib/libvirt/images/x.qcow2</path><format type='qcow2'/></target>
      <backingStore><path>/var/lib/libvirt/images/base.qcow2</path><format type='qcow2'/></backingStore></volume>`);
    expect(v).toEqual({ name: 'x.qcow2', path: '/var/lib/libvirt/images/x.qcow2', format: 'qcow2', capacityBytes: 1073741824, allocationBytes: 1384448, physicalBytes: 1441792, backing: { path: '/var/lib/libvirt/images/base.qcow2', format: 'qcow2' } });
  });
});

describe('the tunnel script', () => {
  it('is valid POSIX shell', async () => {
    const script = openScript({ address: '10.0.0.2', port: 22, user: 'root' }, { memory: 50010, disk: 50011 }, 600);
    await new Promise<void>((resolve, reject) => execFile('/bin/sh', ['-n', '-c', script], (error) => (error ? reject(error) : resolve())));
    expect(script).toContain("-L 127.0.0.1:50010:127.0.0.1:50010");
    expect(script).toContain('ExitOnForwardFailure=yes');
  });
});

it('a policy the orchestrator may receive parses', () => {
  expect(migrationPolicy.parse({ compression: 'multifd-zstd' }).compression).toBe('multifd-zstd');
});
