import { describe, expect, it } from 'vitest';
import {
  NO_CAPABILITIES,
  parseFleet,
  ProviderSet,
  UnreachableError,
  type BootCheckResult,
  type Provider,
  type SnapshotRecord,
  type VmRecord,
  type VmRef,
} from '../index.js';
import { verifySnapshots } from './engine.js';

// Restore tests on a provider that can boot what it restored (capability bootCheck, KVM's):
// the digest is compared first, then the scratch VM is booted to its guest's marker.
const fleet = parseFleet({
  name: 'f',
  providers: { a: { type: 'sim', generate: { count: 1, cpu: 8, memory: '16GiB' } } },
  groups: { db: { count: 1, cpu: 1, memory: '1GiB', image: 'img', snapshots: { schedule: '0 3 * * *', retention: { keepLast: 1 } } } },
});

const vm = (name: string, fleetName: string): VmRecord => ({
  name, id: name, provider: 'a', fleet: fleetName, group: '', index: 0, specHash: '', host: 'a/h', zone: 'z', state: 'stopped',
  resources: { cpu: 1, memoryMiB: 1024, diskGiB: 1, gpu: 0 }, image: 'img', labels: {}, addresses: [],
});

function booting(boot: (ref: VmRef) => Promise<BootCheckResult>, options: { restoredDigest?: string; bootCheck?: boolean } = {}) {
  const record: SnapshotRecord = { id: 's1', provider: 'a', vm: 'f-db-0', fleet: 'f', group: 'db', takenAt: '2025-01-01T03:00:00.000Z', kind: 'full', consistency: 'crash', state: 'complete', sizeBytes: 1, diskBytes: 1, digest: 'd1' };
  const calls: string[] = [];
  const provider: Provider = {
    name: 'a',
    kind: 'fake',
    capabilities: { ...NO_CAPABILITIES, snapshots: true, bootCheck: options.bootCheck ?? true },
    inventory: async () => [],
    list: async () => [],
    create: async () => { throw new Error('not used'); },
    start: async () => { throw new Error('not used'); },
    stop: async () => { throw new Error('not used'); },
    delete: async (ref) => void calls.push(`delete ${ref.name}`),
    snapshot: async () => record,
    listSnapshots: async () => [record],
    restore: async (_ref, request) => {
      calls.push(`restore ${request.snapshot} as ${request.asName}`);
      return { vm: vm(request.asName!, ''), digest: options.restoredDigest ?? 'd1', bytesWritten: 1 };
    },
    deleteSnapshot: async () => undefined,
    bootCheck: async (ref) => {
      calls.push(`boot ${ref.name}`);
      return boot(ref);
    },
  };
  return { providers: new ProviderSet(new Map([['a', provider]])), calls };
}

describe('restore tests that boot (capability bootCheck)', () => {
  it('boots the scratch VM after the digest matched, records method boot, and removes the scratch VM', async () => {
    const { providers, calls } = booting(async () => ({ ok: true, detail: 'booted to its ready marker in 6.1 s', durationMs: 6100 }));
    const result = await verifySnapshots(fleet, providers, { middleware: false });
    expect(result.ok).toBe(true);
    expect(result.results[0]!.verification).toMatchObject({ ok: true, method: 'boot', detail: expect.stringMatching(/digest matches .*; booted to its ready marker/) });
    expect(calls).toEqual(['restore s1 as f-db-0-verify', 'boot f-db-0-verify', 'delete f-db-0-verify']);
  });

  it('a guest that does not come up fails the verification (method boot)', async () => {
    const { providers } = booting(async () => ({ ok: false, detail: 'no ready marker within 300 s', durationMs: 300_000 }));
    const result = await verifySnapshots(fleet, providers, { middleware: false });
    expect(result.ok).toBe(false);
    expect(result.results[0]!.verification).toMatchObject({ ok: false, method: 'boot', detail: 'digest matches, but the restored VM did not boot: no ready marker within 300 s' });
  });

  it('does not boot what failed its checksum, and boots nothing on providers without the capability', async () => {
    const mismatch = booting(async () => ({ ok: true, detail: '', durationMs: 0 }), { restoredDigest: 'other' });
    const failed = await verifySnapshots(fleet, mismatch.providers, { middleware: false });
    expect(failed.results[0]!.verification).toMatchObject({ ok: false, method: 'checksum' });
    expect(mismatch.calls).not.toContain('boot f-db-0-verify');
    const plain = booting(async () => ({ ok: true, detail: '', durationMs: 0 }), { bootCheck: false });
    const checked = await verifySnapshots(fleet, plain.providers, { middleware: false });
    expect(checked.results[0]!.verification).toMatchObject({ ok: true, method: 'checksum' });
    expect(plain.calls).toEqual(['restore s1 as f-db-0-verify', 'delete f-db-0-verify']);
  });

  it('a boot check that throws is recorded as a failed boot, unless the host did not answer (then nothing is recorded)', async () => {
    const broken = booting(async () => { throw new Error('define failed'); });
    const recorded = await verifySnapshots(fleet, broken.providers, { middleware: false });
    expect(recorded.results[0]!.verification).toMatchObject({ ok: false, method: 'boot', detail: 'boot check failed: define failed' });
    const down = booting(async () => { throw new UnreachableError('host h does not answer'); });
    const reported = await verifySnapshots(fleet, down.providers, { middleware: false });
    expect(reported.results).toEqual([]);
    expect(reported.failed[0]).toMatchObject({ operation: 'verify', error: { code: 'Unreachable' } });
    expect(down.calls.at(-1)).toBe('delete f-db-0-verify');
  });
});
