import { describe, expect, it } from 'vitest';
import { InvalidInputError, kvmProviderConfig } from '@novacron/core';
import { parseJumpHost, resolveHosts } from './config.js';

const env = { cwd: '/work', env: { HOME: '/home/ops', SSH_AUTH_SOCK: '/run/agent.sock' } };

describe('host resolution', () => {
  it('merges provider and host ssh settings, applies defaults and resolves paths', () => {
    const config = kvmProviderConfig.parse({
      type: 'kvm',
      ssh: { identityFile: '~/.ssh/id_ed25519', knownHosts: 'keys/known_hosts', agent: true },
      hosts: [
        { name: 'hv1', address: '10.0.0.1' },
        { name: 'hv2', address: '10.0.0.2', pool: 'fast', ssh: { port: 2222, user: 'ops', jumpHost: 'bastion.example:2200', strictHostKeyChecking: 'accept-new' } },
      ],
    });
    const [a, b] = resolveHosts('lab', config, env);
    expect(a!.ssh).toMatchObject({ label: 'hv1', address: '10.0.0.1', port: 22, user: 'root' });
    expect(a!.ssh.auth).toMatchObject({ identityFile: '/home/ops/.ssh/id_ed25519', knownHosts: '/work/keys/known_hosts', agent: '/run/agent.sock', strictHostKeyChecking: 'yes', maxChannels: 8, keepaliveIntervalMs: 15_000 });
    expect(a!.pool).toBe('default');
    expect(b!.ssh).toMatchObject({ port: 2222, user: 'ops', jump: { address: 'bastion.example', port: 2200, user: 'ops' } });
    expect(b!.ssh.auth.strictHostKeyChecking).toBe('accept-new');
    expect(b!.pool).toBe('fast');
  });

  it('refuses duplicate hosts, bad pool names and an agent without a socket', () => {
    const dup = kvmProviderConfig.parse({ type: 'kvm', hosts: [{ name: 'a', address: 'x' }, { name: 'a', address: 'y' }] });
    expect(() => resolveHosts('lab', dup, env)).toThrow(InvalidInputError);
    const badPool = kvmProviderConfig.parse({ type: 'kvm', pool: '../etc', hosts: [{ name: 'a', address: 'x' }] });
    expect(() => resolveHosts('lab', badPool, env)).toThrow(/storage pool/);
    const agent = kvmProviderConfig.parse({ type: 'kvm', ssh: { agent: true }, hosts: [{ name: 'a', address: 'x' }] });
    expect(() => resolveHosts('lab', agent, { cwd: '/', env: {} })).toThrow(/SSH_AUTH_SOCK/);
  });

  it('parses jump hosts', () => {
    const auth = resolveHosts('lab', kvmProviderConfig.parse({ type: 'kvm', hosts: [{ name: 'a', address: 'x' }] }), env)[0]!.ssh.auth;
    expect(parseJumpHost('bastion', 'root', auth)).toMatchObject({ address: 'bastion', port: 22, user: 'root' });
    expect(parseJumpHost('me@10.0.0.9:2022', 'root', auth)).toMatchObject({ address: '10.0.0.9', port: 2022, user: 'me' });
    expect(parseJumpHost('[fd00::1]:2022', 'root', auth)).toMatchObject({ address: 'fd00::1', port: 2022 });
    expect(() => parseJumpHost('h:99999', 'root', auth)).toThrow();
  });
});
