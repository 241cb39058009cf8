/**
 * The KVM rows of bench/snapshots: libvirt push-mode backups of a tiny TCG guest's 1 GiB disk
 * on the testbed (`test/testbed/testbed.sh up`, then `npm run build`).
 *
 * For K = 1, 16, 128 MiB: a full, then 10 incrementals, each after the guest wrote K MiB of
 * random data to its disk (`/cgi-bin/diskwrite`, fsynced). Reported: bytes stored per
 * incremental against 1.1 × K plus a fixed overhead (qcow2 tables, the block manifest,
 * metadata), the mean time of an incremental against a full of the same disk taken right
 * after the chain (the baseline, same run), the time to restore the chain's last link
 * against restoring that full, and whether the restored disk equals the source byte for byte
 * (qemu-img compare on the host, and the digest read back). Everything made is removed.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { hostId, kvmProviderConfig, type SnapshotRecord } from '@novacron/core';
import { KvmProvider } from '@novacron/provider-kvm';
import { execOnHost, guestHttpGet, kvmProviderConfigFor, loadTestbed, virshOnHost, waitForGuestMarker } from '../../test/testbed/index.ts';
import { measure, ratio, verdict, type Cell } from '../lib/harness.ts';

const MiB = 1024 * 1024;
/** qcow2 header, L1, refcount table and block, two L2 tables (a 1 GiB disk), the 64 KiB manifest, the record. */
export const KVM_OVERHEAD = 512 * 1024;

export async function kvmRows(ks: readonly number[], links: number): Promise<{ rows: Cell[][]; roundTripMs: number; host: string }> {
  const tb = loadTestbed();
  const run = `ncbs${randomBytes(2).toString('hex')}`;
  const backupDir = `/var/tmp/${run}-backups`;
  // The host with the most free DHCP leases (each testbed host has 50, held for an hour).
  const leases = await Promise.all(tb.hosts.map(async (h) => (await virshOnHost(h, ['net-dhcp-leases', tb.guest.network])).split('\n').filter((l) => l.trim()).length));
  const host = tb.hosts[leases.indexOf(Math.min(...leases))]!;
  const kvm = new KvmProvider({ name: 'lab', config: kvmProviderConfig.parse({ ...kvmProviderConfigFor(tb), backupDir }), cwd: process.cwd(), env: process.env });
  const rows: Cell[][] = [];
  // What one command costs on this host (an SSH channel, a shell): the floor under every step.
  const trips: number[] = [];
  for (let i = 0; i < 5; i++) trips.push((await measure(() => kvm.virshFor(host.name).script('true'))).ms);
  const roundTripMs = trips.sort((a, b) => a - b)[2]!;
  try {
    for (const k of ks) {
      const vm = `${run}-k${k}`;
      const ref = { name: vm, fleet: run };
      await kvm.create({ name: vm, ownership: { fleet: run, group: 'bench', index: 0, specHash: 'b' }, host: hostId('lab', host.name), resources: { cpu: 1, memoryMiB: 128, diskGiB: 1, gpu: 0 }, image: 'tiny', labels: {} });
      const ip = (await waitForGuestMarker(host, vm, 300_000)).ip;
      if (!ip) throw new Error(`${vm} on ${host.name} got no address (the host's DHCP range may be used up)`);
      const write = async (i: number) => {
        // New data at a moving offset behind the 64 MiB base image, wrapping inside the disk.
        const offset = 64 + ((i * k) % (960 - k));
        await guestHttpGet(host, ip, `/cgi-bin/diskwrite?mib=${k}&offset=${offset}`, { timeoutMs: 600_000 });
      };
      await write(0);
      const full = await measure(() => kvm.snapshot(ref, { kind: 'full', id: `${vm}@0` }));
      let parent: SnapshotRecord = full.value;
      const chain: { ms: number; bytes: number }[] = [];
      for (let i = 1; i <= links; i++) {
        await write(i);
        const taken = await measure(() => kvm.snapshot(ref, { kind: 'incremental', parent: parent.id, id: `${vm}@${i}` }));
        if (taken.value.kind !== 'incremental') throw new Error(`asked for an incremental, got a ${taken.value.kind}`);
        chain.push({ ms: taken.ms, bytes: taken.value.sizeBytes });
        parent = taken.value;
      }
      // The baseline: a full of the same disk, now.
      const last = await measure(() => kvm.snapshot(ref, { kind: 'full', id: `${vm}@full` }));
      const restoreChain = await measure(() => kvm.restore(ref, { snapshot: parent.id, asName: `${vm}-rc`, scratch: true }));
      const restoreFull = await measure(() => kvm.restore(ref, { snapshot: last.value.id, asName: `${vm}-rf`, scratch: true }));
      const path = async (v: string) => (await virshOnHost(host, ['vol-path', '--pool', tb.guest.pool, `${v}-root.qcow2`])).trim();
      const compare = await execOnHost(host, ['qemu-img', 'compare', '-U', await path(vm), await path(`${vm}-rc`)], { timeoutMs: 600_000 });
      const byteEqual = compare.code === 0 && restoreChain.value.digest === parent.digest && restoreFull.value.digest === last.value.digest && parent.digest === last.value.digest;
      for (const v of [`${vm}-rc`, `${vm}-rf`, vm]) await kvm.delete({ name: v, fleet: v === vm ? run : '' });
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const incBytes = mean(chain.map((c) => c.bytes));
      const incMs = mean(chain.map((c) => c.ms));
      const target = 1.1 * k * MiB + KVM_OVERHEAD;
      rows.push([
        `${k} (KVM)`,
        incBytes / MiB,
        target / MiB,
        last.value.sizeBytes / MiB,
        ratio(incBytes, last.value.sizeBytes),
        incMs,
        last.ms,
        ratio(incMs, last.ms),
        restoreChain.ms,
        restoreFull.ms,
        ratio(restoreChain.ms, restoreFull.ms),
        byteEqual ? 'yes' : 'NO',
        verdict(incBytes <= target && byteEqual),
      ]);
    }
  } finally {
    await kvm.close();
    for (const h of tb.hosts) {
      const names = (await virshOnHost(h, ['list', '--all', '--name'])).split('\n').map((s) => s.trim()).filter((n) => n.startsWith(run));
      for (const d of names) {
        await execOnHost(h, ['virsh', '-q', 'destroy', d]);
        await execOnHost(h, ['virsh', '-q', 'undefine', d, '--checkpoints-metadata']);
      }
      const vols = (await virshOnHost(h, ['vol-list', tb.guest.pool])).split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n.startsWith(run));
      for (const v of vols) await execOnHost(h, ['virsh', '-q', 'vol-delete', v, '--pool', tb.guest.pool]);
    }
    rmSync(backupDir, { recursive: true, force: true });
  }
  return { rows, roundTripMs, host: host.name };
}
