import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Host } from '@novacron/core';

interface Registered {
  readonly type: string;
  readonly name: string;
  readonly inputs: Record<string, unknown>;
}
const registered: Registered[] = [];
const stateDir = mkdtempSync(join(tmpdir(), 'novacron-example-pulumi-'));
const saved = process.env['NOVACRON_STATE_DIR'];

const valueOf = <T>(output: pulumi.Output<T>): Promise<T> => (output as unknown as { promise(): Promise<T> }).promise();

beforeAll(async () => {
  process.env['NOVACRON_STATE_DIR'] = stateDir;
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        registered.push({ type: args.type, name: args.name, inputs: args.inputs });
        const outs = args.type.endsWith('novacron:Vm') ? { zone: 'zone-a', addresses: ['10.0.0.2'], state: 'running', vmId: `id-${args.name}` } : {};
        return { id: `${args.name}-id`, state: { ...args.inputs, ...outs } };
      },
      call: (args) => args.inputs,
    },
    'novacron-fleet',
    'dev',
    false,
  );
});

afterAll(() => {
  if (saved === undefined) delete process.env['NOVACRON_STATE_DIR'];
  else process.env['NOVACRON_STATE_DIR'] = saved;
});

describe('examples/pulumi under mocks', () => {
  it('runs on the simulated datacenter by default: four VMs, placed, with a snapshot policy', async () => {
    const program = await import('./index.ts');
    const vms = await valueOf(program.vms);
    expect(Object.keys(vms).sort()).toEqual(['shop-db-0', 'shop-web-0', 'shop-web-1', 'shop-web-2']);
    const hosts = Object.values(vms).filter((v) => v.group === 'web').map((v) => v.host);
    expect(new Set(hosts).size).toBe(3); // anti-affinity: one web VM per host
    expect(await valueOf(program.snapshotPolicy)).toMatch(/^incremental backups at "0 3 \* \* \*" \(Europe\/Berlin\)/);
    const placement = await valueOf(program.placement);
    expect(placement['shop-db-0']).toMatch(/^lab\/host-\d+: /);
    const db = registered.find((r) => r.name === 'shop-db-0' && r.type.endsWith('novacron:Vm'))!;
    expect(db.inputs).toMatchObject({ snapshots: { schedule: '0 3 * * *', retention: { keepLast: 3, daily: 7, weekly: 4 } }, migration: { mode: 'live', maxDowntimeMs: 200 } });
  });

  it('runs on KVM hosts declared as KvmHost resources, placed offline from an inventory file', async () => {
    const inventory: Host[] = ['hv1', 'hv2', 'hv3'].map((name) => ({
      id: `lab/${name}`,
      provider: 'lab',
      name,
      zone: 'default',
      labels: {},
      capacity: { cpu: 32, memoryMiB: 131072, diskGiB: 2048, gpu: 0 },
      allocated: { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 },
      overcommit: { cpu: 4, memory: 1, disk: 1 },
      pricePerHour: 0.4,
      state: 'up',
    }));
    const file = join(stateDir, 'inventory.json');
    writeFileSync(file, JSON.stringify(inventory));
    await pulumi.runtime.setAllConfig(
      {
        'novacron-fleet:target': 'kvm',
        'novacron-fleet:hosts': JSON.stringify(['hv1', 'hv2', 'hv3'].map((name, i) => ({ name, address: `10.0.0.${11 + i}` }))),
        'novacron-fleet:hostPassword': 'hunter2',
        'novacron-fleet:inventory': file,
      },
      ['novacron-fleet:hostPassword'],
    );
    vi.resetModules();
    registered.length = 0;
    const program = await import('./index.ts');
    const vms = await valueOf(program.vms);
    expect(Object.values(vms).map((v) => v.host).sort()).toEqual(expect.arrayContaining(['lab/hv1', 'lab/hv2', 'lab/hv3']));
    const web0 = registered.find((r) => r.name === 'shop-web-0' && r.type.endsWith('novacron:Vm'))!;
    expect(web0.inputs['providerConfig']).toMatchObject({ type: 'kvm', hosts: [{ name: 'hv1', address: '10.0.0.11', ssh: { passwordEnv: 'NOVACRON_SSH_PASSWORD_HV1' } }, {}, {}] });
    expect(JSON.stringify(web0.inputs['providerConfig'])).not.toContain('hunter2');
    expect(web0.inputs['credentials']).toEqual({
      [pulumi.runtime.specialSigKey]: pulumi.runtime.specialSecretSig,
      value: { NOVACRON_SSH_PASSWORD_HV1: 'hunter2', NOVACRON_SSH_PASSWORD_HV2: 'hunter2', NOVACRON_SSH_PASSWORD_HV3: 'hunter2' },
    });
  });

  it('is the complete program docs/pulumi.md shows', () => {
    const docs = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'pulumi.md'), 'utf8');
    const block = /```ts examples\/pulumi\/index\.ts\n([\s\S]*?)```/.exec(docs)?.[1];
    expect(block).toBe(readFileSync(join(import.meta.dirname, 'index.ts'), 'utf8'));
  });
});
