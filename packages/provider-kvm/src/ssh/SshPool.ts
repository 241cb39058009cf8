import { readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import { Client, type ClientChannel, type ConnectConfig, type ExecOptions, type ServerHostKeyAlgorithm } from 'ssh2';
import { AbortedError, AuthFailedError, InvalidInputError, NovaCronError, TimeoutError, UnreachableError } from '@novacron/core';
import type { SshEndpoint } from '../config.js';
import type { ExecRequest, ExecResult, Transport } from '../transport.js';
import { tcpDialer, unreachable, UNREACHABLE_CODES, type Dialer } from './Dialer.js';
import { HostKeyCheck } from './hostKeys.js';

export interface SshPoolOptions {
  /** Environment the password variables are read from (at connect time, never kept). */
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly dialer?: Dialer;
  readonly log?: (message: string) => void;
}

/** Counters for tests and benchmarks: proof that connections are pooled. */
export interface SshPoolStats {
  readonly connectionsOpened: number;
  readonly channelsOpened: number;
  readonly maxConcurrentChannels: number;
}

/**
 * One SSH connection per endpoint, opened on first use and shared by every operation on that
 * host: each command runs in its own exec channel, multiplexed over the one connection. At
 * most `maxChannels` channels are open at once per connection (sshd refuses sessions past its
 * MaxSessions, 10 by default); the rest wait in FIFO order. A connection that dies is dropped
 * and the next command dials again; commands that were running on it fail as Unreachable
 * (retryable: every operation is idempotent).
 */
export class SshPool implements Transport {
  readonly #connections = new Map<string, Promise<SshConnection>>();
  readonly #options: SshPoolOptions;
  readonly #dialer: Dialer;
  #closed = false;
  #stats = { connectionsOpened: 0, channelsOpened: 0, maxConcurrentChannels: 0 };

  constructor(options: SshPoolOptions) {
    this.#options = options;
    this.#dialer = options.dialer ?? this.#defaultDialer();
  }

  get stats(): SshPoolStats {
    return { ...this.#stats };
  }

  async exec(endpoint: SshEndpoint, request: ExecRequest): Promise<ExecResult> {
    const connection = await this.connection(endpoint, request.signal);
    return connection.exec(request);
  }

  /** The pooled connection to an endpoint, dialled if there is none. */
  async connection(endpoint: SshEndpoint, signal?: AbortSignal): Promise<SshConnection> {
    if (this.#closed) throw new UnreachableError(`${endpoint.label}: the SSH pool is closed`, { context: { host: endpoint.label }, retryable: false });
    const key = endpointKey(endpoint);
    let pending = this.#connections.get(key);
    if (!pending) {
      // The dial is shared by everyone waiting for this host, so no caller's signal aborts
      // it; each caller only stops waiting when its own signal fires.
      pending = this.#open(endpoint);
      this.#connections.set(key, pending);
      pending.then(
        (c) => c.onClose(() => this.#connections.get(key) === pending && this.#connections.delete(key)),
        () => this.#connections.get(key) === pending && this.#connections.delete(key),
      );
    }
    return raceAbort(pending, signal, endpoint);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#connections.values()];
    this.#connections.clear();
    await Promise.allSettled(all.map(async (p) => (await p).close()));
  }

  #defaultDialer(): Dialer {
    return {
      dial: async (endpoint, signal) => {
        if (!endpoint.jump) return tcpDialer.dial(endpoint, signal);
        const jump = await this.connection(endpoint.jump, signal);
        return jump.forward(endpoint);
      },
    };
  }

  async #open(endpoint: SshEndpoint): Promise<SshConnection> {
    const sock = await this.#dialer.dial(endpoint);
    const check = new HostKeyCheck(endpoint);
    const config = this.#connectConfig(endpoint, sock, check);
    const client = new Client();
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error & { level?: string; code?: string }) => {
        client.removeListener('ready', onReady);
        // ssh2 can report the same failure again as the socket closes (a handshake timeout
        // is followed by "Connection lost before handshake"): with no listener left, that
        // second 'error' would be thrown as an uncaught exception and end the process.
        client.on('error', () => undefined);
        sock.destroy();
        reject(sshError(endpoint, error, check));
      };
      const onReady = () => {
        client.removeListener('error', onError);
        resolve();
      };
      client.once('error', onError);
      client.once('ready', onReady);
      try {
        client.connect(config);
      } catch (error) {
        // ssh2 throws synchronously for a key it cannot parse (an encrypted one, say).
        client.removeListener('error', onError);
        sock.destroy();
        reject(
          new InvalidInputError(`${endpoint.label}: cannot use the SSH key ${endpoint.auth.identityFile ?? ''}: ${(error as Error).message}`, {
            context: { host: endpoint.label },
            hint: 'use an unencrypted key in OpenSSH or PEM format, or load the key into an agent and set ssh.agent',
            cause: error,
          }),
        );
      }
    });
    this.#stats.connectionsOpened++;
    this.#options.log?.(`ssh: connected to ${endpoint.user}@${endpoint.address}:${endpoint.port}${endpoint.jump ? ` via ${endpoint.jump.address}` : ''}`);
    return new SshConnection(endpoint, client, this.#stats);
  }

  #connectConfig(endpoint: SshEndpoint, sock: Duplex, check: HostKeyCheck): ConnectConfig {
    const { auth } = endpoint;
    const config: ConnectConfig = {
      sock,
      host: endpoint.address,
      port: endpoint.port,
      username: endpoint.user,
      readyTimeout: auth.connectTimeoutMs,
      keepaliveInterval: auth.keepaliveIntervalMs,
      keepaliveCountMax: 3,
      hostVerifier: check.verify,
    };
    const preferred = check.preferredAlgorithms();
    if (preferred.length > 0) config.algorithms = { serverHostKey: { prepend: preferred as ServerHostKeyAlgorithm[], append: [], remove: [] } };
    if (auth.identityFile) {
      try {
        config.privateKey = readFileSync(auth.identityFile);
      } catch (error) {
        throw new InvalidInputError(`${endpoint.label}: cannot read the SSH key ${auth.identityFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, {
          context: { host: endpoint.label },
          hint: 'check ssh.identityFile',
          cause: error,
        });
      }
    }
    if (auth.agent) {
      config.agent = auth.agent;
      // Only with an agent: the hosts then use the user's key for host-to-host copies.
      if (auth.forwardAgent) config.agentForward = true;
    }
    if (auth.passwordEnv) {
      const password = this.#options.env[auth.passwordEnv];
      if (password === undefined) {
        throw new InvalidInputError(`${endpoint.label}: the environment variable ${auth.passwordEnv} (ssh.passwordEnv) is not set`, {
          context: { host: endpoint.label },
          hint: `export ${auth.passwordEnv}=… before running, or use a key`,
        });
      }
      config.password = password;
    }
    if (!config.privateKey && !config.agent && config.password === undefined) {
      throw new InvalidInputError(`${endpoint.label}: no SSH credentials configured`, {
        context: { host: endpoint.label },
        hint: 'set ssh.identityFile, ssh.agent or ssh.passwordEnv',
      });
    }
    return config;
  }
}

/** Maps ssh2's errors to NovaCron's: who is at fault, whether a retry may help, what to do. */
export function sshError(endpoint: SshEndpoint, error: Error & { level?: string; code?: string }, check?: HostKeyCheck): NovaCronError {
  if (NovaCronError.isInstance(error)) return error;
  if (check?.problem) return check.problem;
  const context = { host: endpoint.label };
  if (error.level === 'client-authentication') {
    return new AuthFailedError(`${endpoint.label}: ${endpoint.address}:${endpoint.port} refused SSH authentication as "${endpoint.user}"`, {
      context,
      hint: `check that the key (${endpoint.auth.identityFile ?? endpoint.auth.agent ?? 'password'}) is in ~${endpoint.user}/.ssh/authorized_keys on the host, and the user is right`,
      cause: error,
    });
  }
  if (error.level === 'client-timeout') {
    return new UnreachableError(`${endpoint.label}: ${endpoint.address}:${endpoint.port}: ${error.message}`, {
      context,
      hint: 'the host accepted TCP but SSH stalled: is it overloaded, or is something other than sshd on that port?',
      cause: error,
    });
  }
  if (error.code && UNREACHABLE_CODES.has(error.code)) return unreachable(endpoint, error.code, error, error.code);
  return new UnreachableError(`${endpoint.label}: SSH to ${endpoint.address}:${endpoint.port} failed: ${error.message}`, { context, cause: error });
}

function endpointKey(e: SshEndpoint): string {
  return `${e.user}@${e.address}:${e.port}${e.jump ? `<${endpointKey(e.jump)}` : ''}`;
}

function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined, endpoint: SshEndpoint): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(new AbortedError(undefined, { context: { host: endpoint.label }, cause: signal.reason }));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new AbortedError(undefined, { context: { host: endpoint.label }, cause: signal.reason }));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** One live SSH connection with its channel limit. */
export class SshConnection {
  #active = 0;
  #alive = true;
  readonly #waiting: (() => void)[] = [];
  readonly #onClose: (() => void)[] = [];
  readonly #inFlight = new Set<(error: Error) => void>();

  constructor(
    readonly endpoint: SshEndpoint,
    readonly client: Client,
    private readonly stats: { channelsOpened: number; maxConcurrentChannels: number },
  ) {
    const dead = (error?: Error) => {
      if (!this.#alive) return;
      this.#alive = false;
      const reason = sshError(endpoint, error ?? Object.assign(new Error('the SSH connection closed'), { code: 'ECONNRESET' }));
      for (const fail of this.#inFlight) fail(reason);
      for (const wake of this.#waiting.splice(0)) wake();
      for (const fn of this.#onClose) fn();
    };
    client.on('error', (e: Error) => dead(e));
    client.on('close', () => dead());
    client.on('end', () => dead());
  }

  get alive(): boolean {
    return this.#alive;
  }

  onClose(fn: () => void): void {
    if (!this.#alive) fn();
    else this.#onClose.push(fn);
  }

  async exec(request: ExecRequest): Promise<ExecResult> {
    await this.#acquire(request.signal);
    try {
      return await this.#run(request);
    } finally {
      this.#release();
    }
  }

  /** A TCP stream to `target` through this connection (the jump-host hop). */
  forward(target: SshEndpoint): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      this.client.forwardOut('127.0.0.1', 0, target.address, target.port, (error, stream) => {
        if (error) reject(forwardError(this.endpoint, target, error));
        else resolve(stream);
      });
    });
  }

  close(): void {
    this.client.end();
  }

  async #acquire(signal: AbortSignal | undefined): Promise<void> {
    const max = this.endpoint.auth.maxChannels;
    while (this.#active >= max) {
      if (!this.#alive) break;
      await new Promise<void>((resolve, reject) => {
        const wake = () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = () => {
          const i = this.#waiting.indexOf(wake);
          if (i >= 0) this.#waiting.splice(i, 1);
          reject(new AbortedError(undefined, { context: { host: this.endpoint.label }, cause: signal?.reason }));
        };
        if (signal?.aborted) return onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        this.#waiting.push(wake);
      });
    }
    this.#active++;
    this.stats.maxConcurrentChannels = Math.max(this.stats.maxConcurrentChannels, this.#active);
  }

  #release(): void {
    this.#active--;
    this.#waiting.shift()?.();
  }

  #run(request: ExecRequest): Promise<ExecResult> {
    const { endpoint } = this;
    const context = { host: endpoint.label };
    return new Promise<ExecResult>((resolve, reject) => {
      if (!this.#alive) return reject(sshError(endpoint, Object.assign(new Error('the SSH connection closed'), { code: 'ECONNRESET' })));
      if (request.signal?.aborted) return reject(new AbortedError(undefined, { context, cause: request.signal.reason }));
      let channel: ClientChannel | undefined;
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (error: Error | undefined, result?: ExecResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        request.signal?.removeEventListener('abort', onAbort);
        this.#inFlight.delete(failInFlight);
        if (error) {
          channel?.close();
          reject(error);
        } else resolve(result!);
      };
      const failInFlight = (error: Error) => finish(error);
      const onAbort = () => finish(new AbortedError(undefined, { context, cause: request.signal?.reason }));
      this.#inFlight.add(failInFlight);
      request.signal?.addEventListener('abort', onAbort, { once: true });
      if (request.timeoutMs !== undefined) {
        timer = setTimeout(
          () => finish(new TimeoutError(`${endpoint.label}: the command did not finish within ${request.timeoutMs} ms: ${truncate(request.command)}`, { context })),
          request.timeoutMs,
        );
      }
      this.stats.channelsOpened++;
      // ssh2 honours `agentForward` on exec (its typings omit it) when the connection was made with it.
      const execOptions = (request.agentForward && endpoint.auth.forwardAgent && endpoint.auth.agent ? { agentForward: true } : {}) as ExecOptions;
      this.client.exec(request.command, execOptions, (error, stream) => {
        if (error) {
          return finish(
            new UnreachableError(`${endpoint.label}: the host refused a new SSH channel: ${error.message}`, {
              context,
              hint: 'sshd limits sessions per connection (MaxSessions); lower ssh.maxChannels below it',
              cause: error,
            }),
          );
        }
        channel = stream;
        if (settled) return void stream.close();
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        let code: number | null = null;
        stream.on('data', (b: Buffer) => out.push(b));
        stream.stderr.on('data', (b: Buffer) => err.push(b));
        stream.on('exit', (c: number | null) => {
          code = typeof c === 'number' ? c : null;
        });
        stream.on('close', () =>
          finish(undefined, { stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), code }),
        );
        // Always close stdin: a command that reads it must see EOF, not wait forever.
        stream.end(request.stdin ?? '');
      });
    });
  }
}

/**
 * Why a jump host would not open the way on: its sshd forbids TCP forwarding
 * (`administratively prohibited`: AllowTcpForwarding no), or it could not reach the target.
 */
export function forwardError(jump: SshEndpoint, target: SshEndpoint, error: Error & { reason?: number }): NovaCronError {
  if (error.reason === 1 || /prohibited/i.test(error.message)) {
    return new AuthFailedError(`${target.label}: the jump host ${jump.address}:${jump.port} refuses to forward connections (${error.message})`, {
      context: { host: target.label },
      hint: `TCP forwarding is disabled on ${jump.address}: set AllowTcpForwarding yes (or local) for user ${jump.user} in its sshd_config, or reach ${target.address} another way`,
      cause: error,
    });
  }
  return unreachable(target, `the jump host ${jump.address} could not connect: ${error.message}`, error);
}

function truncate(text: string, max = 160): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
