// Placement from the command line on the simulated datacenter: `--weights` on plan and apply
// (they replace the fleet's placement.weights), and `--rebalance` targets feeding migrate
// steps (hosts by name or id, goals, refusals).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCli, runCli } from './support/cli.js';
import { tempDir } from './support/sim.js';

beforeAll(buildCli, 180_000);

// Four alike hosts, and eight small VMs that one host holds: packing takes one host,
// evening out load takes all four.
const FLEET = `name: pack
providers:
  lab:
    type: sim
    hosts:
      - { name: h1, cpu: 16, memory: 64GiB, disk: 2TiB, pricePerHour: 1 }
      - { name: h2, cpu: 16, memory: 64GiB, disk: 2TiB, pricePerHour: 1 }
      - { name: h3, cpu: 16, memory: 64GiB, disk: 2TiB, pricePerHour: 1 }
      - { name: h4, cpu: 16, memory: 64GiB, disk: 2TiB, pricePerHour: 1 }
placement:
  weights: { cost: 1, consolidation: 1 }
groups:
  app:
    count: 8
    cpu: 1
    memory: 2GiB
    disk: 10GiB
    image: debian-12
`;

function workspace(): { cwd: string; env: Record<string, string> } {
  const cwd = tempDir('novacron-placement-');
  writeFileSync(join(cwd, 'fleet.yaml'), FLEET);
  return { cwd, env: { NOVACRON_STATE_DIR: join(cwd, 'state') } };
}

interface PlanJson {
  readonly changes: number;
  readonly steps: readonly { kind: string; vm: string; host?: string; from?: string; to?: string; reason: string }[];
}

const hostsOf = (plan: PlanJson) => new Set(plan.steps.filter((s) => s.kind === 'create').map((s) => s.host));

async function status(ws: { cwd: string; env: Record<string, string> }): Promise<Map<string, number>> {
  const out = JSON.parse((await runCli(['status', '--json'], ws)).stdout) as { vms: { host: string }[] };
  const perHost = new Map<string, number>();
  for (const vm of out.vms) perHost.set(vm.host, (perHost.get(vm.host) ?? 0) + 1);
  return perHost;
}

describe('novacron plan/apply --weights and --rebalance (subprocess, sim)', () => {
  it('plans with the weights given, in place of the fleet file\'s', async () => {
    const ws = workspace();
    const packed = JSON.parse((await runCli(['plan', '--json'], ws)).stdout) as PlanJson;
    expect(hostsOf(packed).size).toBe(1);
    const even = await runCli(['plan', '--json', '--weights', 'balance=1'], ws);
    expect(even.code, even.stderr).toBe(0);
    // The fleet's cost and consolidation weights are replaced, not added to: balance alone spreads.
    expect(hostsOf(JSON.parse(even.stdout) as PlanJson).size).toBe(4);
    const text = await runCli(['plan', '--weights', 'cost=1, balance=0.5'], ws);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^Fleet pack: 8 to create\./);
  });

  it('applies with the weights given, then plans no changes without them (where a VM runs is not drift)', async () => {
    const ws = workspace();
    const applied = await runCli(['apply', '--weights', 'balance=1'], ws);
    expect(applied.code, applied.stderr).toBe(0);
    expect([...(await status(ws)).values()].sort()).toEqual([2, 2, 2, 2]);
    expect(JSON.parse((await runCli(['plan', '--json'], ws)).stdout)).toMatchObject({ changes: 0 });
  });

  it('refuses weights it does not know, before anything runs (exit 2)', async () => {
    const ws = workspace();
    for (const [weights, message] of [
      ['speed=1', /weights: unknown soft rule "speed"/],
      ['cost=-1', /weights: cost=-1 is not a number from 0 to 1000/],
      ['cost', /weights: "cost" is not name=value/],
    ] as const) {
      const bad = await runCli(['apply', '--weights', weights], ws);
      expect(bad.code, weights).toBe(2);
      expect(bad.stderr).toMatch(message);
    }
    expect((await status(ws)).size).toBe(0);
  });

  it('consolidates a spread fleet with migrate steps, then plans no changes', async () => {
    const ws = workspace();
    expect((await runCli(['apply', '--weights', 'balance=1'], ws)).code).toBe(0);
    const plan = JSON.parse((await runCli(['plan', '--json', '--rebalance', 'consolidate'], ws)).stdout) as PlanJson;
    expect(plan.steps.length).toBe(6); // three hosts' VMs join the fourth
    expect(plan.steps.every((s) => s.kind === 'migrate' && /to cut active hosts/.test(s.reason))).toBe(true);
    // A goal: at most three active hosts takes one host's two VMs.
    const goal = JSON.parse((await runCli(['plan', '--json', '--rebalance', 'consolidate:3'], ws)).stdout) as PlanJson;
    expect(goal.steps.length).toBe(2);
    const applied = await runCli(['apply', '--rebalance', 'consolidate'], ws);
    expect(applied.code, applied.stderr).toBe(0);
    expect([...(await status(ws)).values()]).toEqual([8]);
    expect(JSON.parse((await runCli(['plan', '--json'], ws)).stdout)).toMatchObject({ changes: 0 });
  });

  it('drains a host named as in `novacron drain` (name or id), and names one it does not know', async () => {
    const ws = workspace();
    expect((await runCli(['apply', '--weights', 'balance=1'], ws)).code).toBe(0);
    for (const host of ['h2', 'lab/h2']) {
      const plan = JSON.parse((await runCli(['plan', '--json', '--rebalance', `drain:${host}`], ws)).stdout) as PlanJson;
      expect(plan.steps.map((s) => [s.kind, s.from, s.reason])).toEqual([
        ['migrate', 'lab/h2', 'drain lab/h2'],
        ['migrate', 'lab/h2', 'drain lab/h2'],
      ]);
    }
    const unknown = await runCli(['plan', '--rebalance', 'drain:h9'], ws);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--rebalance drain:h9: no host "h9" among the fleet's providers/);
    const bad = await runCli(['plan', '--rebalance', 'consolidate:lots'], ws);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/consolidate:lots — the most active hosts must be a whole number/);
  });
});
