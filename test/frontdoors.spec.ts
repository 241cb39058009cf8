/**
 * One declaration, three front doors: the same fleet is placed on the same hosts by the SDK
 * (and the CLI built on it), by a Pulumi program and by a CDKTF stack, and an invalid fleet
 * fails in all of them with the same path-named problems.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { Testing } from 'cdktf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { FleetSpecError, observe, parseFleet, plan, ProviderRegistry, systemClock, type FleetSpecInput, type Host, type SpecProblem } from '@novacron/core';
import { providerModule as simModule } from '@novacron/provider-sim';
import { VmFleet as PulumiFleet } from '@novacron/pulumi';
import { VmFleet as CdktfFleet } from '@novacron/cdktf';
import { buildCli, ROOT, runCli } from './support/cli.js';

type Assignments = Record<string, string>;

const stateDir = mkdtempSync(join(tmpdir(), 'novacron-frontdoors-'));
const saved = process.env['NOVACRON_STATE_DIR'];

beforeAll(async () => {
  process.env['NOVACRON_STATE_DIR'] = stateDir;
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => ({ id: `${args.name}-id`, state: { ...args.inputs, zone: 'z', addresses: [], state: 'running', vmId: args.name } }),
      call: (args) => args.inputs,
    },
    'frontdoors',
    'test',
    true,
  );
  await buildCli();
}, 300_000);

afterAll(() => {
  if (saved === undefined) delete process.env['NOVACRON_STATE_DIR'];
  else process.env['NOVACRON_STATE_DIR'] = saved;
});

const valueOf = <T>(output: pulumi.Output<T>): Promise<T> => (output as unknown as { promise(): Promise<T> }).promise();

/** The SDK: the providers' inventory, the core's planner. Returns the hosts it saw too. */
async function sdk(spec: FleetSpecInput, inventory?: readonly Host[]): Promise<{ assignments: Assignments; hosts: readonly Host[] }> {
  const fleet = parseFleet(spec);
  if (inventory) return { assignments: { ...plan(fleet, { hosts: inventory, vms: [], capabilities: {} }).placement.assignments }, hosts: inventory };
  const providers = await new ProviderRegistry().register(simModule).open(fleet, { cwd: ROOT, env: process.env, clock: systemClock });
  try {
    const observed = await observe(fleet, providers);
    return { assignments: { ...plan(fleet, observed).placement.assignments }, hosts: observed.hosts };
  } finally {
    await providers.close();
  }
}

async function viaPulumi(name: string, spec: FleetSpecInput, inventory?: readonly Host[]): Promise<Assignments> {
  const fleet = new PulumiFleet(name, { spec: spec as never, ...(inventory ? { inventory } : {}) });
  const layout = await valueOf(fleet.placement);
  return Object.fromEntries(Object.entries(layout.vms).map(([vm, p]) => [vm, p.host]));
}

function viaCdktf(spec: FleetSpecInput, inventory: readonly Host[]): Assignments {
  let fleet: CdktfFleet | undefined;
  Testing.synthScope((scope) => {
    fleet = new CdktfFleet(scope, 'fleet', { spec, inventory });
  });
  return Object.fromEntries(fleet!.placement.vms.map((vm) => [vm.name, vm.host.id]));
}

const zero = { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 };
const kvmHost = (name: string, zone: string, cpu: number, memoryMiB: number, labels: Record<string, string> = {}): Host => ({
  id: `lab/${name}`, provider: 'lab', name, zone, labels, capacity: { cpu, memoryMiB, diskGiB: 4096, gpu: 0 }, allocated: zero, overcommit: { cpu: 4, memory: 1, disk: 1 }, pricePerHour: 0.4, state: 'up',
});
const cloudZone = (provider: string, zone: string, types: Host['instanceTypes']): Host => ({
  id: `${provider}/${zone}`, provider, name: zone, zone, labels: {}, capacity: { cpu: 1e5, memoryMiB: 1e8, diskGiB: 1e6, gpu: 0 }, allocated: zero, overcommit: { cpu: 1, memory: 1, disk: 1 }, pricePerHour: 0, state: 'up', instanceTypes: types!,
});

describe('the same fleet, the same placement, from every front door', () => {
  it('the quickstart fleet on the simulated datacenter: SDK, CLI, Pulumi (providers asked) and CDKTF (their inventory)', async () => {
    const file = join(ROOT, 'examples', 'quickstart', 'fleet.yaml');
    const spec = parseYaml(readFileSync(file, 'utf8')) as FleetSpecInput;

    const fromSdk = await sdk(spec);
    const cli = await runCli(['plan', '-f', file, '--json'], { cwd: ROOT, env: { NOVACRON_STATE_DIR: stateDir } });
    expect(cli.code).toBe(0);
    const explanations = (JSON.parse(cli.stdout) as { placement: { explanations: Record<string, { host: string }> } }).placement.explanations;
    const fromCli = Object.fromEntries(Object.entries(explanations).map(([vm, e]) => [vm, e.host]));
    const fromPulumi = await viaPulumi('quickstart', spec);
    const fromCdktf = viaCdktf(spec, fromSdk.hosts);

    expect(Object.keys(fromSdk.assignments)).toHaveLength(9);
    expect(fromCli).toEqual(fromSdk.assignments);
    expect(fromPulumi).toEqual(fromSdk.assignments);
    expect(fromCdktf).toEqual(fromSdk.assignments);
  }, 120_000);

  it('a fleet across KVM hosts, EC2 and GCE on a given inventory: SDK, Pulumi and CDKTF', async () => {
    const spec: FleetSpecInput = {
      name: 'multi',
      placement: { seed: 7 },
      providers: {
        lab: { type: 'kvm', hosts: [{ name: 'hv1', address: '10.0.0.11' }, { name: 'hv2', address: '10.0.0.12' }, { name: 'hv3', address: '10.0.0.13' }], images: { 'debian-12': { url: 'https://example.com/debian-12.qcow2' } } },
        east: { type: 'aws', region: 'us-east-1', images: { 'debian-12': 'ami-0123456789abcdef0' } },
        west: { type: 'gcp', project: 'p', zones: ['europe-west1-b'], images: { 'debian-12': 'projects/debian-cloud/global/images/family/debian-12' } },
      },
      groups: {
        db: { count: 3, cpu: 8, memory: '48GiB', image: 'debian-12', placement: { providers: ['lab'], hostLabels: { ssd: 'true' }, maxPerHost: 1 } },
        web: { count: 5, cpu: 2, memory: '4GiB', image: 'debian-12' },
        batch: { count: 4, cpu: 4, memory: '16GiB', image: 'debian-12', placement: { providers: ['east'] } },
        edge: { count: 2, cpu: 2, memory: '2GiB', image: 'debian-12', placement: { providers: ['west'] } },
      },
    };
    const inventory: Host[] = [
      kvmHost('hv1', 'rack-1', 32, 131072, { ssd: 'true' }),
      kvmHost('hv2', 'rack-1', 32, 131072, { ssd: 'true' }),
      kvmHost('hv3', 'rack-2', 16, 98304, { ssd: 'true' }),
      cloudZone('east', 'us-east-1a', [{ name: 't3.medium', cpu: 2, memoryMiB: 4096, pricePerHour: 0.0416 }, { name: 'm6i.xlarge', cpu: 4, memoryMiB: 16384, pricePerHour: 0.192 }]),
      cloudZone('east', 'us-east-1b', [{ name: 't3.medium', cpu: 2, memoryMiB: 4096, pricePerHour: 0.0416 }, { name: 'm6i.xlarge', cpu: 4, memoryMiB: 16384, pricePerHour: 0.192 }]),
      cloudZone('west', 'europe-west1-b', [{ name: 'e2-medium', cpu: 2, memoryMiB: 4096, pricePerHour: 0.0335 }, { name: 'e2-standard-4', cpu: 4, memoryMiB: 16384, pricePerHour: 0.134 }]),
    ];
    const fromSdk = (await sdk(spec, inventory)).assignments;
    expect(Object.keys(fromSdk)).toHaveLength(14);
    expect(new Set(Object.values(fromSdk).map((h) => h.split('/')[0]))).toEqual(new Set(['lab', 'east', 'west']));
    expect(await viaPulumi('multi', spec, inventory)).toEqual(fromSdk);
    expect(viaCdktf(spec, inventory)).toEqual(fromSdk);
  });
});

describe('an invalid fleet fails the same way everywhere', () => {
  it('with the same path-named problems from the CLI, the SDK, Pulumi and CDKTF', async () => {
    const spec = {
      name: 'shop',
      providers: { lab: { type: 'sim', hosts: [{ name: 'h1', cpu: 8, memory: '16GiB' }] } },
      groups: { web: { count: 2, cpu: 0, memory: '4 lots', image: 'debian-12', placment: {} } },
    } as unknown as FleetSpecInput;
    const file = join(stateDir, 'bad.json');
    writeFileSync(file, JSON.stringify(spec, null, 2));
    const strip = (problems: readonly SpecProblem[]) => problems.map(({ path, message }) => ({ path, message }));
    const caught = (fn: () => unknown): SpecProblem[] => {
      try {
        fn();
      } catch (error) {
        expect(error).toBeInstanceOf(FleetSpecError);
        return strip((error as FleetSpecError).problems);
      }
      throw new Error('no error');
    };

    const cli = await runCli(['plan', '-f', file, '--json'], { cwd: ROOT, env: { NOVACRON_STATE_DIR: stateDir } });
    expect(cli.code).toBe(2);
    const fromCli = strip((JSON.parse(cli.stdout) as { error: { problems: SpecProblem[] } }).error.problems);
    expect(fromCli.map((p) => p.path)).toEqual(['groups.web.cpu', 'groups.web.memory', 'groups.web.placment']);

    expect(caught(() => parseFleet(spec))).toEqual(fromCli);
    expect(caught(() => new PulumiFleet('bad', { spec: spec as never }))).toEqual(fromCli);
    expect(caught(() => viaCdktf(spec, []))).toEqual(fromCli);
  }, 60_000);
});
