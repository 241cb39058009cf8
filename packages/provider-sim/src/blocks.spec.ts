import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { blockBytes, countBlocks, diff, digestOf, overlay, tokenAt, truncate, write, type Run, type Runs } from './blocks.js';

/** The obvious model: a Map from block index to token. */
const toMap = (runs: Runs) => {
  const m = new Map<number, number>();
  for (const [start, length, token] of runs) for (let i = 0; i < length; i++) m.set(start + i, token);
  return m;
};
const sorted = (m: Map<number, number>) => [...m].sort((a, b) => a[0] - b[0]);

/** Well-formed runs: sorted, disjoint, non-empty, neighbours with one token merged. */
function wellFormed(runs: Runs): boolean {
  for (let i = 0; i < runs.length; i++) {
    const [start, length] = runs[i]!;
    if (length <= 0) return false;
    const prev = runs[i - 1];
    if (prev && (prev[0] + prev[1] > start || (prev[0] + prev[1] === start && prev[2] === runs[i]![2]))) return false;
  }
  return true;
}

/** Random maps built by writes, the way disks get them. */
const arbRuns = fc
  .array(fc.tuple(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 5 })), { maxLength: 12 })
  .map((writes) => writes.reduce<Run[]>((runs, [start, length, token]) => write(runs, start, length, token), []));

describe('block runs', () => {
  it('overlay equals laying one map over the other', () => {
    fc.assert(
      fc.property(arbRuns, arbRuns, (base, top) => {
        const out = overlay(base, top);
        const expected = toMap(base);
        for (const [k, v] of toMap(top)) expected.set(k, v);
        expect(sorted(toMap(out))).toEqual(sorted(expected));
        expect(wellFormed(out)).toBe(true);
      }),
    );
  });

  it('diff keeps exactly the blocks that changed, and overlaying it rebuilds the current map', () => {
    fc.assert(
      fc.property(arbRuns, arbRuns, (previous, writes) => {
        const current = overlay(previous, writes); // a disk only ever gains blocks
        const delta = diff(current, previous);
        const p = toMap(previous);
        const expected = sorted(toMap(current)).filter(([k, v]) => p.get(k) !== v);
        expect(sorted(toMap(delta))).toEqual(expected);
        expect(wellFormed(delta)).toBe(true);
        expect(sorted(toMap(overlay(previous, delta)))).toEqual(sorted(toMap(current)));
      }),
    );
  });

  it('counts, truncates and looks up like the map', () => {
    fc.assert(
      fc.property(arbRuns, fc.integer({ min: 0, max: 80 }), (runs, size) => {
        const m = toMap(runs);
        expect(countBlocks(runs)).toBe(m.size);
        expect(sorted(toMap(truncate(runs, size)))).toEqual(sorted(m).filter(([k]) => k < size));
        for (let i = 0; i < 80; i++) expect(tokenAt(runs, i)).toBe(m.get(i));
      }),
    );
  });

  it('gives every (token, index) its own bytes, zeros past the image, and the same bytes every time', () => {
    expect(blockBytes(3, 7, 'img', 0).equals(blockBytes(3, 7, 'img', 0))).toBe(true);
    expect(blockBytes(3, 7, 'img', 0).equals(blockBytes(4, 7, 'img', 0))).toBe(false);
    expect(blockBytes(3, 7, 'img', 0).equals(blockBytes(3, 8, 'img', 0))).toBe(false);
    expect(blockBytes(3, undefined, 'img', 10).equals(blockBytes(3, undefined, 'other', 10))).toBe(false);
    expect(blockBytes(12, undefined, 'img', 10).every((b) => b === 0)).toBe(true);
  });

  it('digests equal exactly when the block maps are', () => {
    const disk = { image: 'img', imageBlocks: 4, sizeBlocks: 64, runs: write([], 10, 5, 3) };
    expect(digestOf(disk)).toBe(digestOf({ ...disk, runs: overlay(write([], 10, 2, 3), write([], 12, 3, 3)) }));
    expect(digestOf(disk)).not.toBe(digestOf({ ...disk, runs: write(disk.runs, 11, 1, 4) }));
    expect(digestOf(disk)).not.toBe(digestOf({ ...disk, image: 'other' }));
    expect(digestOf(disk)).toMatch(/^sha256-blocks:1048576:[0-9a-f]{64}$/);
  });
});
