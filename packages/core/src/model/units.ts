import { z } from 'zod';

/**
 * Sizes and durations as people write them. `4GiB`, `512MiB`, `1.5T` are binary
 * (K/M/G/T and KiB/MiB/GiB/TiB mean powers of 1024, as qemu-img reads them); `KB`, `MB`,
 * `GB`, `TB` are decimal. A bare number is in the field's own unit (MiB for memory, GiB
 * for disk), so `memory: 2048` and `memory: 2GiB` are the same.
 */
const BYTES: Record<string, number> = {
  b: 1,
  k: 1024, kib: 1024, kb: 1e3,
  m: 1024 ** 2, mib: 1024 ** 2, mb: 1e6,
  g: 1024 ** 3, gib: 1024 ** 3, gb: 1e9,
  t: 1024 ** 4, tib: 1024 ** 4, tb: 1e12,
  p: 1024 ** 5, pib: 1024 ** 5, pb: 1e15,
};

const SIZE = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/;

export type SizeUnit = 'MiB' | 'GiB';

/** Parses a size into a whole number of `unit`, rounding up. Returns an error message instead of throwing. */
export function parseSize(input: number | string, unit: SizeUnit): number | string {
  const unitBytes = unit === 'MiB' ? 1024 ** 2 : 1024 ** 3;
  if (typeof input === 'number') {
    if (!Number.isFinite(input)) return `expected a size, got ${input}`;
    return Math.ceil(input);
  }
  const match = SIZE.exec(input);
  if (!match) return `"${input}" is not a size: write a number with a unit, such as 4GiB or 512MiB`;
  const value = Number(match[1]);
  const suffix = match[2]!.toLowerCase();
  if (suffix === '') return Math.ceil(value);
  const bytes = BYTES[suffix];
  if (bytes === undefined) return `"${match[2]}" is not a size unit: use KiB, MiB, GiB or TiB (or KB, MB, GB, TB)`;
  return Math.ceil((value * bytes) / unitBytes);
}

/** A zod schema for a size, normalised to a whole number of `unit` within [min, max]. */
export function size(unit: SizeUnit, min: number, max: number) {
  return z
    .union([z.number(), z.string().regex(/^\s*\d+(\.\d+)?\s*[a-zA-Z]*\s*$/, 'not a size: write a number with a unit, such as 4GiB or 512MiB')])
    .meta({ description: `a size: a number of ${unit}, or a string with a unit such as 4GiB or 512MiB` })
    .transform((input, ctx) => {
    const parsed = parseSize(input, unit);
    if (typeof parsed === 'string') {
      ctx.addIssue({ code: 'custom', message: parsed });
      return z.NEVER;
    }
    if (parsed < min) {
      ctx.addIssue({ code: 'custom', message: `${formatSize(parsed, unit)} is too small: at least ${formatSize(min, unit)}` });
      return z.NEVER;
    }
    if (parsed > max) {
      ctx.addIssue({ code: 'custom', message: `${formatSize(parsed, unit)} is too large: at most ${formatSize(max, unit)}` });
      return z.NEVER;
    }
    return parsed;
  });
}

export function formatSize(value: number, unit: SizeUnit): string {
  if (unit === 'MiB' && value >= 1024 && value % 1024 === 0) return `${value / 1024}GiB`;
  if (unit === 'GiB' && value >= 1024 && value % 1024 === 0) return `${value / 1024}TiB`;
  return `${value}${unit}`;
}

const DURATION = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/;
const MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `500ms`, `30s`, `5m`, `2h` or a number of milliseconds. */
export function parseDuration(input: number | string): number | string {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? input : `expected a duration, got ${input}`;
  const match = DURATION.exec(input);
  if (!match) return `"${input}" is not a duration: write a number with ms, s, m, h or d`;
  return Number(match[1]) * MS[match[2] ?? 'ms']!;
}

/** A zod schema for a duration, normalised to milliseconds. */
export function duration(maxMs = 30 * 86_400_000) {
  return z
    .union([z.number(), z.string()])
    .meta({ description: 'a duration: milliseconds, or a string such as 500ms, 30s, 5m, 2h' })
    .transform((input, ctx) => {
    const parsed = parseDuration(input);
    if (typeof parsed === 'string') {
      ctx.addIssue({ code: 'custom', message: parsed });
      return z.NEVER;
    }
    if (parsed < 0 || parsed > maxMs) {
      ctx.addIssue({ code: 'custom', message: `${parsed}ms is out of range: between 0 and ${maxMs}ms` });
      return z.NEVER;
    }
    return parsed;
  });
}
