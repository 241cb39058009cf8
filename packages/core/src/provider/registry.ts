import type { ZodType } from 'zod';
import { ConflictError, InvalidInputError } from '../errors/errors.js';
import type { FleetSpec, ProviderConfig } from '../model/index.js';
import type { Clock } from '../util/clock.js';
import type { Provider } from './Provider.js';

/** What a provider factory is given besides its config: no module-level state anywhere. */
export interface ProviderEnvironment {
  readonly cwd: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly clock: Clock;
  readonly log?: (message: string) => void;
}

/** A provider package's entry point: `export const providerModule: ProviderModule = …`. */
export interface ProviderModule<Config extends ProviderConfig = ProviderConfig> {
  readonly kind: Config['type'];
  readonly configSchema?: ZodType;
  create(name: string, config: Config, environment: ProviderEnvironment): Promise<Provider>;
}

/**
 * Maps provider kinds to their modules. Kinds not registered are imported on demand from
 * `@novacron/provider-<kind>`, so a user installs only the providers they use.
 */
export class ProviderRegistry {
  readonly #modules = new Map<string, ProviderModule>();
  readonly #importer: (specifier: string) => Promise<unknown>;

  constructor(options: { importer?: (specifier: string) => Promise<unknown> } = {}) {
    this.#importer = options.importer ?? ((specifier) => import(specifier));
  }

  register<C extends ProviderConfig>(module: ProviderModule<C>): this {
    if (this.#modules.has(module.kind)) {
      throw new ConflictError(`provider kind "${module.kind}" is already registered`);
    }
    this.#modules.set(module.kind, module as unknown as ProviderModule);
    return this;
  }

  async module(kind: string): Promise<ProviderModule> {
    const known = this.#modules.get(kind);
    if (known) return known;
    const specifier = `@novacron/provider-${kind}`;
    let loaded: unknown;
    try {
      loaded = await this.#importer(specifier);
    } catch (error) {
      throw new InvalidInputError(`provider kind "${kind}" is not installed`, {
        hint: `npm install ${specifier}`,
        cause: error,
      });
    }
    const module = (loaded as { providerModule?: ProviderModule }).providerModule;
    if (!module || module.kind !== kind) {
      throw new InvalidInputError(`${specifier} does not export a providerModule of kind "${kind}"`);
    }
    this.#modules.set(kind, module);
    return module;
  }

  /** Opens every provider a fleet declares. Closes those already opened if one fails. */
  async open(fleet: FleetSpec, environment: ProviderEnvironment): Promise<ProviderSet> {
    const opened = new Map<string, Provider>();
    try {
      for (const [name, config] of Object.entries(fleet.providers)) {
        const module = await this.module(config.type);
        opened.set(name, await module.create(name, config, environment));
      }
    } catch (error) {
      // The failure to open is what the caller needs to hear about, not a close that failed after it.
      await closeAll(opened).catch(() => undefined);
      throw error;
    }
    return new ProviderSet(opened);
  }
}

/** The providers of one fleet, by name. */
export class ProviderSet {
  constructor(readonly byName: ReadonlyMap<string, Provider>) {}

  get(name: string): Provider {
    const provider = this.byName.get(name);
    if (!provider) throw new InvalidInputError(`no provider named "${name}" in this fleet`);
    return provider;
  }

  map(fn: (provider: Provider) => Provider): ProviderSet {
    return new ProviderSet(new Map([...this.byName].map(([name, p]) => [name, fn(p)])));
  }

  [Symbol.iterator]() {
    return this.byName.values();
  }

  async close(): Promise<void> {
    await closeAll(this.byName);
  }
}

async function closeAll(providers: ReadonlyMap<string, Provider>): Promise<void> {
  const results = await Promise.allSettled([...providers.values()].map((p) => p.close?.()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
