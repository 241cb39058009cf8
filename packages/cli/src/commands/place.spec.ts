import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Io } from '../context.js';
import { main } from '../main.js';

/** Runs `novacron place …` in process, in a directory holding the given files. */
async function run(args: string[], files: Record<string, unknown>): Promise<{ code: number; stdout: string; stderr: string; cwd: string }> {
  const cwd = mkdtempSync(join(tmpdir(), 'novacron-place-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(cwd, name), typeof content === 'string' ? content : JSON.stringify(content));
  let stdout = '';
  let stderr = '';
  const io = {
    stdout: { write: (s: string) => ((stdout += s), true) },
    stderr: { write: (s: string) => ((stderr += s), true) },
    stdin: process.stdin,
    cwd,
    env: {},
  } as unknown as Io;
  const code = await main(['place', ...args], io);
  return { code, stdout, stderr, cwd };
}

const GiB = 1024;
const hosts = [
  { id: 'a', cpu: 16, memoryMiB: 64 * GiB, zone: 'z1', labels: { ssd: 'true' }, pricePerHour: 1 },
  { id: 'b', cpu: 16, memoryMiB: 64 * GiB, zone: 'z2', pricePerHour: 1 },
  { id: 'c', cpu: 16, memoryMiB: 64 * GiB, zone: 'z2', state: 'maintenance' },
];
const vms = [
  { id: 'web-1', cpu: 2, memoryMiB: 4 * GiB, group: 'web' },
  { id: 'web-2', cpu: 2, memoryMiB: 4 * GiB, group: 'web' },
  { id: 'db-1', cpu: 4, memoryMiB: 16 * GiB, group: 'db' },
];
const args = ['--hosts', 'hosts.json', '--vms', 'vms.json'];

describe('novacron place', () => {
  it('prints {assignments, unplaced, objectives, alternatives} with --json, and exits 0 when all fit', async () => {
    const r = await run([...args, '--rules', 'rules.json', '--json'], { 'hosts.json': hosts, 'vms.json': vms, 'rules.json': { web: { antiAffinity: 'host' } } });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Object.keys(out)).toEqual(['assignments', 'unplaced', 'objectives', 'alternatives']);
    expect(out['unplaced']).toEqual([]);
    const assignments = out['assignments'] as Record<string, string>;
    expect(Object.keys(assignments).sort()).toEqual(['db-1', 'web-1', 'web-2']);
    expect(assignments['web-1']).not.toBe(assignments['web-2']);
    expect(out['objectives']).toMatchObject({ activeHosts: 2, placed: 3, unplaced: 0 });
  });

  it('takes weights and a seed, and gives the same answer for the same seed', async () => {
    const files = { 'hosts.json': hosts, 'vms.json': vms };
    const spread = JSON.parse((await run([...args, '--weights', 'balance=1', '--json'], files)).stdout) as { objectives: { activeHosts: number } };
    expect(spread.objectives.activeHosts).toBe(2);
    const packed = JSON.parse((await run([...args, '--weights', 'consolidation=1', '--json'], files)).stdout) as { objectives: { activeHosts: number } };
    expect(packed.objectives.activeHosts).toBe(1);
    const one = await run([...args, '--seed', '42', '--json'], files);
    const two = await run([...args, '--seed', '42', '--json'], files);
    expect(one.stdout).toBe(two.stdout);
  });

  it('reports VMs that fit nowhere with the hosts each rule ruled out, and exits 2', async () => {
    const r = await run(args, { 'hosts.json': hosts, 'vms.json': [...vms, { id: 'huge', cpu: 4, memoryMiB: 256 * GiB }] });
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/^Placed 3 of 4 VM\(s\) on 1 active host\(s\)/);
    expect(r.stdout).toContain('! huge: no host can take it (memory: 2 hosts short of memory; maintenance: 1 host in maintenance)');
  });

  it('keeps VMs that run already where they are', async () => {
    const r = await run([...args, '--json'], { 'hosts.json': hosts, 'vms.json': [...vms, { id: 'old', cpu: 15, memoryMiB: 8 * GiB, host: 'a' }] });
    const out = JSON.parse(r.stdout) as { assignments: Record<string, string> };
    expect(out.assignments).not.toHaveProperty('old');
    expect(Object.values(out.assignments)).not.toContain('a'); // 1 cpu left there
  });

  it('rejects bad input naming each bad item, and exits 2', async () => {
    const r = await run(args, {
      'hosts.json': [{ id: 'a', cpu: -1, memoryMiB: 1024 }, { id: 'a', cpu: 1, memoryMiB: 1024 }, { id: 'b', cpu: 'four', memoryMiB: 1024 }, { cpu: 1 }],
      'vms.json': [{ id: 'v', cpu: 1, memoryMiB: 512, hostt: 'x' }, { id: 'w', cpu: 1, memoryMiB: 512, host: 'nowhere' }],
    });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('hosts.json: hosts[0] "a".cpu: Too small: expected number to be >=0');
    expect(r.stderr).toContain('hosts.json: hosts[2] "b".cpu: ');
    expect(r.stderr).toContain('hosts.json: hosts[3].id: required (string)');
    expect(r.stderr).toContain('vms.json: vms[0] "v": Unrecognized key: "hostt"');
    expect(r.stderr).toContain('vms.json: vms[1] "w".host: no host "nowhere" in the hosts file');
    expect(r.stderr).toContain('fix the files; nothing was placed');
  });

  it('rejects rules that name missing groups, bad weights, and files that are not JSON', async () => {
    const files = { 'hosts.json': hosts, 'vms.json': { vms, rules: { dbb: { maxPerHost: 1 }, web: { avoidGroups: [{ group: 'cache' }] } } } };
    const rules = await run(args, files);
    expect(rules.code).toBe(2);
    expect(rules.stderr).toContain('vms.json: rules.dbb: no VM is in group "dbb" (groups: db, web)');
    expect(rules.stderr).toContain('vms.json: rules.web.avoidGroups: no VM is in group "cache"');
    const weights = await run([...args, '--weights', 'cost=1,speed=2', '--json'], { 'hosts.json': hosts, 'vms.json': vms });
    expect(weights.code).toBe(2);
    expect(JSON.parse(weights.stdout)).toMatchObject({ ok: false, error: { code: 'InvalidInput', message: 'weights: unknown soft rule "speed"' } });
    const broken = await run(args, { 'hosts.json': '[{', 'vms.json': vms });
    expect(broken.code).toBe(2);
    expect(broken.stderr).toMatch(/--hosts hosts\.json: not valid JSON/);
    const missing = await run(['--hosts', 'nope.json', '--vms', 'vms.json'], { 'vms.json': vms });
    expect(missing.stderr).toContain('--hosts nope.json: cannot read it (ENOENT)');
  });

  it('writes a self-contained HTML report: each host\'s fill per dimension, and every explanation', async () => {
    const r = await run([...args, '--html', 'report.html'], { 'hosts.json': hosts, 'vms.json': [...vms, { id: 'huge', cpu: 64, memoryMiB: 1024 }] });
    const html = readFileSync(join(r.cwd, 'report.html'), 'utf8');
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).not.toMatch(/<script|<link|src=|https?:\/\//); // one file, nothing fetched
    const host = html.slice(html.indexOf('<h3>a <small>'), html.indexOf('</section>', html.indexOf('<h3>a <small>')));
    expect(host.match(/class="dim"/g)).toHaveLength(2); // cpu and memory; no disk or gpu given
    expect(host).toMatch(/<span class="new" style="width:\d+\.\d%">/);
    for (const vm of ['web-1', 'web-2', 'db-1']) expect(html).toContain(`<tr><td>${vm}</td>`);
    expect(html).toContain('huge</td><td>no host can take it (cpu: 2 hosts short of cpu; maintenance: 1 host in maintenance)');
    expect(r.stderr).toContain('Report written to report.html');
  });
});
