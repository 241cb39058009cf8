import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  defaultMiddlewareStack,
  parseFleet,
  reconcile as reconcileFleet,
  ProviderSet,
  type ReconcileOptions,
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

/**
 * The core's reconcile (observe, plan, apply, and again for VMs that ran short of capacity)
 * with instant retries and a breaker that does not trip in tests unless asked.
 */
export async function reconcile(fleet: FleetSpec, provider: SimProvider, options: ReconcileOptions = {}) {
  const result = await reconcileFleet(fleet, setOf(provider), {
    clock: instantClock,
    middleware: defaultMiddlewareStack({ retry: { clock: instantClock, maxAttempts: 4 }, breaker: { clock: instantClock, threshold: 1000 }, tracing: false }),
    ...options,
  });
  return { plan: result.plan, result };
}

export function fleetOf(input: FleetSpecInput): FleetSpec {
  return parseFleet(input);
}
