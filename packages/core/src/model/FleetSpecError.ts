import { NovaCronError } from '../errors/NovaCronError.js';

export interface SpecProblem {
  /** Where in the fleet spec, as `groups.web.placement.zones[0]`; empty for the whole document. */
  readonly path: string;
  readonly message: string;
  /** 1-based line and column in the fleet file, when the spec came from a file. */
  readonly line?: number;
  readonly column?: number;
}

/** A fleet spec that does not validate: every problem, each with its path. */
export class FleetSpecError extends NovaCronError {
  readonly problems: readonly SpecProblem[];
  readonly source: string | undefined;

  constructor(problems: readonly SpecProblem[], source?: string) {
    super('InvalidSpec', 'client', formatProblems(problems, source), { hint: 'fix the fleet spec; nothing was changed' });
    this.problems = problems;
    this.source = source;
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), problems: this.problems };
  }
}

function formatProblems(problems: readonly SpecProblem[], source: string | undefined): string {
  const head = `${source ?? 'fleet spec'}: ${problems.length === 1 ? '1 problem' : `${problems.length} problems`}`;
  const lines = problems.map((p) => {
    const where = p.line === undefined ? '' : ` (line ${p.line}${p.column === undefined ? '' : `:${p.column}`})`;
    return `  ${p.path || '(root)'}${where}: ${p.message}`;
  });
  return [head, ...lines].join('\n');
}

/** `['groups', 'web', 'zones', 0]` → `groups.web.zones[0]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else {
      const key = String(part);
      out += /^[A-Za-z_][\w-]*$/.test(key) ? (out ? `.${key}` : key) : `[${JSON.stringify(key)}]`;
    }
  }
  return out;
}
