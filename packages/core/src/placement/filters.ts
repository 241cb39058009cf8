import type { PlacementRules } from '../model/fleet.js';
import type { Host } from '../model/records.js';
import { DIMS, DIM_RULES, EPS } from './dims.js';
import type { CompiledGroup } from './problem.js';
import type { SolverState } from './state.js';

/**
 * The hard rules of placement, as a registry of named rules. A rule's name is the key an
 * explanation counts hosts under ("memory: 812 hosts too small; zone: 120 hosts in another
 * zone"); the registry's order is the order a host is checked in, and a host is counted under
 * the first rule it fails.
 *
 * Host rules depend only on the host and the group's rules, so the solver applies them once
 * per group to build its candidate list. VM rules depend on what is placed already; the
 * solver's inner loop checks capacity inline (it rules out most hosts) and runs the other
 * VM rules that apply to the group from this registry.
 */
export interface HostRule {
  readonly name: string;
  /** Completes "N hosts …" in explanations. */
  readonly phrase: string;
  rejects(host: Host, rules: PlacementRules): boolean;
}

export interface VmRule {
  readonly name: string;
  readonly phrase: string;
  /** False when the rule cannot rule anything out for the group, so the solver skips it. */
  applies(group: CompiledGroup): boolean;
  /** True when host `h` may not take VM `v` given what `state` holds. */
  rejects(state: SolverState, v: number, h: number): boolean;
}

const hostState = (state: Host['state'], phrase: string): HostRule => ({ name: state, phrase, rejects: (host) => host.state === state });

export const HOST_RULES: readonly HostRule[] = [
  hostState('down', 'down'),
  hostState('maintenance', 'in maintenance'),
  hostState('draining', 'draining'),
  { name: 'provider', phrase: 'of another provider', rejects: (host, rules) => rules.providers !== undefined && !rules.providers.includes(host.provider) },
  {
    name: 'region',
    phrase: 'in another region',
    rejects: (host, rules) => rules.regions !== undefined && (host.region === undefined || !rules.regions.includes(host.region)),
  },
  { name: 'zone', phrase: 'in another zone', rejects: (host, rules) => rules.zones !== undefined && !rules.zones.includes(host.zone) },
  {
    name: 'labels',
    phrase: 'without the required labels',
    rejects: (host, rules) => rules.hostLabels !== undefined && Object.entries(rules.hostLabels).some(([k, v]) => host.labels[k] !== v),
  },
  {
    name: 'spread',
    phrase: 'without the spread key',
    rejects: (host, rules) => rules.spread !== undefined && topologyValue(host, rules.spread.key ?? 'zone') === undefined,
  },
];

/** The first host rule that rules a host out for a group, or undefined. */
export function staticRejection(host: Host, rules: PlacementRules): string | undefined {
  if (host.state === 'up' && !hasHostRules(rules)) return undefined;
  return HOST_RULES.find((rule) => rule.rejects(host, rules))?.name;
}

function hasHostRules(rules: PlacementRules): boolean {
  return rules.providers !== undefined || rules.regions !== undefined || rules.zones !== undefined || rules.hostLabels !== undefined || rules.spread !== undefined;
}

/** The value of a topology key on a host: `zone`, `region`, `host`, `provider`, or a host label. */
export function topologyValue(host: Host, key: string): string | undefined {
  switch (key) {
    case 'zone':
      return host.zone;
    case 'region':
      return host.region;
    case 'host':
      return host.id;
    case 'provider':
      return host.provider;
    default:
      return host.labels[key];
  }
}

const capacity = (d: number): VmRule => ({
  name: DIM_RULES[d]!,
  phrase: 'short of it',
  applies: () => true,
  rejects(state, v, h) {
    const p = state.p;
    if (p.elastic[h]) return false;
    return state.used[h * DIMS + d]! + p.req[v * DIMS + d]! > p.cap[h * DIMS + d]! + EPS;
  },
});

/** Separation rules at host scope do not apply on elastic hosts: there every VM gets an instance of its own. */
export const VM_RULES: readonly VmRule[] = [
  {
    name: 'instance-type',
    phrase: 'selling no instance type it fits',
    applies: () => true,
    rejects: (state, v, h) => state.p.elastic[h] === 1 && state.elasticPrice(v, h) === undefined,
  },
  capacity(0),
  capacity(1),
  capacity(2),
  capacity(3),
  {
    name: 'max-per-host',
    phrase: 'holding maxPerHost of its group',
    applies: (g) => g.maxPerHost < Infinity,
    rejects(state, v, h) {
      const g = state.p.groups[state.p.vmGroup[v]!]!;
      return state.p.elastic[h] === 0 && state.hostCount[g.index]![h]! >= g.maxPerHost;
    },
  },
  {
    name: 'anti-affinity',
    phrase: 'holding a VM of its group',
    applies: (g) => g.antiHost || g.antiZone,
    rejects(state, v, h) {
      const p = state.p;
      const g = p.groups[p.vmGroup[v]!]!;
      if (g.antiZone) return state.zoneCount[g.index]![p.zoneOf[h]!]! > 0;
      return p.elastic[h] === 0 && state.hostCount[g.index]![h]! > 0;
    },
  },
  {
    name: 'avoid-groups',
    phrase: 'holding a group it avoids',
    applies: (g) => g.avoidHost.length + g.avoidZone.length > 0,
    rejects(state, v, h) {
      const p = state.p;
      const g = p.groups[p.vmGroup[v]!]!;
      const z = p.zoneOf[h]!;
      for (const a of g.avoidZone) if (state.zoneCount[a]![z]! > 0) return true;
      if (p.elastic[h]) return false;
      for (const a of g.avoidHost) if (state.hostCount[a]![h]! > 0) return true;
      return false;
    },
  },
  {
    name: 'with-groups',
    phrase: 'without the groups it must run with',
    applies: (g) => g.withHost.length + g.withZone.length > 0,
    rejects(state, v, h) {
      const p = state.p;
      const g = p.vmGroup[v]!;
      const z = p.zoneOf[h]!;
      const group = p.groups[g]!;
      // A group that names itself keeps together: its first VM anchors the rest.
      for (const t of group.withHost) if (state.hostCount[t]![h] === 0 && (t !== g || state.total[g]! > 0)) return true;
      for (const t of group.withZone) if (state.zoneCount[t]![z] === 0 && (t !== g || state.total[g]! > 0)) return true;
      return false;
    },
  },
  {
    name: 'spread',
    phrase: 'where it would skew the spread',
    applies: (g) => g.spread !== undefined,
    rejects(state, v, h) {
      const g = state.p.groups[state.p.vmGroup[v]!]!;
      const counter = state.spread[g.index]!;
      return counter.cnt[g.spread!.domainOf[h]!]! + 1 - counter.min > g.spread!.maxSkew;
    },
  },
];

const PHRASES = new Map<string, string>([...HOST_RULES, ...VM_RULES].map((r) => [r.name, r.phrase]));
PHRASES.set('cpu', 'short of cpu');
PHRASES.set('memory', 'short of memory');
PHRASES.set('disk', 'short of disk');
PHRASES.set('gpu', 'short of gpus');
PHRASES.set('cloud-zone', 'a cloud zone (a move there is a replace, not a migration)');

/** The VM rules that apply to a group, minus capacity (the solver checks that inline). */
export function dynamicRulesFor(group: CompiledGroup): readonly VmRule[] {
  return VM_RULES.filter((rule) => rule.name !== 'instance-type' && !DIM_RULES.includes(rule.name as (typeof DIM_RULES)[number]) && rule.applies(group));
}

/**
 * For a VM that fits nowhere: how many hosts each rule ruled out, each host counted under the
 * first rule it fails, in the state the search ended in.
 */
export function explainRejection(state: SolverState, v: number): Record<string, number> {
  const p = state.p;
  const group = p.groups[p.vmGroup[v]!]!;
  const rules = VM_RULES.filter((rule) => rule.applies(group));
  const reasons: Record<string, number> = {};
  for (let h = 0; h < p.H; h++) {
    const failed = staticRejection(p.hosts[h]!, p.classes[p.vmClass[v]!]!.rules) ?? rules.find((rule) => rule.rejects(state, v, h))?.name;
    if (failed) reasons[failed] = (reasons[failed] ?? 0) + 1;
  }
  return reasons;
}

/** "no host can take it (memory: 812 hosts short of memory; zone: 120 hosts in another zone)". */
export function describeReasons(reasons: Readonly<Record<string, number>>, hostCount: number): string {
  if (hostCount === 0) return 'no hosts in the inventory';
  const parts = Object.entries(reasons)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([rule, n]) => `${rule}: ${n} ${n === 1 ? 'host' : 'hosts'} ${PHRASES.get(rule) ?? ''}`.trimEnd());
  return `no host can take it (${parts.join('; ')})`;
}
