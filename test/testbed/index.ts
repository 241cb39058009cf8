/**
 * Access to the multi-host libvirt testbed from tests (`test/testbed/testbed.sh up`).
 *
 * Reads the testbed's state.json, runs commands inside a host's namespaces (out of band,
 * not through the code under test) and waits for a tiny guest's serial marker.
 * Node built-ins only. Tests must fail, not skip, when the testbed is missing:
 * `loadTestbed()` throws.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const DEFAULT_TESTBED_DIR = '/var/lib/novacron-testbed';
export const NOT_UP_MESSAGE = 'testbed not up: run `sudo test/testbed/testbed.sh up`';

/** Paths a host sees at a system location and where they live in the root namespace. */
export interface TestbedHostDirs {
  root: string;
  '/etc/libvirt': string;
  '/var/lib/libvirt': string;
  '/run/libvirt': string;
  '/var/log/libvirt': string;
  '/var/cache/libvirt': string;
  '/root/.ssh': string;
}

export interface TestbedHost {
  /** nc-h1, nc-h2, nc-h3; also the host's hostname and network namespace name. */
  name: string;
  index: number;
  /** Address on the bridge ncbr0, reachable from the root namespace and the other hosts. */
  address: string;
  sshPort: 22;
  user: 'root';
  hostname: string;
  hostUuid: string;
  /** libssh2 transport: keyfile + known_hosts verified by libvirt itself. */
  libvirtUri: string;
  /** OpenSSH transport through the testbed's ssh wrapper (pins known_hosts). */
  libvirtUriSsh: string;
  /** Straight to the host's libvirtd socket, no ssh (for out-of-band checks). */
  libvirtUriLocal: string;
  migrationPorts: [number, number];
  /** Pid whose namespaces are the host's, at the time state.json was written. */
  holderPid: number;
  pids: { holder: number; virtlogd: number; libvirtd: number; sshd: number; dnsmasq: number | null };
  netns: string;
  veth: { host: string; bridgeSide: string };
  guestNetwork: { name: string; bridge: string; gateway: string; cidr: string; dhcpRange: [string, string] };
  /**
   * What libvirt reports. All hosts share this machine, so each "has" all of it.
   * memoryKiB is `virsh nodeinfo` (sum of NUMA nodes, may undercount on VMs with
   * hot-plugged memory); memoryTotalKiB is `virsh nodememstats` total.
   */
  resources: { cpus: number; memoryKiB: number; memoryTotalKiB: number; cpuModel: string };
  dirs: TestbedHostDirs;
}

export interface TestbedGuest {
  /** Kernel for <os><kernel>: the uncompressed PVH-bootable ELF when available (boots ~2x faster under TCG). */
  kernel: string;
  /** The distribution's bzImage, the same kernel compressed. */
  kernelBzImage: string;
  kernelBoot: 'pvh' | 'bzimage';
  initrd: string;
  kernelVersion: string;
  /** Base kernel command line; append `nc.name=... nc.dirty_mib=...` etc. */
  cmdlineBase: string;
  marker: 'NOVACRON-GUEST-READY';
  ipMarker: 'NOVACRON-GUEST-IP=';
  serialLogPattern: string;
  /** Volume in every host's pool: 64 MiB qcow2, MiB 1 filled with byte 0x4e. */
  baseVolume: string;
  baseVolumeBytes: number;
  baseContent: { offsetMiB: number; lengthMiB: number; byte: number; sha256: string };
  pool: string;
  poolPath: string;
  network: string;
  /** A second, isolated guest network (no DHCP): NIC hot-plug tests attach to it. Absent from state files written before it existed. */
  network2?: string;
  httpPort: number;
  memoryMiB: number;
}

export interface Testbed {
  version: 1;
  dir: string;
  script: string;
  accel: 'kvm' | 'tcg';
  domainType: 'kvm' | 'qemu';
  accelNote: string;
  keyFile: string;
  knownHosts: string;
  knownHostsHashed: string;
  sshWrapper: string;
  bridge: { name: string; address: string; cidr: string };
  shaping: { rate: boolean; delay: boolean; qdisc: string; note?: string };
  guest: TestbedGuest;
  hosts: TestbedHost[];
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit code; null when killed by a signal (see `signal`). */
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ExecOptions {
  /** Kill the command after this long (SIGKILL); default 60 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Written to the command's stdin, which is then closed. */
  input?: string | Buffer;
}

export class TestbedNotUpError extends Error {
  constructor(detail?: string) {
    super(detail ? `${NOT_UP_MESSAGE} (${detail})` : NOT_UP_MESSAGE);
    this.name = 'TestbedNotUpError';
  }
}

export function testbedDir(): string {
  return process.env.NOVACRON_TESTBED_DIR || DEFAULT_TESTBED_DIR;
}

/** Reads state.json. Throws TestbedNotUpError when the testbed is not up. */
export function loadTestbed(dir: string = testbedDir()): Testbed {
  const file = join(dir, 'state.json');
  if (!existsSync(file)) throw new TestbedNotUpError(`${file} is missing`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new TestbedNotUpError(`${file} is unreadable: ${(err as Error).message}`);
  }
  const tb = parsed as Partial<Testbed>;
  if (tb.version !== 1 || !Array.isArray(tb.hosts) || tb.hosts.length === 0 || !tb.guest) {
    throw new TestbedNotUpError(`${file} has an unexpected shape; re-run testbed.sh up`);
  }
  return tb as Testbed;
}

export function getHost(tb: Testbed, name: string): TestbedHost {
  const host = tb.hosts.find((h) => h.name === name);
  if (!host) throw new Error(`no testbed host ${name} (have: ${tb.hosts.map((h) => h.name).join(', ')})`);
  return host;
}

/**
 * The holder pid as of now: a host repaired by `up` after state.json was read has a
 * new one, so read the pid file rather than trusting the snapshot.
 */
export function currentHolderPid(host: TestbedHost): number {
  try {
    const pid = Number.parseInt(readFileSync(join(host.dirs.root, 'pids', 'holder.pid'), 'utf8'), 10);
    if (Number.isInteger(pid) && pid > 0) return pid;
  } catch {
    // fall through to the snapshot
  }
  return host.holderPid;
}

/**
 * Runs argv inside the host's network, mount and UTS namespaces (via nsenter; needs
 * root). No shell is involved: each argument is passed as is.
 */
export function execOnHost(host: TestbedHost, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  if (argv.length === 0) return Promise.reject(new Error('execOnHost: empty argv'));
  const pid = currentHolderPid(host);
  const args = ['-t', String(pid), '-n', '-m', '-u', '--', ...argv];
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', args, { stdio: ['pipe', 'pipe', 'pipe'], signal: opts.signal });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        code,
        signal,
      });
    });
    child.stdin.on('error', () => {
      /* the command may exit without reading its input */
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Like execOnHost, but rejects unless the command exits 0; resolves to stdout. */
export async function execOnHostOk(host: TestbedHost, argv: readonly string[], opts: ExecOptions = {}): Promise<string> {
  const r = await execOnHost(host, argv, opts);
  if (r.code !== 0) {
    throw new Error(`on ${host.name}: ${argv.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r.stdout;
}

/** `virsh -c qemu:///system ARGS` on the host, out of band. */
export function virshOnHost(host: TestbedHost, args: readonly string[], opts: ExecOptions = {}): Promise<string> {
  return execOnHostOk(host, ['virsh', '-q', '-c', 'qemu:///system', ...args], opts);
}

/**
 * `virsh define` of an XML document on the host. The XML goes through a file in the
 * host's testbed folder (same path inside and outside the host): virsh cannot open
 * /dev/stdin when stdin is the socket Node's child_process gives it.
 */
export async function defineDomainOnHost(host: TestbedHost, xml: string, opts: ExecOptions = {}): Promise<void> {
  const dir = join(host.dirs.root, 'tmp');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `define-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.xml`);
  writeFileSync(file, xml);
  try {
    await virshOnHost(host, ['define', file], opts);
  } finally {
    rmSync(file, { force: true });
  }
}

/** Domains on the host (running or not) whose names start with prefix, read out of band. */
export async function domainsOn(host: TestbedHost, prefix: string): Promise<string[]> {
  return (await virshOnHost(host, ['list', '--all', '--name'])).split('\n').map((s) => s.trim()).filter((n) => n.startsWith(prefix));
}

/** Volumes in the testbed's pool on the host whose names start with prefix, read out of band. */
export async function volumesOn(tb: Testbed, host: TestbedHost, prefix: string): Promise<string[]> {
  return (await virshOnHost(host, ['vol-list', tb.guest.pool])).split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n.startsWith(prefix));
}

/**
 * Out of band, on every host at once: destroys and undefines every domain whose name
 * starts with prefix, then deletes every volume in the testbed's pool whose name starts
 * with it. Whatever state a failed test left; the virsh commands' own failures (a domain
 * already shut off) are ignored. Refuses an empty prefix, which would take everything.
 */
export async function scrubTestbed(tb: Testbed, prefix: string): Promise<void> {
  if (!prefix) throw new Error('scrubTestbed: empty prefix');
  await Promise.all(
    tb.hosts.map(async (host) => {
      for (const d of await domainsOn(host, prefix)) {
        await execOnHost(host, ['virsh', '-q', 'destroy', d]);
        await execOnHost(host, ['virsh', '-q', 'undefine', d]);
      }
      for (const v of await volumesOn(tb, host, prefix)) await execOnHost(host, ['virsh', '-q', 'vol-delete', v, '--pool', tb.guest.pool]);
    }),
  );
}

/**
 * Where a path inside the host is in the root namespace: through the host's own
 * directories when it is under one of them, else through the holder's /proc/PID/root
 * (which resolves in the host's mount namespace).
 */
export function hostPath(host: TestbedHost, pathInHost: string): string {
  let best: string | undefined;
  for (const prefix of Object.keys(host.dirs)) {
    if (!prefix.startsWith('/')) continue;
    if ((pathInHost === prefix || pathInHost.startsWith(prefix + '/')) && (!best || prefix.length > best.length)) {
      best = prefix;
    }
  }
  if (best) return host.dirs[best as keyof TestbedHostDirs] + pathInHost.slice(best.length);
  return `/proc/${currentHolderPid(host)}/root${pathInHost}`;
}

/** The serial log the KVM provider's domain XML asks for (`<serial><log file=.../>`). */
export function serialLogPath(host: TestbedHost, domain: string): string {
  return hostPath(host, `/var/log/libvirt/qemu/${domain}-serial.log`);
}

export interface WaitForMarkerOptions {
  marker?: string;
  /** Path inside the host; default /var/log/libvirt/qemu/DOMAIN-serial.log. */
  logPath?: string;
  /**
   * Ignore what the log holds right now (an earlier boot's marker); only text written
   * after this call counts. A log truncated by a new boot (append='off') is re-read
   * from its start.
   */
  ignoreExisting?: boolean;
  pollMs?: number;
  signal?: AbortSignal;
}

export interface GuestReady {
  /** Address the guest reported (NOVACRON-GUEST-IP=), or undefined if it had none. */
  ip: string | undefined;
  elapsedMs: number;
  /** The log text that was searched (from the start or the ignoreExisting offset). */
  log: string;
}

/**
 * Resolves when the guest's serial log (read in the host's mount namespace) shows the
 * marker; rejects after timeoutMs with the log's tail. After a live migration the
 * destination's log starts empty: the marker appears only after a reboot there.
 */
export async function waitForGuestMarker(
  host: TestbedHost,
  domain: string,
  timeoutMs: number,
  opts: WaitForMarkerOptions = {},
): Promise<GuestReady> {
  const marker = opts.marker ?? 'NOVACRON-GUEST-READY';
  const file = opts.logPath ? hostPath(host, opts.logPath) : serialLogPath(host, domain);
  const started = Date.now();
  // `pos` counts bytes, not characters, so multi-byte console output cannot skew it.
  let pos = opts.ignoreExisting ? fileSize(file) : 0;
  let text = '';
  for (;;) {
    opts.signal?.throwIfAborted();
    const size = fileSize(file);
    if (size < pos) {
      pos = 0; // truncated: the domain was (re)started
      text = '';
    }
    if (size > pos) {
      const chunk = readRange(file, pos, size);
      pos += chunk.length;
      text += chunk.toString('utf8');
    }
    const at = text.indexOf(marker);
    if (at >= 0) {
      const ipMatch = /NOVACRON-GUEST-IP=([0-9.]+)/.exec(text);
      return { ip: ipMatch?.[1], elapsedMs: Date.now() - started, log: text };
    }
    if (Date.now() - started > timeoutMs) {
      throw new Error(
        `no ${marker} from ${domain} on ${host.name} within ${timeoutMs} ms (${file}); log tail:\n${text.slice(-1500)}`,
      );
    }
    await sleep(opts.pollMs ?? 100, opts.signal);
  }
}

/** The address a guest printed on its serial console, if any. */
export function guestAddressFromSerial(host: TestbedHost, domain: string): string | undefined {
  const file = serialLogPath(host, domain);
  if (!existsSync(file)) return undefined;
  const all = [...readFileSync(file, 'utf8').matchAll(/NOVACRON-GUEST-IP=([0-9.]+)/g)];
  return all.at(-1)?.[1];
}

/**
 * HTTP GET to a guest from inside a host's network namespace (guests sit on the host's
 * private `novacron` bridge), e.g. `/cgi-bin/id`, `/cgi-bin/dirty?rate=3000&mib=32`,
 * `/cgi-bin/diskwrite?mib=4&offset=16`, `/cgi-bin/diskhash?offset=1&mib=1`, `/cgi-bin/sync`.
 */
export async function guestHttpGet(host: TestbedHost, ip: string, path: string, opts: ExecOptions = {}): Promise<string> {
  if (!/^[0-9.]+$/.test(ip)) throw new Error(`guestHttpGet: not an IPv4 address: ${ip}`);
  if (!path.startsWith('/')) throw new Error(`guestHttpGet: path must start with /: ${path}`);
  return execOnHostOk(host, ['curl', '-sS', '-f', '-m', '60', `http://${ip}${path}`], opts);
}

/** Parses the guest endpoints' `key=value` lines. */
export function parseKeyValues(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
  return out;
}

export interface TinyGuestOptions {
  name: string;
  /** Volume in the pool used as vda (create it first, e.g. an overlay on guest.baseVolume). */
  volume?: string;
  memoryMiB?: number;
  vcpus?: number;
  /** Appended to guest.cmdlineBase and `nc.name=NAME`. */
  cmdline?: string;
}

/**
 * Minimal domain XML for the tiny guest, for tests that need a guest without going
 * through the provider. Serial console logged where serialLogPath() looks.
 */
export function tinyGuestDomainXml(tb: Testbed, o: TinyGuestOptions): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(o.name)) throw new Error(`tinyGuestDomainXml: bad name ${o.name}`);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;');
  const disk = o.volume
    ? `    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='${esc(tb.guest.pool)}' volume='${esc(o.volume)}'/>
      <target dev='vda' bus='virtio'/>
    </disk>\n`
    : '';
  return `<domain type='${tb.domainType}'>
  <name>${o.name}</name>
  <memory unit='MiB'>${o.memoryMiB ?? tb.guest.memoryMiB}</memory>
  <vcpu>${o.vcpus ?? 1}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${esc(tb.guest.kernel)}</kernel>
    <initrd>${esc(tb.guest.initrd)}</initrd>
    <cmdline>${esc(`${tb.guest.cmdlineBase} nc.name=${o.name} ${o.cmdline ?? ''}`.trim())}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
${disk}    <interface type='network'>
      <source network='${esc(tb.guest.network)}'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'>
      <log file='/var/log/libvirt/qemu/${o.name}-serial.log' append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
</domain>
`;
}

/**
 * A `type: 'kvm'` provider config (plain data, as the fleet schema expects it) that
 * points at the testbed: every host by address, root over ssh with the testbed key,
 * host keys checked against the testbed's known_hosts, the tiny guest as image `tiny`.
 */
export function kvmProviderConfigFor(tb: Testbed, opts: { hashedKnownHosts?: boolean } = {}) {
  return {
    type: 'kvm' as const,
    hosts: tb.hosts.map((h) => ({ name: h.name, address: h.address })),
    ssh: {
      user: 'root',
      port: 22,
      identityFile: tb.keyFile,
      knownHosts: opts.hashedKnownHosts ? tb.knownHostsHashed : tb.knownHosts,
      strictHostKeyChecking: 'yes' as const,
    },
    pool: tb.guest.pool,
    network: tb.guest.network,
    domainType: tb.domainType,
    images: {
      tiny: {
        volume: tb.guest.baseVolume,
        format: 'qcow2' as const,
        kernel: tb.guest.kernel,
        initrd: tb.guest.initrd,
        cmdline: tb.guest.cmdlineBase,
      },
    },
  };
}

function fileSize(file: string): number {
  try {
    const fd = openSync(file, 'r');
    try {
      return fstatSync(fd).size;
    } finally {
      closeSync(fd);
    }
  } catch {
    return 0; // not created yet
  }
}

function readRange(file: string, from: number, to: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(to - from);
    const n = readSync(fd, buf, 0, buf.length, from);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
