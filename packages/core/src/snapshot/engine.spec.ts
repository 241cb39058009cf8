import { describe, expect, it } from 'vitest';
import {
  NO_CAPABILITIES,
  parseFleet,
  ProviderSet,
  UnreachableError,
  type Provider,
  type RestoreResult,
  type SnapshotRecord,
  type SnapshotRequest,
  type VmRecord,
  type VmRef,
} from '../index.js';
import { tick, verifySnapshots } from './engine.js';

const fleet = parseFleet({
  name: 'f',
  providers: { a: { type: 'sim', generate: { count: 1, cpu: 8, memory: '16GiB' } }, b: { type: 'sim', generate: { count: 1, cpu: 8, memory: '16GiB' } } },
  groups: {
    db: { count: 1, cpu: 1, memory: '1GiB', image: 'img', placement: { providers: ['a'] }, snapshots: { schedule: '0 3 * * *', retention: { keepLast: 1 } } },
    old: { count: 1, cpu: 1, memory: '1GiB', image: 'img', placement: { providers: ['b'] }, snapshots: { schedule: '0 3 * * *', retention: { keepLast: 1 } } },
  },
});

const vm = (name: string, group: string, provider: string): VmRecord => ({
  name, id: name, provider, fleet: 'f', group, index: 0, specHash: 'h', host: `${provider}/h`, zone: 'z', state: 'running',
  resources: { cpu: 1, memoryMiB: 1024, diskGiB: 1, gpu: 0 }, image: 'img', labels: {}, addresses: [],
});

/** The smallest provider that keeps snapshots: what the contract asks, nothing more. */
function fakeProvider(name: string, options: { restoreFails?: Error; recordVerification?: boolean } = {}): Provider & { records: Map<string, SnapshotRecord> } {
  const records = new Map<string, SnapshotRecord>();
  const provider: Provider & { records: Map<string, SnapshotRecord> } = {
    name,
    kind: 'fake',
    capabilities: { ...NO_CAPABILITIES, snapshots: true, incrementalSnapshots: true },
    records,
    inventory: async () => [],
    list: async () => [vm('f-db-0', 'db', name)],
    create: async () => { throw new Error('not used'); },
    start: async () => { throw new Error('not used'); },
    stop: async () => { throw new Error('not used'); },
    delete: async () => undefined,
    snapshot: async (ref: VmRef, request: SnapshotRequest) => {
      const record: SnapshotRecord = { id: request.id!, provider: name, vm: ref.name, fleet: ref.fleet, group: 'db', takenAt: new Date(Date.UTC(2025, 0, 1, 5)).toISOString(), kind: request.kind, consistency: 'crash', state: 'complete', sizeBytes: 1, diskBytes: 1, digest: 'd1' };
      records.set(record.id, record);
      return record;
    },
    listSnapshots: async () => [...records.values()],
    restore: async (_ref, request): Promise<RestoreResult> => {
      if (options.restoreFails) throw options.restoreFails;
      return { vm: { ...vm(request.asName!, '', name), fleet: '' }, digest: records.get(request.snapshot)!.digest!, bytesWritten: 1 };
    },
    deleteSnapshot: async (id) => void records.delete(id),
  };
  if (options.recordVerification !== false) {
    provider.recordVerification = async (id, verification) => {
      const updated = { ...records.get(id)!, verified: verification };
      records.set(id, updated);
      return updated;
    };
  }
  return provider;
}

function noSnapshots(name: string): Provider {
  return { ...fakeProvider(name), capabilities: NO_CAPABILITIES, list: async () => [vm('f-old-0', 'old', name)] };
}

const NOW = Date.UTC(2025, 0, 1, 5);

describe('tick and verify against the bare contract', () => {
  it('reports a group whose provider keeps no snapshots instead of passing over it', async () => {
    const providers = new ProviderSet(new Map([['a', fakeProvider('a')], ['b', noSnapshots('b')]]));
    const result = await tick(fleet, providers, NOW, { middleware: false });
    expect(result.ok).toBe(true);
    expect(result.taken.map((t) => t.record.vm)).toEqual(['f-db-0']);
    expect(result.skipped).toEqual([{ vm: 'f-old-0', group: 'old', reason: 'provider "b" does not offer snapshots' }]);
  });

  it('still reports a verification when the provider cannot store it', async () => {
    const a = fakeProvider('a', { recordVerification: false });
    const providers = new ProviderSet(new Map<string, Provider>([['a', a], ['b', noSnapshots('b')]]));
    await tick(fleet, providers, NOW, { middleware: false });
    const result = await verifySnapshots(fleet, providers, { middleware: false });
    expect(result.ok).toBe(true);
    expect(result.results).toMatchObject([{ recorded: false, verification: { ok: true, method: 'checksum' } }]);
  });

  it('records nothing when the backup host does not answer, and a failed restore as a failed verification', async () => {
    const flaky = fakeProvider('a', { restoreFails: new UnreachableError('backup host down') });
    let providers = new ProviderSet(new Map<string, Provider>([['a', flaky], ['b', noSnapshots('b')]]));
    await tick(fleet, providers, NOW, { middleware: false });
    const unreachable = await verifySnapshots(fleet, providers, { middleware: false });
    expect(unreachable).toMatchObject({ ok: false, results: [], failed: [{ operation: 'verify', error: { code: 'Unreachable' } }] });
    expect([...flaky.records.values()][0]!.verified).toBeUndefined();

    const broken = fakeProvider('a', { restoreFails: new Error('qemu-img: backing file missing') });
    const original = [...flaky.records.values()][0]!;
    broken.records.set(original.id, original);
    providers = new ProviderSet(new Map<string, Provider>([['a', broken], ['b', noSnapshots('b')]]));
    const failed = await verifySnapshots(fleet, providers, { middleware: false });
    expect(failed.ok).toBe(false);
    expect(broken.records.get(original.id)!.verified).toMatchObject({ ok: false, detail: 'restore failed: qemu-img: backing file missing' });
  });

  it('stops starting work once aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const providers = new ProviderSet(new Map<string, Provider>([['a', fakeProvider('a')], ['b', noSnapshots('b')]]));
    const result = await tick(fleet, providers, NOW, { middleware: false, signal: controller.signal });
    expect(result).toMatchObject({ ok: false, taken: [], pruned: [] });
  });
});
