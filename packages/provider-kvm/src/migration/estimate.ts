import type { MigrationEstimateInputs, OperationContext } from '@novacron/core';
import type { LocatedDomain } from '../KvmProvider.js';
import type { Virsh } from '../virsh/Virsh.js';
import type { MigrationEnv } from './access.js';
import { copiesSparsely } from './destinationXml.js';
import type { MovePlan } from './preflight.js';
import { shellQuote, sshCommand, virshLine, type HostLink } from './sshLink.js';

/**
 * The pre-copy model's inputs as measured on the hosts, plus what the model needs beyond
 * the core's MigrationEstimateInputs to predict a KVM move (set-up, the fixed part of the
 * downtime, the storage copy). The extra fields are the model's own (PreCopyInput), so a
 * caller that spreads the estimate into `predictPreCopy` uses them.
 */
export interface KvmMigrationEstimate extends MigrationEstimateInputs {
  readonly setupMs: number;
  readonly switchoverMs: number;
  readonly storageCopyBytes: number;
  readonly storageBandwidthBytesPerSec: number;
  /** Where each figure came from, for people reading a prediction. */
  readonly sources: { readonly dirtyRate: string; readonly bandwidth: string; readonly zeroFraction: string; readonly compressibility: string };
}

const MiB = 1024 * 1024;

/**
 * Dirty rate: QEMU's page sampling (calc-dirty-rate, 10,000 sampled pages per GiB — libvirt's
 * domdirtyrate-calc samples 512, too few for small guests) over 1 s and then 3 s. Dirtying
 * saturates at the working set, so when three seconds dirty clearly less than three times one
 * second, the working set is what three seconds dirtied. Bandwidth: what this provider last
 * measured for the host pair's memory stream, else an SSH stream between the hosts for 1.5 s
 * (the path the migration takes), whichever is lower. Zero pages: last measured for this VM,
 * else the guest's unused memory from the balloon's statistics.
 */
export async function estimateMove(env: MigrationEnv, plan: MovePlan, ctx: OperationContext): Promise<KvmMigrationEstimate> {
  const { source } = plan;
  const info = source.view.info;
  const vm = info.name;
  const memoryBytes = info.memoryMiB * MiB;
  const running = source.view.state === 'running';
  const [dirty, link, zero, storage, sample] = await Promise.all([
    running ? measureDirtying(env, source, memoryBytes, ctx) : Promise.resolve({ rate: 0, workingSet: 0, how: 'not running' }),
    // Unknown: a conservative gigabit-class guess, said so in docs.
    measureLink(source.virsh, plan.link, ctx).then((bps) => bps ?? 100 * MiB),
    zeroShare(env, source, memoryBytes),
    storageBytes(source, plan),
    running ? sampleMemory(env, source, memoryBytes) : Promise.resolve(undefined),
  ]);
  env.calibration.recordLink(source.host.name, plan.destination.name, link);
  const calibrated = env.calibration.throughput(source.host.name, plan.destination.name);
  const bandwidth = env.calibration.capacity(source.host.name, plan.destination.name) ?? link;
  // The pages as they are now, else what the VM's last compressed move measured, else the core's prior.
  // Zero pages likewise: the sample's, else the last move's, else the balloon's unused memory.
  const zeroFraction = sample ? sample.zeroBytes / sample.bytes : zero.fraction;
  const compressibility = sample ? compressibilityOf(sample) : env.calibration.compressibility(vm);
  // The move that follows paces its compressed stream by it (liveMigration).
  if (sample) env.calibration.recordCompressibility(vm, compressibility!);
  return {
    memoryBytes,
    workingSetBytes: dirty.workingSet || memoryBytes,
    dirtyRateBytesPerSec: dirty.rate,
    bandwidthBytesPerSec: bandwidth,
    zeroFraction,
    ...(compressibility === undefined ? {} : { compressibility }),
    diskBytes: plan.volumes.reduce((sum, v) => sum + v.physicalBytes, 0),
    setupMs: env.calibration.setupMs,
    switchoverMs: env.calibration.switchoverMs,
    storageCopyBytes: storage,
    storageBandwidthBytesPerSec: link,
    sources: {
      dirtyRate: dirty.how,
      bandwidth: calibrated !== undefined && calibrated < link ? `measured in earlier migrations ${plan.source.host.name} → ${plan.destination.name}` : 'an SSH stream between the hosts',
      zeroFraction: sample ? `${formatMiB(sample.bytes)} of guest memory sampled` : zero.how,
      compressibility: sample ? `${formatMiB(sample.bytes)} of guest memory sampled, ${sample.compressor}` : compressibility === undefined ? 'not measured (the prior)' : 'measured in its last compressed migration',
    },
  };
}

async function qmp(virsh: Virsh, vm: string, command: object, signal?: AbortSignal): Promise<string> {
  return virsh.run(['qemu-monitor-command', vm, JSON.stringify(command)], { ...(signal ? { signal } : {}), vm, operation: 'estimateMigration' });
}

async function sampleDirtyRate(env: MigrationEnv, found: LocatedDomain, seconds: number, ctx: OperationContext): Promise<number | undefined> {
  const vm = found.view.info.name;
  await qmp(found.virsh, vm, { execute: 'calc-dirty-rate', arguments: { 'calc-time': seconds, 'sample-pages': 10_000 } }, ctx.signal);
  await env.clock.sleep(seconds * 1000 + 200, ctx.signal);
  for (let i = 0; i < 20; i++) {
    const out = await qmp(found.virsh, vm, { execute: 'query-dirty-rate' }, ctx.signal);
    const m = /"status":\s*"measured"[\s\S]*?"dirty-rate":\s*(\d+)|"dirty-rate":\s*(\d+)[\s\S]*?"status":\s*"measured"/.exec(out);
    if (m) return Number(m[1] ?? m[2]) * MiB;
    await env.clock.sleep(250, ctx.signal);
  }
  return undefined;
}

/** Rate and working set from two sampling windows (see estimateMove). */
export function dirtyingFrom(oneSecond: number, threeSeconds: number, memoryBytes: number): { rate: number; workingSet: number } {
  const dirtiedIn3 = 3 * threeSeconds;
  if (oneSecond <= 0) return { rate: threeSeconds, workingSet: dirtiedIn3 > 0 ? Math.min(memoryBytes, dirtiedIn3) : 0 };
  if (dirtiedIn3 < 0.85 * 3 * oneSecond) return { rate: oneSecond, workingSet: Math.min(memoryBytes, Math.max(dirtiedIn3, oneSecond)) };
  return { rate: Math.max(oneSecond, threeSeconds), workingSet: memoryBytes };
}

async function measureDirtying(env: MigrationEnv, found: LocatedDomain, memoryBytes: number, ctx: OperationContext): Promise<{ rate: number; workingSet: number; how: string }> {
  try {
    const one = await sampleDirtyRate(env, found, 1, ctx);
    const three = await sampleDirtyRate(env, found, 3, ctx);
    if (one === undefined || three === undefined) throw new Error('no measurement');
    return { ...dirtyingFrom(one, three, memoryBytes), how: 'QEMU page sampling over 1 s and 3 s' };
  } catch (error) {
    if (ctx.signal?.aborted) throw error;
    // libvirt's own call, with its coarser sampling.
    const vm = found.view.info.name;
    await found.virsh.run(['domdirtyrate-calc', vm, '--seconds', '1', '--mode', 'page-sampling'], { vm, operation: 'estimateMigration' });
    await env.clock.sleep(1500, ctx.signal);
    const out = await found.virsh.run(['domstats', '--dirtyrate', vm], { vm, operation: 'estimateMigration' });
    const mib = Number(/dirtyrate\.megabytes_per_second=(\d+)/.exec(out)?.[1] ?? 0);
    return { rate: mib * MiB, workingSet: memoryBytes, how: 'libvirt domdirtyrate-calc over 1 s' };
  }
}

/** Bytes/s an SSH stream from the source to the destination carried for about 1.5 s; undefined when it could not be measured. */
export async function measureLink(virsh: Virsh, to: HostLink, ctx: OperationContext): Promise<number | undefined> {
  const script = `timeout 1.5 cat /dev/zero 2>/dev/null | ${sshCommand(to, 'dd of=/dev/null bs=64k 2>&1 | tail -n 1')}`;
  const r = await virsh.script(script, { ...(ctx.signal ? { signal: ctx.signal } : {}), timeoutMs: 60_000 });
  const m = /^(\d+) bytes.*copied, ([\d.]+) s/m.exec(r.stdout);
  if (!m || Number(m[2]) <= 0) return undefined;
  return Number(m[1]) / Number(m[2]);
}

/**
 * 256 pieces of 32 KiB: zero and busy memory come in runs, so many small pieces estimate the
 * zero share far better than a few large ones (8 pieces of 1 MiB put an idle guest's
 * non-zero share anywhere from 14% to 40%, and its predicted time with it).
 */
const SAMPLE_CHUNKS = 256;
const SAMPLE_CHUNK = 32 * 1024;
const PAGE = 4096;

/** A sample of guest memory: its size, its zero pages, and what it compressed to on the host. */
export interface MemorySample {
  readonly bytes: number;
  readonly zeroBytes: number;
  readonly compressedBytes: number;
  readonly compressor: string;
}

/**
 * Guest-physical offsets to sample: whole MiB, spread at random over RAM that is surely
 * mapped whatever the machine type puts below 4 GiB (the first 2 GiB, and above 4 GiB what
 * lies beyond 3.5 GiB of memory).
 */
export function sampleOffsets(memoryBytes: number, random: () => number, chunks = SAMPLE_CHUNKS): number[] {
  const low = Math.min(memoryBytes, 2 * 1024 * MiB);
  const high = Math.max(0, memoryBytes - 3.5 * 1024 * MiB);
  const slots = Math.floor((low + high) / SAMPLE_CHUNK);
  const picked = new Set<number>();
  while (picked.size < Math.min(chunks, slots)) picked.add(Math.floor(random() * slots));
  return [...picked].sort((a, b) => a - b).map((slot) => {
    const at = slot * SAMPLE_CHUNK;
    return at < low ? at : 4 * 1024 * MiB + (at - low);
  });
}

/**
 * Reads a few MiB of guest memory on the source host (QMP pmemsave, into a folder the QEMU
 * user may write) and compresses them as multifd would: zstd at level 1 (QEMU's default),
 * or gzip -1 where zstd is not installed. A few hundred ms; undefined when it fails (the
 * estimate then falls back), never an error.
 */
async function sampleMemory(env: MigrationEnv, found: LocatedDomain, memoryBytes: number): Promise<MemorySample | undefined> {
  const vm = found.view.info.name;
  const dir = `/tmp/novacron-sample-${vm}-${Math.floor(env.random() * 2 ** 32).toString(16)}`;
  const d = shellQuote(dir);
  // One virsh process, one monitor connection, every read: `cmd; cmd; ...` in virsh's own syntax.
  const reads = sampleOffsets(memoryBytes, env.random)
    .map((at, i) => `qemu-monitor-command ${vm} '${JSON.stringify({ execute: 'pmemsave', arguments: { val: at, size: SAMPLE_CHUNK, filename: `${dir}/c${String(i).padStart(3, '0')}` } })}'`)
    .join('; ');
  const script = [
    `mkdir -m 777 ${d} || exit 3`, // QEMU runs as its own user
    `trap ${shellQuote(`rm -rf ${d}`)} EXIT`,
    `${virshLine([reads])} >/dev/null`,
    `cat ${d}/c* >${d}/all 2>/dev/null || exit 3`,
    'if command -v zstd >/dev/null; then z="zstd -1 -c -q"; n=zstd; else z="gzip -1 -c"; n=gzip; fi',
    // A page of zeroes is a line of nothing but 0s in od's hex dump, 4096 bytes a line.
    `echo "sample $(wc -c <${d}/all) $(od -An -v -tx8 -w4096 ${d}/all | grep -c -v '[1-9a-f]') $($z <${d}/all | wc -c) $n"`,
  ].join('\n');
  const r = await found.virsh.script(script, { timeoutMs: 30_000 }).catch(() => undefined);
  const m = r && /^sample (\d+) (\d+) (\d+) (\w+)/m.exec(r.stdout);
  if (!m || Number(m[1]) === 0) {
    env.log?.(`kvm: ${found.host.name}: sampling ${vm}'s memory failed: ${r?.stderr.trim().slice(0, 200) ?? 'no answer'}`);
    return undefined;
  }
  return { bytes: Number(m[1]), zeroBytes: Math.min(Number(m[1]), Number(m[2]) * PAGE), compressedBytes: Number(m[3]), compressor: m[4] === 'zstd' ? 'zstd -1' : 'gzip -1' };
}

/**
 * The model's compressibility (wire bytes per byte of the non-zero pages it sends): the
 * sample's zero pages compress to almost nothing, so what it compressed to is all theirs.
 */
export function compressibilityOf(sample: MemorySample): number {
  const nonZero = sample.bytes - sample.zeroBytes;
  return nonZero < PAGE ? 1 : Math.min(1.2, Math.max(0.01, sample.compressedBytes / nonZero));
}

function formatMiB(bytes: number): string {
  return `${Math.round(bytes / MiB)} MiB`;
}

async function zeroShare(env: MigrationEnv, found: LocatedDomain, memoryBytes: number): Promise<{ fraction: number; how: string }> {
  const known = env.calibration.zeroFraction(found.view.info.name);
  if (known !== undefined) return { fraction: known, how: 'measured in its last migration' };
  if (found.view.state !== 'running') return { fraction: 0, how: 'not running' };
  const r = await found.virsh.tryRun(['dommemstat', found.view.info.name], { vm: found.view.info.name, operation: 'estimateMigration' });
  const unusedKiB = Number(/^unused (\d+)/m.exec(r.stdout)?.[1] ?? NaN);
  if (!Number.isFinite(unusedKiB)) return { fraction: 0, how: 'unknown (no balloon statistics): every page counted' };
  return { fraction: Math.min(0.95, (unusedKiB * 1024) / memoryBytes), how: "the guest's unused memory (balloon statistics)" };
}

/**
 * What the storage copy sends: the data in the disks' backing chains when the domain lets
 * QEMU skip zeroes (discard='unmap', see destinationXml), else every byte of every disk.
 */
async function storageBytes(found: LocatedDomain, plan: MovePlan): Promise<number> {
  const disks = plan.volumes.filter((v) => !v.readonly);
  if (disks.length === 0) return 0;
  const xml = await found.virsh.run(['dumpxml', found.view.info.name], { vm: found.view.info.name, operation: 'estimateMigration' });
  if (!copiesSparsely(xml)) return disks.reduce((sum, v) => sum + v.capacityBytes, 0);
  const script = disks.map((v) => `qemu-img map -U --output=json ${shellQuote(v.path)} 2>/dev/null | awk -F'[:,]' '/"data": *true/ { for (i = 1; i < NF; i++) if ($i ~ /"length"/) s += $(i + 1) } END { print s + 0 }'`).join('\n');
  const r = await found.virsh.script(script, { timeoutMs: 60_000 });
  const sums = r.stdout.split('\n').filter(Boolean).map(Number);
  return sums.length === disks.length ? sums.reduce((a, b) => a + b, 0) : disks.reduce((sum, v) => sum + v.allocationBytes, 0);
}
