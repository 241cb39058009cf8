import { cheapestFit } from '@novacron/core';
import { describe, expect, it } from 'vitest';
import { machineTypesFor, regionOfZone } from './catalog.js';
import { GCE_CATALOG } from './generated/gceCatalog.js';
import { gceCatalog } from './types.js';

describe('the shipped Compute Engine catalog', () => {
  it('matches its schema and prices every type in every region it lists', () => {
    const catalog = gceCatalog.parse(GCE_CATALOG);
    for (const [region, prices] of Object.entries(catalog.prices)) {
      for (const t of catalog.types) expect(prices[t.name], `${t.name} in ${region}`).toBeGreaterThan(0);
    }
  });

  it('picks the cheapest machine type that fits; shared-core types only when named', () => {
    const { types } = machineTypesFor('us-central1');
    expect(types.some((t) => t.name === 'e2-medium')).toBe(false);
    expect(cheapestFit(types, { cpu: 2, memoryMiB: 2048, diskGiB: 10, gpu: 0 })?.name).toBe('e2-highcpu-2');
    expect(cheapestFit(types, { cpu: 2, memoryMiB: 8192, diskGiB: 10, gpu: 0 })?.name).toBe('e2-standard-2');
    expect(cheapestFit(types, { cpu: 4, memoryMiB: 16384, diskGiB: 10, gpu: 1 })?.name).toBe('g2-standard-4');
    const named = machineTypesFor('us-central1', ['e2-medium', 'e2-standard-2']).types;
    expect(cheapestFit(named, { cpu: 1, memoryMiB: 2048, diskGiB: 10, gpu: 0 })?.name).toBe('e2-medium');
    expect(regionOfZone('europe-west4-b')).toBe('europe-west4');
    expect(machineTypesFor('me-west1').borrowedFrom).toBe('us-central1');
  });
});
