import { cheapestFit } from '@novacron/core';
import { describe, expect, it } from 'vitest';
import { instanceTypesFor } from './catalog.js';
import { EC2_CATALOG } from './generated/ec2Catalog.js';
import { ec2Catalog } from './types.js';

describe('the shipped EC2 catalog', () => {
  it('matches its schema and prices every type in every region it lists', () => {
    const catalog = ec2Catalog.parse(EC2_CATALOG);
    for (const [region, prices] of Object.entries(catalog.prices)) {
      for (const t of catalog.types) expect(prices[t.name], `${t.name} in ${region}`).toBeGreaterThan(0);
    }
  });

  it('picks the cheapest type that fits, burstable types only when named', () => {
    const { types } = instanceTypesFor('us-east-1');
    expect(types.some((t) => t.name.startsWith('t3.'))).toBe(false);
    expect(cheapestFit(types, { cpu: 2, memoryMiB: 4096, diskGiB: 20, gpu: 0 })?.name).toBe('c6i.large');
    expect(cheapestFit(types, { cpu: 2, memoryMiB: 8192, diskGiB: 20, gpu: 0 })?.name).toBe('m6a.large');
    expect(cheapestFit(types, { cpu: 4, memoryMiB: 32768, diskGiB: 20, gpu: 0 })?.name).toBe('r6i.xlarge');
    expect(cheapestFit(types, { cpu: 4, memoryMiB: 8192, diskGiB: 20, gpu: 1 })?.name).toBe('g4dn.xlarge');
    expect(cheapestFit(instanceTypesFor('us-east-1', ['t3.micro', 'm6i.large']).types, { cpu: 1, memoryMiB: 1024, diskGiB: 8, gpu: 0 })?.name).toBe('t3.micro');
  });

  it('refuses names it has no price for, with a way out', () => {
    expect(() => instanceTypesFor('us-east-1', ['x9.huge'])).toThrow(/x9\.huge.*not in the EC2 catalog/);
  });
});
