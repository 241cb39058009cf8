import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as pulumi from '@pulumi/pulumi';
import { describe, expect, it } from 'vitest';
import { layoutFleet, observeProviders } from '../layout.js';
import { createVmHandlers } from '../runtime/handlers.js';
import { createRegistry } from '../runtime/sessions.js';
import { fleetOf, simSpec, tempDir, testSessions, vmInputsOf, withSim } from '../testing/fixtures.js';
import { createVmProvider, vmProvider } from './vmProvider.js';

const ROOT = join(import.meta.dirname, '..', '..', '..', '..');

/** What Pulumi stores in every Vm's state: the provider, serialized as `pulumi.dynamic.Resource` does it. */
async function serialized(provider: pulumi.dynamic.ResourceProvider) {
  return pulumi.runtime.serializeFunction(() => provider, { allowSecrets: true });
}

// Things that must never be in the serialized provider: SDKs and clients, the runtime that
// holds them, and any credential the process could see.
const FORBIDDEN = [
  'SimProvider',
  'ProviderSessions',
  'ProviderRegistry',
  'WorldStore',
  'ssh2',
  '@aws-sdk',
  '@google-cloud',
  'EC2Client',
  'InstancesClient',
  'privateKey',
  'password',
];

describe('the serialized Vm provider', () => {
  it('is a small closure over a loader and an empty token: no SDK, client or secret in its text', async () => {
    process.env['NOVACRON_SSH_PASSWORD_HV1'] = 'env-secret-value';
    try {
      const sf = await serialized(vmProvider);
      expect(sf.containsSecrets).toBe(false);
      expect(sf.text.length).toBeLessThan(6_000);
      expect(sf.text).toContain('RUNTIME: "@novacron/pulumi/runtime"');
      expect(sf.text).toContain('return import(specifier)');
      for (const word of FORBIDDEN) expect(sf.text, word).not.toContain(word);
      expect(sf.text).not.toContain('env-secret-value');
      // The token is the one piece of state, and it is empty.
      expect(sf.text).toMatch(/var __token = \{\};/);
    } finally {
      delete process.env['NOVACRON_SSH_PASSWORD_HV1'];
    }
  });

  it('stays the same after providers were opened and used in this process', async () => {
    const before = (await serialized(vmProvider)).text;
    const fleet = fleetOf(simSpec(tempDir()));
    const layout = layoutFleet(fleet, await observeProviders(fleet, createRegistry(), process.env), 'providers');
    const inProcess = createVmProvider(async () => createVmHandlers({ sessions: testSessions() }));
    const inputs = { ...vmInputsOf(fleet, layout, 'shop-web-0'), credentials: { NOVACRON_SSH_PASSWORD_HV1: 'input-secret-value' } };
    const created = await inProcess.create(inputs);
    expect(created.id).toBe('shop-web-0');
    const after = (await serialized(vmProvider)).text;
    expect(after).toBe(before);
    // The counter-example: a loader that captures the runtime module drags the whole runtime
    // (and with it every client) into the closure, which Pulumi refuses to serialize.
    await expect(serialized(inProcess)).rejects.toThrow(/Error serializing/);
  });

  it('runs as Pulumi runs it: deserialized in a fresh Node process, loading the runtime inside its methods', async () => {
    // The Pulumi host evaluates the text with require-from-string and calls the methods; the
    // runtime resolves from the project's node_modules (here the built workspace packages).
    await promisify(execFile)(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', join(ROOT, 'packages', 'pulumi', 'tsconfig.json')], { cwd: ROOT });
    const dir = tempDir();
    const fleet = fleetOf(simSpec(dir));
    const layout = layoutFleet(fleet, await observeProviders(fleet, createRegistry(), process.env), 'providers');
    const inputs = vmInputsOf(fleet, layout, 'shop-db-0');
    writeFileSync(join(dir, 'provider.js'), (await serialized(vmProvider)).text);
    writeFileSync(join(dir, 'inputs.json'), JSON.stringify(inputs));
    writeFileSync(
      join(dir, 'host.mjs'),
      `import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(process.cwd() + '/node_modules/@pulumi/pulumi/package.json');
const requireFromString = require('require-from-string');
const provider = requireFromString(readFileSync(process.argv[2], 'utf8')).handler();
const inputs = JSON.parse(readFileSync(process.argv[3], 'utf8'));
const check = await provider.check({}, inputs);
const created = await provider.create(check.inputs);
const read = await provider.read(created.id, created.outs);
const diff = await provider.diff(created.id, created.outs, inputs);
await provider.delete(created.id, created.outs);
const gone = await provider.read(created.id, created.outs);
process.stdout.write(JSON.stringify({ failures: check.failures, id: created.id, host: created.outs.host, state: read.props.state, changes: diff.changes, gone }));
`,
    );
    const { stdout } = await promisify(execFile)(process.execPath, [join(dir, 'host.mjs'), join(dir, 'provider.js'), join(dir, 'inputs.json')], { cwd: ROOT });
    expect(JSON.parse(stdout)).toEqual({ failures: [], id: 'shop-db-0', host: layout.vms['shop-db-0']!.host, state: 'running', changes: false, gone: {} });
    expect(await withSim(fleet, (sim) => sim.list('shop'))).toEqual([]);
  }, 180_000);
});
