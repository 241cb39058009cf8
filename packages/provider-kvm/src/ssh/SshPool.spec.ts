// The SSH pool against an in-process ssh2 server on loopback: password auth from an
// environment variable (the testbed's sshd allows keys only), `[host]:port` known_hosts
// entries, and the channel cap, with no KVM host involved.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthFailedError } from '@novacron/core';
import type { SshEndpoint } from '../config.js';
import { SshPool } from './SshPool.js';

const dir = mkdtempSync(join(tmpdir(), 'nc-sshd-'));
execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host')]);
const hostPub = readFileSync(join(dir, 'host.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ');
let open = 0;
let maxOpen = 0;

const server = new Server({ hostKeys: [readFileSync(join(dir, 'host'))] }, (client) => {
  client.on('authentication', (ctx) => (ctx.method === 'password' && ctx.username === 'ops' && ctx.password === 's3cret' ? ctx.accept() : ctx.reject(['password'])));
  client.on('ready', () => {
    client.on('session', (accept) => {
      accept().on('exec', (acceptExec, _reject, info) => {
        const stream = acceptExec();
        open++;
        maxOpen = Math.max(maxOpen, open);
        setTimeout(() => {
          open--;
          stream.write(`ran: ${info.command}\n`);
          stream.exit(0);
          stream.end();
        }, 50);
      });
    });
  });
  client.on('error', () => undefined);
});

let port = 0;
beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  writeFileSync(join(dir, 'known_hosts'), `[127.0.0.1]:${port} ${hostPub}\n`);
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const endpoint = (): SshEndpoint => ({
  label: 'local',
  address: '127.0.0.1',
  port,
  user: 'ops',
  auth: { passwordEnv: 'NC_TEST_PASSWORD', knownHosts: join(dir, 'known_hosts'), strictHostKeyChecking: 'yes', keepaliveIntervalMs: 5_000, connectTimeoutMs: 5_000, maxChannels: 3 },
});

describe('SshPool against an in-process sshd', () => {
  it('logs in with the password from the named environment variable, verified by a [host]:port entry', async () => {
    const pool = new SshPool({ env: { NC_TEST_PASSWORD: 's3cret' } });
    try {
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => pool.exec(endpoint(), { command: `job ${i}` })));
      expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 10 }, (_, i) => `ran: job ${i}\n`));
      expect(pool.stats.connectionsOpened).toBe(1);
      expect(maxOpen).toBeLessThanOrEqual(3);
    } finally {
      await pool.close();
    }
  });

  it('reports a wrong password as AuthFailed', async () => {
    const pool = new SshPool({ env: { NC_TEST_PASSWORD: 'wrong' } });
    try {
      await expect(pool.exec(endpoint(), { command: 'x' })).rejects.toBeInstanceOf(AuthFailedError);
    } finally {
      await pool.close();
    }
  });
});
