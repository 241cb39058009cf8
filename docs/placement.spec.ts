import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import * as core from '@novacron/core';
import { observe, parseFleetText, plan, ProviderSet, systemClock, type SimProviderConfig } from '@novacron/core';
import { main } from '@novacron/cli';
import { SimProvider } from '@novacron/provider-sim';

/** The examples in docs/placement.md, run as written: the files, the command and its output, the SDK code. */
const doc = readFileSync(join(import.meta.dirname, 'placement.md'), 'utf8');
const blocks = (info: string) => [...doc.matchAll(new RegExp('```' + info + '\\n([\\s\\S]*?)```', 'g'))].map((m) => ({ arg: m[1], text: m[2]! }));

describe('docs/placement.md', () => {
  it('prints what the page shows for the novacron place example, and exits 2', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'novacron-doc-'));
    const files = blocks('json file=(\\S+)');
    expect(files.map((f) => f.arg)).toEqual(['hosts.json', 'vms.json', 'rules.json']);
    for (const f of files) writeFileSync(join(cwd, f.arg!), f.text);
    const [command] = blocks('sh cli()');
    const [output] = blocks('text output()');
    const args = command!.text.trim().split(/\s+/);
    expect(args[0]).toBe('novacron');
    let stdout = '';
    const io = { stdout: { write: (s: string) => ((stdout += s), true) }, stderr: { write: () => true }, stdin: process.stdin, cwd, env: {} };
    const code = await main(args.slice(1), io as never);
    expect(stdout).toBe(output!.text);
    expect(code).toBe(2);
  });

  it('runs the SDK example, each console.log printing what its comment says', async () => {
    const [sdk] = blocks('ts sdk()');
    const body = sdk!.text.replace(/^import .*$/m, '');
    const expected = [...body.matchAll(/console\.log\(.*\); *\/\/ → (.*)$/gm)].map((m) => m[1]!.trim());
    const printed: string[] = [];
    const log = (value: unknown) => printed.push(typeof value === 'string' ? value : inspect(value, { breakLength: Infinity }));
    await new Function('core', 'console', `const { place, rebalance, validatePlacement } = core;\n${body}`)(core, { log });
    expect(printed).toEqual(expected);
  });

  it('plans the fleet example on its sim inventory, every rule met', async () => {
    const [fleetBlock] = blocks('yaml fleet()');
    const fleet = parseFleetText(fleetBlock!.text, 'docs/placement.md');
    const sim = SimProvider.open({ name: 'lab', config: fleet.providers['lab'] as SimProviderConfig, stateDir: mkdtempSync(join(tmpdir(), 'novacron-doc-sim-')), clock: systemClock });
    try {
      const observed = await observe(fleet, new ProviderSet(new Map([['lab', sim]])));
      const p = plan(fleet, observed);
      expect(p.unplaced).toEqual([]);
      const host = (vm: string) => observed.hosts.find((h) => h.id === p.placement.assignments[vm])!;
      const dbs = ['shop-db-0', 'shop-db-1'].map(host);
      expect(dbs.every((h) => h.labels['disk'] === 'ssd')).toBe(true);
      expect(new Set(dbs.map((h) => h.id)).size).toBe(2);
      for (const cache of ['shop-cache-0', 'shop-cache-1']) {
        expect(dbs.map((h) => h.zone)).toContain(host(cache).zone);
        expect(dbs.map((h) => h.id)).not.toContain(host(cache).id);
      }
      const perZone = new Map<string, number>();
      for (let i = 0; i < 6; i++) perZone.set(host(`shop-web-${i}`).zone, (perZone.get(host(`shop-web-${i}`).zone) ?? 0) + 1);
      expect(Math.max(...perZone.values()) - Math.min(...perZone.values(), ...(perZone.size < 3 ? [0] : []))).toBeLessThanOrEqual(1);
    } finally {
      await sim.close();
    }
  });
});
