/**
 * Per-key FIFO queues with a limit each: at most `limit` tasks of one key run at once (the
 * creates on one host, the image copies into one pool), the rest wait in order. In process;
 * the hosts' own locks (hostLock.ts) coordinate with other processes.
 */
export class KeyedQueue {
  readonly #running = new Map<string, number>();
  readonly #waiting = new Map<string, (() => void)[]>();
  #peak = new Map<string, number>();

  /** The most tasks of a key that ran at once, for tests. */
  peak(key: string): number {
    return this.#peak.get(key) ?? 0;
  }

  async run<T>(key: string, limit: number, task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    while ((this.#running.get(key) ?? 0) >= limit) {
      await new Promise<void>((resolve, reject) => {
        const queue = this.#waiting.get(key) ?? [];
        const wake = () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = () => {
          const i = queue.indexOf(wake);
          if (i >= 0) queue.splice(i, 1);
          reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
        };
        if (signal?.aborted) return onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        queue.push(wake);
        this.#waiting.set(key, queue);
      });
    }
    const now = (this.#running.get(key) ?? 0) + 1;
    this.#running.set(key, now);
    this.#peak.set(key, Math.max(this.peak(key), now));
    try {
      return await task();
    } finally {
      const left = (this.#running.get(key) ?? 1) - 1;
      if (left === 0) this.#running.delete(key);
      else this.#running.set(key, left);
      const next = this.#waiting.get(key)?.shift();
      if (this.#waiting.get(key)?.length === 0) this.#waiting.delete(key);
      next?.();
    }
  }
}
