/**
 * bench/kvm: the KVM provider against the testbed's three libvirt hosts (real sshd, real
 * libvirtd, TCG guests). Needs `test/testbed/testbed.sh up` and `npm run build`; run with
 * `node bench/kvm/index.ts`.
 *
 * Per-operation latency (create, start, stop, delete, list, inventory), each against the
 * floor measured in the same run: one command round trip over the pooled SSH connection
 * (`true` on the host). Then the time to create 12 VMs over 3 hosts through plan/apply with
 * concurrency 1 and with concurrency 10, and the speed-up between them. Everything made is
 * deleted; names start with the run's prefix.
 */
import { randomBytes } from 'node:crypto';
import { apply, hostId, kvmProviderConfig, observe, parseFleet, plan, ProviderSet, type CreateVmRequest } from '@novacron/core';
import { KvmProvider, SshPool } from '@novacron/provider-kvm';
import { execOnHost, kvmProviderConfigFor, loadTestbed, virshOnHost } from '../../test/testbed/index.ts';
import { measure, printTable, ratio, type Cell } from '../lib/harness.ts';

const SAMPLES = Number(process.env['BENCH_KVM_SAMPLES'] ?? 3);
const tb = loadTestbed();
const RUN = `ncb${randomBytes(2).toString('hex')}`;
const config = kvmProviderConfig.parse(kvmProviderConfigFor(tb));
const pool = new SshPool({ env: process.env });
const provider = new KvmProvider({ name: 'lab', config, cwd: process.cwd(), env: process.env, transport: pool });

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s.at(-1)! };
};
async function sample(n: number, fn: (i: number) => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await measure(() => fn(i))).ms);
  return out;
}

async function scrub(): Promise<void> {
  for (const host of tb.hosts) {
    const names = (await virshOnHost(host, ['list', '--all', '--name'])).split('\n').map((s) => s.trim()).filter((n) => n.startsWith(RUN));
    for (const d of names) {
      await execOnHost(host, ['virsh', '-q', 'destroy', d]);
      await execOnHost(host, ['virsh', '-q', 'undefine', d]);
    }
    const vols = (await virshOnHost(host, ['vol-list', tb.guest.pool])).split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n.startsWith(RUN));
    for (const v of vols) await execOnHost(host, ['virsh', '-q', 'vol-delete', v, '--pool', tb.guest.pool]);
  }
}

const request = (name: string, host: string): CreateVmRequest => ({
  name,
  ownership: { fleet: RUN, group: 'op', index: 0, specHash: 'b' },
  host: hostId('lab', host),
  resources: { cpu: 1, memoryMiB: 128, diskGiB: 1, gpu: 0 },
  image: 'tiny',
  labels: {},
});

try {
  const endpoint = provider.hosts.get(tb.hosts[0]!.name)!.ssh;
  await pool.exec(endpoint, { command: 'true' }); // connect first: the floor is a round trip, not a handshake
  const floor = stats(await sample(10, () => pool.exec(endpoint, { command: 'true' })));

  const rows: Cell[][] = [];
  const row = (op: string, xs: number[], note = '') => {
    const s = stats(xs);
    rows.push([op, xs.length, s.median, s.min, s.max, ratio(s.median, floor.median), note]);
  };
  rows.push(['ssh round trip (floor)', 10, floor.median, floor.min, floor.max, '1.00x', 'exec `true` on the pooled connection']);

  const names = Array.from({ length: SAMPLES }, (_, i) => `${RUN}-op-${i}`);
  const hostOf = (i: number) => tb.hosts[i % tb.hosts.length]!.name;
  row('create', await sample(SAMPLES, (i) => provider.create(request(names[i]!, hostOf(i)))), 'volume + seed + define + start');
  row('list (3 hosts)', await sample(SAMPLES * 2, () => provider.list(RUN)), 'one round trip per host, in parallel');
  row('inventory (3 hosts)', await sample(SAMPLES * 2, () => provider.inventory()), 'one round trip per host, in parallel');
  row('stop (forced)', await sample(SAMPLES, (i) => provider.stop({ name: names[i]!, fleet: RUN, host: `lab/${hostOf(i)}` }, { force: true })), 'virsh destroy');
  row('start', await sample(SAMPLES, (i) => provider.start({ name: names[i]!, fleet: RUN, host: `lab/${hostOf(i)}` })), 'virsh start');
  row('delete', await sample(SAMPLES, (i) => provider.delete({ name: names[i]!, fleet: RUN, host: `lab/${hostOf(i)}` })), 'destroy + undefine + volumes');

  // 12 VMs over 3 hosts through plan/apply, sequential vs 10 at once.
  const fleet = parseFleet({
    name: RUN,
    providers: { lab: kvmProviderConfigFor(tb) },
    groups: { web: { count: 12, cpu: 1, memory: '128MiB', disk: '1GiB', image: 'tiny', placement: { spread: { key: 'host', maxSkew: 1 } } } },
  });
  const set = new ProviderSet(new Map([['lab', provider]]));
  const fleetRun = async (concurrency: number) => {
    const planned = plan(fleet, await observe(fleet, set));
    const m = await measure(() => apply(planned, set, { concurrency }));
    if (!m.value.ok) throw new Error(`apply with concurrency ${concurrency} failed: ${m.value.outcomes.find((o) => o.error)?.error?.describe()}`);
    const destroy = plan(fleet, await observe(fleet, set), { destroy: true });
    const d = await apply(destroy, set, { concurrency: 10 });
    if (!d.ok) throw new Error('destroy failed');
    return m.ms;
  };
  const c1 = await fleetRun(1);
  const c10 = await fleetRun(10);
  rows.push(['12 VMs / 3 hosts, concurrency 1', 1, c1, c1, c1, ratio(c1, floor.median), 'plan + apply (creates)']);
  rows.push(['12 VMs / 3 hosts, concurrency 10', 1, c10, c10, c10, ratio(c10, floor.median), `${(c1 / c10).toFixed(2)}x faster than concurrency 1`]);

  printTable(
    `KVM provider on the testbed (${tb.hosts.length} hosts, ${tb.accel}, 128 MiB guests; ms; ratio = median / ssh round trip)`,
    ['operation', 'n', 'median ms', 'min ms', 'max ms', 'ratio', 'note'],
    rows,
  );
  console.log(`\nSSH: ${pool.stats.connectionsOpened} connections opened, ${pool.stats.channelsOpened} channels, at most ${pool.stats.maxConcurrentChannels} at once on one connection`);
} finally {
  await provider.close();
  await scrub();
}
