import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { FleetSpecError } from '@novacron/core';
import { KvmHost, libvirtUri } from './KvmHost.js';
import { SnapshotPolicy } from './SnapshotPolicy.js';
import { valueOf } from './testing/fixtures.js';

beforeAll(async () => {
  await pulumi.runtime.setMocks({ newResource: (args) => ({ id: `${args.name}-id`, state: args.inputs }), call: (args) => args.inputs }, 'novacron-test', 'dev', false);
});

describe('KvmHost', () => {
  it('gives a host entry for the fleet spec that names the password variable but never holds the password', async () => {
    const host = new KvmHost('hv-1', { address: '10.0.0.11', zone: 'rack-1', ssh: { user: 'root', port: 2222, identityFile: '/keys/id', knownHosts: '/keys/known' }, password: pulumi.secret('hunter2') });
    const config = await valueOf(host.hostConfig);
    expect(config).toMatchObject({ name: 'hv-1', address: '10.0.0.11', zone: 'rack-1', ssh: { user: 'root', port: 2222, passwordEnv: 'NOVACRON_SSH_PASSWORD_HV_1' } });
    expect(JSON.stringify(config)).not.toContain('hunter2');
    expect(await pulumi.isSecret(host.hostConfig)).toBe(false);
    expect(await valueOf(host.uri)).toBe('qemu+ssh://root@10.0.0.11:2222/system?keyfile=%2Fkeys%2Fid&knownhosts=%2Fkeys%2Fknown');
    expect(await pulumi.isSecret(host.credentials)).toBe(true);
    expect(await valueOf(host.credentials)).toEqual({ NOVACRON_SSH_PASSWORD_HV_1: 'hunter2' });
  });

  it('validates the host with the fleet model', () => {
    expect(() => new KvmHost('Not_A_Name', { address: 'x' })).toThrow(FleetSpecError);
    let error: unknown;
    try {
      new KvmHost('hv-2', { address: 'h', ssh: { port: 70000 } });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FleetSpecError);
    expect((error as FleetSpecError).problems).toEqual([{ path: 'ssh.port', message: expect.stringContaining('65535') }]);
  });

  it('builds a libvirt URI without secrets', () => {
    expect(libvirtUri({ address: 'kvm1.example.com' })).toBe('qemu+ssh://kvm1.example.com/system');
  });
});

describe('SnapshotPolicy', () => {
  it('normalises the policy with the model defaults and describes it', async () => {
    const policy = new SnapshotPolicy('nightly', { schedule: '0 3 * * *', timezone: 'Europe/Berlin', retention: { keepLast: 3, daily: 7 } });
    expect(await valueOf(policy.policy)).toMatchObject({ kind: 'backup', incremental: true, fullEvery: 7, retention: { keepLast: 3, daily: 7, weekly: 0 } });
    expect(await valueOf(policy.summary)).toBe('incremental backups at "0 3 * * *" (Europe/Berlin), full every 7; keep last 3, daily 7');
  });

  it('fails at once with path-named problems', () => {
    let error: unknown;
    try {
      new SnapshotPolicy('broken', { schedule: 'daily', retention: {} });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FleetSpecError);
    expect((error as FleetSpecError).problems.map((p) => p.path)).toEqual(['retention', 'schedule']);
  });
});
