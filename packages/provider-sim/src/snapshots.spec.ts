import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NovaCronError, parseFleet, type Clock, type CreateVmRequest, type SimProviderConfig } from '@novacron/core';
import { BLOCK_BYTES } from './blocks.js';
import { FaultInjector, SimProvider } from './index.js';
import { MANIFEST_BYTES, MANIFEST_BYTES_PER_BLOCK } from './snapshots.js';

const config = parseFleet({
  name: 'f',
  providers: { lab: { type: 'sim', hosts: [{ name: 'h1', cpu: 16, memory: '64GiB' }, { name: 'h2', cpu: 16, memory: '64GiB' }] } },
  groups: { db: { count: 1, cpu: 1, memory: 512, image: 'img' } },
}).providers.lab as SimProviderConfig;

const T0 = Date.parse('2025-01-01T00:00:00Z');
function testClock(start = T0): Clock & { advance(ms: number): void; set(ms: number): void } {
  let now = start;
  return { now: () => now, sleep: async (ms) => void (now += ms), advance: (ms) => void (now += ms), set: (ms) => void (now = ms) };
}

function open(options: { stateDir?: string; faults?: FaultInjector; clock?: ReturnType<typeof testClock> } = {}) {
  const clock = options.clock ?? testClock();
  const sim = SimProvider.open({ name: 'lab', config, clock, ...(options.stateDir ? { stateDir: options.stateDir } : {}), ...(options.faults ? { faults: options.faults } : {}) });
  return { sim, clock };
}

function request(name: string, patch: Partial<CreateVmRequest> = {}): CreateVmRequest {
  // dirtyRateMiBps 0: the guest writes only when a test says so.
  return { name, ownership: { fleet: 'f', group: 'db', index: 0, specHash: 'h' }, host: 'lab/h1', resources: { cpu: 1, memoryMiB: 1024, diskGiB: 1, gpu: 0 }, image: 'img', labels: {}, workload: { dirtyRateMiBps: 0 }, ...patch };
}

const ref = { name: 'f-db-0', fleet: 'f' };
const MiB = BLOCK_BYTES;

describe('sim snapshots: the block model', () => {
  it('stores a full as every allocated block and an incremental as the changed blocks only', async () => {
    const { sim, clock } = open();
    await sim.create(request('f-db-0'));
    sim.disks.write('f-db-0', { lengthMiB: 100 });
    const full = await sim.snapshot(ref, { kind: 'full', id: 'a' });
    // a 1 GiB disk: 512 MiB of base image, 100 MiB written in the data area after it
    expect(full).toMatchObject({ id: 'a', kind: 'full', state: 'complete', consistency: 'quiesced', diskBytes: 1024 * MiB, sizeBytes: 612 * MiB + MANIFEST_BYTES + 612 * MANIFEST_BYTES_PER_BLOCK });
    clock.advance(3_600_000);
    sim.disks.write('f-db-0', { lengthMiB: 16 });
    sim.disks.write('f-db-0', { lengthMiB: 4, offsetMiB: 10 }); // rewriting base-image blocks counts too
    const inc = await sim.snapshot(ref, { kind: 'incremental', parent: 'a', id: 'b' });
    expect(inc).toMatchObject({ kind: 'incremental', parent: 'a', sizeBytes: 20 * MiB + MANIFEST_BYTES + 20 * MANIFEST_BYTES_PER_BLOCK, takenAt: '2025-01-01T01:00:00.000Z' });
    expect(inc.digest).toBe(sim.disks.digest('f-db-0'));
    expect(inc.digest).not.toBe(full.digest);
  });

  it('applies guest writes at the configured rate with the injected clock, only while the guest runs', async () => {
    const { sim, clock } = open();
    await sim.create(request('f-db-0', { workload: { dirtyRateMiBps: 1024 } })); // → 1 MiB/s to disk
    sim.disks.setWorkload('f-db-0', { hotSetMiB: 400 });
    await sim.snapshot(ref, { kind: 'full', id: 'a' });
    clock.advance(90_500); // 90.5 s → 90 whole MiB, half a MiB carried
    const inc = await sim.snapshot(ref, { kind: 'incremental', parent: 'a', id: 'b' });
    expect(inc.sizeBytes).toBe(90 * MiB + MANIFEST_BYTES + 90 * MANIFEST_BYTES_PER_BLOCK);
    await sim.stop(ref);
    clock.advance(3_600_000);
    const idle = await sim.snapshot(ref, { kind: 'incremental', parent: 'b', id: 'c' });
    expect(idle.sizeBytes).toBe(MANIFEST_BYTES);
  });

  it('restores in place byte for byte, and the next backup is a full (change tracking starts over)', async () => {
    const { sim, clock } = open();
    await sim.create(request('f-db-0'));
    sim.disks.write('f-db-0', { lengthMiB: 30 });
    await sim.snapshot(ref, { kind: 'full', id: 'a' });
    sim.disks.write('f-db-0', { lengthMiB: 8 });
    const b = await sim.snapshot(ref, { kind: 'incremental', parent: 'a', id: 'b' });
    const bytesAtB = sim.disks.sha256('f-db-0');
    sim.disks.write('f-db-0', { lengthMiB: 50 });
    clock.advance(60_000);
    expect(sim.disks.sha256('f-db-0')).not.toBe(bytesAtB);

    const result = await sim.restore(ref, { snapshot: 'b' });
    expect(result.vm).toMatchObject({ name: 'f-db-0', state: 'running' });
    expect(result.digest).toBe(b.digest);
    expect(sim.disks.sha256('f-db-0')).toBe(bytesAtB);

    const next = await sim.snapshot(ref, { kind: 'incremental', parent: 'b', id: 'c' });
    expect(next.kind).toBe('full');
    expect(next.parent).toBeUndefined();
  });

  it('restores the last link of a chain as a new VM outside the fleet, equal to the source at that time', async () => {
    const { sim } = open();
    await sim.create(request('f-db-0'));
    sim.disks.setWorkload('f-db-0', { hotSetMiB: 400 });
    await sim.snapshot(ref, { kind: 'full', id: 's0' });
    for (let i = 1; i <= 10; i++) {
      sim.disks.write('f-db-0', { lengthMiB: 7 + i });
      await sim.snapshot(ref, { kind: 'incremental', parent: `s${i - 1}`, id: `s${i}` });
    }
    const source = sim.disks.sha256('f-db-0');
    const copy = await sim.restore(ref, { snapshot: 's10', asName: 'copy' });
    expect(copy.vm).toMatchObject({ name: 'copy', fleet: '', state: 'running', labels: { 'novacron.io/restored-from': 'f-db-0', 'novacron.io/snapshot': 's10' } });
    expect(copy.bytesWritten).toBe((512 + 8 + 9 + 10 + 11 + 12 + 13 + 14 + 15 + 16 + 17) * MiB);
    expect(sim.disks.firstDifference('f-db-0', 'copy')).toBe(-1);
    expect(sim.disks.sha256('copy')).toBe(source);
    expect((await sim.list('f')).map((v) => v.name)).toEqual(['f-db-0']);
    await expect(sim.restore(ref, { snapshot: 's3', asName: 'copy' })).rejects.toThrow(/a VM named "copy" already exists/);
  });

  it('merges a deleted snapshot into its children: every kept snapshot restores the same bytes, and storage shrinks', async () => {
    const { sim } = open();
    await sim.create(request('f-db-0'));
    const digests = new Map<string, string>();
    await sim.snapshot(ref, { kind: 'full', id: 's0' });
    digests.set('s0', sim.disks.digest('f-db-0'));
    for (let i = 1; i <= 5; i++) {
      sim.disks.write('f-db-0', { lengthMiB: 10, offsetMiB: 500 + ((i * 7) % 20) }); // overlapping writes
      await sim.snapshot(ref, { kind: 'incremental', parent: `s${i - 1}`, id: `s${i}` });
      digests.set(`s${i}`, sim.disks.digest('f-db-0'));
    }
    const before = sim.disks.storedBytes();
    await sim.deleteSnapshot('s2'); // a middle link
    await sim.deleteSnapshot('s0'); // the full: s1 becomes the full
    await sim.deleteSnapshot('s4');
    await sim.deleteSnapshot('s4'); // gone: still fine
    const left = await sim.listSnapshots('f');
    expect(left.map((s) => [s.id, s.kind, s.parent])).toEqual([
      ['s1', 'full', undefined],
      ['s3', 'incremental', 's1'],
      ['s5', 'incremental', 's3'],
    ]);
    for (const s of left) {
      const restored = await sim.restore(ref, { snapshot: s.id, asName: `r-${s.id}` });
      expect(restored.digest).toBe(digests.get(s.id));
    }
    expect(sim.disks.storedBytes()).toBeLessThan(before);
  });

  it('leaves an interrupted backup incomplete and the chain usable; the same id completes it', async () => {
    const faults = new FaultInjector([{ operation: 'snapshot', stage: 'copy', action: 'crash', nth: 2 }]);
    const { sim } = open({ faults });
    await sim.create(request('f-db-0'));
    await sim.snapshot(ref, { kind: 'full', id: 'a' });
    sim.disks.write('f-db-0', { lengthMiB: 20 });
    await expect(sim.snapshot(ref, { kind: 'incremental', parent: 'a', id: 'b' })).rejects.toThrow(/simulated crash/);
    const listed = await sim.listSnapshots('f');
    expect(listed.map((s) => [s.id, s.state])).toEqual([['a', 'complete'], ['b', 'incomplete']]);
    await expect(sim.restore(ref, { snapshot: 'b', asName: 'x' })).rejects.toThrow(/incomplete/);
    expect((await sim.restore(ref, { snapshot: 'a', asName: 'y' })).digest).toBe(listed[0]!.digest);
    const done = await sim.snapshot(ref, { kind: 'incremental', parent: 'a', id: 'b' });
    expect(done).toMatchObject({ id: 'b', state: 'complete', kind: 'incremental', parent: 'a' });
    expect(await sim.snapshot(ref, { kind: 'incremental', parent: 'a', id: 'b' })).toEqual(done); // idempotent
  });

  it('records why a failed backup stopped', async () => {
    const faults = new FaultInjector([{ operation: 'snapshot', stage: 'copy', action: 'fail', message: 'backup folder full', nth: 1 }]);
    const { sim } = open({ faults });
    await sim.create(request('f-db-0'));
    await expect(sim.snapshot(ref, { kind: 'full', id: 'a' })).rejects.toThrow(/backup folder full/);
    expect(await sim.listSnapshots('f')).toMatchObject([{ id: 'a', state: 'incomplete', error: 'backup folder full' }]);
  });

  it('takes a full when asked for an incremental it cannot build', async () => {
    const { sim } = open();
    await sim.create(request('f-db-0'));
    expect((await sim.snapshot(ref, { kind: 'incremental', parent: 'nope', id: 'a' })).kind).toBe('full');
    await sim.delete(ref);
    await sim.create(request('f-db-0')); // a new VM under the old name: its checkpoints are gone
    expect((await sim.snapshot(ref, { kind: 'incremental', parent: 'a', id: 'b' })).kind).toBe('full');
  });

  it('replaces a scratch VM left by an earlier verification, but never another VM', async () => {
    const { sim } = open();
    await sim.create(request('f-db-0'));
    await sim.snapshot(ref, { kind: 'full', id: 'a' });
    const first = await sim.restore(ref, { snapshot: 'a', asName: 'f-db-0-verify', scratch: true });
    expect(first.vm).toMatchObject({ state: 'stopped', labels: { 'novacron.io/scratch': 'true' } });
    const second = await sim.restore(ref, { snapshot: 'a', asName: 'f-db-0-verify', scratch: true });
    expect(second.vm.id).not.toBe(first.vm.id);
    await sim.create(request('f-db-1', { ownership: { fleet: 'f', group: 'db', index: 1, specHash: 'h' } }));
    await expect(sim.restore(ref, { snapshot: 'a', asName: 'f-db-1', scratch: true })).rejects.toThrow(/already exists/);
  });

  it('notices a corrupted backup: the restored digest differs from the recorded one', async () => {
    const { sim } = open();
    await sim.create(request('f-db-0'));
    sim.disks.write('f-db-0', { lengthMiB: 5 });
    const a = await sim.snapshot(ref, { kind: 'full', id: 'a' });
    sim.disks.corrupt('a');
    expect((await sim.restore(ref, { snapshot: 'a', asName: 'c', scratch: true })).digest).not.toBe(a.digest);
  });

  it('keeps backups on a named target host, which must exist and answer', async () => {
    const { sim } = open();
    await sim.create(request('f-db-0'));
    expect((await sim.snapshot(ref, { kind: 'full', id: 'a', target: 'h2' })).location).toBe('h2:/var/lib/novacron/backups/f-db-0');
    sim.setHostState('h2', 'down');
    await expect(sim.snapshot(ref, { kind: 'full', id: 'b', target: 'h2' })).rejects.toMatchObject({ code: 'Unreachable' });
    await expect(sim.snapshot(ref, { kind: 'full', id: 'c', target: 'nowhere' })).rejects.toMatchObject({ code: 'NotFound' });
    expect((await sim.snapshot(ref, { kind: 'disk', id: 'd' })).location).toBe('h1:/var/lib/libvirt/images/f-db-0-root');
  });

  it('is crash-consistent without a guest agent or when asked not to quiesce', async () => {
    const { sim } = open();
    await sim.create(request('f-db-0', { labels: { 'guest-agent': 'none' } }));
    expect((await sim.snapshot(ref, { kind: 'full', id: 'a' })).consistency).toBe('crash');
    await sim.create(request('f-db-1', { ownership: { fleet: 'f', group: 'db', index: 1, specHash: 'h' } }));
    expect((await sim.snapshot({ name: 'f-db-1', fleet: 'f' }, { kind: 'full', id: 'b', quiesce: false })).consistency).toBe('crash');
  });

  it('refuses VMs of another fleet and ids of another VM', async () => {
    const { sim } = open();
    await sim.create(request('f-db-0'));
    await expect(sim.snapshot({ name: 'f-db-0', fleet: 'other' }, { kind: 'full' })).rejects.toMatchObject({ code: 'Conflict' });
    await sim.snapshot(ref, { kind: 'full', id: 'a' });
    await sim.create(request('f-db-1', { ownership: { fleet: 'f', group: 'db', index: 1, specHash: 'h' } }));
    await expect(sim.snapshot({ name: 'f-db-1', fleet: 'f' }, { kind: 'full', id: 'a' })).rejects.toThrow(/taken by VM "f-db-0"/);
    const error = await sim.restore({ name: 'f-db-1', fleet: 'f' }, { snapshot: 'a' }).catch((e: unknown) => e);
    expect(NovaCronError.isInstance(error) && error.code).toBe('NotFound');
  });

  it('keeps disks and snapshots across restarts, and after a crash', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'novacron-sim-snap-'));
    const clock = testClock();
    let { sim } = open({ stateDir, clock });
    await sim.create(request('f-db-0'));
    sim.disks.write('f-db-0', { lengthMiB: 12 });
    const a = await sim.snapshot(ref, { kind: 'full', id: 'a' });
    sim.disks.write('f-db-0', { lengthMiB: 3 });
    const b = await sim.snapshot(ref, { kind: 'incremental', parent: 'a', id: 'b' });
    await sim.close();
    ({ sim } = open({ stateDir, clock }));
    expect((await sim.listSnapshots('f')).map((s) => s.id)).toEqual(['a', 'b']);
    expect(sim.disks.digest('f-db-0')).toBe(b.digest);
    sim.disks.write('f-db-0', { lengthMiB: 1 });
    await sim.recordVerification('a', { at: 'now', ok: true, method: 'checksum' });
    sim.kill(); // only the journal survives
    ({ sim } = open({ stateDir, clock }));
    expect((await sim.listSnapshots('f'))[0]!.verified).toMatchObject({ ok: true });
    expect((await sim.restore(ref, { snapshot: 'a', asName: 'r' })).digest).toBe(a.digest);
    await sim.close();
  });
});
