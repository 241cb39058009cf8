import { randomBytes } from 'node:crypto';
import type { Clock, VmAddress } from '@novacron/core';
import type { Virsh } from '../virsh/Virsh.js';
import { parseLeases } from '../virsh/parsers.js';

/**
 * Where a VM's addresses come from, whichever answers: the network's DHCP leases (libvirt's
 * dnsmasq), the QEMU guest agent (if the guest runs one), or the host's ARP/neighbour table
 * (any guest that has sent a packet, static addresses included). Every source is asked with
 * its own time bound, all in one round trip per host, so a guest without an agent, or an
 * agent that hangs, never holds up a list or an apply for longer than that bound.
 */
export type AddressSource = 'lease' | 'agent' | 'arp';
export const ADDRESS_SOURCES: readonly AddressSource[] = ['lease', 'agent', 'arp'];

export interface AddressTarget {
  /** The domain's UUID (or name): what virsh is given. */
  readonly id: string;
  readonly macs: readonly string[];
  /** Only running guests are asked through their agent. */
  readonly running: boolean;
  /** Whether the domain has a guest agent channel; without one the agent is not asked. @default true */
  readonly agentChannel?: boolean;
}

export interface AddressQuery {
  readonly sources: readonly AddressSource[];
  /** How long one source may take to answer. */
  readonly sourceTimeoutMs: number;
  /** The libvirt network whose leases to read. */
  readonly network: string;
  readonly signal?: AbortSignal;
}

/** Addresses per target id, each with its source; a target no source knows has an empty list. */
export async function resolveAddresses(virsh: Virsh, targets: readonly AddressTarget[], query: AddressQuery): Promise<Map<string, VmAddress[]>> {
  const out = new Map<string, VmAddress[]>(targets.map((t) => [t.id, []]));
  if (targets.length === 0 || query.sources.length === 0) return out;
  const marker = `@@novacron-${randomBytes(8).toString('hex')}`;
  const seconds = Math.max(0.1, query.sourceTimeoutMs / 1000).toFixed(1);
  const v = (args: string[]) => `${virsh.commandLine(args)} </dev/null 2>/dev/null`;
  // `timeout` bounds each source on the host itself; without it (a minimal host) the exec's own timeout below is the bound.
  const lines = [
    `s() { printf '\\n%s %s %d\\n' ${marker} "$1" "$2"; }`,
    `if command -v timeout >/dev/null 2>&1; then T() { timeout -k 1 ${seconds} "$@"; }; else T() { "$@"; }; fi`,
  ];
  if (query.sources.includes('lease')) lines.push(`T ${v(['net-dhcp-leases', query.network])}; s lease $?`);
  // One virsh process asks every agent in turn (a marker before each answer), bounded as a whole:
  // a process per VM would cost more than the answers are worth.
  const asked = targets.map((t, i) => ({ t, i })).filter(({ t }) => t.running && t.agentChannel !== false);
  if (query.sources.includes('agent') && asked.length > 0) {
    const batch = asked.map(({ t, i }) => `echo ${marker}-agent-${i}; domifaddr ${t.id} --source agent`).join('; ');
    lines.push(`T ${virsh.commandLine([])} ${virsh.quote(batch)} </dev/null 2>/dev/null; s agent $?`);
  }
  if (query.sources.includes('arp')) lines.push(`{ T ip -4 neigh show 2>/dev/null || cat /proc/net/arp; }; s arp $?`);
  const budget = query.sourceTimeoutMs * 3 + 5_000;
  const result = await virsh.script(lines.join('\n'), { ...(query.signal ? { signal: query.signal } : {}), timeoutMs: budget });
  const sections = new Map<string, { text: string; code: number }>();
  let from = 0;
  for (const m of result.stdout.matchAll(new RegExp(`\\n${marker} (\\S+) (\\d+)\\n`, 'g'))) {
    sections.set(m[1]!, { text: result.stdout.slice(from, m.index), code: Number(m[2]) });
    from = m.index + m[0].length;
  }
  const byMac = new Map<string, string>();
  for (const t of targets) for (const mac of t.macs) byMac.set(mac.toLowerCase(), t.id);
  const add = (id: string | undefined, address: VmAddress) => {
    if (!id) return;
    const list = out.get(id)!;
    if (!list.some((a) => a.address === address.address)) list.push(address);
  };
  const lease = sections.get('lease');
  if (lease?.code === 0) for (const l of parseLeases(lease.text)) add(byMac.get(l.mac), { address: l.address, source: 'lease' });
  // The agent batch: each VM's answer follows its marker line (a VM whose agent failed printed nothing).
  const agentText = sections.get('agent')?.text ?? '';
  const answers = agentText.split(new RegExp(`^${marker}-agent-(\\d+)$`, 'm'));
  for (let k = 1; k + 1 < answers.length; k += 2) {
    const t = targets[Number(answers[k])];
    if (!t) continue;
    for (const a of parseDomIfAddr(answers[k + 1]!)) if (t.macs.length === 0 || !a.mac || t.macs.some((m) => m.toLowerCase() === a.mac)) add(t.id, { address: a.address, source: 'agent', ...(a.interface ? { interface: a.interface } : {}) });
  }
  const arp = sections.get('arp');
  if (arp?.code === 0) for (const n of parseNeighbours(arp.text)) add(byMac.get(n.mac), { address: n.address, source: 'arp' });
  return out;
}

/**
 * Asks the sources again and again until the target has an address or `waitMs` has passed;
 * never throws for want of an address (an unreachable host still throws).
 */
export async function waitForAddresses(virsh: Virsh, target: AddressTarget, query: AddressQuery & { readonly waitMs: number; readonly pollMs?: number; readonly clock: Clock }): Promise<VmAddress[]> {
  const deadline = query.clock.now() + query.waitMs;
  for (;;) {
    const left = deadline - query.clock.now();
    const found = (await resolveAddresses(virsh, [target], { ...query, sourceTimeoutMs: Math.max(100, Math.min(query.sourceTimeoutMs, left)) })).get(target.id) ?? [];
    if (found.length > 0 || query.clock.now() >= deadline) return found;
    await query.clock.sleep(Math.min(query.pollMs ?? 1_000, Math.max(0, deadline - query.clock.now())), query.signal);
    if (query.clock.now() >= deadline) return [];
  }
}

/** `virsh domifaddr --source agent`: interface, MAC, protocol, address/prefix; loopback and link-local left out. */
export function parseDomIfAddr(text: string): { interface?: string; mac?: string; address: string }[] {
  const out: { interface?: string; mac?: string; address: string }[] = [];
  let iface: string | undefined;
  let mac: string | undefined;
  for (const line of text.split('\n')) {
    const m = /^\s*(\S+)\s+((?:[0-9a-f]{2}:){5}[0-9a-f]{2}|-)\s+(ipv4|ipv6)\s+([0-9a-f.:]+)\/\d+/i.exec(line);
    if (!m) continue;
    if (m[1] !== '-') iface = m[1];
    if (m[2] !== '-') mac = m[2]!.toLowerCase();
    const address = m[4]!;
    if (iface === 'lo' || /^127\./.test(address) || address === '::1' || /^fe80:/i.test(address)) continue;
    out.push({ ...(iface ? { interface: iface } : {}), ...(mac ? { mac } : {}), address });
  }
  return out;
}

/** `ip -4 neigh show` (or /proc/net/arp): address and MAC of neighbours that answered. */
export function parseNeighbours(text: string): { address: string; mac: string }[] {
  const out: { address: string; mac: string }[] = [];
  for (const line of text.split('\n')) {
    const ip = /^(\d+\.\d+\.\d+\.\d+)\s+dev\s+\S+\s+lladdr\s+((?:[0-9a-f]{2}:){5}[0-9a-f]{2})\s+(\S+)/i.exec(line.trim());
    if (ip) {
      if (!/FAILED|INCOMPLETE/.test(ip[3]!)) out.push({ address: ip[1]!, mac: ip[2]!.toLowerCase() });
      continue;
    }
    // /proc/net/arp: IP address, HW type, Flags, HW address, Mask, Device; flags 0x0 is incomplete.
    const proc = /^(\d+\.\d+\.\d+\.\d+)\s+0x\S+\s+(0x\S+)\s+((?:[0-9a-f]{2}:){5}[0-9a-f]{2})\s/i.exec(line.trim());
    if (proc && proc[2] !== '0x0' && proc[3] !== '00:00:00:00:00:00') out.push({ address: proc[1]!, mac: proc[3]!.toLowerCase() });
  }
  return out;
}
