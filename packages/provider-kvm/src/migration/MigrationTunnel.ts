import { UnreachableError } from '@novacron/core';
import type { Virsh } from '../virsh/Virsh.js';
import { sshCommand, shellQuote, type HostLink } from './sshLink.js';

/**
 * The encrypted path for one migration: two SSH connections from the source host to the
 * destination, each forwarding one port on the source's loopback to the same port on the
 * destination's loopback — one for QEMU's memory stream (all multifd channels too), one for
 * the NBD disk copy. Two, so each stream's bytes on the wire can be read apart: an SSH
 * client's `wchar` (/proc/PID/io) is what it wrote to the network, encryption included.
 *
 * Everything lives in a private temporary folder on the source (control sockets, the
 * destination XML); a watchdog removes it all if NovaCron never comes back to close it.
 */
export interface TunnelPorts {
  readonly memory: number;
  readonly disk: number;
}

export interface TunnelBytes {
  readonly memory?: number;
  readonly disk?: number;
}

const PORT_MIN = 50_000;
const PORT_SPAN = 9_000;

export class MigrationTunnel {
  private constructor(
    private readonly virsh: Virsh,
    readonly dir: string,
    readonly ports: TunnelPorts,
    private readonly pids: { memory: number; disk: number; watchdog: number },
  ) {}

  /**
   * Opens both forwards (retrying with other ports if one is taken on the source) and
   * returns once both connections are up and authenticated.
   */
  static async open(virsh: Virsh, to: HostLink, options: { lifetimeSec: number; random: () => number; signal?: AbortSignal; vm?: string }): Promise<MigrationTunnel> {
    let lastError = '';
    for (let attempt = 0; attempt < 4; attempt++) {
      const base = PORT_MIN + 2 * Math.floor((options.random() * PORT_SPAN) / 2);
      const ports = { memory: base, disk: base + 1 };
      const result = await virsh.script(openScript(to, ports, options.lifetimeSec), { ...(options.signal ? { signal: options.signal } : {}), timeoutMs: 60_000 });
      const dir = /^dir=(\S+)$/m.exec(result.stdout)?.[1];
      const memory = Number(/^memory=(\d+)$/m.exec(result.stdout)?.[1]);
      const disk = Number(/^disk=(\d+)$/m.exec(result.stdout)?.[1]);
      const watchdog = Number(/^watchdog=(\d+)$/m.exec(result.stdout)?.[1]);
      if (result.code === 0 && dir && memory > 0 && disk > 0) return new MigrationTunnel(virsh, dir, ports, { memory, disk, watchdog });
      lastError = result.stderr.trim() || result.stdout.trim() || `exit ${result.code}`;
      if (!/forward|Address already in use|bind/i.test(lastError)) break;
    }
    throw new UnreachableError(`${virsh.host}: cannot open the SSH tunnel to ${to.user}@${to.address}:${to.port} for the migration: ${lastError.slice(0, 400)}`, {
      context: virsh.context({ ...(options.vm ? { vm: options.vm } : {}), operation: 'migrate' }),
      hint: 'the source host must reach the destination over SSH with its own key, and know its host key (its ~/.ssh/known_hosts): try `ssh -o BatchMode=yes USER@DESTINATION true` on the source host',
      retryable: true,
    });
  }

  /** Bytes each SSH client has written to the network so far (encrypted stream). */
  async bytes(): Promise<TunnelBytes> {
    const r = await this.virsh.script(bytesScript(this.pids), { timeoutMs: 30_000 });
    const memory = /^memory=(\d+)$/m.exec(r.stdout)?.[1];
    const disk = /^disk=(\d+)$/m.exec(r.stdout)?.[1];
    return { ...(memory ? { memory: Number(memory) } : {}), ...(disk ? { disk: Number(disk) } : {}) };
  }

  /** The part of a script that reads the counters, for callers that batch it with other reads. */
  bytesScript(): string {
    return bytesScript(this.pids);
  }

  /** Closes both connections and removes the folder. Safe to call twice. */
  async close(): Promise<void> {
    const d = shellQuote(this.dir);
    await this.virsh.script(
      [`for s in ${d}/memory ${d}/disk; do [ -S "$s" ] && ssh -S "$s" -O exit x >/dev/null 2>&1; done`, `kill ${this.pids.watchdog} 2>/dev/null`, `rm -rf ${d}`, 'exit 0'].join('\n'),
      { timeoutMs: 30_000 },
    );
  }
}

/** Opens both masters in the background (-f) once their forward is bound (ExitOnForwardFailure). */
export function openScript(to: HostLink, ports: TunnelPorts, lifetimeSec: number): string {
  const forward = (p: number) => ['-L', `127.0.0.1:${p}:127.0.0.1:${p}`];
  const master = (name: string, p: number) => sshCommand(to, undefined, ['-M', '-S', `DIR/${name}`, '-f', '-N', '-o', 'ExitOnForwardFailure=yes', '-o', 'ControlPersist=no', ...forward(p)]).replaceAll('DIR/', '"$d"/');
  return [
    'd=$(mktemp -d /tmp/novacron-migrate.XXXXXXXX) || exit 1',
    // The masters must not hold this channel's stdout/stderr open, or the call never returns.
    `${master('memory', ports.memory)} </dev/null >/dev/null 2>"$d"/memory.err || { cat "$d"/memory.err >&2; rm -rf "$d"; exit 1; }`,
    `${master('disk', ports.disk)} </dev/null >/dev/null 2>"$d"/disk.err || { cat "$d"/disk.err >&2; ssh -S "$d"/memory -O exit x >/dev/null 2>&1; rm -rf "$d"; exit 1; }`,
    'pid() { ssh -S "$1" -O check x 2>&1 | sed -n \'s/.*pid=\\([0-9]*\\).*/\\1/p\'; }',
    // If nobody closes the tunnel (NovaCron died), it closes itself after the job's lifetime.
    `nohup sh -c 'sleep ${Math.max(60, Math.ceil(lifetimeSec))}; for s in "$0"/memory "$0"/disk; do ssh -S "$s" -O exit x; done; rm -rf "$0"' "$d" >/dev/null 2>&1 &`,
    'echo "dir=$d"; echo "memory=$(pid "$d"/memory)"; echo "disk=$(pid "$d"/disk)"; echo "watchdog=$!"',
  ].join('\n');
}

function bytesScript(pids: { memory: number; disk: number }): string {
  return `for k in memory:${pids.memory} disk:${pids.disk}; do n=\${k%%:*}; p=\${k#*:}; w=$(sed -n 's/^wchar: //p' /proc/$p/io 2>/dev/null); [ -n "$w" ] && echo "$n=$w"; done; exit 0`;
}
