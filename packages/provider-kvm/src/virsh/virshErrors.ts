import {
  AuthFailedError,
  CapacityExceededError,
  ConflictError,
  NotFoundError,
  NovaCronError,
  TimeoutError,
  UnreachableError,
  UnsupportedError,
  type ErrorContext,
} from '@novacron/core';

/**
 * How a failed virsh command becomes a typed error: a registry of named rules, tried in
 * order, each matching virsh's stderr (virsh runs with LC_ALL=C, so messages are English).
 * A new special case is a new rule here with its own test, never an `if` at a call site.
 */
export interface VirshErrorRule {
  readonly name: string;
  readonly match: RegExp;
  readonly build: (message: string, options: { context: ErrorContext; cause?: unknown }) => NovaCronError;
}

export const VIRSH_ERROR_RULES: readonly VirshErrorRule[] = [
  {
    name: 'virsh-missing',
    match: /virsh: (?:command )?not found|exec: virsh: not found|virsh: No such file or directory/,
    build: (m, o) => new UnsupportedError(m, { ...o, hint: 'install libvirt-clients (Debian/Ubuntu) or libvirt-client (Fedora/RHEL) on the host' }),
  },
  {
    // The login user may not use the system libvirt socket: the most common set-up problem
    // for non-root users.
    name: 'libvirt-permission',
    match: /libvirt-sock[^:]*': Permission denied|authentication unavailable|polkit|access denied|authentication failed/i,
    build: (m, o) =>
      new AuthFailedError(m, {
        ...o,
        hint: 'the SSH user may not manage libvirt: add it to the libvirt group (usermod -aG libvirt USER, then reconnect), or allow it with a polkit rule for org.libvirt.unix.manage',
      }),
  },
  {
    // A user other than root is checked by polkit over the system D-Bus; with no bus (or no
    // polkit) on the host, libvirt says it cannot get a bus connection: a permission
    // problem, not a libvirtd that is down.
    name: 'libvirt-polkit-unavailable',
    match: /Unable to get system bus connection|org\.freedesktop\.PolicyKit1|polkit.*not (?:available|running)/i,
    build: (m, o) =>
      new AuthFailedError(m, {
        ...o,
        hint: 'the SSH user is not root, so libvirt asks polkit over D-Bus for permission, and there is none on the host: connect as root, or let the user in through the socket (unix_sock_group = "libvirt", unix_sock_rw_perms = "0770", auth_unix_rw = "none" in libvirtd.conf, and the user in that group), or run dbus and polkit with a rule for org.libvirt.unix.manage',
      }),
  },
  {
    name: 'libvirtd-down',
    match: /Failed to connect socket to '[^']*libvirt[^']*': (?:No such file or directory|Connection refused)|failed to connect to the hypervisor/,
    build: (m, o) => new UnreachableError(m, { ...o, hint: 'libvirtd (or virtqemud) is not running on the host: start it (systemctl start libvirtd)' }),
  },
  {
    name: 'out-of-memory',
    match: /Cannot allocate memory|cannot set up guest memory|[Oo]ut of memory|not enough memory|failed to allocate/,
    build: (m, o) => new CapacityExceededError(m, { ...o, hint: 'the host has not enough free memory for this VM: choose another host, or free memory' }),
  },
  {
    name: 'out-of-space',
    match: /No space left on device|Not enough space|exceeds? (?:the )?(?:pool|available) (?:capacity|space)/i,
    build: (m, o) => new CapacityExceededError(m, { ...o, hint: 'the storage pool is full: free space, or choose another host' }),
  },
  {
    name: 'domain-not-found',
    match: /Domain not found|failed to get domain/,
    build: (m, o) => new NotFoundError(m, { ...o, hint: 'the domain is not on this host (removed by hand, or moved): `novacron status` shows where the fleet\'s VMs are' }),
  },
  {
    name: 'volume-not-found',
    match: /Storage volume not found|failed to get vol|no storage vol with matching/,
    build: (m, o) => new NotFoundError(m, { ...o, hint: 'the volume is not in the pool: check the image\'s `volume` and the pool (virsh vol-list POOL)' }),
  },
  {
    name: 'pool-not-found',
    match: /Storage pool not found|failed to get pool|no storage pool with matching/,
    build: (m, o) => new NotFoundError(m, { ...o, hint: 'define and start the storage pool on the host (virsh pool-define-as … && virsh pool-start …), or set `pool`' }),
  },
  {
    name: 'pool-inactive',
    match: /storage pool '[^']*' is not active/,
    build: (m, o) => new ConflictError(m, { ...o, hint: 'start the pool on the host: virsh pool-start POOL (and pool-autostart it)' }),
  },
  {
    name: 'network-not-found',
    match: /Network not found|failed to get network|network '[^']*' is not active/,
    build: (m, o) => new NotFoundError(m, { ...o, hint: 'define and start the network on the host (virsh net-start NAME), or set `network`' }),
  },
  {
    name: 'already-exists',
    match: /already exists|exists already/,
    build: (m, o) => new ConflictError(m, { ...o, hint: 'an object of that name is already on the host: remove it if it is a leftover, or rename the group or fleet' }),
  },
  {
    name: 'state-lock',
    match: /cannot acquire state change lock|Timed out during operation/,
    build: (m, o) => new TimeoutError(m, { ...o, hint: 'another operation holds the domain; retry shortly' }),
  },
  {
    name: 'operation-invalid',
    match: /Requested operation is not valid/,
    build: (m, o) => new ConflictError(m, { ...o, hint: 'the domain is not in a state that allows this: check `virsh domstate NAME` on the host' }),
  },
];

/** The first `error: …` line of virsh's stderr (the rest repeats it with more detail). */
export function virshMessage(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const errors = lines.filter((l) => l.startsWith('error:')).map((l) => l.slice('error:'.length).trim());
  return (errors.length > 0 ? errors.join(': ') : lines.join(' ')).slice(0, 600) || 'no message';
}

/** A typed error for a failed virsh command; `rule` says which rule matched, for tests and logs. */
export function virshError(stderr: string, what: string, context: ErrorContext, code: number | null): NovaCronError & { rule?: string } {
  const detail = virshMessage(stderr);
  const message = `${context.host ?? 'host'}: ${what} failed: ${detail}`;
  const rule = VIRSH_ERROR_RULES.find((r) => r.match.test(stderr)) ?? (code === 127 ? VIRSH_ERROR_RULES[0] : undefined);
  const error: NovaCronError & { rule?: string } = rule
    ? rule.build(message, { context, cause: stderr })
    : new NovaCronError('Provider', 'server', message, { context, cause: stderr, hint: 'see the libvirt error above; `virsh` on the host gives the same' });
  if (rule) error.rule = rule.name;
  return error;
}
