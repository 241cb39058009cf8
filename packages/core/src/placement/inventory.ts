import { z } from 'zod';
import { InvalidInputError } from '../errors/errors.js';
import { labels } from '../model/common.js';
import { placementRules, type PlacementRules, type PlacementWeights } from '../model/fleet.js';
import type { Host } from '../model/records.js';
import type { RebalanceTarget } from './rebalance.js';
import { SCORER_NAMES, type PlacementRequest, type PlacedVm, type PlacementVm } from './types.js';

/**
 * The what-if inventory format (`novacron place`): plain JSON files of hosts and VMs, checked
 * with zod, every problem reported with the item's index and id.
 *
 * Hosts: `[{ id, cpu, memoryMiB, diskGiB?, gpu?, zone?, region?, labels?, pricePerHour?,
 * overcommit?, state?, allocated?, instanceTypes? }]` (or `{ hosts: [...] }`).
 * VMs: `[{ id, cpu, memoryMiB, diskGiB?, gpu?, group?, labels?, host? }]` (or `{ vms: [...],
 * rules?: {...} }`); a VM with `host` runs there already and is not moved.
 * Rules: `{ <group>: <placement rules as in a fleet file> }`.
 */

const amount = z.number().finite().min(0);

const hostInput = z.strictObject({
  id: z.string().min(1),
  cpu: amount,
  memoryMiB: amount,
  /** Absent: disk is not a constraint. */
  diskGiB: amount.optional(),
  gpu: amount.default(0),
  zone: z.string().min(1).default('default'),
  region: z.string().min(1).optional(),
  provider: z.string().min(1).default('inventory'),
  labels: labels.default({}),
  pricePerHour: amount.default(0),
  /** A number is the cpu ratio (the common case); an object sets each dimension. */
  overcommit: z
    .union([z.number().min(0.1).max(64), z.strictObject({ cpu: z.number().min(0.1).max(64).default(1), memory: z.number().min(0.1).max(4).default(1), disk: z.number().min(0.1).max(16).default(1) })])
    .optional(),
  state: z.enum(['up', 'maintenance', 'draining', 'down']).default('up'),
  /** Resources in use by VMs this inventory does not list. */
  allocated: z.strictObject({ cpu: amount.default(0), memoryMiB: amount.default(0), diskGiB: amount.default(0), gpu: amount.default(0) }).optional(),
  instanceTypes: z.array(z.strictObject({ name: z.string().min(1), cpu: amount, memoryMiB: amount, gpu: amount.optional(), pricePerHour: amount })).min(1).optional(),
});

const vmInput = z.strictObject({
  id: z.string().min(1),
  cpu: amount,
  memoryMiB: amount,
  diskGiB: amount.default(0),
  gpu: amount.default(0),
  group: z.string().min(1).default('default'),
  labels: labels.default({}),
  /** Runs there already: counted, never moved. */
  host: z.string().min(1).optional(),
});

export type HostInput = z.input<typeof hostInput>;
export type VmInput = z.input<typeof vmInput>;

/** Disk where a host does not say: large enough never to bind, finite so every sum stays a number. */
const UNLIMITED_DISK_GIB = 1e12;

export interface PlacementInput {
  /** The hosts file's content. */
  readonly hosts: unknown;
  /** The VMs file's content. */
  readonly vms: unknown;
  /** The rules file's content, if any. */
  readonly rules?: unknown;
}

export interface ParsedPlacementInput {
  readonly request: PlacementRequest;
  /** VMs that run already, with their sizes (the report draws them). */
  readonly running: readonly (PlacedVm & { readonly resources: PlacementVm['resources'] })[];
}

/**
 * Checks a what-if inventory and turns it into a placement request. Throws one
 * InvalidInputError listing every problem, each naming the item (`vms[3] "web-3".cpu: …`).
 */
export function parsePlacementInput(input: PlacementInput, sources: { hosts?: string; vms?: string; rules?: string } = {}): ParsedPlacementInput {
  const problems: string[] = [];
  const where = (file: string | undefined, fallback: string) => file ?? fallback;
  const hostItems = listOf(input.hosts, 'hosts', where(sources.hosts, 'hosts'), problems);
  const vmsDoc = input.vms;
  const vmItems = listOf(vmsDoc, 'vms', where(sources.vms, 'vms'), problems);
  const embeddedRules = isRecord(vmsDoc) && !Array.isArray(vmsDoc) ? vmsDoc['rules'] : undefined;

  const hosts: Host[] = [];
  const hostIds = new Set<string>();
  hostItems.forEach((item, i) => {
    const at = `${where(sources.hosts, 'hosts')}: hosts[${i}]${idOf(item)}`;
    const parsed = hostInput.safeParse(item);
    if (!parsed.success) return problems.push(...issues(at, parsed.error));
    const h = parsed.data;
    if (hostIds.has(h.id)) return problems.push(`${at}: duplicate host id "${h.id}"`);
    hostIds.add(h.id);
    const over = typeof h.overcommit === 'number' ? { cpu: h.overcommit, memory: 1, disk: 1 } : (h.overcommit ?? { cpu: 1, memory: 1, disk: 1 });
    hosts.push({
      id: h.id,
      provider: h.provider,
      name: h.id,
      zone: h.zone,
      ...(h.region ? { region: h.region } : {}),
      labels: h.labels,
      capacity: { cpu: h.cpu, memoryMiB: h.memoryMiB, diskGiB: h.diskGiB ?? UNLIMITED_DISK_GIB, gpu: h.gpu },
      allocated: h.allocated ?? { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 },
      overcommit: over,
      pricePerHour: h.pricePerHour,
      state: h.state,
      ...(h.instanceTypes ? { instanceTypes: h.instanceTypes } : {}),
    });
  });

  const vms: PlacementVm[] = [];
  const running: (PlacedVm & { resources: PlacementVm['resources'] })[] = [];
  const vmIds = new Set<string>();
  vmItems.forEach((item, i) => {
    const at = `${where(sources.vms, 'vms')}: vms[${i}]${idOf(item)}`;
    const parsed = vmInput.safeParse(item);
    if (!parsed.success) return problems.push(...issues(at, parsed.error));
    const v = parsed.data;
    if (vmIds.has(v.id)) return problems.push(`${at}: duplicate VM id "${v.id}"`);
    vmIds.add(v.id);
    const resources = { cpu: v.cpu, memoryMiB: v.memoryMiB, diskGiB: v.diskGiB, gpu: v.gpu };
    if (v.host !== undefined) {
      if (!hostIds.has(v.host)) return problems.push(`${at}.host: no host "${v.host}" in the hosts file`);
      running.push({ id: v.id, group: v.group, host: v.host, resources });
    } else vms.push({ id: v.id, group: v.group, resources, labels: v.labels });
  });

  // Rules: a file, or a `rules` key in the VMs file; each names a group with VMs.
  const groups = new Set([...vms.map((v) => v.group), ...running.map((v) => v.group)]);
  const groupRules: Record<string, PlacementRules> = {};
  for (const [source, doc] of [
    [where(sources.rules, 'rules'), input.rules],
    [`${where(sources.vms, 'vms')}: rules`, embeddedRules],
  ] as const) {
    if (doc === undefined) continue;
    if (!isRecord(doc) || Array.isArray(doc)) {
      problems.push(`${source}: expected an object mapping group names to placement rules`);
      continue;
    }
    for (const [group, raw] of Object.entries(doc)) {
      const at = `${source}.${group}`;
      if (!groups.has(group)) {
        problems.push(`${at}: no VM is in group "${group}"${known(groups)}`);
        continue;
      }
      if (groupRules[group]) {
        problems.push(`${at}: rules for group "${group}" are given twice`);
        continue;
      }
      const parsed = placementRules.safeParse(raw);
      if (!parsed.success) {
        problems.push(...issues(at, parsed.error));
        continue;
      }
      const refs = [...(parsed.data.avoidGroups ?? []).map((r) => ['avoidGroups', r.group]), ...(parsed.data.withGroups ?? []).map((r) => ['withGroups', r.group]), ...(parsed.data.near ?? []).map((g) => ['near', g])];
      for (const [key, ref] of refs) if (!groups.has(ref!)) problems.push(`${at}.${key}: no VM is in group "${ref}"${known(groups)}`);
      groupRules[group] = parsed.data;
    }
  }

  if (problems.length) {
    throw new InvalidInputError(`the placement input has ${problems.length === 1 ? '1 problem' : `${problems.length} problems`}:\n  ${problems.join('\n  ')}`, {
      hint: 'fix the files; nothing was placed',
    });
  }
  // Running VMs take room on their hosts.
  for (const r of running) {
    const h = hosts.find((x) => x.id === r.host)!;
    if (h.instanceTypes) continue;
    const a = h.allocated;
    Object.assign(h, { allocated: { cpu: a.cpu + r.resources.cpu, memoryMiB: a.memoryMiB + r.resources.memoryMiB, diskGiB: a.diskGiB + r.resources.diskGiB, gpu: a.gpu + r.resources.gpu } });
  }
  return {
    request: {
      hosts,
      vms: vms.map((v) => (groupRules[v.group] ? { ...v, rules: groupRules[v.group]! } : v)),
      existing: running.map(({ id, group, host }) => ({ id, group, host })),
      groupRules,
    },
    running,
  };
}

/**
 * `cost=1,balance=0.5` → weights. Names are the soft rules; values are numbers from 0 to
 * 1000. Throws an InvalidInputError naming the bad part.
 */
export function parseWeights(text: string): PlacementWeights {
  const out: Record<string, number> = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [name, value, extra] = part.split('=').map((x) => x.trim());
    if (!name || value === undefined || extra !== undefined) throw new InvalidInputError(`weights: "${part}" is not name=value`, { hint: `e.g. cost=1,balance=0.5; names: ${SCORER_NAMES.join(', ')}` });
    if (!(SCORER_NAMES as readonly string[]).includes(name)) throw new InvalidInputError(`weights: unknown soft rule "${name}"`, { hint: `known: ${SCORER_NAMES.join(', ')}` });
    const n = Number(value);
    if (value === '' || !Number.isFinite(n) || n < 0 || n > 1000) throw new InvalidInputError(`weights: ${name}=${value} is not a number from 0 to 1000`);
    if (name in out) throw new InvalidInputError(`weights: ${name} is given twice`);
    out[name] = n;
  }
  if (Object.keys(out).length === 0) throw new InvalidInputError('weights: none given', { hint: `e.g. cost=1,balance=0.5; names: ${SCORER_NAMES.join(', ')}` });
  return out;
}

/**
 * Parses a rebalance target as given on the command line: `drain:HOST[,HOST…]`,
 * `consolidate[:MAX_ACTIVE_HOSTS]` or `balance[:MAX_IMBALANCE]`. Host names are returned as
 * given; the caller resolves them against its inventory.
 * @throws InvalidInputError saying what is wrong and what is accepted.
 */
export function parseRebalance(text: string): RebalanceTarget {
  const hint = 'e.g. drain:host-3, drain:host-3,host-4, consolidate, consolidate:10, balance, balance:0.1';
  const colon = text.indexOf(':');
  const kind = (colon < 0 ? text : text.slice(0, colon)).trim();
  const arg = colon < 0 ? undefined : text.slice(colon + 1).trim();
  switch (kind) {
    case 'drain': {
      const hosts = (arg ?? '').split(',').map((h) => h.trim()).filter(Boolean);
      if (hosts.length === 0) throw new InvalidInputError(`rebalance: "${text}" names no host to drain`, { hint });
      return { kind, hosts };
    }
    case 'consolidate': {
      if (arg === undefined) return { kind };
      const n = Number(arg);
      if (arg === '' || !Number.isInteger(n) || n < 0) throw new InvalidInputError(`rebalance: consolidate:${arg} — the most active hosts must be a whole number, 0 or more`, { hint });
      return { kind, maxActiveHosts: n };
    }
    case 'balance': {
      if (arg === undefined) return { kind };
      const x = Number(arg);
      if (arg === '' || !(x >= 0 && x <= 1)) throw new InvalidInputError(`rebalance: balance:${arg} — the most imbalance (standard deviation of utilisation) must be from 0 to 1`, { hint });
      return { kind, maxImbalance: x };
    }
    default:
      throw new InvalidInputError(`rebalance: unknown target "${kind}"`, { hint });
  }
}

function listOf(doc: unknown, key: 'hosts' | 'vms', source: string, problems: string[]): unknown[] {
  if (Array.isArray(doc)) return doc;
  if (isRecord(doc) && Array.isArray(doc[key])) return doc[key] as unknown[];
  problems.push(`${source}: expected a list of ${key}, or an object with a "${key}" list`);
  return [];
}

function issues(at: string, error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
    const message = issue.code === 'invalid_type' && issue.input === undefined ? `required (${issue.expected})` : issue.message;
    return `${at}${path}: ${message}`;
  });
}

function idOf(item: unknown): string {
  return isRecord(item) && typeof item['id'] === 'string' ? ` "${item['id']}"` : '';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function known(groups: ReadonlySet<string>): string {
  return groups.size ? ` (groups: ${[...groups].sort().join(', ')})` : '';
}
