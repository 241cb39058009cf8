import { createHash } from 'node:crypto';

/**
 * The sim's disks are 1 MiB blocks. A block's content is named by a token: the disk serial and
 * the write generation that last wrote it (`serial * 2^26 + generation`), so a guest write of
 * many blocks costs one token, and two disks hold the same bytes exactly when they hold the
 * same tokens at the same indexes. `blockBytes` turns a token into the 1 MiB it stands for.
 *
 * Block maps are kept as runs `[start, length, token]`, sorted, non-overlapping and merged
 * where neighbours share a token. Guests write in extents and a circular log, so a map of a
 * 200 GiB disk is a handful of runs, and every operation below is a linear sweep.
 */
export const BLOCK_BYTES = 1024 * 1024;
export const GENERATIONS = 2 ** 26;

export type Run = readonly [start: number, length: number, token: number];
export type Runs = readonly Run[];

export function tokenOf(serial: number, generation: number): number {
  return serial * GENERATIONS + generation;
}

/** Blocks a map names. */
export function countBlocks(runs: Runs): number {
  let n = 0;
  for (const [, length] of runs) n += length;
  return n;
}

/** Blocks a map names at or after `from`. */
export function countBlocksFrom(runs: Runs, from: number): number {
  let n = 0;
  for (const [start, length] of runs) n += Math.max(0, start + length - Math.max(start, from));
  return n;
}

/** Appends a run, merging it into the previous one when they touch and share a token. */
function push(out: Run[], start: number, length: number, token: number): void {
  if (length <= 0) return;
  const last = out[out.length - 1];
  if (last && last[2] === token && last[0] + last[1] === start) out[out.length - 1] = [last[0], last[1] + length, token];
  else out.push([start, length, token]);
}

/** `top` laid over `base`: where both name a block, `top` wins. */
export function overlay(base: Runs, top: Runs): Run[] {
  const out: Run[] = [];
  let i = 0;
  let cursor = -Infinity; // everything before this is done
  for (const [tStart, tLength, tToken] of top) {
    // base runs (or their parts) before this top run
    while (i < base.length) {
      const [bStart, bLength, bToken] = base[i]!;
      const bEnd = bStart + bLength;
      const from = Math.max(bStart, cursor);
      if (from >= tStart) break;
      push(out, from, Math.min(bEnd, tStart) - from, bToken);
      if (bEnd <= tStart) i++;
      else break;
    }
    push(out, tStart, tLength, tToken);
    cursor = tStart + tLength;
    while (i < base.length && base[i]![0] + base[i]![1] <= cursor) i++;
  }
  for (; i < base.length; i++) {
    const [bStart, bLength, bToken] = base[i]!;
    const from = Math.max(bStart, cursor);
    push(out, from, bStart + bLength - from, bToken);
  }
  return out;
}

/** The blocks of `current` that `previous` does not hold with the same token: what an incremental stores. */
export function diff(current: Runs, previous: Runs): Run[] {
  const out: Run[] = [];
  let j = 0;
  for (const [cStart, cLength, cToken] of current) {
    let pos = cStart;
    const end = cStart + cLength;
    while (pos < end) {
      while (j < previous.length && previous[j]![0] + previous[j]![1] <= pos) j++;
      const p = previous[j];
      if (!p || p[0] >= end) {
        push(out, pos, end - pos, cToken);
        break;
      }
      if (p[0] > pos) {
        push(out, pos, p[0] - pos, cToken);
        pos = p[0];
      }
      const stop = Math.min(end, p[0] + p[1]);
      if (p[2] !== cToken) push(out, pos, stop - pos, cToken);
      pos = stop;
    }
  }
  return out;
}

/** Runs cut to `[0, size)`. */
export function truncate(runs: Runs, size: number): Run[] {
  const out: Run[] = [];
  for (const [start, length, token] of runs) if (start < size) push(out, start, Math.min(length, size - start), token);
  return out;
}

/** Writes `length` blocks from `start` with one token. */
export function write(runs: Runs, start: number, length: number, token: number): Run[] {
  return length > 0 ? overlay(runs, [[start, length, token]]) : [...runs];
}

/** The token at one index, or undefined where the map names nothing. */
export function tokenAt(runs: Runs, index: number): number | undefined {
  let lo = 0;
  let hi = runs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [start, length, token] = runs[mid]!;
    if (index < start) hi = mid - 1;
    else if (index >= start + length) lo = mid + 1;
    else return token;
  }
  return undefined;
}

/**
 * The 1 MiB a block holds: zeros, a block of the base image, or what a write put there. A
 * seeded xorshift fill: cheap, deterministic, and different for every (token, index).
 */
export function blockBytes(index: number, token: number | undefined, image: string, imageBlocks: number): Buffer {
  const out = Buffer.alloc(BLOCK_BYTES);
  let seed: number;
  if (token !== undefined) seed = mix(Math.floor(token / GENERATIONS), token % GENERATIONS, index);
  else if (index < imageBlocks) seed = mix(stringSeed(image), 0x9e3779b9, index);
  else return out;
  const words = new Uint32Array(out.buffer, out.byteOffset, BLOCK_BYTES / 4);
  let x = seed || 0x2545f491;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return out;
}

/**
 * The digest a snapshot records and a restore reads back: sha256 over the disk's size, base
 * image and block map. Tokens name bytes one to one, so this equals for two disks exactly when
 * their bytes do, at the cost of the map rather than of the disk.
 */
export function digestOf(disk: { readonly image: string; readonly imageBlocks: number; readonly sizeBlocks: number; readonly runs: Runs }): string {
  const hash = createHash('sha256').update(`${disk.image}\n${disk.imageBlocks}\n${disk.sizeBlocks}\n`);
  for (const [start, length, token] of truncate(disk.runs, disk.sizeBlocks)) hash.update(`${start},${length},${token};`);
  return `sha256-blocks:${BLOCK_BYTES}:${hash.digest('hex')}`;
}

function stringSeed(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function mix(a: number, b: number, c: number): number {
  let h = Math.imul(a ^ 0x85ebca6b, 0xc2b2ae35) ^ Math.imul(b + 0x27d4eb2f, 0x165667b1) ^ Math.imul(c + 0x61c88647, 0x9e3779b1);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  return h >>> 0;
}
