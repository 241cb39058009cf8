import { existsSync, globSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import SSHConfig from 'ssh-config';
import { InvalidInputError } from '@novacron/core';

/**
 * What OpenSSH's client config (`~/.ssh/config`) says about one host alias, first value
 * winning as in `ssh`: the keys NovaCron uses to reach a KVM host. Parsing is ssh-config's
 * (quoting, `=`, `Host` patterns with `!` and wildcards, `Match host/user`); `Include` is
 * expanded here (paths relative to ~/.ssh, globs allowed). `Match exec` is never run.
 */
export interface SshConfigEntry {
  readonly hostName?: string;
  readonly user?: string;
  readonly port?: number;
  /** Every IdentityFile, in order, `~` and `%d/%u/%h/%r/%p` expanded. */
  readonly identityFiles: readonly string[];
  /** A socket path, or `SSH_AUTH_SOCK` (the environment's), or `none`. */
  readonly identityAgent?: string;
  /** `none` or a comma-separated list of `[user@]host[:port]` hops. */
  readonly proxyJump?: string;
  readonly userKnownHostsFile?: string;
  readonly strictHostKeyChecking?: string;
  readonly connectTimeoutMs?: number;
  readonly serverAliveIntervalMs?: number;
  readonly forwardAgent?: boolean;
}

export class SshClientConfig {
  readonly #config: SSHConfig;

  constructor(
    readonly file: string,
    text: string,
    private readonly home: string,
    private readonly localUser: string,
  ) {
    this.#config = SSHConfig.parse(text);
  }

  /** Reads a config file, following Include lines; undefined when `optional` and it does not exist. */
  static load(file: string, home: string, localUser: string, optional: boolean): SshClientConfig | undefined {
    if (!existsSync(file)) {
      if (optional) return undefined;
      throw new InvalidInputError(`the SSH config ${file} (ssh.config) does not exist`, { hint: 'give the path of your OpenSSH client config, or set ssh.config: false' });
    }
    return new SshClientConfig(file, expandIncludes(file, home, 0), home, localUser);
  }

  lookup(alias: string, user?: string): SshConfigEntry {
    const raw = this.#config.compute(user ? { Host: alias, User: user } : { Host: alias });
    const values = new Map<string, string[]>();
    for (const [k, v] of Object.entries(raw)) values.set(k.toLowerCase(), Array.isArray(v) ? v : [v]);
    const one = (k: string) => values.get(k)?.[0];
    const hostName = one('hostname')?.replace(/%h/g, alias);
    const port = one('port') ? Number(one('port')) : undefined;
    const login = one('user') ?? user;
    const expand = (p: string) => this.#path(p, { h: hostName ?? alias, p: String(port ?? 22), r: login ?? this.localUser });
    const seconds = (k: string) => (one(k) && /^\d+$/.test(one(k)!) ? Number(one(k)) * 1000 : undefined);
    const entry: SshConfigEntry = {
      ...(hostName ? { hostName } : {}),
      ...(login ? { user: login } : {}),
      ...(port !== undefined && Number.isInteger(port) ? { port } : {}),
      identityFiles: (values.get('identityfile') ?? []).filter((f) => f.toLowerCase() !== 'none').map(expand),
      ...(one('identityagent') ? { identityAgent: one('identityagent')!.toLowerCase() === 'none' || one('identityagent') === 'SSH_AUTH_SOCK' ? one('identityagent')! : expand(one('identityagent')!) } : {}),
      ...(one('proxyjump') ? { proxyJump: one('proxyjump')! } : {}),
      ...(one('userknownhostsfile') ? { userKnownHostsFile: expand(one('userknownhostsfile')!.split(/\s+/)[0]!) } : {}),
      ...(one('stricthostkeychecking') ? { strictHostKeyChecking: one('stricthostkeychecking')!.toLowerCase() } : {}),
      ...(seconds('connecttimeout') !== undefined ? { connectTimeoutMs: seconds('connecttimeout')! } : {}),
      ...(seconds('serveraliveinterval') !== undefined ? { serverAliveIntervalMs: seconds('serveraliveinterval')! } : {}),
      ...(one('forwardagent') ? { forwardAgent: one('forwardagent')!.toLowerCase() === 'yes' } : {}),
    };
    return entry;
  }

  #path(p: string, tokens: Record<string, string>): string {
    const t = p.replace(/%([%dhpru])/g, (_m, c: string) => (c === '%' ? '%' : c === 'd' ? this.home : c === 'u' ? this.localUser : (tokens[c] ?? '')));
    if (t === '~') return this.home;
    if (t.startsWith('~/')) return resolve(this.home, t.slice(2));
    return isAbsolute(t) ? t : resolve(this.home, '.ssh', t);
  }
}

/** The file's text with every `Include` replaced by the files it names (at most 16 deep, as OpenSSH). */
function expandIncludes(file: string, home: string, depth: number): string {
  if (depth > 16) throw new InvalidInputError(`${file}: Include nested more than 16 deep`, { hint: 'an Include loop?' });
  const text = readFileSync(file, 'utf8');
  return text
    .split('\n')
    .map((line) => {
      const m = /^\s*include\s*[= ]\s*(.+)$/i.exec(line);
      if (!m) return line;
      return m[1]!
        .trim()
        .split(/\s+/)
        .map((p) => p.replace(/^"|"$/g, ''))
        .map((p) => (p.startsWith('~/') ? resolve(home, p.slice(2)) : isAbsolute(p) ? p : resolve(dirname(file) === resolve(home, '.ssh') ? dirname(file) : resolve(home, '.ssh'), p)))
        .flatMap((p) => (/[*?[]/.test(p) ? globSync(p).sort() : [p]))
        .filter((p) => existsSync(p))
        .map((p) => expandIncludes(p, home, depth + 1))
        .join('\n');
    })
    .join('\n');
}
