import type { KvmProviderConfig } from '@novacron/core';

type KvmHost = KvmProviderConfig['hosts'][number];

/**
 * The libvirt URI terraform-provider-libvirt connects to a host with. `qemu+ssh` is the
 * provider's own SSH client; hosts behind a jump host use `qemu+sshcmd`, which runs the
 * system `ssh` and so honours a `ProxyJump` in `~/.ssh/config` (the URI has no place for
 * one). Host keys are always verified (no `no_verify`); no secret is ever put in a URI.
 */
export function libvirtUri(host: KvmHost, defaults: KvmProviderConfig['ssh'] = {}): string {
  const ssh = { ...defaults, ...host.ssh };
  const scheme = ssh.jumpHost ? 'qemu+sshcmd' : 'qemu+ssh';
  const user = ssh.user ? `${encodeURIComponent(ssh.user)}@` : '';
  const port = ssh.port ? `:${ssh.port}` : '';
  const query = new URLSearchParams();
  if (ssh.identityFile) query.set('keyfile', ssh.identityFile);
  if (ssh.knownHosts) query.set('knownhosts', ssh.knownHosts);
  const q = query.toString();
  return `${scheme}://${user}${host.address}${port}/system${q ? `?${q}` : ''}`;
}
