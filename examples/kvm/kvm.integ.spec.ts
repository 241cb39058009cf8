// examples/kvm/fleet.yaml applied to the testbed as it stands, re-planned, destroyed.
import { afterAll, describe, expect, it } from 'vitest';
import { apply, loadFleetFile, observe, plan, ProviderRegistry, systemClock, type ProviderSet } from '@novacron/core';
import { providerModule } from '@novacron/provider-kvm';
import { loadTestbed } from '../../test/testbed/index.ts';

loadTestbed(); // fails, not skips, without the testbed
let providers: ProviderSet | undefined;
afterAll(async () => {
  await providers?.close();
});

describe('examples/kvm/fleet.yaml', () => {
  it('applies to the testbed hosts, re-plans as a no-op and is destroyed', { timeout: 600_000 }, async () => {
    const fleet = await loadFleetFile(new URL('./fleet.yaml', import.meta.url).pathname);
    providers = await new ProviderRegistry().register(providerModule).open(fleet, { cwd: process.cwd(), env: process.env, clock: systemClock });
    const set = providers;
    // A run interrupted earlier is finished first: the fleet converges from whatever exists.
    const first = await apply(plan(fleet, await observe(fleet, set)), set);
    expect(first.outcomes.filter((o) => o.status !== 'done').map((o) => o.error?.describe())).toEqual([]);
    const observed = await observe(fleet, set);
    expect(observed.vms.map((v) => v.name).sort()).toEqual(['kvm-demo-db-0', 'kvm-demo-web-0', 'kvm-demo-web-1', 'kvm-demo-web-2']);
    expect(new Set(observed.vms.filter((v) => v.group === 'web').map((v) => v.host)).size).toBe(3);
    expect(['lab/nc-h1', 'lab/nc-h3']).toContain(observed.vms.find((v) => v.group === 'db')?.host);
    expect(plan(fleet, observed).steps).toEqual([]);
    expect((await apply(plan(fleet, observed, { destroy: true }), set)).ok).toBe(true);
    expect((await observe(fleet, set)).vms).toEqual([]);
  });
});
