import { Testing } from 'cdktf';
import { expect } from 'vitest';

/**
 * CDKTF's own matchers (`toHaveResourceWithProperties` and the rest) on vitest's `expect`:
 * `Testing.setupJest` registers them on the global `expect` and checks properties with its
 * asymmetric matchers, which vitest's `expect` provides under the same names.
 */
(globalThis as { expect?: unknown }).expect = expect;
Testing.setupJest();

interface TerraformConstructor {
  readonly tfResourceType: string;
}

interface CdktfMatchers<R = unknown> {
  toHaveResource(type: TerraformConstructor): R;
  toHaveResourceWithProperties(type: TerraformConstructor, properties: Record<string, unknown>): R;
  toHaveDataSource(type: TerraformConstructor): R;
  toHaveDataSourceWithProperties(type: TerraformConstructor, properties: Record<string, unknown>): R;
  toHaveProvider(type: TerraformConstructor): R;
  toHaveProviderWithProperties(type: TerraformConstructor, properties: Record<string, unknown>): R;
}

declare module 'vitest' {
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type, @typescript-eslint/no-explicit-any
  interface Matchers<T = any> extends CdktfMatchers<T> {}
}
