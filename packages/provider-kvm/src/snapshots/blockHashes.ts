import { createHash } from 'node:crypto';
import { shellQuote } from '../shell/shellQuote.js';

/**
 * Digests of whole disks, computed on the host from 1 MiB blocks.
 *
 * A disk's manifest is one lowercase hex sha256 per 1 MiB block, in order, each followed by a
 * newline (the last block may be shorter when the disk's size is not a multiple of 1 MiB). Its
 * digest is `sha256-blocks:1048576:<sha256 of the manifest>`: the form the sim provider
 * records, with the same block size, so a digest is equal for two disks exactly when their
 * bytes are. The manifest is kept next to each backup, so an incremental rehashes only the
 * blocks it changed and takes the rest from its parent's manifest; a restore hashes the image
 * it wrote, read back from the host, and never copies the recorded digest.
 *
 * Blocks that read as zeros (holes, zero clusters, never-written areas) are known without
 * reading them; the others are read through qemu-img (so qcow2 chains, compressed base images
 * and internal snapshots all read as the guest sees them) and hashed by coreutils' sha256sum.
 */
export const BLOCK_BYTES = 1024 * 1024;

/** One extent of `qemu-img map --output=json`. */
export interface MapExtent {
  readonly start: number;
  readonly length: number;
  /** 0: allocated in the image itself; n: in its n-th backing file. */
  readonly depth: number;
  /** Allocated somewhere in the chain (QEMU ≥ 6.0; absent before). */
  readonly present?: boolean;
  readonly zero: boolean;
  readonly data: boolean;
}

export function parseImageMap(json: string): MapExtent[] {
  const parsed = JSON.parse(json) as unknown;
  if (!Array.isArray(parsed)) throw new Error('qemu-img map did not print a JSON array');
  return parsed.map((e: Record<string, unknown>) => ({
    start: Number(e['start']),
    length: Number(e['length']),
    depth: Number(e['depth'] ?? 0),
    ...(typeof e['present'] === 'boolean' ? { present: e['present'] } : {}),
    zero: e['zero'] === true,
    data: e['data'] === true,
  }));
}

export interface BlockClasses {
  readonly count: number;
  /** 1 where every byte of the block reads as zero. */
  readonly zero: Uint8Array;
  /** 1 where the image itself (not a backing file) holds part of the block: what an incremental changed. */
  readonly top: Uint8Array;
}

/** What each block of an image is, from its map. */
export function classifyBlocks(extents: readonly MapExtent[], virtualSize: number, blockSize = BLOCK_BYTES): BlockClasses {
  const count = Math.ceil(virtualSize / blockSize);
  const zero = new Uint8Array(count).fill(1);
  const top = new Uint8Array(count);
  for (const e of extents) {
    if (e.length <= 0) continue;
    const first = Math.floor(e.start / blockSize);
    const last = Math.min(count - 1, Math.floor((e.start + e.length - 1) / blockSize));
    const inTop = e.depth === 0 && (e.present ?? (e.data || e.zero));
    for (let b = first; b <= last; b++) {
      if (!e.zero) zero[b] = 0;
      if (inTop) top[b] = 1;
    }
  }
  return { count, zero, top };
}

/** Contiguous runs `[first, count]` of the given block indexes (sorted), each at most `maxRun` long. */
export function runsOf(indexes: readonly number[], maxRun = 256): [number, number][] {
  const out: [number, number][] = [];
  for (const i of indexes) {
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === i && last[1] < maxRun) last[1]++;
    else out.push([i, 1]);
  }
  return out;
}

const zeroHashes = new Map<number, string>();
/** sha256 of `length` zero bytes. */
export function zeroHash(length: number): string {
  let h = zeroHashes.get(length);
  if (!h) {
    h = createHash('sha256').update(Buffer.alloc(length)).digest('hex');
    zeroHashes.set(length, h);
  }
  return h;
}

/** The length of block `index` of a disk of `virtualSize` bytes. */
export function blockLength(index: number, virtualSize: number, blockSize = BLOCK_BYTES): number {
  return Math.min(blockSize, virtualSize - index * blockSize);
}

export function formatManifest(hashes: readonly string[]): string {
  return hashes.map((h) => `${h}\n`).join('');
}

export function parseManifest(text: string): string[] {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  for (const l of lines) if (!/^[0-9a-f]{64}$/.test(l)) throw new Error(`not a block manifest line: ${JSON.stringify(l.slice(0, 80))}`);
  return lines;
}

export function digestOfManifest(manifest: string, blockSize = BLOCK_BYTES): string {
  return `sha256-blocks:${blockSize}:${createHash('sha256').update(manifest).digest('hex')}`;
}

/** `<hex>  <dir>/c.00000016` lines from sha256sum over split's chunks → block index → hash. */
export function parseChunkHashes(stdout: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const m of stdout.matchAll(/^([0-9a-f]{64}) [ *]\S*c\.(\d+)$/gm)) out.set(Number(m[2]), m[1]!);
  return out;
}

/** QEMU's option syntax: a comma inside a value is written twice. */
function optValue(value: string): string {
  return value.replace(/,/g, ',,');
}

/**
 * A script that prints the sha256 of every block in `runs` of the image at `path` as
 * `<hex>  …/c.<index>` lines: each run is read through qemu-img (a raw window over the image)
 * into a temporary folder under `workDir`, cut into blocks by split, hashed by sha256sum and
 * removed before the next, so the temporary space is one run's worth.
 */
export function hashRunsScript(path: string, format: 'qcow2' | 'raw', runs: readonly (readonly [number, number])[], virtualSize: number, workDir: string, blockSize = BLOCK_BYTES): string {
  const lines = [
    'set -e',
    `t=$(mktemp -d ${shellQuote(`${workDir}/.hash.XXXXXX`)})`,
    `trap 'rm -rf "$t"' EXIT`,
    `h() { qemu-img convert -U -O raw --image-opts "$1" "$t/r"; split -b ${blockSize} -a 8 --numeric-suffixes="$2" "$t/r" "$t/c."; sha256sum "$t"/c.*; rm -f "$t"/c.* "$t/r"; }`,
  ];
  const file = format === 'qcow2' ? `file.driver=qcow2,file.file.driver=file,file.file.filename=${optValue(path)}` : `file.driver=file,file.filename=${optValue(path)}`;
  for (const [first, count] of runs) {
    const offset = first * blockSize;
    const size = Math.min(count * blockSize, virtualSize - offset);
    if (size <= 0) continue;
    lines.push(`h ${shellQuote(`driver=raw,offset=${offset},size=${size},${file}`)} ${first}`);
  }
  return lines.join('\n');
}

/** The blocks whose bytes must be read: every non-zero block (`all`), or the non-zero blocks the image itself holds (`top`, an incremental). */
export function blocksToRead(classes: BlockClasses, mode: 'all' | 'top'): number[] {
  const out: number[] = [];
  for (let b = 0; b < classes.count; b++) if (!classes.zero[b] && (mode === 'all' || classes.top[b])) out.push(b);
  return out;
}

/**
 * The manifest of an image: zero blocks by their known hash, read blocks from `hashed`, and
 * (`top`) every block the image does not hold from its parent's manifest `base`.
 */
export function assembleManifest(classes: BlockClasses, virtualSize: number, hashed: ReadonlyMap<number, string>, mode: 'all' | 'top', base?: readonly string[], blockSize = BLOCK_BYTES): string[] {
  if (mode === 'top' && (!base || base.length !== classes.count)) {
    throw new Error(`the parent's manifest has ${base?.length ?? 0} blocks, the image ${classes.count}`);
  }
  const out: string[] = new Array<string>(classes.count);
  for (let b = 0; b < classes.count; b++) {
    if (mode === 'top' && !classes.top[b]) out[b] = base![b]!;
    else if (classes.zero[b]) out[b] = zeroHash(blockLength(b, virtualSize, blockSize));
    else {
      const h = hashed.get(b);
      if (h === undefined) throw new Error(`block ${b} was not hashed`);
      out[b] = h;
    }
  }
  return out;
}
