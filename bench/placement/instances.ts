/**
 * Placement instances for the benchmark and the tests: seeded, so every run sees the same
 * inventories. Imports only types and the public API of @novacron/core, so they run against
 * the sources under vitest and against the build under `node`.
 */
import type { Host, PlacementRequest, PlacementRules, PlacementVm } from '@novacron/core';

export interface Instance {
  readonly name: string;
  readonly request: PlacementRequest;
  /** Known by construction: the items fill exactly this many hosts. */
  readonly optimum?: { readonly activeHosts: number; readonly costPerHour: number };
}

/** mulberry32, as in the solver: instances must not depend on Math.random. */
export function rng(seed: number): () => number {
  let a = (seed >>> 0) ^ 0x5bd1e995;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const GiB = 1024;

export function host(id: string, patch: Partial<Host> & { cpu?: number; memoryMiB?: number; diskGiB?: number; gpu?: number } = {}): Host {
  const { cpu = 32, memoryMiB = 128 * GiB, diskGiB = 2000, gpu = 0, ...rest } = patch;
  return {
    id,
    provider: 'dc',
    name: id,
    zone: 'z1',
    region: 'r1',
    labels: {},
    capacity: { cpu, memoryMiB, diskGiB, gpu },
    allocated: { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 },
    overcommit: { cpu: 1, memory: 1, disk: 1 },
    pricePerHour: 1,
    state: 'up',
    ...rest,
  };
}

interface HostType {
  readonly name: string;
  readonly share: number;
  readonly cpu: number;
  readonly memoryMiB: number;
  readonly diskGiB: number;
  readonly gpu: number;
  readonly price: number;
  readonly cpuOvercommit: number;
  readonly labels: Readonly<Record<string, string>>;
}

const HOST_TYPES: readonly HostType[] = [
  { name: 'small', share: 0.3, cpu: 32, memoryMiB: 128 * GiB, diskGiB: 2000, gpu: 0, price: 0.55, cpuOvercommit: 1, labels: {} },
  { name: 'medium', share: 0.4, cpu: 48, memoryMiB: 256 * GiB, diskGiB: 4000, gpu: 0, price: 1.0, cpuOvercommit: 2, labels: { ssd: 'true' } },
  { name: 'large', share: 0.2, cpu: 96, memoryMiB: 512 * GiB, diskGiB: 8000, gpu: 0, price: 1.9, cpuOvercommit: 1, labels: { ssd: 'true' } },
  { name: 'gpu', share: 0.1, cpu: 64, memoryMiB: 256 * GiB, diskGiB: 4000, gpu: 4, price: 3.2, cpuOvercommit: 1, labels: { ssd: 'true', gpu: 'a100' } },
];

interface GroupShape {
  readonly group: string;
  readonly share: number;
  readonly shapes: readonly (readonly [cpu: number, memoryGiB: number, diskGiB: number, gpu?: number])[];
  readonly rules: PlacementRules;
}

const GROUPS: readonly GroupShape[] = [
  { group: 'web', share: 0.35, shapes: [[1, 2, 20], [2, 4, 20], [2, 8, 20]], rules: { spread: { key: 'zone', maxSkew: 5 } } },
  { group: 'api', share: 0.22, shapes: [[4, 8, 40], [4, 16, 40]], rules: { preferLabels: { ssd: 'true' } } },
  { group: 'db', share: 0.08, shapes: [[8, 32, 200], [16, 64, 400]], rules: { hostLabels: { ssd: 'true' }, maxPerHost: 3 } },
  { group: 'cache', share: 0.1, shapes: [[2, 16, 10], [4, 32, 10]], rules: { avoidGroups: [{ group: 'db', scope: 'host' }] } },
  { group: 'batch', share: 0.23, shapes: [[8, 16, 50], [4, 8, 25]], rules: { zones: ['z1', 'z2', 'z3'] } },
  { group: 'ml', share: 0.01, shapes: [[8, 64, 200, 1]], rules: { hostLabels: { gpu: 'a100' }, maxPerHost: 2 } },
  { group: 'lb', share: 0.01, shapes: [[2, 4, 10]], rules: { antiAffinity: 'host' } },
];

/**
 * Heterogeneous hosts (four sizes, one with GPUs, cpu overcommit on some, a few in
 * maintenance or draining) in four zones, and six groups with spread, preferred labels,
 * required labels with a per-host cap, avoidance, a zone restriction and anti-affinity.
 * The VMs ask for about 55% of the usable memory, so where they go matters.
 */
export function heterogeneous(hostCount: number, vmCount: number, seed = 1): Instance {
  const random = rng(seed);
  const hosts: Host[] = [];
  for (let i = 0; i < hostCount; i++) {
    const type = pick(HOST_TYPES, random);
    const roll = random();
    hosts.push(
      host(`h${String(i).padStart(4, '0')}`, {
        zone: `z${(i % 4) + 1}`,
        cpu: type.cpu,
        memoryMiB: type.memoryMiB,
        diskGiB: type.diskGiB,
        gpu: type.gpu,
        pricePerHour: type.price,
        overcommit: { cpu: type.cpuOvercommit, memory: 1, disk: 1 },
        labels: { ...type.labels, rack: `rack-${i % 10}`, type: type.name },
        state: roll < 0.02 ? 'maintenance' : roll < 0.03 ? 'draining' : 'up',
      }),
    );
  }
  const vms: PlacementVm[] = [];
  const shares = GROUPS.map((g) => g.share);
  for (let i = 0; i < vmCount; i++) {
    const g = GROUPS[pickIndex(shares, random)]!;
    const [cpu, mem, disk, gpu = 0] = g.shapes[Math.floor(random() * g.shapes.length)]!;
    vms.push({ id: `${g.group}-${String(i).padStart(5, '0')}`, group: g.group, resources: { cpu, memoryMiB: mem * GiB, diskGiB: disk, gpu }, rules: g.rules });
  }
  return { name: `${hostCount} hosts / ${vmCount.toLocaleString('en-US')} VMs`, request: { hosts, vms, seed } };
}

const CATALOGUE: readonly (readonly [number, number])[] = [
  [1, 2], [1, 4], [2, 4], [2, 8], [4, 8], [4, 16], [8, 16], [8, 32], [2, 16], [1, 8], [4, 32], [16, 64],
];

/**
 * `used` identical hosts (32 cpu, 128 GiB) each cut into VMs of catalogue shapes that fill it
 * exactly in cpu and memory, plus as many spare hosts: the optimum is `used` hosts, and no
 * fewer can hold the VMs (they fill `used` hosts exactly).
 */
export function knownOptimum(used: number, seed = 1): Instance {
  const random = rng(seed * 7919 + used);
  const C = 32;
  const M = 128;
  const vms: PlacementVm[] = [];
  for (let b = 0; b < used; b++) {
    let c = C;
    let m = M;
    const items: [number, number][] = [];
    for (;;) {
      const fitting = CATALOGUE.filter(([ic, im]) => ic <= c && im <= m && !(ic === c && im < m) && !(im === m && ic < c));
      if (fitting.length === 0 || (c === 0 && m === 0)) break;
      const [ic, im] = fitting[Math.floor(random() * fitting.length)]!;
      items.push([ic, im]);
      c -= ic;
      m -= im;
    }
    // The remainder becomes one more VM, so the host is filled exactly.
    if (c > 0 || m > 0) {
      if (c > 0 && m > 0) items.push([c, m]);
      else items[items.length - 1] = [items[items.length - 1]![0] + c, items[items.length - 1]![1] + m];
    }
    for (const [ic, im] of items) vms.push({ id: `vm-${String(vms.length).padStart(4, '0')}`, group: 'g', resources: { cpu: ic, memoryMiB: im * GiB, diskGiB: 10, gpu: 0 } });
  }
  // Shuffle, so the input order gives nothing away.
  for (let i = vms.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [vms[i], vms[j]] = [vms[j]!, vms[i]!];
  }
  const hosts = Array.from({ length: used * 2 }, (_, i) => host(`h${String(i).padStart(3, '0')}`, { cpu: C, memoryMiB: M * GiB, diskGiB: 10_000, zone: `z${(i % 2) + 1}` }));
  return { name: `known optimum, ${used} of ${used * 2} hosts`, request: { hosts, vms, seed }, optimum: { activeHosts: used, costPerHour: used } };
}

function pick<T extends { share: number }>(items: readonly T[], random: () => number): T {
  return items[pickIndex(items.map((i) => i.share), random)]!;
}

function pickIndex(shares: readonly number[], random: () => number): number {
  let r = random() * shares.reduce((s, x) => s + x, 0);
  for (let i = 0; i < shares.length; i++) {
    r -= shares[i]!;
    if (r < 0) return i;
  }
  return shares.length - 1;
}
