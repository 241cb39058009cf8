import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  defaultMiddlewareStack,
  observe,
  parseFleet,
  plan,
  apply,
  ProviderSet,
  type ApplyOptions,
  type Clock,
  type FleetSpec,
  type FleetSpecInput,
  type SimProviderConfig,
} from '@novacron/core';
import type { FaultInjector} from '@novacron/provider-sim';
import { SimProvider } from '@novacron/provider-sim';

/** A clock whose sleeps return at once: retries and backoff without waiting. */
export const instantClock: Clock = { now: () => Date.now(), sleep: async (_ms, signal) => signal?.throwIfAborted() };

export function tempDir(prefix = 'novacron-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Opens the fleet's first sim provider on a state directory, as a new process would. */
export function openSim(fleet: FleetSpec, stateDir: string, faults?: FaultInjector, clock: Clock = instantClock): SimProvider {
  const [name, config] = Object.entries(fleet.providers)[0]!;
  return SimProvider.open({ name, config: config as SimProviderConfig, stateDir, clock, ...(faults ? { faults } : {}) });
}

export function setOf(provider: SimProvider): ProviderSet {
  return new ProviderSet(new Map([[provider.name, provider]]));
}

/** Plans and applies with instant retries and a breaker that does not trip in tests unless asked. */
export async function reconcile(fleet: FleetSpec, provider: SimProvider, options: ApplyOptions = {}) {
  const providers = setOf(provider);
  const planned = plan(fleet, await observe(fleet, providers));
  const result = await apply(planned, providers, {
    clock: instantClock,
    middleware: defaultMiddlewareStack({ retry: { clock: instantClock, maxAttempts: 4 }, breaker: { clock: instantClock, threshold: 1000 }, tracing: false }),
    ...options,
  });
  return { plan: planned, result };
}

export function fleetOf(input: FleetSpecInput): FleetSpec {
  return parseFleet(input);
}
