import type { Instance } from '@aws-sdk/client-ec2';
import { AbortedError, TimeoutError, type Clock, type ErrorContext, type NovaCronError } from '@novacron/core';
import { isThrottling } from './errors.js';

/** What a waiter makes of the instance as last described (undefined: not visible). */
export type WaitVerdict = 'done' | 'wait' | NovaCronError;

export interface WatchRequest {
  readonly id: string;
  readonly verdict: (instance: Instance | undefined) => WaitVerdict;
  /** For the timeout message: "to be running". */
  readonly what: string;
  readonly timeoutMs: number;
  readonly context: ErrorContext;
  readonly signal?: AbortSignal | undefined;
}

export interface InstanceWatcherOptions {
  /** One DescribeInstances pass over the given ids (it chunks and paginates). */
  readonly describe: (ids: readonly string[]) => Promise<readonly Instance[]>;
  readonly clock: Clock;
  readonly pollMs: number;
  readonly maxPollMs: number;
  readonly mapError: (error: unknown) => NovaCronError;
}

interface Waiter extends WatchRequest {
  readonly deadline: number;
  resolve(instance: Instance | undefined): void;
  reject(error: unknown): void;
}

/**
 * One polling loop for every instance the provider is waiting on. Each pass is one
 * DescribeInstances call per 200 instances however many operations wait, so 500 concurrent
 * creates cost the same polls as one. A throttled poll is not an error for the waiters: the
 * loop doubles its interval (its own backoff, bounded by each waiter's timeout) and goes on;
 * any other failure of a poll is handed to every waiter, whose operation then fails (and the
 * core may retry it: the operations are idempotent).
 */
export class InstanceWatcher {
  readonly #options: InstanceWatcherOptions;
  readonly #waiters = new Set<Waiter>();
  #running = false;
  /** Polls made, for tests and benchmarks. */
  polls = 0;

  constructor(options: InstanceWatcherOptions) {
    this.#options = options;
  }

  wait(request: WatchRequest): Promise<Instance | undefined> {
    if (request.signal?.aborted) return Promise.reject(new AbortedError(undefined, { context: request.context, cause: request.signal.reason }));
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.#waiters.delete(waiter);
        reject(new AbortedError(undefined, { context: request.context, cause: request.signal?.reason }));
      };
      const waiter: Waiter = {
        ...request,
        deadline: this.#options.clock.now() + request.timeoutMs,
        resolve: (i) => {
          request.signal?.removeEventListener('abort', onAbort);
          this.#waiters.delete(waiter);
          resolve(i);
        },
        reject: (e) => {
          request.signal?.removeEventListener('abort', onAbort);
          this.#waiters.delete(waiter);
          reject(e);
        },
      };
      request.signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.add(waiter);
      if (!this.#running) void this.#loop();
    });
  }

  async #loop(): Promise<void> {
    this.#running = true;
    const { clock, pollMs, maxPollMs } = this.#options;
    let delay = pollMs;
    try {
      while (this.#waiters.size > 0) {
        await clock.sleep(delay);
        const waiters = [...this.#waiters];
        if (waiters.length === 0) break;
        let instances: readonly Instance[];
        try {
          this.polls++;
          instances = await this.#options.describe([...new Set(waiters.map((w) => w.id))]);
          delay = pollMs;
        } catch (error) {
          if (isThrottling(error)) {
            delay = Math.min(maxPollMs, delay * 2);
            this.#expire(waiters);
            continue;
          }
          const mapped = this.#options.mapError(error);
          for (const w of waiters) w.reject(mapped);
          continue;
        }
        const byId = new Map(instances.map((i) => [i.InstanceId, i]));
        for (const w of waiters) {
          if (!this.#waiters.has(w)) continue;
          const verdict = w.verdict(byId.get(w.id));
          if (verdict === 'done') w.resolve(byId.get(w.id));
          else if (verdict !== 'wait') w.reject(verdict);
        }
        this.#expire(waiters);
      }
    } finally {
      this.#running = false;
      // A waiter that arrived as the loop was ending still needs one.
      if (this.#waiters.size > 0) void this.#loop();
    }
  }

  #expire(waiters: readonly Waiter[]): void {
    const now = this.#options.clock.now();
    for (const w of waiters) {
      if (this.#waiters.has(w) && now >= w.deadline) {
        w.reject(new TimeoutError(`instance ${w.id} did not come ${w.what} within ${Math.round(w.timeoutMs / 1000)}s`, {
          context: w.context,
          hint: 'it may still get there; the next plan sees where it is. Raise the provider\'s waitTimeout if this is normal here',
        }));
      }
    }
  }
}
