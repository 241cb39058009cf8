import { randomBytes } from 'node:crypto';
import { parseDomainXml, type DomainInfo } from '../domain/domainXml.js';
import { parseDomainDump, parseLeases, parseNodeInfo, parseNodeMemStats, parsePoolInfo, parsePoolInfos, type Lease, type NodeInfo, type NodeMemStats, type PoolInfo } from './parsers.js';
import type { Virsh } from './Virsh.js';
import { virshError } from './virshErrors.js';

/** A domain as seen on its host: libvirt's state word (`running`, `shut off`, …) and its XML, read. */
export interface DomainView {
  readonly state: string;
  readonly info: DomainInfo;
}

export interface HostState {
  readonly node?: NodeInfo;
  readonly memory?: NodeMemStats;
  readonly pool?: PoolInfo;
  /** Every storage pool on the host, active or not (asked for with `pools`; absent if virsh could not list them). */
  readonly pools?: readonly PoolInfo[];
  readonly leases: readonly Lease[];
  readonly domains: readonly DomainView[];
  /** Domains in state `running`, every one on the host, including those whose XML could not be read. */
  readonly runningDomains: number;
  /** What the request's `prelude` printed. */
  readonly prelude?: string;
  /** Each network asked for in `networks`: whether it is defined, and active. */
  readonly networks?: ReadonlyMap<string, NetworkState>;
}

export interface NetworkState {
  readonly defined: boolean;
  readonly active: boolean;
}

/** A network from `virsh net-info`: defined when the call succeeded, active when it says `Active: yes`. */
export function networkState(succeeded: boolean, netInfo: string): NetworkState {
  return { defined: succeeded, active: succeeded && /^Active:\s+yes\s*$/m.test(netInfo) };
}

export interface HostStateRequest {
  /** nodeinfo, nodememstats and the pool: what inventory and capacity checks need. */
  readonly node?: boolean;
  readonly pool?: string;
  /** Every storage pool's `pool-info`, for inventory. A failure to list them is not an error: `pools` is left out. */
  readonly pools?: boolean;
  /** DHCP leases of this network, for VM addresses. */
  readonly network?: string;
  /** Networks to look up (`net-info`): NICs about to be made on them are refused before anything changes when one is missing. */
  readonly networks?: readonly string[];
  readonly signal?: AbortSignal;
  readonly operation?: string;
  /**
   * Shell lines run first, in the same script (a lock taken there is held while the host is
   * read); what they print comes back as `prelude`. A non-zero status fails the read.
   */
  readonly prelude?: string;
}

/**
 * Domains are read as their persistent configuration (`dumpxml --inactive`): the sizes
 * NovaCron set, not the balloon's momentary value, so a guest slow to balloon never looks
 * like drift to the planner.
 *
 * Everything `list` and `inventory` need from a host in ONE round trip: a fixed script
 * whose only inputs (pool and network names) are quoted. Domains are dumped by a single
 * virsh process running `domstate U; dumpxml U;` for every domain UUID, so a host with a
 * hundred domains costs two virsh processes, not a hundred round trips.
 */
export async function readHostState(virsh: Virsh, request: HostStateRequest): Promise<HostState> {
  const marker = `@@novacron-${randomBytes(8).toString('hex')}`;
  const v = (args: string[]) => `${virsh.commandLine(args)} </dev/null`;
  const lines = [
    `s() { printf '\\n%s %s %d\\n' ${marker} "$1" "$2"; }`,
    ...(request.prelude ? [`{\n${request.prelude}\n}; s prelude $?`] : []),
    ...(request.node ? [`${v(['nodeinfo'])}; s nodeinfo $?`, `${v(['nodememstats'])}; s memstats $?`] : []),
    ...(request.pool ? [`${v(['pool-info', '--bytes', request.pool])}; s pool $?`] : []),
    ...(request.pools
      ? [
          // As for domains below: pools by UUID (nothing to quote), all in one virsh process.
          `p=$(${v(['pool-list', '--all', '--uuid'])}); prc=$?`,
          `c=''; for x in $p; do case $x in *[!0-9a-f-]*) ;; *) c="$c pool-info --bytes $x;" ;; esac; done`,
          `if [ $prc -eq 0 ] && [ -n "$c" ]; then ${virsh.commandLine([])} "$c" </dev/null; fi; s pools $prc`,
        ]
      : []),
    ...(request.network ? [`${v(['net-dhcp-leases', request.network])}; s leases $?`] : []),
    ...(request.networks ?? []).map((n, i) => `${v(['net-info', n])}; s net${i} $?`),
    `u=$(${v(['list', '--all', '--uuid'])}); rc=$?`,
    `c=''; for x in $u; do case $x in *[!0-9a-f-]*) ;; *) c="$c domstate $x; dumpxml --inactive $x;" ;; esac; done`,
    // The list's exit status is what counts: a domain that vanished mid-dump is not an error.
    `if [ $rc -eq 0 ] && [ -n "$c" ]; then ${virsh.commandLine([])} "$c" </dev/null; fi; s domains $rc`,
  ];
  const result = await virsh.script(lines.join('\n'), { ...(request.signal ? { signal: request.signal } : {}), timeoutMs: 120_000 });
  const sections = new Map<string, { text: string; code: number }>();
  let from = 0;
  for (const m of result.stdout.matchAll(new RegExp(`\\n${marker} (\\w+) (\\d+)\\n`, 'g'))) {
    sections.set(m[1]!, { text: result.stdout.slice(from, m.index), code: Number(m[2]) });
    from = m.index + m[0].length;
  }
  const context = virsh.context(request.operation ? { operation: request.operation } : {});
  const must = (name: string) => {
    const section = sections.get(name);
    if (!section || section.code !== 0) throw virshError(result.stderr, `virsh ${name === 'domains' ? 'list' : name}`, context, section?.code ?? result.code);
    return section.text;
  };
  const domains: DomainView[] = [];
  let runningDomains = 0;
  for (const dumped of parseDomainDump(must('domains'))) {
    if (dumped.state === 'running') runningDomains++;
    // A domain whose XML cannot be read is skipped for listing, never adopted or touched.
    try {
      domains.push({ state: dumped.state, info: parseDomainXml(dumped.xml) });
    } catch {
      continue;
    }
  }
  const leasesSection = sections.get('leases');
  const poolsSection = request.pools ? sections.get('pools') : undefined;
  const prelude = request.prelude ? must('prelude') : undefined;
  const networks = request.networks
    ? new Map(
        request.networks.map((n, i): [string, NetworkState] => {
          const section = sections.get(`net${i}`);
          return [n, networkState(section?.code === 0, section?.text ?? '')];
        }),
      )
    : undefined;
  return {
    ...(networks ? { networks } : {}),
    ...(prelude !== undefined ? { prelude } : {}),
    ...(request.node ? { node: parseNodeInfo(must('nodeinfo')), memory: parseNodeMemStats(must('memstats')) } : {}),
    ...(request.pool ? { pool: parsePoolInfo(must('pool')) } : {}),
    ...(poolsSection && poolsSection.code === 0 ? { pools: parsePoolInfos(poolsSection.text) } : {}),
    leases: leasesSection && leasesSection.code === 0 ? parseLeases(leasesSection.text) : [],
    domains,
    runningDomains,
  };
}
