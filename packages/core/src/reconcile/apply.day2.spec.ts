import { describe, expect, it } from 'vitest';
import { apply, MiddlewareStack, NO_CAPABILITIES, ProviderSet, type Plan, type PlanStep, type Provider, type ResizeRequest } from '../index.js';

/** A change never falls back silently: a reboot happens only where the plan said so. */
function update(changeClass: 'hot-plug' | 'reboot'): PlanStep {
  return {
    id: 'update:f-web-0', kind: 'update', vm: 'f-web-0', group: 'web', provider: 'p', host: 'p/h1', reason: 'memory', dependsOn: [],
    ref: { name: 'f-web-0', fleet: 'f' }, from: { cpu: 1, memoryMiB: 512, diskGiB: 1, gpu: 0 }, to: { cpu: 1, memoryMiB: 1024, diskGiB: 1, gpu: 0 },
    specHash: 'h2', changeClass, changes: [], allowReboot: true,
  };
}
const plan = (steps: PlanStep[]): Plan => ({
  fleet: 'f', steps, unplaced: [], costPerHour: 0,
  placement: { assignments: {}, instanceTypes: {}, unplaced: [], explanations: {}, objectives: { activeHosts: 0, costPerHour: 0, imbalance: 0 }, alternatives: [] },
  summary: { create: 0, delete: 0, start: 0, update: steps.length, replace: 0, migrate: 0, unchanged: 0 },
});

describe('apply: reboots only where planned', () => {
  it('asks the provider for a reboot-free change when the plan classed it hot-plug, and allows one for a reboot-class change', async () => {
    const seen: ResizeRequest[] = [];
    const provider: Provider = {
      name: 'p', kind: 'test', capabilities: { ...NO_CAPABILITIES, resize: true },
      inventory: async () => [], list: async () => [], create: async () => { throw new Error('unused'); }, start: async () => { throw new Error('unused'); }, stop: async () => { throw new Error('unused'); }, delete: async () => undefined,
      resize: async (_ref, request) => {
        seen.push(request);
        return { name: 'f-web-0', id: 'x', provider: 'p', fleet: 'f', group: 'web', index: 0, specHash: 'h2', host: 'p/h1', zone: 'z', state: 'running', resources: request.resources, image: 'i', labels: {}, addresses: [] };
      },
    };
    const providers = new ProviderSet(new Map([['p', provider]]));
    await apply(plan([update('hot-plug')]), providers, { middleware: new MiddlewareStack() });
    await apply(plan([update('reboot')]), providers, { middleware: new MiddlewareStack() });
    expect(seen.map((r) => r.allowReboot)).toEqual([false, true]);
  });
});
