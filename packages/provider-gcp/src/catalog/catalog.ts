import { InvalidInputError, type InstanceType } from '@novacron/core';
import { GCE_CATALOG } from './generated/gceCatalog.js';
import type { GceCatalog } from './types.js';

/** The region whose prices stand in when the catalog has none for the provider's region. */
export const FALLBACK_PRICE_REGION = 'us-central1';

export interface RegionCatalog {
  readonly types: readonly InstanceType[];
  /** Set when prices are borrowed from another region: plan costs are then estimates. */
  readonly borrowedFrom?: string;
}

/** `us-central1-a` → `us-central1`. */
export function regionOfZone(zone: string): string {
  return zone.replace(/-[a-z]$/, '');
}

/**
 * The machine types a provider offers in a region, with prices. Shared-core types are left
 * out unless named: placement picks the cheapest type that fits, and an e2-medium would win
 * on price while giving the VM only part of a core.
 */
export function machineTypesFor(region: string, only?: readonly string[], catalog: GceCatalog = GCE_CATALOG): RegionCatalog {
  const own = catalog.prices[region];
  const prices = own ?? catalog.prices[FALLBACK_PRICE_REGION];
  if (!prices) throw new InvalidInputError(`the Compute Engine catalog has no prices for ${region} or ${FALLBACK_PRICE_REGION}`);
  if (only) {
    const unknown = only.filter((name) => !catalog.types.some((t) => t.name === name) || prices[name] === undefined);
    if (unknown.length > 0) {
      throw new InvalidInputError(`machine type(s) ${unknown.join(', ')} are not in the Compute Engine catalog shipped with @novacron/provider-gcp`, {
        context: { path: 'providers.<gcp>.machineTypes' },
        hint: 'run scripts/refresh-catalog.ts in packages/provider-gcp to add them, or choose from the catalog (docs/gcp.md)',
      });
    }
  }
  const wanted = only ? new Set(only) : undefined;
  const types: InstanceType[] = [];
  for (const t of catalog.types) {
    if (wanted ? !wanted.has(t.name) : t.sharedCore) continue;
    const price = prices[t.name];
    if (price === undefined) continue;
    types.push({ name: t.name, cpu: t.cpu, memoryMiB: t.memoryMiB, ...(t.gpu ? { gpu: t.gpu } : {}), pricePerHour: price });
  }
  return { types, ...(own ? {} : { borrowedFrom: FALLBACK_PRICE_REGION }) };
}
