import { readFile } from 'node:fs/promises';
import { closest, distance } from 'fastest-levenshtein';
import { LineCounter, parseDocument, isNode } from 'yaml';
import type { z } from 'zod';
import { fleetSpec, type FleetSpec } from './fleet.js';
import { FleetSpecError, formatPath, type SpecProblem } from './FleetSpecError.js';
import { PROVIDER_KINDS } from './providers.js';

export type FleetParseResult = { readonly ok: true; readonly fleet: FleetSpec } | { readonly ok: false; readonly error: FleetSpecError };

/** Validates a fleet spec (already-parsed data) and reports every problem with its path. Never throws. */
export function validateFleet(input: unknown, source?: string, locate?: Locator): FleetParseResult {
  const validKeys = new WeakMap<object, readonly string[]>();
  const result = fleetSpec.safeParse(input, {
    reportInput: true,
    error: (issue) => {
      if (issue.code === 'unrecognized_keys' && issue.inst && typeof issue.input === 'object' && issue.input !== null) {
        const shape = (issue.inst as unknown as { shape?: Record<string, unknown> }).shape;
        if (shape) validKeys.set(issue.input, Object.keys(shape));
        return undefined;
      }
      if (issue.code === 'invalid_type' && issue.input === undefined) return `required (${issue.expected})`;
      if (issue.code === 'invalid_union' && (issue as { note?: string }).note === 'No matching discriminator') {
        const type = (issue.input as { type?: unknown } | undefined)?.type;
        return type === undefined
          ? `provider needs a "type": one of ${PROVIDER_KINDS.join(', ')}`
          : `unknown provider type ${JSON.stringify(type)}: expected one of ${PROVIDER_KINDS.join(', ')}`;
      }
      return undefined;
    },
  });
  if (result.success) return { ok: true, fleet: result.data };
  const problems = result.error.issues.flatMap((issue) => toProblems(issue, validKeys, locate));
  return { ok: false, error: new FleetSpecError(sortProblems(problems), source) };
}

/** Validates a fleet spec and returns typed data, or throws a FleetSpecError listing every problem. */
export function parseFleet(input: unknown, source?: string): FleetSpec {
  const result = validateFleet(input, source);
  if (!result.ok) throw result.error;
  return result.fleet;
}

/** Parses fleet text, YAML or JSON (JSON is YAML), with problems located by line. */
export function parseFleetText(text: string, source = 'fleet spec'): FleetSpec {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => {
      const pos = e.linePos?.[0];
      return { path: '', message: `not valid YAML or JSON: ${e.message.split('\n')[0]}`, ...(pos ? { line: pos.line, column: pos.col } : {}) };
    });
    throw new FleetSpecError(problems, source);
  }
  const locate: Locator = (path) => {
    const node = doc.getIn(path, true);
    const range = isNode(node) ? node.range : undefined;
    if (!range) return undefined;
    const pos = lineCounter.linePos(range[0]);
    return { line: pos.line, column: pos.col };
  };
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    // Unresolved or runaway aliases surface only when the document is turned into data.
    throw new FleetSpecError([{ path: '', message: `not valid YAML or JSON: ${(error as Error).message}` }], source);
  }
  const result = validateFleet(data, source, locate);
  if (!result.ok) throw result.error;
  return result.fleet;
}

/** Reads and validates a fleet file. A missing or unreadable file is a FleetSpecError too. */
export async function loadFleetFile(file: string): Promise<FleetSpec> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const message = code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'is a directory, not a fleet file' : `cannot read: ${(error as Error).message}`;
    throw new FleetSpecError([{ path: '', message }], file);
  }
  return parseFleetText(text, file);
}

type Locator = (path: readonly PropertyKey[]) => { line: number; column: number } | undefined;

function toProblems(issue: z.core.$ZodIssue, validKeys: WeakMap<object, readonly string[]>, locate?: Locator): SpecProblem[] {
  const at = (path: readonly PropertyKey[], message: string): SpecProblem => {
    const pos = locate?.(path.map((p) => (typeof p === 'symbol' ? String(p) : p)));
    return { path: formatPath(path), message, ...(pos ?? {}) };
  };
  if (issue.code === 'unrecognized_keys') {
    const keys = (issue.input !== null && typeof issue.input === 'object' && validKeys.get(issue.input)) || [];
    return issue.keys.map((key) => at([...issue.path, key], `unknown key${nearest(key, keys)}`));
  }
  if (issue.code === 'invalid_key' && issue.issues.length > 0) {
    // A record key that fails its own schema (a group or label name): say why.
    return [at(issue.path, `${issue.issues.map((i) => i.message).join('; ')}`)];
  }
  if (issue.code === 'invalid_union' && issue.errors.length > 0 && issue.message.startsWith('Invalid input')) {
    // A union whose members all failed: report the member that came closest (fewest problems).
    const best = [...issue.errors].sort((a, b) => a.length - b.length)[0]!;
    return best.flatMap((inner) => toProblems({ ...inner, path: [...issue.path, ...inner.path] } as z.core.$ZodIssue, validKeys, locate));
  }
  return [at(issue.path, issue.message)];
}

function nearest(key: string, keys: readonly string[]): string {
  if (keys.length === 0) return '';
  const best = closest(key, keys as string[]);
  const limit = Math.max(2, Math.floor(key.length / 3));
  return distance(key, best) <= limit ? ` (did you mean "${best}"?)` : ` (expected one of: ${keys.join(', ')})`;
}

function sortProblems(problems: SpecProblem[]): SpecProblem[] {
  const seen = new Set<string>();
  return problems
    .filter((p) => {
      const key = `${p.path}\u0000${p.message}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    })
    .sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || a.path.localeCompare(b.path));
}
