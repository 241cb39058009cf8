// Scheduled backups of a KVM fleet on the testbed, end to end: `novacron snapshot tick`,
// `list`, `restore`, `verify` as a user runs them (the built CLI, a fleet file, real libvirt
// backup jobs), with K MiB written in the guest between ticks; and, in process through the
// core's engine, a backup that fails blocks pruning of its VM until the next tick completes it.
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseFleet, ProviderSet, systemClock, tick, type FleetSpec, type KvmProviderConfig, type SnapshotRecord } from '@novacron/core';
import { failingTransport, KvmProvider, SshPool } from '@novacron/provider-kvm';
import { buildCli, runCli } from './support/cli.js';
import { tempDir } from './support/sim.js';
import { execOnHost, guestHttpGet, kvmProviderConfigFor, loadTestbed, parseKeyValues, virshOnHost, waitForGuestMarker, type TestbedHost } from './testbed/index.ts';

const tb = loadTestbed();
const FLEET = `ncks${randomBytes(2).toString('hex')}`;
const VM = `${FLEET}-db-0`;
const BACKUPS = `/var/tmp/${FLEET}-backups`;
const MiB = 1024 * 1024;
/** Testbed hosts, those with the most free DHCP leases first (each host has 50, held for an hour). */
async function hostsByFreeLeases(): Promise<TestbedHost[]> {
  const used = await Promise.all(tb.hosts.map(async (h) => (await virshOnHost(h, ['net-dhcp-leases', tb.guest.network])).split('\n').filter((l) => l.trim()).length));
  return tb.hosts.map((h, i) => ({ h, n: used[i]! })).sort((a, b) => a.n - b.n).map((x) => x.h);
}
// One host: the VM must get an address (guests learn theirs by DHCP).
const best = (await hostsByFreeLeases())[0]!;

const fleetInput = {
  name: FLEET,
  providers: {
    lab: {
      ...kvmProviderConfigFor(tb),
      hosts: kvmProviderConfigFor(tb).hosts.filter((h) => h.name === best.name),
      backupDir: BACKUPS,
      bootTimeout: '3m',
      images: { tiny: { ...kvmProviderConfigFor(tb).images.tiny, readyMarker: 'NOVACRON-GUEST-READY' } },
    },
  },
  groups: {
    db: {
      count: 1,
      cpu: 1,
      memory: '128MiB',
      disk: '1GiB',
      image: 'tiny',
      snapshots: { schedule: '0 3 * * *', timezone: 'UTC', fullEvery: 3, retention: { keepLast: 2 } },
    },
  },
};
const fleet: FleetSpec = parseFleet(fleetInput);
const ws = { cwd: tempDir('novacron-kvm-snap-'), env: {} as Record<string, string> };
const json = <T>(stdout: string) => JSON.parse(stdout) as T;
interface Tick { ok: boolean; taken: SnapshotRecord[]; pruned: { id: string; mergedInto: string[] }[]; blocked: { vm: string; reason: string }[]; failed: { vm: string; error: { code: string; message: string } }[] }

let host: TestbedHost;
let ip = '';

async function write(mib: number, offset: number): Promise<void> {
  expect(parseKeyValues(await guestHttpGet(host, ip, `/cgi-bin/diskwrite?mib=${mib}&offset=${offset}`, { timeoutMs: 300_000 }))['written_mib']).toBe(String(mib));
}

async function scrub(): Promise<void> {
  await Promise.all(
    tb.hosts.map(async (h) => {
      const names = (await virshOnHost(h, ['list', '--all', '--name'])).split('\n').map((s) => s.trim()).filter((n) => n.startsWith(FLEET));
      for (const d of names) {
        await execOnHost(h, ['virsh', '-q', 'destroy', d]);
        await execOnHost(h, ['virsh', '-q', 'undefine', d, '--checkpoints-metadata', '--snapshots-metadata']);
      }
      const vols = (await virshOnHost(h, ['vol-list', tb.guest.pool])).split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n.startsWith(FLEET));
      for (const v of vols) await execOnHost(h, ['virsh', '-q', 'vol-delete', v, '--pool', tb.guest.pool]);
    }),
  );
  rmSync(BACKUPS, { recursive: true, force: true });
}

beforeAll(async () => {
  await buildCli();
  writeFileSync(join(ws.cwd, 'fleet.yaml'), JSON.stringify(fleetInput, null, 2));
}, 300_000);

afterAll(async () => {
  await scrub();
  rmSync(ws.cwd, { recursive: true, force: true });
}, 200_000);

describe('novacron snapshot on a KVM fleet (testbed)', { timeout: 900_000 }, () => {
  it('ticks full then incrementals, prunes by merging, lists, restores byte for byte and verifies by booting', async () => {
    const applied = await runCli(['apply'], ws);
    expect(applied.code, applied.stderr).toBe(0);
    for (const h of tb.hosts) if ((await virshOnHost(h, ['list', '--all', '--name'])).includes(VM)) host = h;
    ip = (await waitForGuestMarker(host, VM, 150_000)).ip!;

    const first = await runCli(['snapshot', 'tick', '--now', '2030-01-01T05:00:00Z', '--json'], ws);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect(json<Tick>(first.stdout).taken.map((t) => [t.id, t.kind, t.state])).toEqual([[`${VM}@20300101T0300Z`, 'full', 'complete']]);
    const again = await runCli(['snapshot', 'tick', '--now', '2030-01-01T05:00:00Z', '--json'], ws);
    expect(json<Tick>(again.stdout)).toMatchObject({ ok: true, taken: [], pruned: [] });

    await write(16, 200);
    const second = await runCli(['snapshot', 'tick', '--now', '2030-01-02T05:00:00Z', '--json'], ws);
    const inc = json<Tick>(second.stdout).taken[0]!;
    expect(inc).toMatchObject({ id: `${VM}@20300102T0300Z`, kind: 'incremental', parent: `${VM}@20300101T0300Z`, consistency: 'crash' });
    expect(inc.sizeBytes).toBeLessThan(1.1 * 16 * MiB + 512 * 1024);

    await write(1, 400);
    const third = await runCli(['snapshot', 'tick', '--now', '2030-01-03T05:00:00Z'], ws);
    expect(third.code, third.stdout + third.stderr).toBe(0);
    expect(third.stderr).toMatch(new RegExp(`✓ \\[1/1\\] ${VM}: incremental ${VM}@20300103T0300Z`));
    // keepLast: 2 drops the full; its blocks are merged into its child, which becomes the full.
    expect(third.stdout).toMatch(/1 taken, 0 failed, 1 pruned/);

    const listed = json<{ snapshots: SnapshotRecord[] }>((await runCli(['snapshot', 'list', '--json'], ws)).stdout).snapshots;
    expect(listed.map((r) => [r.id, r.kind, r.parent ?? null])).toEqual([
      [`${VM}@20300102T0300Z`, 'full', null],
      [`${VM}@20300103T0300Z`, 'incremental', `${VM}@20300102T0300Z`],
    ]);
    const table = await runCli(['snapshot', 'list'], ws);
    expect(table.stdout).toMatch(new RegExp(`^Fleet ${FLEET}: 2 snapshot\\(s\\) of 1 VM\\(s\\)`));

    const restored = await runCli(['snapshot', 'restore', VM, '--at', '2030-01-03T12:00:00Z', '--as', `${FLEET}-rescue`, '--json'], ws);
    expect(restored.code, restored.stdout + restored.stderr).toBe(0);
    expect(json<{ snapshot: { id: string }; vm: { name: string; fleet: string }; digestMatches: boolean }>(restored.stdout)).toMatchObject({
      snapshot: { id: `${VM}@20300103T0300Z` },
      vm: { name: `${FLEET}-rescue`, fleet: '' },
      digestMatches: true,
    });
    const path = async (v: string) => (await virshOnHost(host, ['vol-path', '--pool', tb.guest.pool, `${v}-root.qcow2`])).trim();
    const compared = await execOnHost(host, ['qemu-img', 'compare', '-U', await path(VM), await path(`${FLEET}-rescue`)], { timeoutMs: 300_000 });
    expect(compared.stdout).toMatch(/Images are identical/);
    await execOnHost(host, ['virsh', '-q', 'destroy', `${FLEET}-rescue`]);

    const verify = await runCli(['snapshot', 'verify', '--json'], ws);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(json<{ ok: boolean; results: { snapshot: string; ok: boolean; method: string; detail: string; recorded: boolean }[] }>(verify.stdout)).toMatchObject({
      ok: true,
      results: [{ snapshot: `${VM}@20300103T0300Z`, ok: true, method: 'boot', recorded: true, detail: expect.stringMatching(/digest matches .*booted on nc-h\d to its ready marker/) }],
    });
    const after = await runCli(['snapshot', 'list'], ws);
    expect(after.code, after.stderr).toBe(0);
    expect(after.stdout).toMatch(/ ok 20\d\d-/);
    // The scratch VM is gone again.
    expect((await virshOnHost(host, ['list', '--all', '--name'])).includes(`${VM}-verify`)).toBe(false);
    const status = await runCli(['status', '--json'], ws);
    expect(json<{ vms: { name: string }[] }>(status.stdout).vms.map((v) => v.name)).toEqual([VM]);
  });

  it('prunes nothing of a VM whose newest backup failed, and the next tick completes that backup', async () => {
    // The backup job is refused at its start (as a full disk or a lost bitmap would): the record stays incomplete.
    const now = Date.parse('2030-01-04T05:00:00Z');
    // The providers stamp backups with their clock, as the CLI's --now does.
    const offset = now - Date.now();
    const clock = { now: () => Date.now() + offset, sleep: systemClock.sleep };
    const pool = new SshPool({ env: process.env });
    const failing = failingTransport(pool, (command) => command.includes('backup-begin'), 'error: internal error: unable to execute QEMU command: injected');
    const broken = new KvmProvider({ name: 'lab', config: fleet.providers['lab'] as KvmProviderConfig, cwd: ws.cwd, env: process.env, transport: failing, clock });
    await write(1, 500);
    const failed = await tick(fleet, new ProviderSet(new Map([['lab', broken]])), now, { middleware: false });
    expect(failed.ok).toBe(false);
    expect(failed.failed.map((f) => [f.vm, f.operation])).toEqual([[VM, 'snapshot']]);
    expect(failed.blocked).toEqual([{ vm: VM, reason: expect.stringMatching(/newest backup failed/) }]);
    expect(failed.pruned).toEqual([]);
    const pending = (await broken.listSnapshots(FLEET)).find((r) => r.id === `${VM}@20300104T0300Z`)!;
    expect(pending).toMatchObject({ state: 'incomplete', error: expect.stringMatching(/injected/) });
    await broken.close();

    const healthy = new KvmProvider({ name: 'lab', config: fleet.providers['lab'] as KvmProviderConfig, cwd: ws.cwd, env: process.env, clock });
    const mended = await tick(fleet, new ProviderSet(new Map([['lab', healthy]])), now, { middleware: false });
    expect(mended.ok, JSON.stringify(mended.failed.map((f) => f.error.message))).toBe(true);
    expect(mended.taken.map((t) => [t.record.id, t.record.state])).toEqual([[`${VM}@20300104T0300Z`, 'complete']]);
    expect(mended.taken[0]!.reason).toMatch(/completing interrupted/);
    expect(mended.pruned.map((p) => p.snapshot.id)).toEqual([`${VM}@20300102T0300Z`]);
    const left = await healthy.listSnapshots(FLEET);
    expect(left.map((r) => [r.id, r.kind, r.state])).toEqual([
      [`${VM}@20300103T0300Z`, 'full', 'complete'],
      [`${VM}@20300104T0300Z`, 'incremental', 'complete'],
    ]);
    await healthy.close();

    const destroyed = await runCli(['destroy', '--yes'], ws);
    expect(destroyed.code, destroyed.stderr).toBe(0);
    // The backups outlive the VM; listing still shows them.
    expect(json<{ snapshots: unknown[] }>((await runCli(['snapshot', 'list', '--json'], ws)).stdout).snapshots).toHaveLength(2);
  });
});
