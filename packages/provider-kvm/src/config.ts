import { homedir } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { InvalidInputError, type KvmProviderConfig, type Labels, type Overcommit, type ProviderEnvironment } from '@novacron/core';
import { assertName } from './names.js';

/** Where and how to reach one SSH endpoint (a KVM host or a jump host). */
export interface SshEndpoint {
  /** A name for errors and logs: the host's name in the fleet, or the jump host as written. */
  readonly label: string;
  readonly address: string;
  readonly port: number;
  readonly user: string;
  readonly auth: SshAuthSettings;
  readonly jump?: SshEndpoint;
}

export interface SshAuthSettings {
  readonly identityFile?: string;
  /** Agent socket path. */
  readonly agent?: string;
  /** Name of the environment variable holding the password; read only when connecting. */
  readonly passwordEnv?: string;
  readonly knownHosts: string;
  readonly strictHostKeyChecking: 'yes' | 'accept-new';
  readonly keepaliveIntervalMs: number;
  readonly connectTimeoutMs: number;
  readonly maxChannels: number;
}

/** A KVM host with every default applied: what the provider works with. */
export interface KvmHost {
  readonly name: string;
  readonly zone: string;
  readonly region?: string;
  readonly labels: Labels;
  readonly pricePerHour: number;
  readonly overcommit: Overcommit;
  readonly pool: string;
  readonly network: string;
  readonly ssh: SshEndpoint;
}

export const DEFAULT_KEEPALIVE_MS = 15_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_CHANNELS = 8;

type SshConfig = KvmProviderConfig['ssh'];

/** Resolves hosts against the provider defaults; paths against the working directory and `~`. */
export function resolveHosts(providerName: string, config: KvmProviderConfig, environment: Pick<ProviderEnvironment, 'cwd' | 'env'>): KvmHost[] {
  const home = environment.env['HOME'] ?? homedir();
  const path = (p: string) => (p === '~' ? home : p.startsWith('~/') ? resolve(home, p.slice(2)) : isAbsolute(p) ? p : resolve(environment.cwd, p));
  const seen = new Set<string>();
  return config.hosts.map((h) => {
    if (seen.has(h.name)) {
      throw new InvalidInputError(`host "${h.name}" is listed twice`, { context: { provider: providerName, host: h.name }, hint: 'give every host its own name' });
    }
    seen.add(h.name);
    const ssh: SshConfig = { ...config.ssh, ...(h.ssh ?? {}) };
    const pool = assertName('object', h.pool ?? config.pool, 'storage pool', { provider: providerName, host: h.name });
    const network = assertName('object', h.network ?? config.network, 'network', { provider: providerName, host: h.name });
    const agent = ssh.agent === true ? environment.env['SSH_AUTH_SOCK'] : ssh.agent === false ? undefined : ssh.agent;
    if (ssh.agent === true && !agent) {
      throw new InvalidInputError('ssh.agent is true but SSH_AUTH_SOCK is not set', {
        context: { provider: providerName, host: h.name },
        hint: 'start an agent (eval $(ssh-agent); ssh-add), or give the socket path as ssh.agent',
      });
    }
    const auth: SshAuthSettings = {
      ...(ssh.identityFile ? { identityFile: path(ssh.identityFile) } : {}),
      ...(agent ? { agent } : {}),
      ...(ssh.passwordEnv ? { passwordEnv: ssh.passwordEnv } : {}),
      knownHosts: path(ssh.knownHosts ?? '~/.ssh/known_hosts'),
      strictHostKeyChecking: ssh.strictHostKeyChecking ?? 'yes',
      keepaliveIntervalMs: ssh.keepaliveInterval ?? DEFAULT_KEEPALIVE_MS,
      connectTimeoutMs: ssh.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT_MS,
      maxChannels: ssh.maxChannels ?? DEFAULT_MAX_CHANNELS,
    };
    const user = ssh.user ?? 'root';
    const jump = ssh.jumpHost ? parseJumpHost(ssh.jumpHost, user, auth) : undefined;
    return {
      name: h.name,
      zone: h.zone,
      ...(h.region ? { region: h.region } : {}),
      labels: h.labels,
      pricePerHour: h.pricePerHour,
      overcommit: h.overcommit ?? config.overcommit,
      pool,
      network,
      ssh: { label: h.name, address: h.address, port: ssh.port ?? 22, user, auth, ...(jump ? { jump } : {}) },
    };
  });
}

/** `[user@]host[:port]`, with an IPv6 address in brackets (`[::1]:22`). */
export function parseJumpHost(spec: string, defaultUser: string, auth: SshAuthSettings): SshEndpoint {
  const at = spec.lastIndexOf('@');
  const user = at >= 0 ? spec.slice(0, at) : defaultUser;
  let rest = at >= 0 ? spec.slice(at + 1) : spec;
  let port = 22;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(rest);
  if (bracket) {
    rest = bracket[1]!;
    if (bracket[2]) port = Number(bracket[2]);
  } else if (rest.split(':').length === 2) {
    const [host, p] = rest.split(':');
    rest = host!;
    port = Number(p);
  }
  if (!rest || !Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidInputError(`jump host "${spec}" is not [user@]host[:port]`, { hint: 'write it as bastion, ops@bastion or ops@10.0.0.1:2222' });
  return { label: `jump ${spec}`, address: rest, port, user, auth };
}
