// Day-2 through the CLI on the simulated datacenter: the class and reason of every step in
// plan (text and --json), --rebalance, adopt (into the fleet's groups, and --write-fleet),
// and import --pulumi / --cdktf for the adopted fleet.
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseFleet, parseFleetText } from '@novacron/core';
import { buildCli, ROOT, runCli } from './support/cli.js';
import { openSim, tempDir } from './support/sim.js';

beforeAll(buildCli, 180_000);

const FLEET = `name: shop
providers:
  lab:
    type: sim
    hosts:
      - { name: h1, cpu: 16, memory: 64GiB, disk: 2TiB }
      - { name: h2, cpu: 16, memory: 64GiB, disk: 2TiB }
      - { name: h3, cpu: 16, memory: 64GiB, disk: 2TiB }
groups:
  web:
    count: 2
    cpu: 2
    memory: 4GiB
    disk: 20GiB
    image: debian-12
    labels: { tier: web }
    placement: { antiAffinity: host }
`;

function workspace(text = FLEET): { cwd: string; env: Record<string, string> } {
  const cwd = tempDir('novacron-day2-');
  writeFileSync(join(cwd, 'fleet.yaml'), text);
  return { cwd, env: { NOVACRON_STATE_DIR: join(cwd, 'state') } };
}

describe('novacron day 2 (subprocess, sim)', () => {
  it('shows the class and the reason of every step, in text and in --json', async () => {
    const ws = workspace();
    expect((await runCli(['apply'], ws)).code).toBe(0);
    // More memory (hot-plug), a new label (in place), and a new image for a new group member's sibling (replace).
    writeFileSync(join(ws.cwd, 'fleet.yaml'), FLEET.replace('memory: 4GiB', 'memory: 8GiB').replace('tier: web', 'tier: front').replace('count: 2', 'count: 3'));
    const text = await runCli(['plan'], ws);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/~ update {2}shop-web-0 \[hot-plug\] {2}on lab\/h\d {2}— memory 4096MiB → 8192MiB \[hot-plug: memory is added to the running guest\]; labels tier=web → tier=front \[in-place: labels are metadata\]/);
    expect(text.stdout).toMatch(/\+ create {2}shop-web-2 {2}on lab\/h\d {2}— new VM 3 of 3 in group "web"/);
    const json = JSON.parse((await runCli(['plan', '--json'], ws)).stdout) as { steps: { kind: string; changeClass: string; reason: string; changes?: { field: string; class: string; reason: string }[] }[] };
    expect(json.steps.map((s) => [s.kind, s.changeClass])).toEqual([['update', 'hot-plug'], ['update', 'hot-plug'], ['create', 'create']]);
    expect(json.steps[0]!.changes).toEqual([
      { field: 'memory', from: '4096MiB', to: '8192MiB', class: 'hot-plug', reason: 'memory is added to the running guest' },
      { field: 'labels', from: 'tier=web', to: 'tier=front', class: 'in-place', reason: 'labels are metadata' },
    ]);
    expect(json.steps.every((s) => s.reason.length > 0)).toBe(true);

    writeFileSync(join(ws.cwd, 'fleet.yaml'), FLEET.replace('image: debian-12', 'image: debian-13'));
    const replace = JSON.parse((await runCli(['plan', '--json'], ws)).stdout) as { steps: { kind: string; changeClass: string; changes?: { field: string; class: string }[] }[] };
    expect(replace.steps.filter((s) => s.kind === 'replace').map((s) => [s.changeClass, s.changes?.map((c) => `${c.field}:${c.class}`)])).toEqual([
      ['replace', ['image:replace']],
      ['replace', ['image:replace']],
    ]);
    expect((await runCli(['plan'], ws)).stdout).toMatch(/± replace shop-web-0 \[replace\] {2}on lab\/h\d {2}— image debian-12 → debian-13 \[replace: a new image means a new root disk\]/);
  });

  it('moves running VMs only with --rebalance, and refuses a target it does not know', async () => {
    const ws = workspace(FLEET.replace('placement: { antiAffinity: host }', '{}').replace(/\n {4}\{\}/, ''));
    expect((await runCli(['apply'], ws)).code).toBe(0);
    expect(JSON.parse((await runCli(['plan', '--json'], ws)).stdout)).toMatchObject({ changes: 0 });
    const status = JSON.parse((await runCli(['status', '--json'], ws)).stdout) as { vms: { host: string }[] };
    const busy = status.vms[0]!.host.split('/')[1]!;
    const drained = JSON.parse((await runCli(['plan', '--json', '--rebalance', `drain:lab/${busy}`], ws)).stdout) as { steps: { kind: string; changeClass: string; from: string; reason: string }[] };
    expect(drained.steps.length).toBeGreaterThan(0);
    expect(drained.steps.every((s) => s.kind === 'migrate' && s.changeClass === 'migrate' && s.from === `lab/${busy}` && s.reason === `drain lab/${busy}`)).toBe(true);
    const bad = await runCli(['plan', '--rebalance', 'sideways'], ws);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/expected balance, consolidate or drain:HOST/);
  });

  it('adopts VMs no fleet owns into matching groups, without restarting them, then plans nothing for them', async () => {
    const ws = workspace();
    const fleet = parseFleetText(FLEET);
    const sim = openSim(fleet, join(ws.cwd, 'state'));
    const before = sim.addForeignVm({ name: 'old-web', host: 'h2', resources: { cpu: 2, memoryMiB: 4096, diskGiB: 20, gpu: 0 }, image: 'debian-12' });
    sim.addForeignVm({ name: 'odd', host: 'h3', resources: { cpu: 3, memoryMiB: 4096, diskGiB: 20, gpu: 0 }, image: 'debian-12' });
    const named = sim.addForeignVm({ name: 'shop-web-1', host: 'h3', resources: { cpu: 2, memoryMiB: 4096, diskGiB: 20, gpu: 0 }, image: 'debian-12' });
    await sim.close();

    const dry = await runCli(['adopt', '--dry-run'], ws);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/Fleet shop: 2 VM\(s\) would adopt, 1 left as they are\./);
    expect(dry.stdout).toMatch(/shop-web-1 +lab\/h3 +running +web\[1\] +named as slot 1 of group "web"/);
    expect(dry.stdout).toMatch(/old-web +lab\/h2 +running +web\[0\] +matches group "web": 2 vCPU, 4096 MiB, 20 GiB, image debian-12/);
    expect(dry.stdout).toMatch(/- odd on lab\/h3: not adopted: group "web": size differs \(cpu 3 ≠ 2\)/);

    const done = JSON.parse((await runCli(['adopt', '--json'], ws)).stdout) as { adoptions: { vm: string; group: string; index: number; status: string }[] };
    expect(done.adoptions).toEqual([
      expect.objectContaining({ vm: 'old-web', group: 'web', index: 0, status: 'done' }),
      expect.objectContaining({ vm: 'shop-web-1', group: 'web', index: 1, status: 'done' }),
    ]);
    const status = JSON.parse((await runCli(['status', '--json'], ws)).stdout) as { vms: { name: string; id: string; state: string; labels: Record<string, string> }[] };
    expect(status.vms).toEqual([
      expect.objectContaining({ name: 'old-web', id: before.id, state: 'running', labels: { tier: 'web' } }),
      expect.objectContaining({ name: 'shop-web-1', id: named.id, state: 'running' }),
    ]);
    const next = JSON.parse((await runCli(['plan', '--json'], ws)).stdout) as { changes: number; summary: { unchanged: number } };
    expect(next).toMatchObject({ changes: 0, summary: { unchanged: 2 } });

    // The program for the adopted fleet; a warning for the VM that keeps its own name.
    const pulumi = await runCli(['import', '--pulumi'], ws);
    expect(pulumi.code, pulumi.stderr).toBe(0);
    expect(pulumi.stdout).toContain("import { VmFleet } from '@novacron/pulumi';");
    expect(pulumi.stdout).toContain('const fleet = new VmFleet("shop", {');
    expect(pulumi.stderr).toMatch(/old-web = shop-web-0/);
    const cdktf = await runCli(['import', '--cdktf'], ws);
    expect(cdktf.stdout).toContain("import { VmFleet, type FleetSpecInput, type Host } from '@novacron/cdktf';");
    expect(cdktf.stdout).toContain(`"old-web": "${before.id}", // lab/h2`);
    expect(cdktf.stdout).toContain('this.fleet.vms[vm]?.resource.importFrom(id);');
    const neither = await runCli(['import'], ws);
    expect(neither.code).toBe(2);

    // The printed programs are real: the CDKTF stack synthesizes with an import block per
    // running VM, and the Pulumi program type-checks against @novacron/pulumi.
    const dir = join(ROOT, 'test', `.run-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    try {
      writeFileSync(join(dir, 'main.ts'), cdktf.stdout);
      writeFileSync(join(dir, 'index.ts'), pulumi.stdout);
      const synth = await promisify(execFile)(process.execPath, [join(dir, 'main.ts')], { cwd: ws.cwd });
      expect(synth.stderr).not.toMatch(/Error/);
      const stack = JSON.parse(readFileSync(join(ws.cwd, 'cdktf.out', 'stacks', 'shop', 'cdk.tf.json'), 'utf8')) as { import: { id: string; to: string }[] };
      // The VM under its slot name is imported; the renamed one has no resource of its name (the warning above).
      expect(stack.import).toEqual([{ id: named.id, to: expect.stringMatching(/^terraform_data\.shop_lab_shop-web-1_/) }]);
      const tsc = await promisify(execFile)(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', join(dir, 'index.ts')], { cwd: ROOT }).catch((e: { stdout: string }) => e);
      expect(tsc.stdout).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes a new fleet file for VMs no fleet owns and adopts them into it', async () => {
    const ws = workspace();
    const sim = openSim(parseFleetText(FLEET), join(ws.cwd, 'state'));
    for (const name of ['legacy-app-1', 'legacy-app-2']) sim.addForeignVm({ name, host: 'h1', resources: { cpu: 1, memoryMiB: 2048, diskGiB: 10, gpu: 0 }, image: 'ubuntu-22.04' });
    sim.addForeignVm({ name: 'legacy-db', host: 'h3', resources: { cpu: 4, memoryMiB: 16384, diskGiB: 100, gpu: 0 }, image: 'ubuntu-22.04' });
    await sim.close();
    const run = await runCli(['adopt', '--write-fleet', 'legacy.yaml'], ws);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/Fleet legacy: 3 VM\(s\) adopted, 0 left as they are; wrote .*legacy\.yaml\./);
    const written = parseFleet(parseFleetText(readFileSync(join(ws.cwd, 'legacy.yaml'), 'utf8')));
    expect(Object.fromEntries(Object.entries(written.groups).map(([g, s]) => [g, [s.count, s.cpu, s.memory, s.disk, s.image]]))).toEqual({
      'legacy-app': [2, 1, 2048, 10, 'ubuntu-22.04'],
      'legacy-db': [1, 4, 16384, 100, 'ubuntu-22.04'],
    });
    const plan = JSON.parse((await runCli(['plan', '-f', 'legacy.yaml', '--json'], ws)).stdout) as { changes: number; summary: { unchanged: number } };
    expect(plan).toMatchObject({ changes: 0, summary: { unchanged: 3 } });
    expect(JSON.parse((await runCli(['plan', '--json'], ws)).stdout)).toMatchObject({ changes: 2 }); // the shop fleet still has its own two to make
  });
});
