import { AbortedError } from '@novacron/core';

export interface CoalescerOptions {
  /** Keys per underlying call (an API's filter-value or id-list limit). */
  readonly maxBatch: number;
  /** How long the first key of a batch waits for company. A batching latency, not a semantic wait. */
  readonly windowMs: number;
}

interface Waiter<V> {
  resolve(value: V): void;
  reject(error: unknown): void;
}

/**
 * Merges concurrent single-key requests into one call with many keys (DataLoader-style).
 * Apply runs many steps at once; without this, each would make its own DescribeInstances or
 * TerminateInstances call and spend the account's request budget many times over.
 * `run` answers every key it was given: a value, or an Error for that key alone.
 */
export class Coalescer<K, V> {
  readonly #run: (keys: readonly K[]) => Promise<ReadonlyMap<K, V | Error>>;
  readonly #options: CoalescerOptions;
  #batch = new Map<K, Waiter<V>[]>();
  #timer: NodeJS.Timeout | undefined;

  constructor(run: (keys: readonly K[]) => Promise<ReadonlyMap<K, V | Error>>, options: CoalescerOptions) {
    this.#run = run;
    this.#options = options;
  }

  load(key: K, signal?: AbortSignal): Promise<V> {
    if (signal?.aborted) return Promise.reject(new AbortedError(undefined, { cause: signal.reason }));
    return new Promise<V>((resolve, reject) => {
      const onAbort = () => reject(new AbortedError(undefined, { cause: signal?.reason }));
      signal?.addEventListener('abort', onAbort, { once: true });
      const waiter: Waiter<V> = {
        resolve: (v) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(v);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      const waiters = this.#batch.get(key);
      if (waiters) waiters.push(waiter);
      else this.#batch.set(key, [waiter]);
      if (this.#batch.size >= this.#options.maxBatch) this.#flush();
      else this.#timer ??= setTimeout(() => this.#flush(), this.#options.windowMs);
    });
  }

  #flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#batch;
    this.#batch = new Map();
    if (batch.size === 0) return;
    const keys = [...batch.keys()];
    this.#run(keys).then(
      (results) => {
        for (const [key, waiters] of batch) {
          const result = results.has(key) ? results.get(key)! : new Error(`internal: no result for ${String(key)}`);
          for (const w of waiters) {
            if (result instanceof Error) w.reject(result);
            else w.resolve(result);
          }
        }
      },
      (error: unknown) => {
        for (const waiters of batch.values()) for (const w of waiters) w.reject(error);
      },
    );
  }
}

/** Splits a list into chunks of at most `size`. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
