import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import {
  groupResources,
  groupSpecHash,
  parseFleet,
  type Clock,
  type FleetSpec,
  type FleetSpecInput,
  type SimProviderConfig,
} from '@novacron/core';
import { SimProvider } from '@novacron/provider-sim';
import type { FleetLayout } from '../layout.js';
import { ProviderSessions } from '../runtime/sessions.js';
import type { VmInputs } from '../runtime/vmInputs.js';

/** Sleeps that return at once: retries without waiting. */
export const instantClock: Clock = { now: () => Date.now(), sleep: async (_ms, signal) => signal?.throwIfAborted() };

export function tempDir(prefix = 'novacron-pulumi-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A small fleet on a simulated datacenter kept in `stateDir`. */
export function simSpec(stateDir: string, overrides: Partial<FleetSpecInput> = {}): FleetSpecInput {
  return {
    name: 'shop',
    providers: {
      lab: { type: 'sim', stateDir, generate: { count: 4, zones: ['zone-a', 'zone-b'], cpu: 16, memory: '64GiB', pricePerHour: 0.5 } },
    },
    groups: {
      web: { count: 3, cpu: 2, memory: '4GiB', image: 'debian-12', placement: { antiAffinity: 'host' } },
      db: { count: 1, cpu: 4, memory: '16GiB', disk: '100GiB', image: 'debian-12' },
    },
    ...overrides,
  };
}

/** Sessions as the runtime opens them, with retries that do not wait and no tracing. */
export function testSessions(): ProviderSessions {
  return new ProviderSessions({ clock: instantClock, resilience: { tracing: false, retry: { maxAttempts: 2 }, breaker: { threshold: 1000 } } });
}

/** Opens the fleet's sim provider on its state directory, runs `fn`, closes it (as another process would). */
export async function withSim<T>(fleet: FleetSpec, fn: (sim: SimProvider) => Promise<T> | T): Promise<T> {
  const [name, config] = Object.entries(fleet.providers)[0]!;
  const sim = SimProvider.open({ name, config: config as SimProviderConfig, stateDir: (config as SimProviderConfig).stateDir!, clock: instantClock });
  try {
    return await fn(sim);
  } finally {
    await sim.close();
  }
}

/** The inputs VmFleet gives one VM, built without Pulumi: for calling the handlers directly. */
export function vmInputsOf(fleet: FleetSpec, layout: FleetLayout, vm: string): VmInputs {
  const placed = layout.vms[vm];
  if (!placed) throw new Error(`no VM ${vm} in the layout`);
  const group = fleet.groups[placed.group]!;
  const index = Number(vm.slice(vm.lastIndexOf('-') + 1));
  return {
    fleet: fleet.name,
    group: placed.group,
    index,
    vmName: vm,
    providerName: placed.provider,
    providerConfig: fleet.providers[placed.provider]!,
    host: placed.host,
    ...(placed.instanceType ? { instanceType: placed.instanceType } : {}),
    resources: groupResources(group),
    image: group.image,
    labels: group.labels,
    specHash: groupSpecHash(group),
    ...(group.cloudInit ? { cloudInit: group.cloudInit } : {}),
    migration: group.migration,
    ...(group.snapshots ? { snapshots: group.snapshots } : {}),
    changes: group.changes,
    ...(layout.capabilities[placed.provider] ? { capabilities: layout.capabilities[placed.provider] } : {}),
  };
}

export function fleetOf(input: FleetSpecInput): FleetSpec {
  return parseFleet(input);
}

/** The value of an Output, or its error. (Pulumi's own tests read outputs the same way.) */
export function valueOf<T>(output: pulumi.Output<T>): Promise<T> {
  const internal = output as unknown as { promise(): Promise<T>; isKnown: Promise<boolean>; isSecret: Promise<boolean> };
  // A failed Output also fails these two; the caller sees the failure through the value.
  internal.isKnown.catch(() => undefined);
  internal.isSecret.catch(() => undefined);
  return internal.promise();
}

/** Whether an Output is marked secret. */
export function isSecretOutput(output: pulumi.Output<unknown>): Promise<boolean> {
  return pulumi.isSecret(output);
}
