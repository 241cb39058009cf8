// A fleet on the KVM testbed through the core's front door: ProviderRegistry with the
// provider's own providerModule, observe → plan → apply across the 3 hosts by placement,
// then a re-apply that changes nothing, a destroy, and a foreign domain left as it was.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { apply, observe, parseFleet, plan, ProviderRegistry, systemClock, type FleetSpec, type ProviderSet } from '@novacron/core';
import { providerModule } from '@novacron/provider-kvm';
import { defineDomainOnHost, kvmProviderConfigFor, loadTestbed, scrubTestbed, tinyGuestDomainXml, virshOnHost, waitForGuestMarker } from './testbed/index.ts';

const tb = loadTestbed();
const FLEET = `nckf${randomBytes(2).toString('hex')}`;
const foreign = `${FLEET}-web-9`; // a name the fleet could use, but not its VM

const fleet: FleetSpec = parseFleet({
  name: FLEET,
  providers: { lab: kvmProviderConfigFor(tb) },
  groups: {
    web: { count: 3, cpu: 1, memory: '128MiB', disk: '1GiB', image: 'tiny', labels: { app: 'web' }, placement: { antiAffinity: 'host' } },
  },
});

let providers: ProviderSet | undefined;
async function open(): Promise<ProviderSet> {
  providers ??= await new ProviderRegistry().register(providerModule).open(fleet, { cwd: process.cwd(), env: process.env, clock: systemClock });
  return providers;
}

const scrub = () => scrubTestbed(tb, FLEET);

afterAll(async () => {
  await providers?.close();
  await scrub();
});

describe('a KVM fleet through plan and apply', () => {
  it('is placed across the hosts, boots, re-applies as a no-op, and is destroyed without touching others', { timeout: 600_000 }, async () => {
    const host = tb.hosts[0]!;
    await defineDomainOnHost(host, tinyGuestDomainXml(tb, { name: foreign, memoryMiB: 64 }));
    const foreignXml = await virshOnHost(host, ['dumpxml', foreign]);
    const set = await open();

    const first = plan(fleet, await observe(fleet, set));
    expect(first.steps.map((s) => s.kind)).toEqual(['create', 'create', 'create']);
    const result = await apply(first, set, { concurrency: 10 });
    expect(result.outcomes.filter((o) => o.status !== 'done').map((o) => o.error?.describe())).toEqual([]);

    const observed = await observe(fleet, set);
    const vms = observed.vms.filter((v) => v.fleet === FLEET);
    expect(vms.map((v) => v.name).sort()).toEqual([0, 1, 2].map((i) => `${FLEET}-web-${i}`));
    expect(new Set(vms.map((v) => v.host)).size).toBe(3); // anti-affinity: one per host
    expect(vms.every((v) => v.state === 'running' && v.labels['app'] === 'web')).toBe(true);
    await Promise.all(vms.map((vm) => waitForGuestMarker(tb.hosts.find((h) => `lab/${h.name}` === vm.host)!, vm.name, 180_000)));

    // Providers are the source of truth: a fresh plan from a fresh observation has nothing to do.
    const again = plan(fleet, observed);
    expect(again.steps).toEqual([]);
    const noop = await apply(again, set);
    expect(noop.ok).toBe(true);

    const destroy = plan(fleet, await observe(fleet, set), { destroy: true });
    expect(destroy.steps.map((s) => s.kind)).toEqual(['delete', 'delete', 'delete']);
    expect((await apply(destroy, set)).ok).toBe(true);
    expect((await observe(fleet, set)).vms.filter((v) => v.fleet === FLEET)).toEqual([]);
    expect(await virshOnHost(host, ['dumpxml', foreign])).toBe(foreignXml);
  });
});
