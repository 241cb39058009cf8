import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { AuthFailedError } from '@novacron/core';
import type { SshEndpoint } from '../config.js';
import { checkHostKey, fingerprint, formatKnownHostLine, keyTypeOf, knownKeyTypes, parseKnownHosts, type KnownHostEntry } from './knownHosts.js';

/**
 * Host key verification for one connection attempt, as OpenSSH does it: the key the server
 * offers must be recorded for this host (name or `[name]:port`) in known_hosts. Unknown hosts
 * are refused unless `strictHostKeyChecking: accept-new`, which records them; a changed key
 * is always refused. The verdict is kept so that the connection's failure can be reported as
 * what it was (a host key problem) rather than ssh2's generic "verification failed".
 */
export class HostKeyCheck {
  #problem: AuthFailedError | undefined;
  readonly #entries: KnownHostEntry[];

  constructor(readonly endpoint: SshEndpoint) {
    const file = endpoint.auth.knownHosts;
    this.#entries = existsSync(file) ? parseKnownHosts(readFileSync(file, 'utf8'), file) : [];
  }

  get problem(): AuthFailedError | undefined {
    return this.#problem;
  }

  /** Host key algorithms to ask for first: the types already recorded, so a match is possible. */
  preferredAlgorithms(): string[] {
    return knownKeyTypes(this.#entries, this.endpoint.address, this.endpoint.port).flatMap((t) => (t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t]));
  }

  verify = (key: Buffer): boolean => {
    const { address, port, label, auth } = this.endpoint;
    const offered = `${keyTypeOf(key)} ${fingerprint(key)}`;
    const verdict = checkHostKey(this.#entries, address, port, key);
    switch (verdict.status) {
      case 'match':
        return true;
      case 'revoked':
        this.#problem = new AuthFailedError(`${label}: host key ${offered} of ${address}:${port} is marked @revoked in ${verdict.entry.file}:${verdict.entry.line}`, {
          context: { host: label },
          hint: 'the host must get a new key; do not connect to it until it has one',
        });
        return false;
      case 'mismatch': {
        const known = verdict.known.map((e) => `${e.keyType} ${fingerprint(e.key)} (${e.file}:${e.line})`).join(', ');
        this.#problem = new AuthFailedError(`${label}: HOST KEY MISMATCH for ${address}:${port}: the server offered ${offered}, known_hosts has ${known}`, {
          context: { host: label },
          hint: `someone may be intercepting the connection, or the host was reinstalled. If you know the new key is right, remove the old entry (ssh-keygen -R ${address}${port === 22 ? '' : ` -p ${port}`} -f ${auth.knownHosts}) and connect once with strictHostKeyChecking: accept-new`,
        });
        return false;
      }
      case 'unknown':
        if (auth.strictHostKeyChecking === 'accept-new') {
          const hashed = this.#entries.length > 0 && this.#entries.every((e) => e.hosts.kind === 'hashed');
          mkdirSync(dirname(auth.knownHosts), { recursive: true, mode: 0o700 });
          appendFileSync(auth.knownHosts, `${formatKnownHostLine(address, port, key, hashed)}\n`, { mode: 0o644 });
          return true;
        }
        this.#problem = new AuthFailedError(`${label}: host ${address}:${port} is not in ${auth.knownHosts} (it offered ${offered})`, {
          context: { host: label },
          hint: `add its key (ssh-keyscan -p ${port} ${address} >> ${auth.knownHosts}, after checking the fingerprint), or set ssh.strictHostKeyChecking: accept-new to trust it on first connection`,
        });
        return false;
    }
  };
}
