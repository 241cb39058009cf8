import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
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

async function fleetVmCount(ws: { cwd: string; env: Record<string, string> }, file = 'fleet.yaml'): Promise<number> {
  const status = await runCli(['status', '-f', file, '--json'], ws);
  expect(status.code, status.stderr).toBe(0);
  return (JSON.parse(status.stdout) as { vms: unknown[] }).vms.length;
}

describe('novacron (subprocess)', () => {
  it('plans, applies, shows status, and then plans no changes', async () => {
    const ws = workspace();
    const plan = await runCli(['plan'], ws);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toMatch(/Fleet quickstart: 9 to create\./);
    expect(plan.stdout).toMatch(/\+ create {2}quickstart-db-0 {2}on lab\/host-\d/);

    const apply = await runCli(['apply'], ws);
    expect(apply.code, apply.stderr).toBe(0);
    expect(apply.stderr.match(/✓ create quickstart-/g)).toHaveLength(9); // a line per step when not on a terminal
    expect(apply.stdout).toMatch(/Applied: 9\/9 steps/);

    const status = await runCli(['status'], ws);
    expect(status.stdout).toMatch(/9 VM\(s\) on \d host\(s\); in sync with the spec/);
    expect(status.stdout).toMatch(/^VM +GROUP +STATE +HOST/m);
    expect(status.stdout).toMatch(/^HOST +ZONE +STATE/m);

    const again = await runCli(['plan', '--json'], ws);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ fleet: 'quickstart', changes: 0, steps: [] });
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
        expect(await fleetVmCount(ws)).toBe(0);
        const json = await runCli(['plan', '-f', 'bad.yaml', '--json'], ws);
        expect(json.code).toBe(2);
        if (what !== 'a count that cannot fit') expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, error: { code: 'InvalidSpec' } });
      });
    }

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
