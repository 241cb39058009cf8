import { MiddlewareStack } from './middleware.js';
import { circuitBreakerMiddleware, pacingMiddleware, retryMiddleware, tracingMiddleware, type ResilienceOptions } from './resilience.js';

/** Tracing outermost, then retries, then pacing (each attempt waits its turn), then the breaker (each attempt counts toward it). */
export function defaultMiddlewareStack(options: ResilienceOptions = {}): MiddlewareStack {
  const stack = new MiddlewareStack();
  if (options.tracing !== false) stack.add('tracing', tracingMiddleware(), { priority: 300 });
  if (options.retry !== false) stack.add('retry', retryMiddleware(options.retry || {}), { priority: 200 });
  if (options.pacing !== false) stack.add('pacing', pacingMiddleware(options.pacing || {}), { priority: 150 });
  if (options.breaker !== false) stack.add('circuit-breaker', circuitBreakerMiddleware(options.breaker || {}), { priority: 100 });
  return stack;
}
