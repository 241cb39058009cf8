import { describe, expect, it } from 'vitest';
import { ANY_TYPE, avoidShortages, CapacityMemory, type Clock, type Host, type Observed } from '../index.js';

function host(id: string, instanceTypes?: string[]): Host {
  const [provider, name] = id.split('/') as [string, string];
  return {
    id, provider, name, zone: name, labels: {}, state: 'up', pricePerHour: 0,
    capacity: { cpu: 16, memoryMiB: 65536, diskGiB: 1000, gpu: 0 },
    allocated: { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 },
    overcommit: { cpu: 1, memory: 1, disk: 1 },
    ...(instanceTypes ? { instanceTypes: instanceTypes.map((t) => ({ name: t, cpu: 2, memoryMiB: 4096, pricePerHour: 0.1 })) } : {}),
  };
}

describe('avoidShortages', () => {
  it('takes refused types out of a cloud zone and stops a full host taking new VMs, until the cooldown ends', () => {
    let now = 0;
    const clock: Clock = { now: () => now, sleep: async () => undefined };
    const memory = new CapacityMemory(clock, 1000);
    const observed: Observed = { hosts: [host('aws/us-east-1a', ['c6i.large', 'm6i.large']), host('aws/us-east-1b', ['c6i.large']), host('lab/h1'), host('lab/h2')], vms: [], capabilities: {} };
    expect(avoidShortages(observed, memory)).toBe(observed);

    memory.markExhausted('aws/us-east-1a', 'c6i.large');
    memory.markExhausted('lab/h1', ANY_TYPE);
    const avoided = avoidShortages(observed, memory);
    expect(avoided.hosts.map((h) => [h.id, h.state, h.instanceTypes?.map((t) => t.name)])).toEqual([
      ['aws/us-east-1a', 'up', ['m6i.large']],
      ['aws/us-east-1b', 'up', ['c6i.large']],
      ['lab/h1', 'draining', undefined],
      ['lab/h2', 'up', undefined],
    ]);

    now = 1001;
    expect(avoidShortages(observed, memory)).toBe(observed);
  });
});
