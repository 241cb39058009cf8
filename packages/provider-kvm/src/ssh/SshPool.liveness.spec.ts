// How the SSH pool notices a host that stops talking, with no KVM host involved:
// - a pooled connection whose server goes silent (a frozen TCP relay between the pool and an
//   in-process ssh2 server: a partition, or a wedged sshd) dies by keepalive within about
//   keepaliveInterval × (keepaliveCountMax + 1), fails the waiting command as Unreachable, and
//   is dropped from the pool so the next command dials again;
// - a listener that accepts TCP and never speaks SSH fails the command within connectTimeout.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server } from 'ssh2';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { kvmProviderConfig, UnreachableError } from '@novacron/core';
import { rejection } from '../../../../test/support/rejection.ts';
import { resolveHosts, type SshEndpoint } from '../config.js';
import { SshPool } from './SshPool.js';

const dir = mkdtempSync(join(tmpdir(), 'nc-sshd-live-'));
execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host')]);
const hostPub = readFileSync(join(dir, 'host.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ');
const knownHosts = join(dir, 'known_hosts');

/** The ssh2 server: password auth, and every command answered at once. */
const sshd = new Server({ hostKeys: [readFileSync(join(dir, 'host'))] }, (client) => {
  client.on('authentication', (ctx) => (ctx.method === 'password' && ctx.username === 'ops' && ctx.password === 's3cret' ? ctx.accept() : ctx.reject(['password'])));
  client.on('ready', () => {
    client.on('session', (accept) => {
      accept().on('exec', (acceptExec, _reject, info) => {
        const stream = acceptExec();
        stream.write(`ran: ${info.command}\n`);
        stream.exit(0);
        stream.end();
      });
    });
  });
  client.on('error', () => undefined);
});

/**
 * A TCP relay to the ssh2 server. `freeze()` stops every relayed connection open now from
 * passing bytes either way while keeping the sockets open: to the client the server has gone
 * silent, with no FIN or RST to tell it so. Connections made afterwards relay normally.
 */
class Relay {
  readonly #live: { client: Socket; server: Socket }[] = [];
  readonly #frozen: { client: Socket; server: Socket }[] = [];
  readonly server: NetServer;
  constructor(targetPort: () => number) {
    this.server = createServer((client) => {
      const server = netConnect({ host: '127.0.0.1', port: targetPort() });
      client.pipe(server);
      server.pipe(client);
      const drop = () => {
        client.destroy();
        server.destroy();
      };
      client.on('error', drop).on('close', drop);
      server.on('error', drop).on('close', drop);
      this.#live.push({ client, server });
    });
  }
  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }
  /** Stops relaying: what either side sends from now on is read and dropped. */
  freeze(): void {
    for (const pair of this.#live.splice(0)) {
      pair.client.unpipe(pair.server);
      pair.server.unpipe(pair.client);
      // Unpiped streams stop flowing; read on (and drop it all), so a hang-up is still seen.
      pair.client.on('data', () => undefined).resume();
      pair.server.on('data', () => undefined).resume();
      this.#frozen.push(pair);
    }
  }
  /** Frozen connections whose pool side has not hung up yet. */
  get frozenOpen(): number {
    return this.#frozen.filter((p) => !p.client.destroyed && !p.client.readableEnded).length;
  }
  close(): Promise<void> {
    for (const p of [...this.#live, ...this.#frozen]) {
      p.client.destroy();
      p.server.destroy();
    }
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const relay = new Relay(() => (sshd.address() as AddressInfo).port);
/** Accepts TCP and never says a word (not even the SSH banner). */
const mute = createServer(() => undefined);
const muteSockets: Socket[] = [];
mute.on('connection', (s) => {
  muteSockets.push(s);
  s.on('error', () => undefined);
  s.resume(); // reads (and drops) the client's banner, so its hang-up is seen
});

beforeAll(async () => {
  await new Promise<void>((resolve) => sshd.listen(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => relay.server.listen(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve));
  writeFileSync(knownHosts, `[127.0.0.1]:${relay.port} ${hostPub}\n[127.0.0.1]:${(mute.address() as AddressInfo).port} ${hostPub}\n`);
});
afterAll(async () => {
  await relay.close();
  for (const s of muteSockets) s.destroy();
  await new Promise<void>((resolve) => mute.close(() => resolve()));
  await new Promise<void>((resolve) => sshd.close(() => resolve()));
});

const pools: SshPool[] = [];
afterEach(async () => {
  // Bounded: a pool still waiting on a dial that never ends would hold the file to the hook timeout.
  await within(Promise.all(pools.splice(0).map((p) => p.close())), 5_000, 'closing the pools');
});
const pool = () => {
  const p = new SshPool({ env: { NC_TEST_PASSWORD: 's3cret' } });
  pools.push(p);
  return p;
};

/** The endpoint as the provider resolves it from a fleet's `ssh` settings. */
function endpointFromConfig(name: string, port: number, ssh: { keepaliveInterval?: string; connectTimeout?: string }): SshEndpoint {
  const config = kvmProviderConfig.parse({
    type: 'kvm',
    hosts: [{ name, address: '127.0.0.1' }],
    ssh: { user: 'ops', port, passwordEnv: 'NC_TEST_PASSWORD', knownHosts, strictHostKeyChecking: 'yes', config: false, ...ssh },
  });
  return resolveHosts('lab', config, { cwd: dir, env: { HOME: dir } })[0]!.ssh;
}

/** Settles `promise`, or fails the test with a clear message after `ms` (instead of the test timeout). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

// ssh2 sends a keepalive every interval and gives up when one more than keepaliveCountMax (3,
// as SshPool sets it) went unanswered: 3 to 4 intervals after the server went silent.
const KEEPALIVE_MS = 250;
const COUNT_MAX = 3;

describe('SshPool: a pooled connection whose server goes silent', () => {
  it('is found dead by keepalive within about keepaliveInterval × keepaliveCountMax, fails the command as Unreachable, and is redialled', async () => {
    const e = endpointFromConfig('quiet', relay.port, { keepaliveInterval: `${KEEPALIVE_MS}ms`, connectTimeout: '5s' });
    expect(e.auth.keepaliveIntervalMs).toBe(KEEPALIVE_MS);
    const p = pool();

    // A healthy connection first: it is pooled, and idle keepalives are answered.
    expect(await p.exec(e, { command: 'first' })).toMatchObject({ code: 0, stdout: 'ran: first\n' });
    await new Promise((r) => setTimeout(r, KEEPALIVE_MS * (COUNT_MAX + 2)));
    expect(await p.exec(e, { command: 'still there' })).toMatchObject({ code: 0, stdout: 'ran: still there\n' });
    expect(p.stats.connectionsOpened).toBe(1);

    // The server goes silent: no answers, no FIN, no RST. The next command waits on a channel
    // that will never open, so only the keepalive can end it (it has no timeout of its own).
    relay.freeze();
    const started = Date.now();
    const error = await within(rejection(p.exec(e, { command: 'into the void' })), KEEPALIVE_MS * (COUNT_MAX + 1) + 2_000, 'the command on a silent connection');
    const elapsed = Date.now() - started;
    expect(error).toBeInstanceOf(UnreachableError);
    expect(error.context.host).toBe('quiet');
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/^quiet: 127\.0\.0\.1:\d+: Keepalive timeout/);
    // Not before the keepalives could have gone unanswered, and not much after.
    expect(elapsed).toBeGreaterThanOrEqual(KEEPALIVE_MS * (COUNT_MAX - 1));
    expect(elapsed).toBeLessThan(KEEPALIVE_MS * (COUNT_MAX + 1) + 1_000);
    // The pool's side of the dead connection is closed, not left open.
    await within(waitFor(() => relay.frozenOpen === 0), 2_000, 'closing the dead socket');

    // Dropped from the pool: the next command dials a new connection and runs.
    expect(await within(p.exec(e, { command: 'again' }), 5_000, 'the command after the reconnect')).toMatchObject({ code: 0, stdout: 'ran: again\n' });
    expect(p.stats.connectionsOpened).toBe(2);
  });

  it('fails a command already running on the connection when it goes silent', async () => {
    const e = endpointFromConfig('quiet', relay.port, { keepaliveInterval: `${KEEPALIVE_MS}ms`, connectTimeout: '5s' });
    const p = pool();
    const connection = await p.connection(e);
    expect(await connection.exec({ command: 'warm' })).toMatchObject({ stdout: 'ran: warm\n' });
    // A command is in flight (its channel request sent) as the relay freezes.
    const pending = rejection(connection.exec({ command: 'in flight' }));
    relay.freeze();
    const started = Date.now();
    const error = await within(pending, KEEPALIVE_MS * (COUNT_MAX + 1) + 2_000, 'the in-flight command');
    expect(error).toBeInstanceOf(UnreachableError);
    expect(error.context.host).toBe('quiet');
    expect(Date.now() - started).toBeLessThan(KEEPALIVE_MS * (COUNT_MAX + 1) + 1_000);
    expect(connection.alive).toBe(false);
    // The pool no longer hands out the dead connection.
    const next = await p.connection(e);
    expect(next).not.toBe(connection);
    expect(next.alive).toBe(true);
  });
});

describe('SshPool: a host that accepts TCP and never speaks SSH', () => {
  it('fails the command as Unreachable, naming the host, within connectTimeout', async () => {
    const mutePort = (mute.address() as AddressInfo).port;
    const e = endpointFromConfig('mute-host', mutePort, { connectTimeout: '400ms' });
    expect(e.auth.connectTimeoutMs).toBe(400);
    const before = muteSockets.length;
    const started = Date.now();
    const error = await within(rejection(pool().exec(e, { command: 'true' })), 3_000, 'the command to a mute host');
    const elapsed = Date.now() - started;
    expect(error).toBeInstanceOf(UnreachableError);
    expect(error.context.host).toBe('mute-host');
    expect(error.message).toContain(`mute-host: 127.0.0.1:${mutePort}`);
    expect(error.message).toMatch(/handshake/i);
    expect(error.retryable).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(350);
    expect(elapsed).toBeLessThan(400 + 1_000);
    // The TCP connection was made (so it was the SSH handshake that stalled) and then closed.
    // Closing it makes ssh2 emit a second 'error' ("Connection lost before handshake"): before
    // SshPool kept a listener for it, that surfaced here as an uncaught exception.
    expect(muteSockets.length).toBe(before + 1);
    await within(waitFor(() => muteSockets[before]!.readableEnded || muteSockets[before]!.destroyed), 2_000, 'closing the stalled socket');
  });
});

async function waitFor(test: () => boolean): Promise<void> {
  while (!test()) await new Promise((r) => setTimeout(r, 20));
}
