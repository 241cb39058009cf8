/**
 * Parsers for virsh's human-readable outputs (under LC_ALL=C). Each takes the text of one
 * command and returns plain data; unknown lines are ignored so a newer libvirt adding a
 * field does not break them.
 */

export interface NodeInfo {
  readonly cpus: number;
  readonly memoryKiB: number;
  readonly cpuModel: string;
}

function fields(text: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) map.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return map;
}

function kib(value: string | undefined): number {
  const m = /^(\d+)\s*KiB$/i.exec(value ?? '');
  return m ? Number(m[1]) : 0;
}

export function parseNodeInfo(text: string): NodeInfo {
  const f = fields(text);
  return { cpus: Number(f.get('cpu(s)') ?? 0), memoryKiB: kib(f.get('memory size')), cpuModel: f.get('cpu model') ?? '' };
}

export interface NodeMemStats {
  readonly totalKiB: number;
  readonly freeKiB: number;
  /** free + buffers + cached: what the kernel can hand out without swapping. */
  readonly availableKiB: number;
}

export function parseNodeMemStats(text: string): NodeMemStats {
  const f = fields(text);
  const free = kib(f.get('free'));
  return { totalKiB: kib(f.get('total')), freeKiB: free, availableKiB: free + kib(f.get('buffers')) + kib(f.get('cached')) };
}

export interface PoolInfo {
  readonly name: string;
  readonly state: string;
  readonly capacityBytes: number;
  readonly allocationBytes: number;
  readonly availableBytes: number;
}

/** `virsh pool-info --bytes POOL`. */
export function parsePoolInfo(text: string): PoolInfo {
  const f = fields(text);
  const bytes = (k: string) => Number(/^(\d+)/.exec(f.get(k) ?? '')?.[1] ?? 0);
  return { name: f.get('name') ?? '', state: f.get('state') ?? '', capacityBytes: bytes('capacity'), allocationBytes: bytes('allocation'), availableBytes: bytes('available') };
}

/**
 * Several `pool-info --bytes` outputs printed by one virsh process, one per pool: a block
 * per `Name:` line. An inactive pool prints no sizes (0 here).
 */
export function parsePoolInfos(text: string): PoolInfo[] {
  return text
    .split(/\n(?=Name:)/)
    .filter((block) => /^Name:/m.test(block))
    .map(parsePoolInfo);
}

export interface Lease {
  readonly mac: string;
  readonly address: string;
}

/** `virsh net-dhcp-leases NET`: MAC → IPv4 address. */
export function parseLeases(text: string): Lease[] {
  const out: Lease[] = [];
  for (const line of text.split('\n')) {
    const m = /\b([0-9a-f]{2}(?::[0-9a-f]{2}){5})\s+ipv4\s+([0-9.]+)\//i.exec(line);
    if (m) out.push({ mac: m[1]!.toLowerCase(), address: m[2]! });
  }
  return out;
}

export interface DumpedDomain {
  readonly state: string;
  readonly xml: string;
}

/**
 * The output of one virsh process running `domstate U; dumpxml U;` for every domain:
 * a state line, then a domain document, repeated. A domain that vanished between the
 * listing and the dump prints nothing (its error goes to stderr), so pairs stay aligned;
 * a state without a document after it is dropped.
 */
export function parseDomainDump(text: string): DumpedDomain[] {
  const out: DumpedDomain[] = [];
  let at = 0;
  for (;;) {
    const start = text.indexOf('<domain', at);
    if (start < 0) break;
    const endTag = text.indexOf('\n</domain>', start);
    if (endTag < 0) break;
    const end = endTag + '\n</domain>'.length;
    const before = text.slice(at, start).trim().split('\n').map((l) => l.trim()).filter(Boolean);
    out.push({ state: before.at(-1) ?? 'unknown', xml: text.slice(start, end) });
    at = end;
  }
  return out;
}
