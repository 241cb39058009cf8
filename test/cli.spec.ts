import { copyFileSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCli, ROOT, runCli } from './support/cli.js';
import { tempDir } from './support/sim.js';

beforeAll(buildCli, 180_000);

/** A working directory with the quickstart fleet and its own sim world. */
function workspace(): { cwd: string; env: Record<string, string> } {
  const cwd = tempDir('novacron-cli-');
  copyFileSync(join(ROOT, 'examples', 'quickstart', 'fleet.yaml'), join(cwd, 'fleet.yaml'));
  return { cwd, env: { NOVACRON_STATE_DIR: join(cwd, 'state') } };
}

async function fleetVms(ws: { cwd: string; env: Record<string, string> }, file = 'fleet.yaml'): Promise<{ name: string; id: string; host: string; state: string }[]> {
  const status = await runCli(['status', '-f', file, '--json'], ws);
  expect(status.code, status.stderr).toBe(0);
  return (JSON.parse(status.stdout) as { vms: { name: string; id: string; host: string; state: string }[] }).vms;
}

async function fleetVmCount(ws: { cwd: string; env: Record<string, string> }, file = 'fleet.yaml'): Promise<number> {
  return (await fleetVms(ws, file)).length;
}

/** A valid fleet `x` on provider `lab`: what the bad files below would have made, for `status` to look at. */
const FLEET_X = 'name: x\nproviders: {lab: {type: sim, generate: {count: 2, cpu: 8, memory: 16GiB}}}\ngroups:\n  web: {count: 1, cpu: 1, memory: 1GiB, image: i}\n';

describe('novacron (subprocess)', () => {
  it('plans, applies, shows status, and then plans no changes', async () => {
    const ws = workspace();
    const plan = await runCli(['plan'], ws);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toMatch(/Fleet quickstart: 9 to create\./);
    expect(plan.stdout).toMatch(/\+ create {2}quickstart-db-0 {2}on lab\/host-\d/);
    // The hourly cost: the hosts the plan uses, at $0.45/h each in the quickstart datacenter.
    const planned = JSON.parse((await runCli(['plan', '--json'], ws)).stdout) as { costPerHour: unknown; steps: { host: string }[] };
    const costPerHour = planned.costPerHour as number;
    expect(typeof costPerHour).toBe('number');
    expect(costPerHour).toBeCloseTo(0.45 * new Set(planned.steps.map((s) => s.host)).size, 9);
    expect(plan.stdout.split('\n')[0]).toBe(`Fleet quickstart: 9 to create. Cost after apply $${costPerHour.toFixed(2)}/h.`);

    const apply = await runCli(['apply'], ws);
    expect(apply.code, apply.stderr).toBe(0);
    expect(apply.stderr.match(/✓ create quickstart-/g)).toHaveLength(9); // a line per step when not on a terminal
    expect(apply.stdout).toMatch(/Applied: 9\/9 steps/);

    const status = await runCli(['status'], ws);
    expect(status.stdout).toMatch(/9 VM\(s\) on \d host\(s\); in sync with the spec/);
    expect(status.stdout).toMatch(/^VM +GROUP +STATE +HOST/m);
    expect(status.stdout).toMatch(/^HOST +ZONE +STATE/m);
    // Each address says where it was learned: the sim reports its addresses through its API.
    const vmRows = status.stdout.split('\n').filter((line) => line.startsWith('quickstart-'));
    expect(vmRows).toHaveLength(9);
    for (const row of vmRows) expect(row).toMatch(/ 10\.\d+\.\d+\.\d+ \(api\)$/);

    const again = await runCli(['plan', '--json'], ws);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ fleet: 'quickstart', changes: 0, steps: [], costPerHour });
    const text = await runCli(['plan'], ws);
    expect(text.stdout.split('\n')[0]).toBe(`Fleet quickstart: no changes. 9 VM(s) match the spec. Cost $${costPerHour.toFixed(2)}/h.`);
  });

  it('prints machine-readable results with --json', async () => {
    const ws = workspace();
    const plan = JSON.parse((await runCli(['plan', '--json'], ws)).stdout) as { steps: { kind: string; host: string; reason: string }[] };
    expect(plan.steps).toHaveLength(9);
    expect(plan.steps.every((s) => s.kind === 'create' && s.host.startsWith('lab/') && s.reason.length > 0)).toBe(true);
    const apply = await runCli(['apply', '--json'], ws);
    const result = JSON.parse(apply.stdout) as { ok: boolean; outcomes: { status: string }[] };
    expect(result.ok).toBe(true);
    expect(result.outcomes.every((o) => o.status === 'done')).toBe(true);
    expect(apply.stderr).toBe('');
  });

  it('asks before destroying, and destroys only after the fleet name is typed', async () => {
    const ws = workspace();
    expect((await runCli(['apply'], ws)).code).toBe(0);
    const declined = await runCli(['destroy'], { ...ws, input: 'no\n' });
    expect(declined.code).toBe(1);
    expect(declined.stderr).toMatch(/Not confirmed; nothing was destroyed/);
    expect(await fleetVmCount(ws)).toBe(9);
    const eof = await runCli(['destroy'], ws);
    expect(eof.code).toBe(1);
    const confirmed = await runCli(['destroy'], { ...ws, input: 'quickstart\n' });
    expect(confirmed.code, confirmed.stderr).toBe(0);
    expect(await fleetVmCount(ws)).toBe(0);
    expect((await runCli(['destroy', '--yes'], ws)).code).toBe(0);
  });

  it('destroy --yes --json prints the outcome as JSON, and nothing else', async () => {
    const ws = workspace();
    expect((await runCli(['apply'], ws)).code).toBe(0);
    const destroyed = await runCli(['destroy', '--yes', '--json'], ws);
    expect(destroyed.code, destroyed.stderr).toBe(0);
    expect(destroyed.stderr).toBe('');
    const result = JSON.parse(destroyed.stdout) as { ok: boolean; aborted: boolean; outcomes: { step: string; status: string }[] };
    expect(result.ok).toBe(true);
    expect(result.aborted).toBe(false);
    expect(result.outcomes).toHaveLength(9);
    expect(result.outcomes.every((o) => o.step.startsWith('delete:quickstart-') && o.status === 'done')).toBe(true);
    expect(await fleetVmCount(ws)).toBe(0);
    const nothing = await runCli(['destroy', '--yes', '--json'], ws);
    expect(nothing.code).toBe(0);
    expect(JSON.parse(nothing.stdout)).toMatchObject({ ok: true, outcomes: [] });
  });

  it('keeps the sim\'s state in .novacron/ in the working directory when NOVACRON_STATE_DIR is not set', async () => {
    const cwd = tempDir('novacron-cli-cwd-');
    copyFileSync(join(ROOT, 'examples', 'quickstart', 'fleet.yaml'), join(cwd, 'fleet.yaml'));
    // undefined leaves the variable out of the child's environment, whatever this process has.
    const ws = { cwd, env: { NOVACRON_STATE_DIR: undefined as unknown as string } };
    const applied = await runCli(['apply'], ws);
    expect(applied.code, applied.stderr).toBe(0);
    const dir = join(cwd, '.novacron', 'sim');
    expect(existsSync(join(dir, 'lab.world.json'))).toBe(true);
    const stored = readFileSync(join(dir, 'lab.world.json'), 'utf8') + readFileSync(join(dir, 'lab.journal.ndjson'), 'utf8');
    expect(stored).toContain('quickstart-web-0');
    expect(await fleetVmCount(ws)).toBe(9);
    // The VMs live there and nowhere else: without the directory, the world is new and empty.
    renameSync(join(cwd, '.novacron'), join(cwd, 'moved'));
    expect(await fleetVmCount(ws)).toBe(0);
  });

  it('exits 1 on a runtime failure, and a re-run converges', async () => {
    const ws = workspace();
    const failing = await runCli(['apply'], { ...ws, env: { ...ws.env, NOVACRON_SIM_FAULTS: '[{"operation":"create","nth":3,"action":"fail"}]' } });
    expect(failing.code).toBe(1);
    expect(failing.stdout).toMatch(/Apply incomplete: 8\/9 steps/);
    expect(failing.stdout).toMatch(/Re-run apply to converge/);
    expect(failing.stderr).not.toMatch(/\n\s+at /); // no stack trace without --debug
    const rerun = await runCli(['apply'], ws);
    expect(rerun.code).toBe(0);
    expect(rerun.stdout).toMatch(/Applied: 1\/1 steps/);
  });

  it('places a VM again, in the same run, when its host has no room for it', async () => {
    const ws = workspace();
    const short = await runCli(['apply'], { ...ws, env: { ...ws.env, NOVACRON_SIM_FAULTS: '[{"operation":"create","nth":1,"action":"capacity"}]' } });
    expect(short.code, short.stderr).toBe(0);
    expect(short.stderr).toMatch(/✗ create quickstart-\S+: injected capacity shortage/);
    expect(short.stderr).toMatch(/↪ host-\d has no room for quickstart-\S+: placing it again \(host-\d\) \[round 2\/3\]/);
    expect(short.stdout).toMatch(/Applied: 9\/9 steps in .* \(2 rounds: VMs short of capacity were placed again\)\./);
    expect(await fleetVmCount(ws)).toBe(9);
    expect(JSON.parse((await runCli(['plan', '--json'], ws)).stdout)).toMatchObject({ changes: 0, steps: [] });
  });

  describe('bad input: exit 2, the path named, nothing changed', () => {
    const cases: [string, string, RegExp][] = [
      ['malformed YAML', 'name: x\ngroups: [\n  oops: 1\n', /line \d+.*not valid YAML/s],
      ['an unknown key', 'name: x\nproviders: {lab: {type: sim}}\ngroups:\n  web: {count: 1, cpu: 1, memroy: 1GiB, image: i}\n', /groups\.web\.memroy \(line 4:\d+\): unknown key \(did you mean "memory"\?\)/],
      ['a negative size', 'name: x\nproviders: {lab: {type: sim}}\ngroups:\n  web: {count: 1, cpu: 1, memory: -4GiB, image: i}\n', /groups\.web\.memory/],
      ['an absurd size', 'name: x\nproviders: {lab: {type: sim}}\ngroups:\n  web: {count: 1, cpu: 1, memory: 400TiB, image: i}\n', /groups\.web\.memory.*too large/],
      ['an unknown provider type', 'name: x\nproviders: {lab: {type: vsphere}}\ngroups:\n  web: {count: 1, cpu: 1, memory: 1GiB, image: i}\n', /providers\.lab.*unknown provider type "vsphere"/],
      ['a count that cannot fit', 'name: x\nproviders: {lab: {type: sim, generate: {count: 2, cpu: 8, memory: 16GiB}}}\ngroups:\n  web: {count: 50, cpu: 4, memory: 8GiB, image: i}\n', /fit nowhere; nothing was changed/],
    ];
    for (const [what, text, message] of cases) {
      it(`${what}`, async () => {
        const ws = workspace();
        writeFileSync(join(ws.cwd, 'bad.yaml'), text);
        const result = await runCli(['apply', '-f', 'bad.yaml'], ws);
        expect(result.code).toBe(2);
        expect(result.stderr).toMatch(message);
        expect(result.stderr).not.toMatch(/\n\s+at /);
        const json = await runCli(['plan', '-f', 'bad.yaml', '--json'], ws);
        expect(json.code).toBe(2);
        if (what !== 'a count that cannot fit') expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, error: { code: 'InvalidSpec' } });
        // Fleet x, which the bad file declares, owns no VM on lab; the same check sees one once x is applied.
        writeFileSync(join(ws.cwd, 'check.yaml'), FLEET_X);
        expect(await fleetVmCount(ws, 'check.yaml')).toBe(0);
        expect((await runCli(['apply', '-f', 'check.yaml'], ws)).code).toBe(0);
        expect(await fleetVmCount(ws, 'check.yaml')).toBe(1);
      });
    }

    it('a bad edit of an applied fleet changes none of its VMs', async () => {
      const ws = workspace();
      const fleetFile = join(ws.cwd, 'fleet.yaml');
      const good = readFileSync(fleetFile, 'utf8');
      expect((await runCli(['apply'], ws)).code).toBe(0);
      const before = await fleetVms(ws);
      expect(before).toHaveLength(9);
      const edits: [string, string, RegExp][] = [
        ['an unknown key', good.replace('    memory: 4GiB\n', '    memroy: 2GiB\n'), /groups\.web\.memroy \(line \d+:\d+\): unknown key \(did you mean "memory"\?\)/],
        ['a count below zero', good.replace('    count: 4\n', '    count: -1\n'), /groups\.web\.count/],
        ['malformed YAML', good.replace('groups:\n', 'groups: [\n'), /not valid YAML/],
      ];
      for (const [what, text, message] of edits) {
        expect(text, what).not.toBe(good);
        writeFileSync(fleetFile, text);
        const applied = await runCli(['apply'], ws);
        expect(applied.code, what).toBe(2);
        expect(applied.stderr, what).toMatch(message);
        writeFileSync(fleetFile, good);
        expect(await fleetVms(ws), what).toEqual(before);
      }
    });

    it('a missing file', async () => {
      const ws = workspace();
      const result = await runCli(['plan', '-f', 'nope.yaml'], ws);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/nope\.yaml: 1 problem\n\s+\(root\): file not found/);
    });

    it('an unknown flag or command', async () => {
      const ws = workspace();
      expect((await runCli(['aply'], ws)).code).toBe(2);
      expect((await runCli(['apply', '--concurrency', '0'], ws)).code).toBe(2);
    });

    it('--debug adds the stack trace', async () => {
      const ws = workspace();
      writeFileSync(join(ws.cwd, 'bad.yaml'), 'name: x\n');
      const result = await runCli(['plan', '-f', 'bad.yaml', '--debug'], ws);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/\n\s+at /);
    });
  });
});

describe('novacron schema', () => {
  it('prints the JSON Schema that docs/fleet.schema.json holds (regenerate: novacron schema > docs/fleet.schema.json)', async () => {
    const result = await runCli(['schema'], { cwd: ROOT });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual(JSON.parse(readFileSync(join(ROOT, 'docs', 'fleet.schema.json'), 'utf8')));
  });
});
