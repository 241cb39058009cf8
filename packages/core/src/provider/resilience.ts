import { trace, SpanStatusCode } from '@opentelemetry/api';
import { NovaCronError, toNovaCronError } from '../errors/NovaCronError.js';
import { CircuitOpenError } from '../errors/errors.js';
import { systemClock, type Clock } from '../util/clock.js';
import type { Middleware, ProviderCall } from './middleware.js';

export interface RetryOptions {
  /** Attempts in all, the first included. @default 4 */
  readonly maxAttempts?: number;
  /** @default 200 */
  readonly baseDelayMs?: number;
  /** @default 10000 */
  readonly maxDelayMs?: number;
  readonly clock?: Clock;
  /** Source of jitter; seed it for deterministic tests. @default Math.random */
  readonly random?: () => number;
}

/** Retries retryable errors (throttling, timeouts, unreachable hosts) with capped exponential backoff and full jitter. */
export function retryMiddleware(options: RetryOptions = {}): Middleware {
  const maxAttempts = options.maxAttempts ?? 4;
  const base = options.baseDelayMs ?? 200;
  const cap = options.maxDelayMs ?? 10_000;
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  return async (call, next) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await next();
      } catch (thrown) {
        const error = toNovaCronError(thrown, contextOf(call));
        if (!error.retryable || attempt >= maxAttempts || call.ctx.signal?.aborted) throw error;
        const delayMs = Math.round(random() * Math.min(cap, base * 2 ** (attempt - 1)));
        call.ctx.onRetry?.({ attempt, delayMs, error });
        await clock.sleep(delayMs, call.ctx.signal);
      }
    }
  };
}

export interface CircuitBreakerOptions {
  /** Consecutive server-side failures that open the circuit. @default 5 */
  readonly threshold?: number;
  /** How long the circuit stays open before one trial call. @default 30000 */
  readonly cooldownMs?: number;
  readonly clock?: Clock;
}

/**
 * One breaker per provider: after `threshold` consecutive server-side failures, calls fail
 * fast with CircuitOpen until `cooldownMs` has passed; then one trial call decides.
 * Client-side errors (not found, bad input) say nothing about the provider's health.
 */
export function circuitBreakerMiddleware(options: CircuitBreakerOptions = {}): Middleware {
  const threshold = options.threshold ?? 5;
  const cooldown = options.cooldownMs ?? 30_000;
  const clock = options.clock ?? systemClock;
  const breakers = new Map<string, { failures: number; openedAt: number | undefined; trial: boolean }>();
  return async (call, next) => {
    let state = breakers.get(call.provider);
    if (!state) breakers.set(call.provider, (state = { failures: 0, openedAt: undefined, trial: false }));
    if (state.openedAt !== undefined) {
      const waited = clock.now() - state.openedAt;
      if (waited < cooldown || state.trial) {
        throw new CircuitOpenError(`provider "${call.provider}" failed ${state.failures} times in a row; not calling it for now`, {
          context: contextOf(call),
          hint: `it is tried again ${Math.max(0, Math.ceil((cooldown - waited) / 1000))}s from now; check the provider's health`,
        });
      }
      state.trial = true;
    }
    try {
      const result = await next();
      state.failures = 0;
      state.openedAt = undefined;
      state.trial = false;
      return result;
    } catch (thrown) {
      const error = toNovaCronError(thrown, contextOf(call));
      // Throttling says the provider is busy, not broken: pacing answers it, not the breaker.
      if (error.fault === 'server' && error.code !== 'Aborted' && error.code !== 'Throttled') {
        state.failures++;
        if (state.trial || state.failures >= threshold) state.openedAt = clock.now();
      }
      state.trial = false;
      throw error;
    }
  };
}

export interface PacingOptions {
  /** Calls in flight per provider at first. @default 16 */
  readonly initial?: number;
  /** @default 64 */
  readonly max?: number;
}

interface Lane {
  limit: number;
  inFlight: number;
  waiting: (() => void)[];
  slowStart: boolean;
  /** Bumped at each decrease: a throttle of a call started before it is the same congestion, already answered. */
  epoch: number;
}

/**
 * Adaptive concurrency per provider, as TCP does it: until the provider first throttles,
 * each success adds one call in flight (slow start: the limit doubles every round of
 * calls, so a provider that never throttles is soon limited only by the apply's own
 * concurrency); from then on, a throttled call halves the limit — once for all the calls
 * that were in flight together, as they met the same congestion — and each success adds a
 * little back (additive increase, multiplicative decrease). Retries alone keep
 * hammering an API that asked us to slow down; pacing is what makes the retried calls
 * succeed.
 */
export function pacingMiddleware(options: PacingOptions = {}): Middleware {
  const max = options.max ?? 64;
  const initial = Math.min(max, options.initial ?? 16);
  const lanes = new Map<string, Lane>();
  const release = (lane: Lane) => {
    lane.inFlight--;
    while (lane.inFlight < Math.floor(lane.limit) && lane.waiting.length > 0) {
      lane.inFlight++;
      lane.waiting.shift()!();
    }
  };
  return async (call, next) => {
    let lane = lanes.get(call.provider);
    if (!lane) lanes.set(call.provider, (lane = { limit: initial, inFlight: 0, waiting: [], slowStart: true, epoch: 0 }));
    const current = lane;
    if (current.inFlight < Math.floor(current.limit)) current.inFlight++;
    else await new Promise<void>((resolve) => current.waiting.push(resolve));
    const epoch = current.epoch;
    try {
      const result = await next();
      current.limit = Math.min(max, current.limit + (current.slowStart ? 1 : 1 / current.limit));
      return result;
    } catch (error) {
      if (NovaCronError.isInstance(error) && error.code === 'Throttled' && epoch === current.epoch) {
        current.slowStart = false;
        current.limit = Math.max(1, current.limit / 2);
        current.epoch++;
      }
      throw error;
    } finally {
      release(current);
    }
  };
}

/** An OpenTelemetry span around every provider call; a no-op unless the application registers an SDK. */
export function tracingMiddleware(): Middleware {
  const tracer = trace.getTracer('@novacron/core');
  return (call, next) =>
    tracer.startActiveSpan(`${call.provider}.${call.operation}`, async (span) => {
      span.setAttributes({
        'novacron.provider': call.provider,
        'novacron.provider.kind': call.kind,
        'novacron.operation': call.operation,
        ...(call.vm ? { 'novacron.vm': call.vm } : {}),
      });
      try {
        return await next();
      } catch (error) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
        if (NovaCronError.isInstance(error)) span.setAttribute('novacron.error.code', error.code);
        throw error;
      } finally {
        span.end();
      }
    });
}

function contextOf(call: ProviderCall) {
  return { provider: call.provider, operation: call.operation, ...(call.vm ? { vm: call.vm } : {}) };
}

export interface ResilienceOptions {
  readonly retry?: RetryOptions | false;
  readonly pacing?: PacingOptions | false;
  readonly breaker?: CircuitBreakerOptions | false;
  readonly tracing?: boolean;
}
