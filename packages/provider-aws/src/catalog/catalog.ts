import { InvalidInputError, type InstanceType } from '@novacron/core';
import { EC2_CATALOG } from './generated/ec2Catalog.js';
import type { Ec2Catalog } from './types.js';

/** The region whose prices stand in when the catalog has none for the provider's region. */
export const FALLBACK_PRICE_REGION = 'us-east-1';

export interface RegionCatalog {
  readonly types: readonly InstanceType[];
  /** Set when prices are borrowed from another region: plan costs are then estimates. */
  readonly borrowedFrom?: string;
}

/**
 * The instance types a provider offers in a region, with prices. Without `only`, burstable
 * types are left out: placement picks the cheapest type that fits, and a T-family type would
 * win on price while giving the VM only a fraction of its vCPUs. Naming them opts in.
 */
export function instanceTypesFor(region: string, only?: readonly string[], catalog: Ec2Catalog = EC2_CATALOG): RegionCatalog {
  const own = catalog.prices[region];
  const prices = own ?? catalog.prices[FALLBACK_PRICE_REGION];
  if (!prices) throw new InvalidInputError(`the EC2 catalog has no prices for ${region} or ${FALLBACK_PRICE_REGION}`);
  if (only) {
    const unknown = only.filter((name) => !catalog.types.some((t) => t.name === name) || prices[name] === undefined);
    if (unknown.length > 0) {
      throw new InvalidInputError(`instance type(s) ${unknown.join(', ')} are not in the EC2 catalog shipped with @novacron/provider-aws`, {
        context: { path: 'providers.<aws>.instanceTypes' },
        hint: 'run scripts/refresh-catalog.ts in packages/provider-aws to add them, or choose from the catalog (docs/aws.md)',
      });
    }
  }
  const wanted = only ? new Set(only) : undefined;
  const types: InstanceType[] = [];
  for (const t of catalog.types) {
    if (wanted ? !wanted.has(t.name) : t.burstable) continue;
    const price = prices[t.name];
    if (price === undefined) continue;
    types.push({ name: t.name, cpu: t.cpu, memoryMiB: t.memoryMiB, ...(t.gpu ? { gpu: t.gpu } : {}), pricePerHour: price });
  }
  return { types, ...(own ? {} : { borrowedFrom: FALLBACK_PRICE_REGION }) };
}
