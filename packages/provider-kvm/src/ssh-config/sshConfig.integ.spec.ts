// ~/.ssh/config against the testbed: a host reached by an alias through a ProxyJump via
// another testbed host, with the hashed known_hosts, and what the jump host sees.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AuthFailedError, kvmProviderConfig } from '@novacron/core';
import { loadTestbed } from '../../../../test/testbed/index.ts';
import { KvmProvider } from '../KvmProvider.js';
import { SshPool } from '../ssh/SshPool.js';
import { forwardError } from '../ssh/SshPool.js';

const tb = loadTestbed();
const [h1, , h3] = tb.hosts as [typeof tb.hosts[0], typeof tb.hosts[0], typeof tb.hosts[0]];
const opened: KvmProvider[] = [];
afterAll(async () => Promise.all(opened.map((p) => p.close())));

function homeWith(config: string): string {
  const home = mkdtempSync(join(tmpdir(), 'nc-sshcfg-'));
  mkdirSync(join(home, '.ssh'), { mode: 0o700 });
  writeFileSync(join(home, '.ssh', 'config'), config);
  return home;
}

describe('SSH as users know it, on the testbed', () => {
  it('reaches nc-h3 by an alias whose ProxyJump goes through nc-h1, from ~/.ssh/config alone', { timeout: 120_000 }, async () => {
    const home = homeWith(`
Host tb-h1
  HostName ${h1.address}
  User root

Host tb-h3-via-h1
  HostName ${h3.address}
  ProxyJump tb-h1

Host *
  IdentityFile ${tb.keyFile}
  UserKnownHostsFile ${tb.knownHostsHashed}
  StrictHostKeyChecking yes
`);
    const logs: string[] = [];
    const pool = new SshPool({ env: { HOME: home }, log: (m) => logs.push(m) });
    const config = kvmProviderConfig.parse({ type: 'kvm', hosts: [{ name: h3.name, address: 'tb-h3-via-h1' }], pool: tb.guest.pool, network: tb.guest.network, domainType: tb.domainType });
    const p = new KvmProvider({ name: 'lab', config, cwd: home, env: { HOME: home }, transport: pool });
    opened.push(p);
    const host = p.hosts.get(h3.name)!;
    expect(host.ssh).toMatchObject({ address: h3.address, user: 'root', auth: { identityFile: tb.keyFile, knownHosts: tb.knownHostsHashed } });
    expect(host.ssh.jump).toMatchObject({ address: h1.address, user: 'root' });

    const [inv] = await p.inventory();
    expect(inv).toMatchObject({ name: h3.name, state: 'up' });
    // nc-h3's sshd saw the connection come from nc-h1: the jump was taken.
    const seen = await pool.exec(host.ssh, { command: 'echo "$SSH_CONNECTION"; hostname' });
    expect(seen.stdout.split('\n')[0]!.split(' ')[0]).toBe(h1.address);
    expect(seen.stdout.split('\n')[1]).toBe(h3.hostname);
    expect(logs.some((l) => l.includes(`via ${h1.address}`))).toBe(true);
    expect(pool.stats.connectionsOpened).toBe(2);
  });

  it('names the cause when a key is refused', { timeout: 60_000 }, async () => {
    const home = homeWith(`Host tb\n  HostName ${h1.address}\n  User nobody\n  IdentityFile ${tb.keyFile}\n  UserKnownHostsFile ${tb.knownHosts}\n`);
    const p = new KvmProvider({ name: 'lab', config: kvmProviderConfig.parse({ type: 'kvm', hosts: [{ name: h1.name, address: 'tb' }] }), cwd: home, env: { HOME: home } });
    opened.push(p);
    const error = await p.list('x').then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(AuthFailedError);
    expect((error as AuthFailedError).message).toMatch(/refused SSH authentication as "nobody"/);
  });

  it('names the cause when a non-root user may not manage libvirt', { timeout: 60_000 }, async () => {
    // A user of this machine (the hosts share its /etc/passwd and /home), with the testbed key.
    const user = `ncu${randomBytes(3).toString('hex')}`;
    const added = spawnSync('useradd', ['-m', '-s', '/bin/sh', '-p', '*', user]) // '*': no password, not locked (sshd without PAM refuses locked accounts);
    expect(added.status, added.stderr.toString()).toBe(0);
    try {
      const home = `/home/${user}`;
      mkdirSync(`${home}/.ssh`, { mode: 0o700 });
      writeFileSync(`${home}/.ssh/authorized_keys`, readFileSync(`${tb.keyFile}.pub`), { mode: 0o600 });
      expect(spawnSync('chown', ['-R', `${user}:${user}`, `${home}/.ssh`]).status).toBe(0);
      const p = new KvmProvider({
        name: 'lab',
        config: kvmProviderConfig.parse({ type: 'kvm', hosts: [{ name: h1.name, address: h1.address }], ssh: { user, identityFile: tb.keyFile, knownHosts: tb.knownHosts, config: false } }),
        cwd: process.cwd(),
        env: process.env,
      });
      const error = await p.list('x').then(() => undefined, (e: unknown) => e);
      await p.close(); // the user's session must end before the user can be removed
      // The testbed's hosts run no D-Bus, so libvirt cannot ask polkit: named as a permission problem.
      expect(error, String(error)).toBeInstanceOf(AuthFailedError);
      expect((error as AuthFailedError & { rule?: string }).rule, (error as Error).message).toMatch(/^libvirt-(permission|polkit-unavailable)$/);
      expect((error as AuthFailedError).context.host).toBe(h1.name);
      expect((error as AuthFailedError).hint).toMatch(/not root|may not manage libvirt/);
    } finally {
      for (let i = 0; i < 20 && spawnSync('userdel', ['-r', user]).status === 8; i++) await new Promise((r) => setTimeout(r, 250)); // 8: still logged in
    }
  });

  it('says when a jump host forbids forwarding', () => {
    const e = forwardError(
      { label: 'jump bastion', address: '10.0.0.1', port: 22, user: 'ops' } as never,
      { label: 'hv1', address: '10.0.0.11', port: 22 } as never,
      Object.assign(new Error('(SSH) Channel open failure: administratively prohibited: open failed'), { reason: 1 }),
    );
    expect(e).toBeInstanceOf(AuthFailedError);
    expect(e.hint).toMatch(/AllowTcpForwarding/);
  });
});
