import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { FleetSpecError, observe, parseFleet, plan, ProviderSet, validateFleet, type Host } from '@novacron/core';
import { SimProvider } from '@novacron/provider-sim';
import { fleetOf, instantClock, simSpec, tempDir, valueOf } from './testing/fixtures.js';
import { VM_TYPE } from './Vm.js';
import { fleetOutput, VmFleet } from './VmFleet.js';
import { KvmHost } from './KvmHost.js';

interface Registered {
  readonly type: string;
  readonly name: string;
  readonly inputs: Record<string, unknown>;
}
const registered: Registered[] = [];

beforeAll(async () => {
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        registered.push({ type: args.type, name: args.name, inputs: args.inputs });
        if (args.type !== VM_TYPE) return { id: `${args.name}-id`, state: args.inputs };
        // The edge Pulumi's engine would be: echo the inputs with what a provider adds.
        return { id: args.inputs.vmName, state: { ...args.inputs, zone: 'zone-a', addresses: ['10.0.0.9'], state: 'running', vmId: `id-${args.name}` } };
      },
      call: (args) => args.inputs,
    },
    'novacron-test',
    'dev',
    false,
  );
});

const vmsOf = (fleetName: string) => registered.filter((r) => r.type === VM_TYPE && String(r.inputs['fleet']) === fleetName);

async function sdkAssignments(spec: ReturnType<typeof simSpec>) {
  const fleet = parseFleet(spec);
  const [name, config] = Object.entries(fleet.providers)[0]!;
  const sim = SimProvider.open({ name, config: config as never, stateDir: (config as { stateDir: string }).stateDir, clock: instantClock });
  try {
    return plan(fleet, await observe(fleet, new ProviderSet(new Map([[name, sim]])))).placement.assignments;
  } finally {
    await sim.close();
  }
}

function simHost(name: string, zone = 'zone-a'): Host {
  return {
    id: `lab/${name}`,
    provider: 'lab',
    name,
    zone,
    labels: {},
    capacity: { cpu: 8, memoryMiB: 32768, diskGiB: 500, gpu: 0 },
    allocated: { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 },
    overcommit: { cpu: 1, memory: 1, disk: 1 },
    pricePerHour: 0.3,
    state: 'up',
  };
}

describe('VmFleet under Pulumi mocks', () => {
  it('places the fleet with the core engine (as the SDK does) and makes one Vm per VM', async () => {
    const spec = simSpec(tempDir());
    const expected = await sdkAssignments(spec);
    const fleet = new VmFleet('shop', { spec });
    const placement = await valueOf(fleet.placement);
    expect(Object.fromEntries(Object.entries(placement.vms).map(([vm, p]) => [vm, p.host]))).toEqual(expected);
    expect(placement.inventory).toBe('providers');
    expect(placement.vms['shop-db-0']!.reason).toMatch(/first-fit|score|host/);

    const vms = await valueOf(fleet.vms);
    expect(Object.keys(vms).sort()).toEqual(['shop-db-0', 'shop-web-0', 'shop-web-1', 'shop-web-2']);
    expect(vms['shop-web-0']).toMatchObject({ group: 'web', provider: 'lab', host: expected['shop-web-0'], addresses: ['10.0.0.9'], state: 'running' });

    const web0 = vmsOf('shop').find((r) => r.name === 'shop-web-0')!;
    expect(web0.inputs).toMatchObject({
      fleet: 'shop',
      group: 'web',
      index: 0,
      vmName: 'shop-web-0',
      providerName: 'lab',
      host: expected['shop-web-0'],
      resources: { cpu: 2, memoryMiB: 4096, diskGiB: 10, gpu: 0 },
      image: 'debian-12',
      capabilities: expect.objectContaining({ resize: true }),
    });
    expect(typeof web0.inputs['__provider']).toBe('string');
  });

  it('fails a plain invalid spec at construction with the same path-named problems as the CLI', () => {
    const spec = simSpec(tempDir(), {
      groups: { web: { count: 2, cpu: 0, memory: '4GiB', image: 'debian-12', placement: { zones: [] } } as never, 'Bad_Name': { count: 1, cpu: 1, memory: 512, image: 'x' } as never },
    });
    const cli = validateFleet(spec);
    expect(cli.ok).toBe(false);
    let thrown: unknown;
    try {
      new VmFleet('bad', { spec });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(FleetSpecError);
    const problems = (thrown as FleetSpecError).problems;
    expect(problems).toEqual(cli.ok ? [] : cli.error.problems);
    expect(problems.map((p) => p.path)).toEqual(expect.arrayContaining(['groups.Bad_Name', 'groups.web.cpu', 'groups.web.placement.zones']));
  });

  it('fails a spec with outputs in it as soon as they resolve, with the same problems', async () => {
    // The Output VmFleet derives its children from; a failed one fails their registration
    // (and so the preview), which under mocks would surface as unhandled rejections.
    const spec = { ...simSpec(tempDir()), groups: { web: { count: 1, cpu: 2, memory: pulumi.output('lots'), image: 'debian-12' } } };
    const error = await valueOf(fleetOutput(spec, 'VmFleet "late"')).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(FleetSpecError);
    const cli = validateFleet({ ...spec, groups: { web: { ...spec.groups.web, memory: 'lots' } } });
    expect((error as FleetSpecError).problems).toEqual(cli.ok ? [] : cli.error.problems);
    expect((error as FleetSpecError).problems).toEqual([{ path: 'groups.web.memory', message: expect.stringContaining('not a size') }]);
  });

  it('asks for plain names and counts, because they decide which resources exist', () => {
    const spec = { ...simSpec(tempDir()), groups: { web: { count: pulumi.output(2) as unknown as number, cpu: 2, memory: '4GiB', image: 'debian-12' } } };
    expect(() => new VmFleet('counted', { spec })).toThrow(/groups\.web\.count: must be a plain value/);
  });

  it('places with a static inventory (an offline preview) exactly as the planner does with those hosts', async () => {
    const inventory: Host[] = [simHost('h1', 'zone-a'), simHost('h2', 'zone-a'), simHost('h3', 'zone-b')];
    const spec = simSpec(tempDir(), { name: 'offline' });
    const expected = plan(fleetOf(spec), { hosts: inventory, vms: [], capabilities: {} }).placement.assignments;
    const fleet = new VmFleet('offline', { spec, inventory });
    const placement = await valueOf(fleet.placement);
    expect(placement.inventory).toBe('static');
    expect(Object.fromEntries(Object.entries(placement.vms).map(([vm, p]) => [vm, p.host]))).toEqual(expected);
  });

  it('refuses a fleet that does not fit, naming each VM that fits nowhere', () => {
    const inventory = [simHost('h1')];
    const spec = simSpec(tempDir(), { name: 'huge', groups: { big: { count: 2, cpu: 64, memory: '512GiB', image: 'debian-12' } } });
    expect(() => new VmFleet('huge', { spec, inventory })).toThrow(/2 VM\(s\) fit nowhere[\s\S]*huge-big-0: no host can take it/);
  });

  it('keeps cloud-init data and credentials secret', async () => {
    const host = new KvmHost('hv1', { address: '10.0.0.11', ssh: { user: 'root' }, password: pulumi.secret('hunter2') });
    const spec = simSpec(tempDir(), {
      name: 'secret',
      groups: { web: { count: 1, cpu: 1, memory: 512, image: 'debian-12', cloudInit: { userData: '#cloud-config\npassword: s3cret' } } },
    });
    const fleet = new VmFleet('secret', { spec, credentials: [host.credentials] });
    const vm = fleet.vmResources['secret-web-0']!;
    await valueOf(fleet.placement);
    expect(await pulumi.isSecret(vm.host)).toBe(false);
    const inputs = vmsOf('secret')[0]!.inputs;
    // Mocks see inputs as the engine would store them: secrets wrapped, never plain.
    const secret = (value: unknown) => ({ [pulumi.runtime.specialSigKey]: pulumi.runtime.specialSecretSig, value });
    expect(inputs['credentials']).toEqual(secret({ NOVACRON_SSH_PASSWORD_HV1: 'hunter2' }));
    expect(inputs['cloudInit']).toEqual(secret({ userData: '#cloud-config\npassword: s3cret', onChange: 'ignore' }));
    expect(JSON.stringify(inputs['__provider'])).not.toContain('hunter2');
    expect(JSON.stringify(inputs['__provider'])).not.toContain('s3cret');
  });
});
