import { z } from 'zod';

/** One EC2 instance type as the catalog ships it. Memory in MiB, as the core counts it. */
export const ec2CatalogType = z.strictObject({
  name: z.string().regex(/^[a-z0-9-]+\.[a-z0-9-]+$/),
  cpu: z.number().int().min(1),
  memoryMiB: z.number().int().min(256),
  gpu: z.number().int().min(1).optional(),
  /** Burstable (T family): offered only when named in the provider's `instanceTypes`. */
  burstable: z.literal(true).optional(),
});

/** The catalog shipped with the package: types, and on-demand prices per region (USD per hour). */
export const ec2Catalog = z.strictObject({
  generatedAt: z.string().min(1),
  source: z.string().min(1),
  currency: z.literal('USD'),
  types: z.array(ec2CatalogType).min(1),
  prices: z.record(z.string().min(1), z.record(z.string().min(1), z.number().min(0))),
});

export type Ec2CatalogType = z.infer<typeof ec2CatalogType>;
export type Ec2Catalog = z.infer<typeof ec2Catalog>;
