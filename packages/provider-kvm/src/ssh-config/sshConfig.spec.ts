import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kvmProviderConfig } from '@novacron/core';
import { resolveHosts } from '../config.js';
import { SshClientConfig } from './sshConfig.js';

function home(config: string, extra: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'nc-sshcfg-'));
  mkdirSync(join(dir, '.ssh'));
  writeFileSync(join(dir, '.ssh', 'config'), config);
  for (const [name, text] of Object.entries(extra)) writeFileSync(join(dir, '.ssh', name), text);
  return dir;
}

const CONFIG = `
Host bastion
  HostName 10.0.0.1
  User ops
  Port 2200
  IdentityFile ~/.ssh/bastion_key

Host hv-*
  ProxyJump bastion
  User root
  IdentityFile %d/.ssh/id_%h

Host hv-1
  HostName 10.0.1.11
  Port 22

Host *
  IdentityFile ~/.ssh/id_ed25519
  UserKnownHostsFile ~/.ssh/known_hosts2
  ServerAliveInterval 20
  ConnectTimeout 7

Include conf.d/*.conf
`;

describe('OpenSSH client config', () => {
  it('computes a host alias as ssh does: first value wins, patterns, tokens, Include', () => {
    const dir = home(CONFIG);
    mkdirSync(join(dir, '.ssh', 'conf.d'));
    writeFileSync(join(dir, '.ssh', 'conf.d', 'late.conf'), 'Host hv-2\n  HostName 10.0.1.12\n');
    const cfg = SshClientConfig.load(join(dir, '.ssh', 'config'), dir, 'me', false)!;
    expect(cfg.lookup('hv-1')).toEqual({
      hostName: '10.0.1.11', user: 'root', port: 22,
      identityFiles: [join(dir, '.ssh', 'id_10.0.1.11'), join(dir, '.ssh', 'id_ed25519')],
      proxyJump: 'bastion', userKnownHostsFile: join(dir, '.ssh', 'known_hosts2'), connectTimeoutMs: 7000, serverAliveIntervalMs: 20000,
    });
    expect(cfg.lookup('hv-2').hostName).toBe('10.0.1.12');
    expect(cfg.lookup('bastion')).toMatchObject({ hostName: '10.0.0.1', user: 'ops', port: 2200, identityFiles: [join(dir, '.ssh', 'bastion_key'), join(dir, '.ssh', 'id_ed25519')] });
  });

  it('resolves fleet hosts through it: an alias address, its ProxyJump chain each hop resolved too; the fleet wins where it speaks', () => {
    const dir = home(CONFIG);
    const config = kvmProviderConfig.parse({ type: 'kvm', hosts: [{ name: 'a', address: 'hv-1' }, { name: 'b', address: 'hv-1', ssh: { user: 'admin', port: 2222 } }, { name: 'c', address: '192.0.2.9' }] });
    const [a, b, c] = resolveHosts('lab', config, { cwd: '/', env: { HOME: dir, USER: 'me' } });
    expect(a!.ssh).toMatchObject({ label: 'a', address: '10.0.1.11', port: 22, user: 'root', auth: { identityFile: join(dir, '.ssh', 'id_10.0.1.11'), knownHosts: join(dir, '.ssh', 'known_hosts2'), connectTimeoutMs: 7000, keepaliveIntervalMs: 20000 } });
    expect(a!.ssh.jump).toMatchObject({ address: '10.0.0.1', port: 2200, user: 'ops', auth: { identityFile: join(dir, '.ssh', 'bastion_key') } });
    expect(a!.ssh.jump!.jump).toBeUndefined();
    expect(b!.ssh).toMatchObject({ address: '10.0.1.11', port: 2222, user: 'admin' });
    expect(c!.ssh).toMatchObject({ address: '192.0.2.9', port: 22, user: 'root' });
    expect(c!.ssh.jump).toBeUndefined();
    // ssh.config: false ignores the file.
    const off = resolveHosts('lab', { ...config, ssh: { config: false } }, { cwd: '/', env: { HOME: dir } });
    expect(off[0]!.ssh).toMatchObject({ address: 'hv-1', port: 22 });
  });

  it('chains a comma-separated ProxyJump, first hop first', () => {
    const dir = home('Host far\n  HostName 10.9.9.9\n  ProxyJump ops@j1:2201,j2\nHost j2\n  HostName 10.0.0.2\n');
    const [h] = resolveHosts('lab', kvmProviderConfig.parse({ type: 'kvm', hosts: [{ name: 'far', address: 'far' }] }), { cwd: '/', env: { HOME: dir } });
    expect(h!.ssh.address).toBe('10.9.9.9');
    expect(h!.ssh.jump).toMatchObject({ address: '10.0.0.2', port: 22 });
    expect(h!.ssh.jump!.jump).toMatchObject({ address: 'j1', port: 2201, user: 'ops' });
  });
});
