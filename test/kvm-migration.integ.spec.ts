// `novacron migrate` and `novacron drain` as a user runs them (the built CLI, a subprocess)
// on a small KVM fleet on the testbed: the dry run predicts and moves nothing, a move prints
// the measured figures beside the predicted ones, a refusal moves nothing, and a drain
// empties a host with every VM still running.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kvmProviderConfigFor, loadTestbed, scrubTestbed } from './testbed/index.ts';
import { buildCli, runCli } from './support/cli.js';
import { tempDir } from './support/sim.js';

const tb = loadTestbed();
const FLEET = `nccm${randomBytes(2).toString('hex')}`;
const cwd = tempDir('novacron-kvm-migrate-');
const ws = { cwd };

// Two VMs, each with a static address outside the hosts' DHCP ranges (see the provider's migration tests).
const octet = 200 + (randomBytes(1)[0]! % 25) * 2;
const lab = kvmProviderConfigFor(tb);
const image = (ip: number) => ({ ...lab.images.tiny, cmdline: `${tb.guest.cmdlineBase} nc.net=static nc.ip=192.168.122.${ip}/24,192.168.122.1` });
const fleet = {
  name: FLEET,
  providers: { lab: { ...lab, images: { ...lab.images, ga: image(octet), gb: image(octet + 1) } } },
  groups: {
    a: { count: 1, cpu: 1, memory: '192MiB', disk: '1GiB', image: 'ga', placement: { avoidGroups: [{ group: 'b', scope: 'host' }] } },
    b: { count: 1, cpu: 1, memory: '192MiB', disk: '1GiB', image: 'gb' },
  },
};

interface Status {
  vms: { name: string; host: string; state: string }[];
}
async function status(): Promise<Status> {
  const r = await runCli(['status', '--json'], ws);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Status;
}
const hostOf = async (vm: string) => (await status()).vms.find((v) => v.name === vm)!.host;
const otherThan = (...hosts: string[]) => tb.hosts.map((h) => `lab/${h.name}`).find((h) => !hosts.includes(h))!;

const scrub = () => scrubTestbed(tb, FLEET);

beforeAll(async () => {
  writeFileSync(join(cwd, 'fleet.yaml'), JSON.stringify(fleet, null, 2));
  await buildCli();
}, 300_000);
afterAll(scrub, 300_000);

describe('novacron migrate and drain on KVM hosts (subprocess)', { timeout: 600_000 }, () => {
  it('predicts with --dry-run, moves live printing measured beside predicted, refuses the impossible, and drains a host', async () => {
    const applied = await runCli(['apply'], ws);
    expect(applied.code, applied.stderr + applied.stdout).toBe(0);
    const vm = `${FLEET}-a-0`;
    const from = await hostOf(vm);
    const other = await hostOf(`${FLEET}-b-0`);
    const to = otherThan(from, other);

    const dry = await runCli(['migrate', vm, '--to', to.split('/')[1]!, '--dry-run', '--json'], ws);
    expect(dry.code, dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ vm, from, to, mode: 'live', prediction: { converges: true, strategy: 'pre-copy' } });
    expect(await hostOf(vm)).toBe(from);

    const refused = await runCli(['migrate', vm, '--to', to.split('/')[1]!, '--on-timeout', 'postcopy'], ws);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/onTimeout is "postcopy" but migration\.postCopy\.allowed is false/);
    expect(await hostOf(vm)).toBe(from);

    const moved = await runCli(['migrate', vm, '--to', to.split('/')[1]!, '--max-downtime', '300'], ws);
    expect(moved.code, moved.stderr + moved.stdout).toBe(0);
    expect(moved.stdout).toContain(`Moved ${vm}: ${from} → ${to} (live)`);
    expect(moved.stdout).toMatch(/^ +PREDICTED +MEASURED/m);
    expect(moved.stdout).toMatch(/^total time +\S+ +\S+/m);
    expect(moved.stdout).toMatch(/^downtime +\d+ ms +\d+ ms/m);
    expect(await hostOf(vm)).toBe(to);
    const replan = await runCli(['plan', '--json'], ws);
    expect(JSON.parse(replan.stdout).changes, replan.stdout).toBe(0); // a moved VM is not drift

    const drained = await runCli(['drain', to.split('/')[1]!], ws);
    expect(drained.code, drained.stderr + drained.stdout).toBe(0);
    expect(drained.stdout).toMatch(/Drained: 1\/1 VM\(s\) moved/);
    const after = await status();
    expect(after.vms.filter((v) => v.host === to)).toEqual([]);
    expect(after.vms.map((v) => v.state)).toEqual(['running', 'running']);

    const destroyed = await runCli(['destroy', '--yes'], ws);
    expect(destroyed.code, destroyed.stderr).toBe(0);
    expect((await status()).vms).toEqual([]);
  });
});
