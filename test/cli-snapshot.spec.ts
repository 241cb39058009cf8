import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCli, CLI, runCli } from './support/cli.js';
import { tempDir } from './support/sim.js';

beforeAll(buildCli, 180_000);

const FLEET = `
name: snaps
providers:
  lab: { type: sim, generate: { count: 2, cpu: 32, memory: 128GiB } }
groups:
  db:
    count: 2
    cpu: 2
    memory: 4GiB
    disk: 2GiB
    image: debian-12
    snapshots:
      schedule: "0 3 * * *"
      timezone: Europe/Berlin
      fullEvery: 2
      retention: { keepLast: 2 }
  web: { count: 1, cpu: 1, memory: 1GiB, image: debian-12 }
`;

function workspace(fleet = FLEET): { cwd: string; env: Record<string, string> } {
  const cwd = tempDir('novacron-cli-snap-');
  writeFileSync(join(cwd, 'fleet.yaml'), fleet);
  return { cwd, env: { NOVACRON_STATE_DIR: join(cwd, 'state') } };
}

const json = <T>(stdout: string) => JSON.parse(stdout) as T;
interface Tick { ok: boolean; taken: { id: string; vm: string; kind: string; parent?: string }[]; pruned: { id: string; mergedInto: string[] }[]; blocked: { vm: string; reason: string }[]; failed: { vm: string; error: { code: string } }[] }

describe('novacron snapshot (subprocess)', () => {
  it('ticks idempotently, builds chains, prunes with merges, lists, restores and verifies', async () => {
    const ws = workspace();
    expect((await runCli(['apply'], ws)).code).toBe(0);

    const first = await runCli(['snapshot', 'tick', '--now', '2030-01-01T05:00:00Z', '--json'], ws);
    expect(first.code, first.stderr).toBe(0);
    expect(json<Tick>(first.stdout)).toMatchObject({ ok: true, pruned: [] });
    expect(json<Tick>(first.stdout).taken.map((t) => [t.id, t.kind])).toEqual(
      expect.arrayContaining([['snaps-db-0@20300101T0200Z', 'full'], ['snaps-db-1@20300101T0200Z', 'full']]),
    );
    const again = await runCli(['snapshot', 'tick', '--now', '2030-01-01T05:00:00Z', '--json'], ws);
    expect(json<Tick>(again.stdout)).toMatchObject({ ok: true, taken: [], pruned: [] });

    for (const d of ['02', '03', '04']) {
      const t = await runCli(['snapshot', 'tick', '--now', `2030-01-${d}T05:00:00Z`], ws);
      expect(t.code, t.stderr).toBe(0);
      expect(t.stderr).toMatch(/✓ \[2\/2\] snaps-db-\d: (full|incremental) /);
      expect(t.stdout).toMatch(/^Fleet snaps at 2030-01-\d\dT05:00:00.000Z: 2 taken, 0 failed/m);
      expect(t.stdout).toMatch(/Next: db at 2030-01-\d\dT02:00:00.000Z/);
    }
    const listed = await runCli(['snapshot', 'list', '--vm', 'snaps-db-0', '--json'], ws);
    const records = json<{ snapshots: { id: string; kind: string; parent?: string; state: string }[] }>(listed.stdout).snapshots;
    expect(records.map((r) => r.id)).toEqual(['snaps-db-0@20300103T0200Z', 'snaps-db-0@20300104T0200Z']);
    expect(records.every((r) => r.state === 'complete' && (r.kind !== 'incremental' || records.some((p) => p.id === r.parent)))).toBe(true);
    const table = await runCli(['snapshot', 'list'], ws);
    expect(table.stdout).toMatch(/^Fleet snaps: 4 snapshot\(s\) of 2 VM\(s\)/);
    expect(table.stdout).toMatch(/^VM +SNAPSHOT +KIND +TAKEN +PARENT +STORED/m);

    const asNew = await runCli(['snapshot', 'restore', 'snaps-db-0', '--at', '2030-01-03T12:00:00Z', '--as', 'rescue', '--json'], ws);
    expect(asNew.code, asNew.stdout).toBe(0);
    expect(json<{ snapshot: { id: string }; vm: { name: string; fleet: string }; digestMatches: boolean }>(asNew.stdout)).toMatchObject({
      snapshot: { id: 'snaps-db-0@20300103T0200Z' },
      vm: { name: 'rescue', fleet: '' },
      digestMatches: true,
    });
    const refused = await runCli(['snapshot', 'restore', 'snaps-db-0', '--at', '2030-01-05T00:00:00Z'], ws);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/Not confirmed; nothing was restored/);
    const inPlace = await runCli(['snapshot', 'restore', 'snaps-db-0', '--at', '2030-01-05T00:00:00Z', '--yes'], ws);
    expect(inPlace.code, inPlace.stderr).toBe(0);
    expect(inPlace.stdout).toMatch(/Restored snaps-db-0@20300104T0200Z \(\w+, taken 2030-01-04T05:00:00.\d+Z\) into snaps-db-0 in place/);
    expect(inPlace.stdout).toMatch(/matches the digest recorded at backup time/);

    const verify = await runCli(['snapshot', 'verify', '--json'], ws);
    expect(verify.code, verify.stdout).toBe(0);
    expect(json<{ ok: boolean; results: { ok: boolean; recorded: boolean }[] }>(verify.stdout)).toMatchObject({ ok: true, results: [{ ok: true, recorded: true }, { ok: true, recorded: true }] });
    const after = await runCli(['snapshot', 'list'], ws);
    expect(after.stdout).toMatch(/ ok 20\d\d-/);
    const status = await runCli(['status', '--json'], ws);
    expect(json<{ vms: unknown[] }>(status.stdout).vms).toHaveLength(3); // restored and scratch VMs are not the fleet's
  });

  it('exits 1 when a backup fails, prunes nothing of that VM, and the next tick mends it', async () => {
    const ws = workspace();
    expect((await runCli(['apply'], ws)).code).toBe(0);
    for (const d of ['01', '02', '03']) expect((await runCli(['snapshot', 'tick', '--now', `2030-02-${d}T05:00:00Z`], ws)).code).toBe(0);
    const faults = JSON.stringify([{ operation: 'snapshot', stage: 'copy', action: 'crash', vm: 'snaps-db-1' }]);
    const failing = await runCli(['snapshot', 'tick', '--now', '2030-02-04T05:00:00Z', '--json'], { ...ws, env: { ...ws.env, NOVACRON_SIM_FAULTS: faults } });
    expect(failing.code).toBe(1);
    const result = json<Tick>(failing.stdout);
    expect(result.failed.map((f) => f.vm)).toEqual(['snaps-db-1']);
    expect(result.blocked).toEqual([{ vm: 'snaps-db-1', reason: expect.stringMatching(/newest backup failed/) }]);
    expect(result.pruned.every((p) => p.id.startsWith('snaps-db-0'))).toBe(true);
    const human = await runCli(['snapshot', 'tick', '--now', '2030-02-04T05:00:00Z'], ws);
    expect(human.code, human.stdout).toBe(0);
    expect(human.stderr).toMatch(/✓ \[1\/1\] snaps-db-1: \w+ snaps-db-1@20300204T0200Z/);
    expect(human.stdout).toMatch(/1 taken, 0 failed, [1-9] pruned/);
  });

  it('rejects bad input with exit 2 and a path, changing nothing', async () => {
    const ws = workspace(FLEET.replace('"0 3 * * *"', '"0 3 * * 8"'));
    const bad = await runCli(['snapshot', 'tick'], ws);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/groups\.db\.snapshots\.schedule \(line \d+:\d+\): not a valid cron expression/);
    const ok = workspace();
    const badTime = await runCli(['snapshot', 'tick', '--now', 'yesterday'], ok);
    expect(badTime.code).toBe(2);
    expect(badTime.stderr).toMatch(/--now: "yesterday" is not a time/);
    const unknown = await runCli(['snapshot', 'restore', 'snaps-db-9', '--at', 'now', '--yes', '--json'], ok);
    expect(unknown.code).toBe(2);
    expect(json<{ error: { code: string; message: string } }>(unknown.stdout).error).toMatchObject({ code: 'NotFound', message: 'VM "snaps-db-9" has no complete snapshots' });
    const noDaemon = await runCli(['snapshot', 'run'], ok);
    expect(noDaemon.code).toBe(2);
    expect(noDaemon.stderr).toMatch(/needs --daemon/);
  });

  it('runs as a daemon: a pass at start, the next due time, a clean stop on SIGTERM', async () => {
    const ws = workspace();
    expect((await runCli(['apply'], ws)).code).toBe(0);
    const child = spawn(process.execPath, [CLI, 'snapshot', 'run', '--daemon'], { cwd: ws.cwd, env: { ...process.env, ...ws.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const waiting = new Promise<void>((resolve) => child.stderr.on('data', (d: Buffer) => ((stderr += d.toString()), /Waiting: next due/.test(stderr) && resolve())));
    await waiting;
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(0);
    expect(stdout).toMatch(/2 taken, 0 failed/);
    expect(stderr).toMatch(/Waiting: next due \d{4}-\d\d-\d\dT02:00:00Z \(db\)\. Stop with Ctrl-C\./);
    expect(stderr).toMatch(/SIGTERM: finishing the snapshots under way, then stopping\.\nStopped\./);
    const list = await runCli(['snapshot', 'list', '--json'], ws);
    expect(json<{ snapshots: unknown[] }>(list.stdout).snapshots).toHaveLength(2);
  });
});
