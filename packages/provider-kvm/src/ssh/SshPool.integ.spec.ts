// The SSH layer against the testbed's real sshd: pooling, channel cap, host key checks
// (plain, hashed, mismatch, unknown, accept-new), auth failures, unreachable hosts, jump host.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AbortedError, AuthFailedError, InvalidInputError, TimeoutError, UnreachableError } from '@novacron/core';
import { rejection } from '../../../../test/support/rejection.ts';
import { loadTestbed } from '../../../../test/testbed/index.ts';
import { parseJumpHost, type SshAuthSettings, type SshEndpoint } from '../config.js';
import { tcpDialer, type Dialer } from './Dialer.js';
import { SshPool } from './SshPool.js';

const tb = loadTestbed();
const scratch = mkdtempSync(join(tmpdir(), 'nc-ssh-'));
const baseAuth: SshAuthSettings = {
  identityFile: tb.keyFile,
  knownHosts: tb.knownHosts,
  strictHostKeyChecking: 'yes',
  keepaliveIntervalMs: 5_000,
  connectTimeoutMs: 5_000,
  maxChannels: 8,
};
const endpoint = (i: number, auth: Partial<SshAuthSettings> = {}, extra: Partial<SshEndpoint> = {}): SshEndpoint => ({
  label: tb.hosts[i]!.name,
  address: tb.hosts[i]!.address,
  port: 22,
  user: 'root',
  auth: { ...baseAuth, ...auth },
  ...extra,
});

const pools: SshPool[] = [];
const pool = () => {
  const p = new SshPool({ env: {} });
  pools.push(p);
  return p;
};
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

describe('SshPool on the testbed', () => {
  it('runs commands on every host, verified by plain and hashed known_hosts', async () => {
    const p = pool();
    for (const knownHosts of [tb.knownHosts, tb.knownHostsHashed]) {
      for (const [i, host] of tb.hosts.entries()) {
        const r = await p.exec(endpoint(i, { knownHosts }, { address: host.address }), { command: 'hostname' });
        expect(r).toMatchObject({ code: 0, stdout: `${host.name}\n` });
      }
    }
  });

  it('shares one connection among concurrent commands, at most maxChannels channels at once', async () => {
    const p = pool();
    const e = endpoint(0, { maxChannels: 4 });
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => p.exec(e, { command: `sleep 0.2; echo ${i}` })));
    expect(results.map((r) => r.stdout.trim())).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
    expect(p.stats.connectionsOpened).toBe(1);
    expect(p.stats.maxConcurrentChannels).toBe(4);
    expect(p.stats.channelsOpened).toBe(20);
  });

  it('passes stdin and exit codes through', async () => {
    const p = pool();
    const r = await p.exec(endpoint(0), { command: 'wc -c; exit 3', stdin: Buffer.alloc(100_000, 1) });
    expect(r).toMatchObject({ code: 3, stdout: '100000\n' });
  });

  it('refuses a changed host key as AuthFailed, naming the host and both fingerprints', async () => {
    // nc-h1's address recorded with nc-h2's key: what a reinstalled (or impersonated) host looks like.
    const lines = readFileSync(tb.knownHosts, 'utf8').trim().split('\n');
    const h2Key = lines.find((l) => l.startsWith(`${tb.hosts[1]!.address} `))!.split(' ').slice(1).join(' ');
    const file = join(scratch, 'wrong');
    writeFileSync(file, `${tb.hosts[0]!.address} ${h2Key}\n`);
    const error = await rejection(pool().exec(endpoint(0, { knownHosts: file }), { command: 'true' }));
    expect(error).toBeInstanceOf(AuthFailedError);
    expect(error.context.host).toBe('nc-h1');
    expect(error.message).toMatch(/HOST KEY MISMATCH.*offered ssh-ed25519 SHA256:\S+.*known_hosts has ssh-ed25519 SHA256:\S+/);
    expect(error.hint).toMatch(/ssh-keygen -R/);
  });

  it('refuses an unknown host unless accept-new, which records it once', async () => {
    const file = join(scratch, 'empty');
    writeFileSync(file, '');
    const error = await rejection(pool().exec(endpoint(0, { knownHosts: file }), { command: 'true' }));
    expect(error).toBeInstanceOf(AuthFailedError);
    expect(error.message).toMatch(/is not in/);

    const r = await pool().exec(endpoint(0, { knownHosts: file, strictHostKeyChecking: 'accept-new' }), { command: 'hostname' });
    expect(r.stdout.trim()).toBe('nc-h1');
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(1);
    // Now known: strict checking accepts it, and accept-new adds nothing more.
    await pool().exec(endpoint(0, { knownHosts: file }), { command: 'true' });
    await pool().exec(endpoint(0, { knownHosts: file, strictHostKeyChecking: 'accept-new' }), { command: 'true' });
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(1);
    expect(execFileSync('ssh-keygen', ['-F', tb.hosts[0]!.address, '-f', file], { encoding: 'utf8' })).toContain('ssh-ed25519');
  });

  it('reports a key the host does not accept as AuthFailed', async () => {
    const key = join(scratch, 'stranger');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    const error = await rejection(pool().exec(endpoint(0, { identityFile: key }), { command: 'true' }));
    expect(error).toBeInstanceOf(AuthFailedError);
    expect(error.message).toMatch(/nc-h1.*refused SSH authentication as "root"/);
    expect(error.hint).toMatch(/authorized_keys/);
  });

  it('fails fast and retryably on an address nobody answers and on a closed port', async () => {
    const started = Date.now();
    const gone = await rejection(pool().exec({ ...endpoint(0), label: 'ghost', address: '10.77.0.99' }, { command: 'true' }));
    expect(gone).toBeInstanceOf(UnreachableError);
    expect(gone.retryable).toBe(true);
    expect(gone.context.host).toBe('ghost');
    expect(Date.now() - started).toBeLessThan(8_000);

    const closed = await rejection(pool().exec({ ...endpoint(0), port: 2 }, { command: 'true' }));
    expect(closed).toBeInstanceOf(UnreachableError);
    expect(closed.message).toMatch(/ECONNREFUSED/);
    expect(closed.hint).toMatch(/sshd/);
  });

  it('reaches a host through a jump host (forwardOut over the jump connection)', async () => {
    const p = pool();
    const jump = parseJumpHost(`root@${tb.hosts[0]!.address}`, 'root', baseAuth);
    const r = await p.exec(endpoint(1, {}, { jump }), { command: 'hostname' });
    expect(r.stdout.trim()).toBe('nc-h2');
    expect(p.stats.connectionsOpened).toBe(2);
  });

  it('stops waiting on abort and on timeout', async () => {
    const p = pool();
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    const started = Date.now();
    expect(await rejection(p.exec(endpoint(0), { command: 'sleep 20', signal: controller.signal }))).toBeInstanceOf(AbortedError);
    expect(await rejection(p.exec(endpoint(0), { command: 'sleep 20', timeoutMs: 300 }))).toBeInstanceOf(TimeoutError);
    expect(Date.now() - started).toBeLessThan(5_000);
    // The connection is still good afterwards.
    expect((await p.exec(endpoint(0), { command: 'echo ok' })).stdout).toBe('ok\n');
  });

  it('names a missing key file and a missing password variable before dialling', async () => {
    expect(await rejection(pool().exec(endpoint(0, { identityFile: join(scratch, 'nope') }), { command: 'true' }))).toBeInstanceOf(InvalidInputError);
    const { identityFile: _ignored, ...noKey } = baseAuth;
    const e: SshEndpoint = { ...endpoint(0), auth: { ...noKey, passwordEnv: 'NC_TEST_NO_SUCH_VAR' } };
    const error = await rejection(pool().exec(e, { command: 'true' }));
    expect(error.message).toMatch(/NC_TEST_NO_SUCH_VAR/);
  });
  it('authenticates through an SSH agent holding the key', async () => {
    const sock = join(scratch, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 50 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
      execFileSync('ssh-add', ['-q', tb.keyFile], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: 'ignore' });
      const { identityFile: _unused, ...noKey } = baseAuth;
      const r = await pool().exec({ ...endpoint(0), auth: { ...noKey, agent: sock } }, { command: 'hostname' });
      expect(r.stdout.trim()).toBe('nc-h1');
    } finally {
      agent.kill();
    }
  });

  it('dials again after the connection drops, through the Dialer seam', async () => {
    let dials = 0;
    const counting: Dialer = { dial: (e, signal) => (dials++, tcpDialer.dial(e, signal)) };
    const p = new SshPool({ env: {}, dialer: counting });
    pools.push(p);
    const e = endpoint(0);
    await p.exec(e, { command: 'true' });
    (await p.connection(e)).close();
    await new Promise((r) => setTimeout(r, 200));
    expect((await p.exec(e, { command: 'echo again' })).stdout).toBe('again\n');
    expect(dials).toBe(2);
    expect(p.stats.connectionsOpened).toBe(2);
  });
});
