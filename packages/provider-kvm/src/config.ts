import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { InvalidInputError, type KvmProviderConfig, type Labels, type Overcommit, type ProviderEnvironment } from '@novacron/core';
import { assertName } from './names.js';
import { SshClientConfig, type SshConfigEntry } from './ssh-config/sshConfig.js';

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
  /** Forward the agent over this connection (host-to-host copies with the user's key). */
  readonly forwardAgent?: boolean;
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

/**
 * Resolves hosts against the provider defaults; paths against the working directory and `~`.
 * The OpenSSH client config (`ssh.config`, by default `~/.ssh/config` when it exists) is read
 * as `ssh` reads it: a host's `address` may be an alias there, and what the fleet leaves
 * unsaid (HostName, User, Port, IdentityFile, IdentityAgent, ProxyJump, UserKnownHostsFile,
 * StrictHostKeyChecking, ConnectTimeout, ServerAliveInterval) comes from it. What the fleet
 * says wins, as options on `ssh`'s command line do.
 */
export function resolveHosts(providerName: string, config: KvmProviderConfig, environment: Pick<ProviderEnvironment, 'cwd' | 'env'>): KvmHost[] {
  const home = environment.env['HOME'] ?? homedir();
  const path = (p: string) => (p === '~' ? home : p.startsWith('~/') ? resolve(home, p.slice(2)) : isAbsolute(p) ? p : resolve(environment.cwd, p));
  const localUser = environment.env['USER'] ?? environment.env['LOGNAME'] ?? 'root';
  const clientConfigs = new Map<string, SshClientConfig | undefined>();
  const clientConfig = (setting: string | false | undefined): SshClientConfig | undefined => {
    if (setting === false) return undefined;
    const file = path(setting ?? '~/.ssh/config');
    if (!clientConfigs.has(file)) clientConfigs.set(file, SshClientConfig.load(file, home, localUser, setting === undefined));
    return clientConfigs.get(file);
  };
  const seen = new Set<string>();
  return config.hosts.map((h) => {
    if (seen.has(h.name)) {
      throw new InvalidInputError(`host "${h.name}" is listed twice`, { context: { provider: providerName, host: h.name }, hint: 'give every host its own name' });
    }
    seen.add(h.name);
    const ssh: SshConfig = { ...config.ssh, ...(h.ssh ?? {}) };
    const pool = assertName('object', h.pool ?? config.pool, 'storage pool', { provider: providerName, host: h.name });
    const network = assertName('object', h.network ?? config.network, 'network', { provider: providerName, host: h.name });
    const cfg = clientConfig(ssh.config);
    const entry = cfg?.lookup(h.address, ssh.user);
    const endpoint = (label: string, address: string, fleet: SshConfig, found: SshConfigEntry | undefined, defaults?: SshEndpoint): SshEndpoint => {
      const fromAgent = found?.identityAgent;
      const agentSetting = fleet.agent ?? (fromAgent === undefined ? undefined : fromAgent.toLowerCase() === 'none' ? false : fromAgent === 'SSH_AUTH_SOCK' ? true : fromAgent);
      const agent = agentSetting === true ? environment.env['SSH_AUTH_SOCK'] : agentSetting === false ? undefined : agentSetting ?? defaults?.auth.agent;
      if (agentSetting === true && !agent) {
        throw new InvalidInputError('ssh.agent is true but SSH_AUTH_SOCK is not set', {
          context: { provider: providerName, host: h.name },
          hint: 'start an agent (eval $(ssh-agent); ssh-add), or give the socket path as ssh.agent',
        });
      }
      const identityFile = fleet.identityFile ? path(fleet.identityFile) : (found?.identityFiles.find((f) => existsSync(f)) ?? (found?.identityFiles.length && !fleet.agent && !found.identityAgent ? found.identityFiles[0] : undefined) ?? defaults?.auth.identityFile);
      const strict = fleet.strictHostKeyChecking ?? (found?.strictHostKeyChecking === 'accept-new' || found?.strictHostKeyChecking === 'no' || found?.strictHostKeyChecking === 'off' ? 'accept-new' : found?.strictHostKeyChecking === 'yes' ? 'yes' : undefined);
      const auth: SshAuthSettings = {
        ...(identityFile ? { identityFile } : {}),
        ...(agent ? { agent } : {}),
        ...(fleet.passwordEnv ? { passwordEnv: fleet.passwordEnv } : defaults?.auth.passwordEnv ? { passwordEnv: defaults.auth.passwordEnv } : {}),
        // A changed key is refused whatever the config says: "no" is read as accept-new.
        knownHosts: fleet.knownHosts ? path(fleet.knownHosts) : (found?.userKnownHostsFile ?? defaults?.auth.knownHosts ?? path('~/.ssh/known_hosts')),
        strictHostKeyChecking: strict ?? defaults?.auth.strictHostKeyChecking ?? 'yes',
        keepaliveIntervalMs: fleet.keepaliveInterval ?? found?.serverAliveIntervalMs ?? DEFAULT_KEEPALIVE_MS,
        connectTimeoutMs: fleet.connectTimeout ?? found?.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
        maxChannels: fleet.maxChannels ?? DEFAULT_MAX_CHANNELS,
        ...((fleet.forwardAgent ?? found?.forwardAgent) ? { forwardAgent: true } : {}),
      };
      return { label, address: found?.hostName ?? address, port: fleet.port ?? found?.port ?? 22, user: fleet.user ?? found?.user ?? 'root', auth };
    };
    const target = endpoint(h.name, h.address, ssh, entry);
    // ProxyJump hops: the fleet's jumpHost (same key and known_hosts as the host), else the
    // config's ProxyJump, each hop looked up in the config in turn, as `ssh -J` does.
    let jump: SshEndpoint | undefined;
    if (ssh.jumpHost) {
      jump = parseJumpHost(ssh.jumpHost, target.user, target.auth);
    } else if (entry?.proxyJump && entry.proxyJump.toLowerCase() !== 'none') {
      for (const hop of entry.proxyJump.split(',').map((x) => x.trim()).filter(Boolean)) {
        const parsed = parseJumpHost(hop, target.user, target.auth);
        const explicit = hopParts(hop);
        const found = cfg?.lookup(parsed.address, explicit.user);
        const made = endpoint(`jump ${hop}`, parsed.address, { ...(explicit.user ? { user: explicit.user } : {}), ...(explicit.port ? { port: explicit.port } : {}) }, found, target);
        jump = { ...made, ...(found?.user || explicit.user ? {} : { user: target.user }), ...(jump ? { jump } : {}) };
      }
    }
    return {
      name: h.name,
      zone: h.zone,
      ...(h.region ? { region: h.region } : {}),
      labels: h.labels,
      pricePerHour: h.pricePerHour,
      overcommit: h.overcommit ?? config.overcommit,
      pool,
      network,
      ssh: { ...target, ...(jump ? { jump } : {}) },
    };
  });
}

function hopParts(spec: string): { user?: string; port?: number } {
  const at = spec.lastIndexOf('@');
  const port = /:(\d+)$/.exec(spec)?.[1];
  return { ...(at >= 0 ? { user: spec.slice(0, at) } : {}), ...(port && !spec.endsWith(']') ? { port: Number(port) } : {}) };
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
