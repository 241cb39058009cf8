import {
  defaultMiddlewareStack,
  ProviderRegistry,
  stableHash,
  systemClock,
  type Clock,
  type Provider,
  type ProviderConfig,
  type ProviderEnvironment,
  type ResilienceOptions,
} from '@novacron/core';

/** Which provider to open, and the credentials it may read. */
export interface ProviderTarget {
  readonly name: string;
  readonly config: ProviderConfig;
  /** Environment entries added for this provider only (an SSH password, say). */
  readonly credentials?: Readonly<Record<string, string>>;
}

export interface SessionOptions {
  readonly registry?: ProviderRegistry;
  readonly cwd?: string;
  /** The process environment; credentials of each target are laid over it. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly clock?: Clock;
  /** Retries, breaker and tracing around every provider call, as in `apply`. */
  readonly resilience?: ResilienceOptions;
}

interface Entry {
  users: number;
  readonly opened: Promise<{ readonly raw: Provider; readonly wrapped: Provider }>;
}

/**
 * The registry the Pulumi front door opens providers with. Imports are made from this
 * package, which depends on `@novacron/provider-sim`, so the embedded default resolves
 * wherever npm placed it; other kinds resolve from the user's project.
 */
export function createRegistry(): ProviderRegistry {
  return new ProviderRegistry({ importer: (specifier) => import(specifier) });
}

/**
 * Providers shared by the calls that run at the same time. The engine creates many VMs at
 * once; each provider (the sim's world, an SSH connection) is opened once for them and
 * closed, flushing its state, when the last of them is done. Credentials are read here, in
 * the process that makes the call, never earlier.
 */
export class ProviderSessions {
  readonly #entries = new Map<string, Entry>();
  readonly #closing = new Map<string, Promise<void>>();
  readonly #options: SessionOptions;
  readonly #registry: ProviderRegistry;

  constructor(options: SessionOptions = {}) {
    this.#options = options;
    this.#registry = options.registry ?? createRegistry();
  }

  async use<T>(target: ProviderTarget, fn: (provider: Provider) => Promise<T>): Promise<T> {
    const key = `${target.name}\u0000${stableHash(target.config)}\u0000${stableHash(target.credentials ?? {})}`;
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = { users: 0, opened: this.#open(key, target) };
      this.#entries.set(key, entry);
    }
    entry.users++;
    try {
      const { wrapped } = await entry.opened;
      return await fn(wrapped);
    } finally {
      entry.users--;
      if (entry.users === 0 && this.#entries.get(key) === entry) {
        this.#entries.delete(key);
        const closing = entry.opened.then(
          ({ raw }) => raw.close?.(),
          () => undefined,
        );
        this.#closing.set(key, closing);
        await closing;
        if (this.#closing.get(key) === closing) this.#closing.delete(key);
      }
    }
  }

  async #open(key: string, target: ProviderTarget): Promise<{ raw: Provider; wrapped: Provider }> {
    await this.#closing.get(key);
    const clock = this.#options.clock ?? systemClock;
    const environment: ProviderEnvironment = {
      cwd: this.#options.cwd ?? process.cwd(),
      env: { ...(this.#options.env ?? process.env), ...target.credentials },
      clock,
    };
    const module = await this.#registry.module(target.config.type);
    const raw = await module.create(target.name, target.config, environment);
    const resilience = this.#options.resilience ?? {};
    const stack = defaultMiddlewareStack({
      ...resilience,
      retry: resilience.retry === false ? false : { clock, ...resilience.retry },
      breaker: resilience.breaker === false ? false : { clock, ...resilience.breaker },
    });
    return { raw, wrapped: stack.wrap(raw) };
  }
}
