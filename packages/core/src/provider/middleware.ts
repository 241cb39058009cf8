import { ConflictError } from '../errors/errors.js';
import type { OperationContext, Provider } from './Provider.js';

/** One call through a provider, as middleware sees it. */
export interface ProviderCall {
  readonly provider: string;
  readonly kind: string;
  readonly operation: ProviderOperation;
  readonly vm?: string;
  readonly host?: string;
  readonly ctx: OperationContext;
}

export type Middleware = (call: ProviderCall, next: () => Promise<unknown>) => Promise<unknown>;

export const PROVIDER_OPERATIONS = [
  'inventory', 'list', 'create', 'start', 'stop', 'delete', 'resize', 'migrate', 'estimateMigration',
  'snapshot', 'listSnapshots', 'restore', 'deleteSnapshot', 'recordVerification', 'exportImage', 'importImage',
  'listUnowned', 'adopt', 'bootCheck', 'awaitReady',
] as const;
export type ProviderOperation = (typeof PROVIDER_OPERATIONS)[number];

// Every operation of the contract must be listed above: adding one to Provider without
// listing it here (so that it would bypass retries and tracing) is a compile error.
type ContractOperation = Exclude<keyof Provider, 'name' | 'kind' | 'capabilities' | 'close'>;
type Missing = Exclude<ContractOperation, ProviderOperation>;
const everyOperationListed: [Missing] extends [never] ? true : Missing = true;
void everyOperationListed;

/** The position of the OperationContext among a method's parameters, computed from its type. */
type CtxIndex<P extends readonly unknown[], Seen extends unknown[] = []> = P extends readonly [infer Head, ...infer Rest]
  ? [Head] extends [OperationContext]
    ? [OperationContext] extends [Head]
      ? Seen['length']
      : CtxIndex<Rest, [...Seen, Head]>
    : CtxIndex<Rest, [...Seen, Head]>
  : never;

/** Where an operation's OperationContext sits among its arguments (checked against the contract's types). */
const CTX_INDEX: { readonly [K in ProviderOperation]: CtxIndex<Required<Parameters<NonNullable<Provider[K]>>>> } = {
  inventory: 0, list: 1, create: 1, start: 1, stop: 2, delete: 1, resize: 2, migrate: 2, estimateMigration: 2,
  snapshot: 2, listSnapshots: 1, restore: 2, deleteSnapshot: 1, recordVerification: 2, exportImage: 1, importImage: 2,
  listUnowned: 0, adopt: 2, bootCheck: 2, awaitReady: 2,
};

interface Entry {
  readonly name: string;
  readonly priority: number;
  readonly middleware: Middleware;
}

/**
 * Cross-cutting behaviour around provider calls (tracing, retries, circuit breakers),
 * in one place rather than in every provider. Higher priority runs outermost; names are
 * unique so a behaviour is never stacked twice.
 */
export class MiddlewareStack {
  readonly #entries: Entry[] = [];

  add(name: string, middleware: Middleware, options: { priority?: number } = {}): this {
    if (this.#entries.some((e) => e.name === name)) {
      throw new ConflictError(`middleware "${name}" is already in the stack`);
    }
    this.#entries.push({ name, middleware, priority: options.priority ?? 0 });
    this.#entries.sort((a, b) => b.priority - a.priority);
    return this;
  }

  names(): string[] {
    return this.#entries.map((e) => e.name);
  }

  /** Runs `fn` through the stack. */
  run<T>(call: ProviderCall, fn: () => Promise<T>): Promise<T> {
    const dispatch = (i: number): Promise<unknown> => {
      const entry = this.#entries[i];
      return entry ? entry.middleware(call, () => dispatch(i + 1)) : fn();
    };
    return dispatch(0) as Promise<T>;
  }

  /** A provider whose every operation runs through this stack. Capabilities are unchanged. */
  wrap(provider: Provider): Provider {
    const wrapped: Record<string, unknown> = {
      name: provider.name,
      kind: provider.kind,
      capabilities: provider.capabilities,
    };
    for (const operation of PROVIDER_OPERATIONS) {
      const method = provider[operation] as ((...args: unknown[]) => Promise<unknown>) | undefined;
      if (typeof method !== 'function') continue;
      wrapped[operation] = (...args: unknown[]) => {
        const ctx = (args[CTX_INDEX[operation]] as OperationContext | undefined) ?? {};
        const subject = args[0] as { name?: unknown; host?: unknown } | undefined;
        const call: ProviderCall = {
          provider: provider.name,
          kind: provider.kind,
          operation,
          ctx,
          ...(typeof subject?.name === 'string' ? { vm: subject.name } : {}),
          ...(typeof subject?.host === 'string' ? { host: subject.host } : {}),
        };
        return this.run(call, () => method.apply(provider, args));
      };
    }
    if (provider.close) wrapped['close'] = () => provider.close!();
    return wrapped as unknown as Provider;
  }
}
