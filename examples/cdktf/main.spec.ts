import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { App } from 'cdktf';
import { describe, expect, it } from 'vitest';
import { parseFleet, plan } from '@novacron/core';
import { loadSchemas, validateSynth } from '@novacron/cdktf';
import { buildStack, loadInventory, spec } from './main.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const synthesized = (outdir: string) => JSON.parse(readFileSync(join(outdir, 'stacks', 'shop', 'cdk.tf.json'), 'utf8')) as Record<string, Record<string, Record<string, Record<string, unknown>>>>;

describe('examples/cdktf', () => {
  it('synthesizes a stack that fits the provider schemas, placed as the planner places it', () => {
    const outdir = mkdtempSync(join(tmpdir(), 'novacron-example-cdktf-'));
    const app = new App({ outdir });
    const stack = buildStack(app);
    app.synth();
    const doc = synthesized(outdir);

    expect(validateSynth(doc, loadSchemas())).toEqual([]);
    const expected = plan(parseFleet(spec), { hosts: loadInventory(), vms: [], capabilities: {} }).placement.assignments;
    expect(Object.fromEntries(stack.fleet.placement.vms.map((vm) => [vm.name, vm.host.id]))).toEqual(expected);

    expect(doc['provider']!['libvirt']).toHaveLength(2);
    expect(Object.values(doc['resource']!['libvirt_domain']!).map((d) => d['name']).sort()).toEqual(['shop-db-0', 'shop-db-1']);
    const web = Object.values(doc['resource']!['aws_instance']!);
    expect(web.map((i) => i['instance_type'])).toEqual(['t3.medium', 't3.medium', 't3.medium']);
    // Keys and the group's own user data both reach cloud-init, as a MIME multipart archive.
    expect(String(web[0]!['user_data'])).toMatch(/^Content-Type: multipart\/mixed[\s\S]*ssh_authorized_keys[\s\S]*packages: \[nginx\]/);
  });

  it('synthesizes as `cdktf synth` runs it: node main.ts, against the built packages', async () => {
    await promisify(execFile)(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', join(ROOT, 'packages', 'cdktf', 'tsconfig.json')], { cwd: ROOT });
    const outdir = mkdtempSync(join(tmpdir(), 'novacron-example-cdktf-cli-'));
    await promisify(execFile)(process.execPath, ['main.ts'], { cwd: import.meta.dirname, env: { ...process.env, CDKTF_OUTDIR: outdir } });
    const doc = synthesized(outdir);
    expect(validateSynth(doc, loadSchemas())).toEqual([]);
    expect(Object.keys(doc['resource']!).sort()).toEqual(['aws_instance', 'libvirt_cloudinit_disk', 'libvirt_domain', 'libvirt_volume']);
  }, 180_000);

  it('is the complete program docs/cdktf.md shows', () => {
    const docs = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'cdktf.md'), 'utf8');
    const block = /```ts examples\/cdktf\/main\.ts\n([\s\S]*?)```/.exec(docs)?.[1];
    expect(block).toBe(readFileSync(join(import.meta.dirname, 'main.ts'), 'utf8'));
  });
});
