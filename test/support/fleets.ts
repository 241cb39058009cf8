import type { FleetSpecInput } from '@novacron/core';

/** A small valid fleet on one sim provider; tests change what they need. */
export function simFleet(overrides: Partial<FleetSpecInput> = {}): FleetSpecInput {
  return {
    name: 'shop',
    providers: {
      lab: { type: 'sim', generate: { count: 4, zones: ['zone-a', 'zone-b'], cpu: 16, memory: '64GiB', pricePerHour: 0.5 } },
    },
    groups: {
      web: { count: 3, cpu: 2, memory: '4GiB', image: 'debian-12' },
      db: { count: 1, cpu: 4, memory: '16GiB', disk: '100GiB', image: 'debian-12' },
    },
    ...overrides,
  };
}
