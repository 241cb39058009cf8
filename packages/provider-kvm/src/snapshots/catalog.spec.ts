import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { KvmProviderConfig } from '@novacron/core';
import type { KvmHost, SshEndpoint } from '../config.js';
import { localShellTransport } from '../testing.js';
import { Virsh } from '../virsh/Virsh.js';
import { Catalog } from './catalog.js';
import { checkpointName, DATA_FILE, META_FILE } from './layout.js';
import { parseMeta, serializeMeta, type BackupMeta } from './meta.js';
import { BackupStore, type KvmSnapshotsHost } from './store.js';

const MiB = 1024 * 1024;

/** Runs every command with the local /bin/sh: the backup folders are a temporary directory. */
const localSh = localShellTransport();

function catalogOn(backupDir: string): Catalog {
  const ssh = { label: 'h1', address: 'x', port: 22, user: 'root', auth: {} } as unknown as SshEndpoint;
  const host = { name: 'h1', ssh } as unknown as KvmHost;
  const provider = {
    name: 'lab',
    hosts: new Map([['h1', host]]),
    transport: localSh,
    virshFor: () => new Virsh(localSh, ssh, 'lab'),
    locate: async () => undefined, // the VM is gone: no checkpoint to drop
  } as unknown as KvmSnapshotsHost;
  const config = { backupDir, hosts: [] } as unknown as KvmProviderConfig;
  return new Catalog(new BackupStore(provider, config, { now: () => Date.now() } as never, undefined));
}

const meta = (id: string, patch: Partial<BackupMeta> = {}): BackupMeta => ({
  format: 1, id, vm: 'vm', fleet: 'f', group: 'g', kind: 'full', consistency: 'crash', state: 'complete', takenAt: '2025-01-01T00:00:00.000Z', blockSize: MiB,
  sizeBytes: 1, diskBytes: 2 * MiB, host: 'h1', location: '', sourceHost: 'h1', domainUuid: 'u', checkpoint: checkpointName(id), image: 'i', resources: { cpu: 1, memoryMiB: 1, diskGiB: 1 }, ...patch,
});

/** 2 MiB: one byte value per MiB block (0 leaves the block unallocated in the qcow2). */
const blocks = (a: number, b: number) => Buffer.concat([Buffer.alloc(MiB, a), Buffer.alloc(MiB, b)]);

describe('deleting a backup (the merge scripts run by a real sh and qemu-img)', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('merges it into its complete children only: an incomplete child (no data) neither blocks it nor is touched, and goes later', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nc-catalog-'));
    dirs.push(dir);
    const folder = (id: string) => join(dir, 'vm', id);
    const put = (m: BackupMeta, data?: Buffer, backing?: string) => {
      mkdirSync(folder(m.id), { recursive: true });
      writeFileSync(join(folder(m.id), META_FILE), serializeMeta(m));
      if (!data) return;
      writeFileSync(join(dir, 'raw'), data);
      execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(dir, 'raw'), join(folder(m.id), DATA_FILE)]);
      if (backing) execFileSync('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-b', backing, '-F', 'qcow2', join(folder(m.id), DATA_FILE)]);
    };
    // a: a full; b: a complete incremental on it (its own data in the second MiB only);
    // c: an incremental on it that failed at backup-begin (a record, no data).
    put(meta('a'), blocks(0xaa, 0xab));
    put(meta('b', { kind: 'incremental', parent: 'a', takenAt: '2025-01-02T00:00:00.000Z' }), blocks(0, 0xbb), '../a/vda.qcow2');
    const failed = meta('c', { kind: 'incremental', parent: 'a', state: 'incomplete', takenAt: '2025-01-03T00:00:00.000Z', error: 'backup-begin: internal error' });
    put(failed);
    const catalog = catalogOn(dir);

    await catalog.deleteSnapshot('a');

    expect(readdirSync(join(dir, 'vm')).sort()).toEqual(['b', 'c']);
    // b took a's data: a full now, with no backing file, reading as it did.
    const b = parseMeta(readFileSync(join(folder('b'), META_FILE), 'utf8'))!;
    expect(b).toMatchObject({ kind: 'full', state: 'complete' });
    expect(b.parent).toBeUndefined();
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', join(folder('b'), DATA_FILE)], { encoding: 'utf8' })) as Record<string, unknown>;
    expect(info['backing-filename']).toBeUndefined();
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', join(folder('b'), DATA_FILE), join(dir, 'b.raw')]);
    expect(readFileSync(join(dir, 'b.raw')).equals(blocks(0xaa, 0xbb))).toBe(true);
    // c is as it was, listed, and removable.
    expect(readdirSync(folder('c'))).toEqual([META_FILE]);
    expect(parseMeta(readFileSync(join(folder('c'), META_FILE), 'utf8'))).toEqual(failed);
    expect((await catalog.listSnapshots('f')).map((r) => [r.id, r.kind, r.state, r.parent ?? '-'])).toEqual([
      ['b', 'full', 'complete', '-'],
      ['c', 'incremental', 'incomplete', 'a'],
    ]);
    await catalog.deleteSnapshot('c');
    expect(readdirSync(join(dir, 'vm'))).toEqual(['b']);
    await catalog.deleteSnapshot('b');
    expect(existsSync(join(dir, 'vm'))).toBe(false);
  });
});
