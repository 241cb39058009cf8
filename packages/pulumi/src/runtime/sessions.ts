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

/** Pulumi configuration as a dynamic provider's `configure` receives it. */
export interface ConfigSource {
  get(key: string): string | undefined;
}

/** The Pulumi config namespace whose keys name environment variables for the providers. */
export const CONFIG_NAMESPACE = 'novacron';

/** Environment variables a provider config reads credentials from (a KVM host's `passwordEnv`). */
export function credentialVariables(config: ProviderConfig): string[] {
  if (config.type !== 'kvm') return [];
  const names = [config.ssh?.passwordEnv, ...config.hosts.map((h) => h.ssh?.passwordEnv)];
  return [...new Set(names.filter((n): n is string => typeof n === 'string'))];
}

export interface SessionOptions {
  readonly registry?: ProviderRegistry;
  readonly cwd?: string;
  /** The process environment; credentials of each target are laid over it. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly clock?: Clock;
  /** Retries, breaker and tracing around every provider call, as in `apply`. */
  readonly resilience?: ResilienceOptions;
  /**
   * The stack's configuration, once Pulumi has configured the provider: a key
   * `novacron:<VARIABLE>` supplies a variable a provider config names (a `passwordEnv`).
   */
  readonly config?: () => ConfigSource | undefined;
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
    // Credentials are read here, in the process that makes the call: the environment, then
    // the stack's configuration, then the VM's own (secret) credentials.
    const config = this.#options.config?.();
    const fromConfig = Object.fromEntries(
      credentialVariables(target.config)
        .map((name) => [name, config?.get(`${CONFIG_NAMESPACE}:${name}`)] as const)
        .filter((entry): entry is readonly [string, string] => entry[1] !== undefined),
    );
    const environment: ProviderEnvironment = {
      cwd: this.#options.cwd ?? process.cwd(),
      env: { ...(this.#options.env ?? process.env), ...fromConfig, ...target.credentials },
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
