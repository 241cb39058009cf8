import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { AbortedError, UnreachableError } from '@novacron/core';
import type { SshEndpoint } from '../config.js';

/**
 * How a byte stream to a host's sshd is opened: straight over TCP, or through a jump host's
 * SSH connection (`forwardOut`). One method, so the SSH pool is the same whichever way a
 * host is reached, and a test can hand it any stream.
 */
export interface Dialer {
  dial(endpoint: SshEndpoint, signal?: AbortSignal): Promise<Duplex>;
}

/** Codes of a network that did not let us through: all retryable, all the host's side. */
export const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL']);

const HINTS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'nothing listens on that port: is sshd running, and is the port right?',
  EHOSTUNREACH: 'no route to the host: is it up, and is the address right?',
  ENETUNREACH: 'no route to that network from here',
  ETIMEDOUT: 'the host did not answer: is it up, or is a firewall dropping the connection?',
  ENOTFOUND: 'the name does not resolve: check the address',
  EAI_AGAIN: 'name resolution failed for now: check DNS',
};

export function unreachable(endpoint: SshEndpoint, message: string, cause?: unknown, code?: string): UnreachableError {
  return new UnreachableError(`${endpoint.label}: cannot reach ${endpoint.address}:${endpoint.port}: ${message}`, {
    context: { host: endpoint.label },
    hint: (code && HINTS[code]) ?? 'check that the host is up and its sshd reachable from here',
    cause,
  });
}

/** Plain TCP, bounded by the endpoint's connect timeout. */
export const tcpDialer: Dialer = {
  dial(endpoint, signal) {
    return new Promise<Duplex>((resolve, reject) => {
      if (signal?.aborted) return reject(new AbortedError(undefined, { context: { host: endpoint.label }, cause: signal.reason }));
      const socket: Socket = netConnect({ host: endpoint.address, port: endpoint.port });
      const timeoutMs = endpoint.auth.connectTimeoutMs;
      const timer = setTimeout(() => fail(unreachable(endpoint, `no TCP connection within ${timeoutMs} ms`, undefined, 'ETIMEDOUT')), timeoutMs);
      const onAbort = () => fail(new AbortedError(undefined, { context: { host: endpoint.label }, cause: signal?.reason }));
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        socket.removeListener('error', onError);
      };
      const fail = (error: Error) => {
        cleanup();
        socket.destroy();
        reject(error);
      };
      const onError = (error: NodeJS.ErrnoException) => fail(unreachable(endpoint, `${error.code ?? error.message}`, error, error.code));
      socket.once('error', onError);
      socket.once('connect', () => {
        cleanup();
        socket.setNoDelay(true);
        resolve(socket);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  },
};
