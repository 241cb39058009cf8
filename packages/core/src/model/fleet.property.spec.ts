import fc from 'fast-check';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { FleetSpecError, parseFleetText, validateFleet } from '../index.js';

const dnsName = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}[a-z0-9]$/);
const size = (unit: 'MiB' | 'GiB', min: number, max: number) =>
  fc.oneof(
    fc.integer({ min, max }),
    fc.integer({ min, max }).map((n) => `${n}${unit}`),
    fc.integer({ min: Math.ceil(min / 1024), max: Math.floor(max / 1024) }).filter((n) => n > 0).map((n) => `${n}${unit === 'MiB' ? 'GiB' : 'TiB'}`),
  );

const group = fc.record(
  {
    count: fc.integer({ min: 0, max: 50 }),
    cpu: fc.integer({ min: 1, max: 64 }),
    memory: size('MiB', 16, 256 * 1024),
    disk: size('GiB', 1, 4096),
    image: fc.constant('debian-12'),
    labels: fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9]{0,6}$/), fc.stringMatching(/^[a-z0-9]{0,6}$/), { maxKeys: 3 }),
    placement: fc.record(
      {
        zones: fc.array(fc.constantFrom('zone-a', 'zone-b'), { minLength: 1, maxLength: 2 }),
        antiAffinity: fc.constantFrom('host', 'zone'),
        maxPerHost: fc.integer({ min: 1, max: 10 }),
        spread: fc.record({ key: fc.constant('zone'), maxSkew: fc.integer({ min: 1, max: 3 }) }),
      },
      { requiredKeys: [] },
    ),
    migration: fc.record(
      { mode: fc.constantFrom('auto', 'live', 'cold'), maxDowntimeMs: fc.integer({ min: 1, max: 60_000 }), compression: fc.constantFrom('none', 'xbzrle', 'multifd-zstd') },
      { requiredKeys: [] },
    ),
    snapshots: fc.record({
      schedule: fc.constantFrom('0 3 * * *', '*/15 * * * *', '0 0 * * 0'),
      retention: fc.record({ keepLast: fc.integer({ min: 1, max: 10 }), daily: fc.integer({ min: 0, max: 30 }) }),
    }),
  },
  { requiredKeys: ['count', 'cpu', 'memory', 'image'] },
);

export const validFleet = fc.record({
  name: dnsName,
  providers: fc.constant({ lab: { type: 'sim', generate: { count: 3, cpu: 32, memory: '128GiB' } } }),
  groups: fc.dictionary(dnsName, group, { minKeys: 1, maxKeys: 4 }),
});

/** A random change somewhere in the tree: a value replaced, a key dropped, a key added. */
function mutate(value: unknown, path: number[], replacement: unknown, kind: number): unknown {
  if (value === null || typeof value !== 'object' || path.length === 0) return replacement;
  const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value);
  if (entries.length === 0) return replacement;
  const [key, child] = entries[path[0]! % entries.length]!;
  const copy: Record<string, unknown> | unknown[] = Array.isArray(value) ? [...value] : { ...(value as Record<string, unknown>) };
  if (path.length === 1 && kind === 1 && !Array.isArray(copy)) delete copy[key];
  else if (path.length === 1 && kind === 2 && !Array.isArray(copy)) copy['unexpectedKey'] = replacement;
  else (copy as Record<string, unknown>)[key] = mutate(child, path.slice(1), replacement, kind);
  return copy;
}

const anyValue = fc.oneof(
  fc.integer({ min: -1_000_000, max: 1_000_000 }),
  fc.double(),
  fc.string(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.array(fc.integer(), { maxLength: 2 }),
  fc.dictionary(fc.string(), fc.integer(), { maxKeys: 2 }),
  fc.constantFrom('4GiB', '-1GiB', '1e400', 'NaN', '∞', '0'),
);

describe('fleet spec properties', () => {
  it('every generated valid fleet parses, from data and from YAML', () => {
    fc.assert(
      fc.property(validFleet, (fleet) => {
        const result = validateFleet(fleet);
        if (!result.ok) throw result.error;
        expect(parseFleetText(stringify(fleet)).name).toBe(fleet.name);
      }),
      { numRuns: 300 },
    );
  });

  it('a random mutation yields typed data or a FleetSpecError with paths, never another exception', () => {
    fc.assert(
      fc.property(validFleet, fc.array(fc.nat(), { minLength: 1, maxLength: 6 }), anyValue, fc.integer({ min: 0, max: 2 }), (fleet, path, replacement, kind) => {
        const mutated = mutate(fleet, path, replacement, kind);
        const result = validateFleet(mutated);
        if (result.ok) return;
        expect(FleetSpecError.isInstance(result.error)).toBe(true);
        expect(result.error.problems.length).toBeGreaterThan(0);
        for (const p of result.error.problems) {
          expect(typeof p.path).toBe('string');
          expect(p.message.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('YAML text mutated at random never escapes as anything but a FleetSpecError', () => {
    fc.assert(
      fc.property(validFleet, fc.nat(), fc.string({ maxLength: 5 }), (fleet, at, insert) => {
        const text = stringify(fleet);
        const i = at % (text.length + 1);
        try {
          parseFleetText(text.slice(0, i) + insert + text.slice(i));
        } catch (error) {
          expect(FleetSpecError.isInstance(error)).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
  });
});
