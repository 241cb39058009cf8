import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCli, ROOT, runCli } from './support/cli.js';
import { tempDir } from './support/sim.js';

beforeAll(buildCli, 180_000);

async function applied() {
  const cwd = tempDir('novacron-cli-mig-');
  copyFileSync(join(ROOT, 'examples', 'quickstart', 'fleet.yaml'), join(cwd, 'fleet.yaml'));
  const ws = { cwd, env: { NOVACRON_STATE_DIR: join(cwd, 'state') } };
  expect((await runCli(['apply'], ws)).code).toBe(0);
  return ws;
}

async function hostOf(ws: { cwd: string; env: Record<string, string> }, vm: string): Promise<string> {
  const status = JSON.parse((await runCli(['status', '--json'], ws)).stdout) as { vms: { name: string; host: string }[] };
  return status.vms.find((v) => v.name === vm)!.host;
}

describe('novacron migrate and drain (subprocess, sim)', () => {
  it('predicts with --dry-run, moves nothing, then migrates and prints measured beside predicted', async () => {
    const ws = await applied();
    const from = await hostOf(ws, 'quickstart-batch-0');
    const dry = await runCli(['migrate', 'quickstart-batch-0', '--to', 'host-6', '--dry-run', '--json'], ws);
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ vm: 'quickstart-batch-0', to: 'lab/host-6', mode: 'live', prediction: { converges: true } });
    expect(await hostOf(ws, 'quickstart-batch-0')).toBe(from);

    const moved = await runCli(['migrate', 'quickstart-batch-0', '--to', 'host-6', '--max-downtime', '200'], ws);
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.stdout).toMatch(/Moved quickstart-batch-0: lab\/host-\d → lab\/host-6 \(live\)/);
    expect(moved.stdout).toMatch(/^ +PREDICTED +MEASURED/m);
    expect(moved.stdout).toMatch(/^downtime +\d+ ms +\d+ ms/m);
    expect(await hostOf(ws, 'quickstart-batch-0')).toBe('lab/host-6');
    const plan = await runCli(['plan', '--json'], ws);
    expect(JSON.parse(plan.stdout).changes).toBe(0); // a moved VM is not drift
  });

  it('paces the stream with --pacing (1: unpaced), which the prediction follows, and refuses a share out of range', async () => {
    const ws = await applied();
    const predict = async (...flags: string[]) => {
      const r = await runCli(['migrate', 'quickstart-batch-0', '--to', 'host-6', '--dry-run', '--json', ...flags], ws);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { policy: { pacing: number }; prediction: { totalMs: number } };
    };
    const paced = await predict();
    const unpaced = await predict('--pacing', '1');
    expect(paced.policy.pacing).toBe(0.8);
    expect(unpaced.policy.pacing).toBe(1);
    expect(unpaced.prediction.totalMs).toBeLessThan(paced.prediction.totalMs);
    const bad = await runCli(['migrate', 'quickstart-batch-0', '--to', 'host-6', '--pacing', '0.2'], ws);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--pacing.*expected a number from 0\.5 to 1/);
  });

  it.each([
    ['to the same host', (host: string) => ['--to', host], /already runs on/],
    ['to an unknown host', () => ['--to', 'host-99'], /no host "host-99"/],
    ['with an impossible policy', () => ['--to', 'host-6', '--on-timeout', 'postcopy'], /onTimeout is "postcopy" but migration\.postCopy\.allowed is false/],
    ['with xbzrle over several connections', () => ['--to', 'host-6', '--compression', 'xbzrle', '--parallel', '4'], /one connection only/],
    // db has maxPerHost 1: the host of quickstart-db-0 can never take quickstart-db-1.
    ['to a host its rules refuse', (_host: string, db0Host: string) => ['--to', db0Host, '--dry-run'], /cannot take quickstart-db-1/],
  ])('refuses a move %s before anything moves (exit 2)', async (what, args, message) => {
    const ws = await applied();
    const vm = what === 'to a host its rules refuse' ? 'quickstart-db-1' : 'quickstart-batch-0';
    const from = await hostOf(ws, vm);
    const db0 = await hostOf(ws, 'quickstart-db-0');
    const result = await runCli(['migrate', vm, ...args(from.split('/')[1]!, db0.split('/')[1]!)], ws);
    expect(result.code, result.stderr + result.stdout).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(await hostOf(ws, vm)).toBe(from);
  });

  it('drains a host with migrate steps and leaves it empty', async () => {
    const ws = await applied();
    const dry = JSON.parse((await runCli(['drain', 'host-1', '--dry-run', '--json'], ws)).stdout) as { steps: { kind: string; from: string }[] };
    expect(dry.steps.length).toBeGreaterThan(0);
    expect(dry.steps.every((s) => s.kind === 'migrate' && s.from === 'lab/host-1')).toBe(true);
    const drain = await runCli(['drain', 'host-1'], ws);
    expect(drain.code, drain.stderr).toBe(0);
    expect(drain.stdout).toMatch(/Drained: \d+\/\d+ VM\(s\) moved/);
    const status = JSON.parse((await runCli(['status', '--json'], ws)).stdout) as { vms: { host: string; state: string }[] };
    expect(status.vms.filter((v) => v.host === 'lab/host-1')).toEqual([]);
    expect(status.vms.every((v) => v.state === 'running')).toBe(true);
  });
});
