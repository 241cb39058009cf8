/**
 * The one error base of NovaCron. Every error a user can meet carries a stable `code`,
 * who is at fault (`client`: fix the input or the set-up; `server`: the provider or the
 * network), whether retrying may help, where it arose (provider, host, vm, operation) and
 * a hint that says what to do.
 *
 * `isInstance` checks a brand rather than the prototype chain, so it works when two copies
 * of @novacron/core are loaded (a CLI and a Pulumi program, say).
 */
export type ErrorFault = 'client' | 'server';

export interface ErrorContext {
  readonly provider?: string;
  readonly host?: string;
  readonly vm?: string;
  readonly operation?: string;
  readonly path?: string;
}

export interface NovaCronErrorOptions {
  readonly context?: ErrorContext;
  readonly hint?: string;
  readonly cause?: unknown;
  readonly retryable?: boolean;
}

const BRAND = Symbol.for('novacron.error');

export type ErrorCode =
  | 'NotFound'
  | 'CapacityExceeded'
  | 'Unreachable'
  | 'AuthFailed'
  | 'Conflict'
  | 'Unsupported'
  | 'Throttled'
  | 'Timeout'
  | 'Aborted'
  | 'InvalidSpec'
  | 'InvalidInput'
  | 'PlanFailed'
  | 'ApplyFailed'
  | 'CircuitOpen'
  | 'Provider';

export class NovaCronError extends Error {
  readonly [BRAND] = true;
  readonly code: ErrorCode;
  readonly fault: ErrorFault;
  readonly retryable: boolean;
  readonly context: ErrorContext;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, fault: ErrorFault, message: string, options: NovaCronErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = `${code}Error`;
    this.code = code;
    this.fault = fault;
    this.retryable = options.retryable ?? false;
    this.context = options.context ?? {};
    this.hint = options.hint;
  }

  static isInstance(value: unknown): value is NovaCronError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }

  /** One line for people: what happened, where, and what to do. */
  describe(): string {
    const where = formatContext(this.context);
    return [this.message, where && `(${where})`, this.hint && `— ${this.hint}`].filter(Boolean).join(' ');
  }

  toJSON(): Record<string, unknown> {
    return {
      code: this.code,
      message: this.message,
      fault: this.fault,
      retryable: this.retryable,
      context: this.context,
      ...(this.hint === undefined ? {} : { hint: this.hint }),
    };
  }
}

export function formatContext(context: ErrorContext): string {
  return (['provider', 'host', 'vm', 'operation', 'path'] as const)
    .filter((key) => context[key] !== undefined)
    .map((key) => `${key} ${context[key]}`)
    .join(', ');
}

/** Wraps anything thrown into a NovaCronError, keeping NovaCron errors as they are. */
export function toNovaCronError(error: unknown, context: ErrorContext = {}): NovaCronError {
  if (NovaCronError.isInstance(error)) return error;
  if (error instanceof Error && error.name === 'AbortError') {
    return new NovaCronError('Aborted', 'client', 'the operation was aborted', { context, cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new NovaCronError('Provider', 'server', message, { context, cause: error });
}
