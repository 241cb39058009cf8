import { shellCommand, shellQuote } from '../shell/shellQuote.js';

/**
 * How a source host reaches a destination host over SSH, for the migration's data and for
 * libvirt's control connection. The hosts' own SSH settings apply (their ~/.ssh keys and
 * known_hosts): host keys are checked (`StrictHostKeyChecking=yes`), nothing prompts
 * (`BatchMode=yes`), and a dead peer is noticed within seconds (`ServerAlive*`).
 */
export interface HostLink {
  readonly address: string;
  readonly port: number;
  readonly user: string;
}

export const SSH_OPTIONS = ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', 'ServerAliveInterval=3', '-o', 'ServerAliveCountMax=3', '-o', 'ConnectTimeout=10'] as const;

/** `ssh OPTIONS -p PORT USER@ADDRESS`, then the remote command as one quoted word. */
export function sshCommand(to: HostLink, remote?: string, extra: readonly string[] = []): string {
  return shellCommand(['ssh', ...SSH_OPTIONS, ...extra, '-p', String(to.port), `${to.user}@${bracketed(to.address)}`, ...(remote === undefined ? [] : [remote])]);
}

/** libvirt's URI for the destination, as the source host reaches it. */
export function destinationUri(to: HostLink): string {
  const port = to.port === 22 ? '' : `:${to.port}`;
  return `qemu+ssh://${encodeURIComponent(to.user)}@${bracketed(to.address)}${port}/system?no_tty=1`;
}

function bracketed(address: string): string {
  return address.includes(':') && !address.startsWith('[') ? `[${address}]` : address;
}

/** A virsh call inside a script run on a host (the same form the Virsh layer uses). */
export function virshLine(args: readonly string[]): string {
  return `LC_ALL=C ${shellCommand(['virsh', '-q', '-c', 'qemu:///system', ...args])}`;
}

export { shellQuote };
