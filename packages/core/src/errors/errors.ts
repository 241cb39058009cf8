import { NovaCronError, type NovaCronErrorOptions } from './NovaCronError.js';

/** The thing asked for does not exist (a VM, host, snapshot, image). */
export class NotFoundError extends NovaCronError {
  constructor(message: string, options?: NovaCronErrorOptions) {
    super('NotFound', 'client', message, options);
  }
}

/** Not enough cpu, memory, disk or quota where the work was asked to run. */
export class CapacityExceededError extends NovaCronError {
  constructor(message: string, options?: NovaCronErrorOptions) {
    super('CapacityExceeded', 'server', message, { hint: 'choose another host or zone, or free capacity', ...options });
  }
}

/** The host or API could not be reached, or stopped answering. Retryable. */
export class UnreachableError extends NovaCronError {
  constructor(message: string, options?: NovaCronErrorOptions) {
    super('Unreachable', 'server', message, { retryable: true, ...options });
  }
}

/** Credentials were refused, or a host key did not match. */
export class AuthFailedError extends NovaCronError {
  constructor(message: string, options?: NovaCronErrorOptions) {
    super('AuthFailed', 'client', message, options);
  }
}

/** The world is not in the state the operation needs (a name taken by a VM of another owner, a lock held). */
export class ConflictError extends NovaCronError {
  constructor(message: string, options?: NovaCronErrorOptions) {
    super('Conflict', 'client', message, options);
  }
}

/** The provider does not offer this operation (a capability it does not declare). */
export class UnsupportedError extends NovaCronError {
  constructor(message: string, options?: NovaCronErrorOptions) {
    super('Unsupported', 'client', message, options);
  }
}

/** The provider asked us to slow down. Retryable with backoff. */
export class ThrottledError extends NovaCronError {
  constructor(message: string, options?: NovaCronErrorOptions) {
    super('Throttled', 'server', message, { retryable: true, ...options });
  }
}

/** The operation did not finish in time. Retryable: operations are idempotent. */
export class TimeoutError extends NovaCronError {
  constructor(message: string, options?: NovaCronErrorOptions) {
    super('Timeout', 'server', message, { retryable: true, ...options });
  }
}

/** The caller's AbortSignal fired. */
export class AbortedError extends NovaCronError {
  constructor(message = 'the operation was aborted', options?: NovaCronErrorOptions) {
    super('Aborted', 'client', message, options);
  }
}

/** Input other than a fleet spec was invalid (CLI flags, an inventory file, a request). */
export class InvalidInputError extends NovaCronError {
  constructor(message: string, options?: NovaCronErrorOptions) {
    super('InvalidInput', 'client', message, options);
  }
}

/** A provider's circuit breaker is open after repeated failures; calls fail fast until it half-opens. */
export class CircuitOpenError extends NovaCronError {
  constructor(message: string, options?: NovaCronErrorOptions) {
    super('CircuitOpen', 'server', message, { retryable: false, ...options });
  }
}

/** Throws AbortedError when the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, context?: NovaCronErrorOptions['context']): void {
  if (signal?.aborted) {
    throw new AbortedError('the operation was aborted', { ...(context ? { context } : {}), cause: signal.reason });
  }
}
