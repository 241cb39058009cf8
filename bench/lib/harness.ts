/**
 * Shared benchmark helpers: time and peak heap of a phase, and one table per benchmark
 * with targets and ratios against a baseline measured in the same process.
 */
import { performance } from 'node:perf_hooks';

export interface Measurement<T> {
  readonly value: T;
  readonly ms: number;
  readonly peakHeapMiB: number;
}

/** Samples the heap while `fn` runs (between its awaits) and once at the end, before any GC. */
export async function measure<T>(fn: (sample: () => void) => Promise<T> | T): Promise<Measurement<T>> {
  globalThis.gc?.();
  let peak = process.memoryUsage().heapUsed;
  const sample = () => {
    const used = process.memoryUsage().heapUsed;
    if (used > peak) peak = used;
  };
  const timer = setInterval(sample, 5);
  const start = performance.now();
  try {
    const value = await fn(sample);
    const ms = performance.now() - start;
    sample();
    return { value, ms, peakHeapMiB: peak / 1024 / 1024 };
  } finally {
    clearInterval(timer);
  }
}

export type Cell = string | number;

export function printTable(title: string, headers: readonly string[], rows: readonly (readonly Cell[])[]): void {
  const text = rows.map((r) => r.map((c) => (typeof c === 'number' ? formatNumber(c) : c)));
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((r) => String(r[i] ?? '').length)));
  const line = (r: readonly string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(`\n${title}\n`);
  console.log(line(headers.map(String)));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of text) console.log(line(r.map(String)));
}

export function formatNumber(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n)) return n.toLocaleString('en-US');
  return Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 1 ? n.toFixed(2) : n.toFixed(3);
}

/** A target's verdict; a missed target makes the benchmark exit 1 (so `npm run bench` does too). */
export function verdict(ok: boolean): string {
  if (!ok) process.exitCode = 1;
  return ok ? 'PASS' : 'FAIL';
}

export function ratio(ours: number, baseline: number): string {
  return baseline === 0 ? '-' : `${(ours / baseline).toFixed(2)}x`;
}
