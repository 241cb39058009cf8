// Backups, disk snapshots and restores of a KVM VM on the testbed: libvirt push-mode backup
// jobs with checkpoints, K MiB written in the guest between backups, restores compared byte
// for byte with the source disk (qemu-img compare on the host, and /cgi-bin/diskhash inside
// the booted restored guest), merges on delete, an aborted backup redone, a backup folder on
// another host, qcow2 internal snapshots, and the restored VM booted to its marker.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortedError, hostId, kvmProviderConfig, type KvmProviderConfig, type OperationContext, type SnapshotRecord } from '@novacron/core';
import { rejection } from '../../../../test/support/rejection.ts';
import { execOnHost, guestHttpGet, kvmProviderConfigFor, loadTestbed, parseKeyValues, virshOnHost, waitForGuestMarker, type TestbedHost } from '../../../../test/testbed/index.ts';
import { KvmProvider } from '../KvmProvider.js';
import { checkpointName } from './layout.js';
import type { Transport } from '../transport.js';

const tb = loadTestbed();
const RUN = `ncsn${randomBytes(2).toString('hex')}`; // every domain, volume and backup folder of this file starts with it
const FLEET = RUN;
const VM = `${RUN}-db-0`;
/** Testbed hosts, those with the most free DHCP leases first (each host has 50, held for an hour). */
async function hostsByFreeLeases(): Promise<TestbedHost[]> {
  const used = await Promise.all(tb.hosts.map(async (h) => (await virshOnHost(h, ['net-dhcp-leases', tb.guest.network])).split('\n').filter((l) => l.trim()).length));
  return tb.hosts.map((h, i) => ({ h, n: used[i]! })).sort((a, b) => a.n - b.n).map((x) => x.h);
}
// h1 runs the VM, h2 holds a backup folder of its own.
const [h1, h2] = (await hostsByFreeLeases()) as [TestbedHost, TestbedHost];
// The testbed's hosts share this machine's /var/tmp: one folder all hosts see (a shared
// mount, as NFS would be), and the second host (h2) with a folder of its own.
const SHARED_DIR = `/var/tmp/${RUN}-backups`;
const H2_DIR = `/var/tmp/${RUN}-h2-backups`;
const MiB = 1024 * 1024;

function config(): KvmProviderConfig {
  const base = kvmProviderConfigFor(tb);
  return kvmProviderConfig.parse({
    ...base,
    hosts: base.hosts.map((h) => (h.name === h2.name ? { ...h, backupDir: H2_DIR } : h)),
    backupDir: SHARED_DIR,
    bootTimeout: '3m',
    images: { tiny: { ...base.images.tiny, readyMarker: 'NOVACRON-GUEST-READY' } },
  });
}

const opened: KvmProvider[] = [];
function provider(transport?: Transport): KvmProvider {
  const p = new KvmProvider({ name: 'lab', config: config(), cwd: process.cwd(), env: process.env, ...(transport ? { transport } : {}) });
  opened.push(p);
  return p;
}
const kvm = provider();
const ref = { name: VM, fleet: FLEET };
let ip = '';

async function diskPath(host: TestbedHost, volume: string): Promise<string> {
  return (await virshOnHost(host, ['vol-path', '--pool', tb.guest.pool, volume])).trim();
}
/** Byte-for-byte comparison of two images on a host (qemu-img compare reads both through their chains). */
async function compareOnHost(host: TestbedHost, a: string, b: string): Promise<string> {
  const r = await execOnHost(host, ['qemu-img', 'compare', '-U', a, b], { timeoutMs: 300_000 });
  return `${r.code}: ${r.stdout.trim()} ${r.stderr.trim()}`;
}
async function write(mib: number, offset: number, host: TestbedHost = h1, address = ip): Promise<string> {
  return parseKeyValues(await guestHttpGet(host, address, `/cgi-bin/diskwrite?mib=${mib}&offset=${offset}`, { timeoutMs: 300_000 }))['sha256']!;
}
async function guestHash(host: TestbedHost, address: string, offset: number, mib: number): Promise<string> {
  return parseKeyValues(await guestHttpGet(host, address, `/cgi-bin/diskhash?offset=${offset}&mib=${mib}`, { timeoutMs: 120_000 }))['sha256']!;
}
async function checkpoints(host: TestbedHost = h1): Promise<string[]> {
  return (await virshOnHost(host, ['checkpoint-list', VM, '--name'])).split('\n').map((s) => s.trim()).filter(Boolean);
}
const id = (n: string) => `${VM}@${n}`;
const cp = (n: string) => checkpointName(id(n));

async function scrub(): Promise<void> {
  await Promise.all(
    tb.hosts.map(async (host) => {
      const names = (await virshOnHost(host, ['list', '--all', '--name'])).split('\n').map((s) => s.trim()).filter((n) => n.startsWith(RUN));
      for (const d of names) {
        await execOnHost(host, ['virsh', '-q', 'destroy', d]);
        await execOnHost(host, ['virsh', '-q', 'undefine', d, '--checkpoints-metadata', '--snapshots-metadata']);
      }
      const vols = (await virshOnHost(host, ['vol-list', tb.guest.pool])).split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n.startsWith(RUN));
      for (const v of vols) await execOnHost(host, ['virsh', '-q', 'vol-delete', v, '--pool', tb.guest.pool]);
    }),
  );
  for (const dir of [SHARED_DIR, H2_DIR]) rmSync(dir, { recursive: true, force: true });
}

beforeAll(async () => {
  await kvm.create({ name: VM, ownership: { fleet: FLEET, group: 'db', index: 0, specHash: 'h' }, host: hostId('lab', h1.name), resources: { cpu: 1, memoryMiB: 128, diskGiB: 1, gpu: 0 }, image: 'tiny', labels: {} });
  ip = (await waitForGuestMarker(h1, VM, 150_000)).ip!;
}, 200_000);

afterAll(async () => {
  for (const p of opened) await p.close();
  await scrub();
}, 200_000);

describe('KVM backups on the testbed', { timeout: 600_000 }, () => {
  const taken: SnapshotRecord[] = [];

  it('takes a full, then incrementals that store only what the guest wrote, from the previous checkpoint', async () => {
    const phases: string[] = [];
    const full = await kvm.snapshot(ref, { kind: 'full', id: id('s0'), scheduledFor: '2030-01-01T03:00:00.000Z' }, { onProgress: (p) => phases.push(p.phase) });
    expect(full).toMatchObject({ id: id('s0'), provider: 'lab', vm: VM, fleet: FLEET, group: 'db', kind: 'full', state: 'complete', consistency: 'crash', diskBytes: 1024 * MiB, scheduledFor: '2030-01-01T03:00:00.000Z' });
    expect(full.digest).toMatch(/^sha256-blocks:1048576:[0-9a-f]{64}$/);
    expect(full.location).toBe(`${h1.name}:${SHARED_DIR}/${VM}/${id('s0')}`);
    expect(phases).toEqual(expect.arrayContaining(['inspect', 'record', 'begin', 'digest', 'done']));
    expect(await checkpoints()).toEqual([cp('s0')]);
    taken.push(full);

    for (const [n, mib, offset] of [['s1', 4, 100], ['s2', 1, 300]] as const) {
      await write(mib, offset);
      const inc = await kvm.snapshot(ref, { kind: 'incremental', parent: taken.at(-1)!.id, id: id(n) });
      expect(inc).toMatchObject({ kind: 'incremental', parent: taken.at(-1)!.id, state: 'complete' });
      // The data written plus a fixed overhead (qcow2 tables, the 1 GiB disk's 64 KiB manifest, metadata).
      expect(inc.sizeBytes).toBeGreaterThan(mib * MiB);
      expect(inc.sizeBytes).toBeLessThan(1.1 * mib * MiB + 512 * 1024);
      expect(inc.digest).not.toBe(taken.at(-1)!.digest);
      taken.push(inc);
    }
    expect(await checkpoints()).toEqual([cp('s0'), cp('s1'), cp('s2')]);
    // The same id again: the complete record, untouched.
    expect(await kvm.snapshot(ref, { kind: 'incremental', parent: id('s1'), id: id('s2') })).toEqual(taken[2]);
    const listed = (await kvm.listSnapshots(FLEET)).filter((r) => r.vm === VM);
    expect(listed).toEqual(taken);
    expect(await kvm.listSnapshots('another-fleet')).toEqual([]);
  });

  it('restores the last incremental of the chain as a new VM equal byte for byte to the source disk, and boots it', async () => {
    const last = taken.at(-1)!;
    const restored = await kvm.restore(ref, { snapshot: last.id, asName: `${RUN}-r1` });
    expect(restored.digest).toBe(last.digest);
    expect(restored.bytesWritten).toBeGreaterThan(5 * MiB);
    expect(restored.vm).toMatchObject({ name: `${RUN}-r1`, fleet: '', state: 'running', labels: { 'novacron.io/restored-from': VM, 'novacron.io/snapshot': last.id } });
    expect(await kvm.list(FLEET).then((vms) => vms.map((v) => v.name))).toEqual([VM]);
    expect(await compareOnHost(h1, await diskPath(h1, `${VM}-root.qcow2`), await diskPath(h1, `${RUN}-r1-root.qcow2`))).toMatch(/^0: Images are identical/);
    const guest = await waitForGuestMarker(h1, `${RUN}-r1`, 150_000);
    for (const [offset, mib] of [[100, 4], [300, 1], [1, 1]] as const) {
      expect(await guestHash(h1, guest.ip!, offset, mib), `MiB ${offset}+${mib}`).toBe(await guestHash(h1, ip, offset, mib));
    }
    await kvm.delete({ name: `${RUN}-r1`, fleet: '' });
  });

  it('refuses a restore under a name that is taken, and one of another fleet\'s or a missing snapshot', async () => {
    expect((await rejection(kvm.restore(ref, { snapshot: id('s1'), asName: VM }))).code).toBe('Conflict');
    expect((await rejection(kvm.restore({ name: VM, fleet: 'other' }, { snapshot: id('s1'), asName: `${RUN}-x` }))).code).toBe('NotFound');
    expect((await rejection(kvm.restore(ref, { snapshot: id('nope'), asName: `${RUN}-x` }))).code).toBe('NotFound');
  });

  it('prunes in the middle of a chain by merging into the child, and the later backups stay restorable', async () => {
    await kvm.deleteSnapshot(id('s1'));
    let listed = (await kvm.listSnapshots(FLEET)).filter((r) => r.vm === VM);
    expect(listed.map((r) => [r.id, r.kind, r.parent])).toEqual([[id('s0'), 'full', undefined], [id('s2'), 'incremental', id('s0')]]);
    // s2 now holds s1's 4 MiB too.
    expect(listed[1]!.sizeBytes).toBeGreaterThan(5 * MiB);
    expect(await checkpoints()).toEqual([cp('s0'), cp('s2')]);
    const a = await kvm.restore(ref, { snapshot: id('s2'), asName: `${RUN}-r2`, scratch: true });
    expect(a.digest).toBe(taken[2]!.digest);
    expect(a.vm.state).toBe('stopped');

    // Deleting the full makes its child a full.
    await kvm.deleteSnapshot(id('s0'));
    listed = (await kvm.listSnapshots(FLEET)).filter((r) => r.vm === VM);
    expect(listed.map((r) => [r.id, r.kind, r.parent])).toEqual([[id('s2'), 'full', undefined]]);
    // A scratch VM of that name from an earlier run is replaced.
    const b = await kvm.restore(ref, { snapshot: id('s2'), asName: `${RUN}-r2`, scratch: true });
    expect(b.digest).toBe(taken[2]!.digest);
    await kvm.delete({ name: `${RUN}-r2`, fleet: '' });
    // Deleting what is gone succeeds.
    await kvm.deleteSnapshot(id('s0'));
    taken.splice(0, 2);
  });

  it('an aborted backup stays incomplete, the chain stays usable, and the same id then completes it', async () => {
    await write(8, 400);
    const controller = new AbortController();
    // Abort as soon as the job has been started: the provider cancels it (domjobabort) and drops its checkpoint.
    const abortAfterBegin: Transport = {
      exec: async (endpoint, request) => {
        const result = await kvm.transport.exec(endpoint, request);
        if (request.command.includes('backup-begin')) controller.abort(new Error('test abort'));
        return result;
      },
    };
    const aborting = new KvmProvider({ name: 'lab', config: config(), cwd: process.cwd(), env: process.env, transport: abortAfterBegin });
    const error = await rejection(aborting.snapshot(ref, { kind: 'incremental', parent: id('s2'), id: id('s3') }, { signal: controller.signal }));
    expect(error).toBeInstanceOf(AbortedError);
    const incomplete = (await kvm.listSnapshots(FLEET)).find((r) => r.id === id('s3'))!;
    expect(incomplete).toMatchObject({ state: 'incomplete', kind: 'incremental', parent: id('s2'), error: 'aborted' });
    expect(await checkpoints()).toEqual([cp('s2')]);
    // Never a parent: an incremental asked on it is taken as a full.
    const onIncomplete = await kvm.snapshot(ref, { kind: 'incremental', parent: id('s3'), id: id('s3b') });
    expect(onIncomplete.kind).toBe('full');
    await kvm.deleteSnapshot(id('s3b'));
    // The same id again: redone from s2, complete, restorable.
    const redone = await kvm.snapshot(ref, { kind: 'incremental', parent: id('s2'), id: id('s3') });
    expect(redone).toMatchObject({ state: 'complete', kind: 'incremental', parent: id('s2') });
    expect(redone.error).toBeUndefined();
    expect(redone.sizeBytes).toBeGreaterThan(8 * MiB);
    expect(redone.sizeBytes).toBeLessThan(1.1 * 8 * MiB + 512 * 1024);
    const r = await kvm.restore(ref, { snapshot: id('s3'), asName: `${RUN}-r3`, scratch: true });
    expect(r.digest).toBe(redone.digest);
    expect(await compareOnHost(h1, await diskPath(h1, `${VM}-root.qcow2`), await diskPath(h1, `${RUN}-r3-root.qcow2`))).toMatch(/^0: Images are identical/);
    // The restore test's boot: the scratch VM boots to the guest's marker and is left off.
    const boot = await kvm.bootCheck({ name: `${RUN}-r3`, fleet: '' });
    expect(boot.ok, boot.detail).toBe(true);
    expect(boot.detail).toMatch(new RegExp(`booted on ${h1.name} to its ready marker \\(NOVACRON-GUEST-READY\\)`));
    expect((await kvm.locate({ name: `${RUN}-r3`, fleet: '' }, 'test'))!.view.state).toBe('shut off');
    expect((await rejection(kvm.bootCheck({ name: VM, fleet: 'other' }))).code).toBe('Conflict');
    await kvm.delete({ name: `${RUN}-r3`, fleet: '' });
    taken.push(redone);
  });

  it('keeps backups in another host\'s folder: the job runs on the VM\'s host, the data is copied over and chained there', async () => {
    const full = await kvm.snapshot(ref, { kind: 'full', id: id('t0'), target: `lab/${h2.name}` });
    expect(full.location).toBe(`${h2.name}:${H2_DIR}/${VM}/${id('t0')}`);
    await write(2, 500);
    const inc = await kvm.snapshot(ref, { kind: 'incremental', parent: id('t0'), id: id('t1'), target: h2.name });
    expect(inc).toMatchObject({ kind: 'incremental', parent: id('t0'), state: 'complete' });
    const backing = await execOnHost(h2, ['qemu-img', 'info', '--output=json', `${H2_DIR}/${VM}/${id('t1')}/vda.qcow2`]);
    expect(JSON.parse(backing.stdout)['backing-filename']).toBe(`../${id('t0')}/vda.qcow2`);
    // No staging left behind on the VM's host.
    expect((await execOnHost(h1, ['sh', '-c', `ls -A ${SHARED_DIR}/.staging/${VM} 2>/dev/null | wc -l`])).stdout.trim()).toBe('0');
    // Restored onto the VM's host from h2's folder.
    const r = await kvm.restore(ref, { snapshot: id('t1'), asName: `${RUN}-r4`, scratch: true });
    expect(r.digest).toBe(inc.digest);
    expect(r.vm.host).toBe(`lab/${h1.name}`);
    await kvm.delete({ name: `${RUN}-r4`, fleet: '' });
    // Listed once, by the host that holds them.
    const listed = (await kvm.listSnapshots(FLEET)).filter((s) => s.id.includes('@t'));
    expect(listed.map((s) => s.id)).toEqual([id('t0'), id('t1')]);
    await kvm.deleteSnapshot(id('t0'));
    await kvm.deleteSnapshot(id('t1'));
  });

  it('takes qcow2 internal disk snapshots for quick rollback, and reverts to one in place', async () => {
    const before = await guestHash(h1, ip, 600, 2);
    const disk = await kvm.snapshot(ref, { kind: 'disk', id: id('d0') });
    expect(disk).toMatchObject({ kind: 'disk', state: 'complete', location: expect.stringMatching(new RegExp(`^${h1.name}:.*${VM}-root\\.qcow2@${id('d0').replace('.', '\\.')}$`)) });
    expect(disk.parent).toBeUndefined();
    const written = await write(2, 600);
    expect(written).not.toBe(before);
    const restored = await kvm.restore(ref, { snapshot: id('d0') });
    expect(restored.digest).toBe(disk.digest);
    expect(restored.vm.state).toBe('running');
    ip = (await waitForGuestMarker(h1, VM, 150_000)).ip!;
    expect(await guestHash(h1, ip, 600, 2)).toBe(before);
    // The disk was rolled back under the checkpoints: they are dropped, and the next backup is a full.
    expect(await checkpoints()).toEqual([]);
    const next = await kvm.snapshot(ref, { kind: 'incremental', parent: id('s3'), id: id('s4') });
    expect(next.kind).toBe('full');
    await kvm.deleteSnapshot(id('d0'));
    expect((await kvm.listSnapshots(FLEET)).some((s) => s.id === id('d0'))).toBe(false);
    taken.push(next);
  });

  it('restores a backup in place: stops the VM, replaces its disk, starts it; the next backup is a full', async () => {
    const target = taken.at(-1)!;
    await write(1, 700);
    const changed = await guestHash(h1, ip, 700, 1);
    const restored = await kvm.restore(ref, { snapshot: target.id });
    expect(restored.digest).toBe(target.digest);
    ip = (await waitForGuestMarker(h1, VM, 150_000)).ip!;
    expect(await guestHash(h1, ip, 700, 1)).not.toBe(changed);
    expect(await checkpoints()).toEqual([]);
    const next = await kvm.snapshot(ref, { kind: 'incremental', parent: target.id, id: id('s5') });
    expect(next.kind).toBe('full');
  });

  it('backs up a stopped VM with qemu-img (a full: checkpoints need a running VM)', async () => {
    await kvm.stop(ref, { force: true });
    const off = await kvm.snapshot(ref, { kind: 'incremental', parent: id('s5'), id: id('s6') });
    expect(off).toMatchObject({ kind: 'full', consistency: 'quiesced', state: 'complete' });
    const r = await kvm.restore(ref, { snapshot: id('s6'), asName: `${RUN}-r6`, scratch: true });
    expect(r.digest).toBe(off.digest);
    expect(await compareOnHost(h1, await diskPath(h1, `${VM}-root.qcow2`), await diskPath(h1, `${RUN}-r6-root.qcow2`))).toMatch(/^0: Images are identical/);
    await kvm.delete({ name: `${RUN}-r6`, fleet: '' });
    await kvm.start(ref);
  });

  it('records a verification with the snapshot', async () => {
    const v = { at: '2030-01-02T00:00:00.000Z', ok: true, method: 'boot' as const, detail: 'test' };
    expect((await kvm.recordVerification(id('s6'), v)).verified).toEqual(v);
    expect((await kvm.listSnapshots(FLEET)).find((s) => s.id === id('s6'))!.verified).toEqual(v);
    expect((await rejection(kvm.recordVerification(id('gone'), v))).code).toBe('NotFound');
  });

  it('lists the backups of a deleted VM, and restores them as a new VM', async () => {
    await kvm.delete(ref);
    const left = (await kvm.listSnapshots(FLEET)).filter((s) => s.vm === VM);
    expect(left.length).toBeGreaterThan(0);
    const r = await kvm.restore(ref, { snapshot: id('s6'), asName: `${RUN}-r7`, scratch: true });
    expect(r.digest).toBe(left.find((s) => s.id === id('s6'))!.digest);
    await kvm.delete({ name: `${RUN}-r7`, fleet: '' });
    for (const s of left) await kvm.deleteSnapshot(s.id);
    expect(await kvm.listSnapshots(FLEET)).toEqual([]);
  });
});

export type { OperationContext };
