import { z } from 'zod';

/** One Compute Engine machine type as the catalog ships it. Memory in MiB, as the core counts it. */
export const gceCatalogType = z.strictObject({
  name: z.string().regex(/^[a-z][a-z0-9-]*$/),
  /** vCPUs the VM can use steadily: a shared-core type counts the fraction it is entitled to. */
  cpu: z.number().min(0.25),
  memoryMiB: z.number().int().min(256),
  gpu: z.number().int().min(1).optional(),
  /** Shared-core (e2-micro/small/medium): offered only when named in the provider's `machineTypes`. */
  sharedCore: z.literal(true).optional(),
});

/** The catalog shipped with the package: machine types, and on-demand prices per region (USD per hour). */
export const gceCatalog = z.strictObject({
  generatedAt: z.string().min(1),
  source: z.string().min(1),
  currency: z.literal('USD'),
  types: z.array(gceCatalogType).min(1),
  prices: z.record(z.string().min(1), z.record(z.string().min(1), z.number().min(0))),
});

export type GceCatalogType = z.infer<typeof gceCatalogType>;
export type GceCatalog = z.infer<typeof gceCatalog>;
