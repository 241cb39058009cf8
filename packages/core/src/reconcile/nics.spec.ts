import { describe, expect, it } from 'vitest';
import {
  apply,
  classifyChanges,
  diffNics,
  expandFleet,
  MiddlewareStack,
  NO_CAPABILITIES,
  NovaCronError,
  parseFleet,
  plan,
  ProviderSet,
  validateFleet,
  type Capabilities,
  type FleetSpecInput,
  type Host,
  type Provider,
  type ResizeRequest,
  type UpdateStep,
  type VmNic,
  type VmRecord,
} from '../index.js';
import { groupSpecHash } from './desired.js';

/** NICs in the fleet model: validated with paths, compared only when declared, classed by what the provider can do. */
const hosts: Host[] = [{
  id: 'lab/h1', provider: 'lab', name: 'h1', zone: 'a', labels: {}, state: 'up', pricePerHour: 1,
  capacity: { cpu: 16, memoryMiB: 32768, diskGiB: 1000, gpu: 0 }, allocated: { cpu: 2, memoryMiB: 4096, diskGiB: 10, gpu: 0 },
  overcommit: { cpu: 1, memory: 1, disk: 1 },
}];
const fleetInput = (web: Record<string, unknown> = {}): FleetSpecInput => ({
  name: 'f', providers: { lab: { type: 'sim' } }, groups: { web: { count: 1, cpu: 2, memory: '4GiB', image: 'img', ...web } },
});
const fleet = (web: Record<string, unknown> = {}) => parseFleet(fleetInput(web));
const nic = (network: string, mac: string, model = 'virtio'): VmNic => ({ network, mac, model });
function vm(nics: readonly VmNic[] | undefined, spec = fleet()): VmRecord {
  return {
    name: 'f-web-0', id: 'id-0', provider: 'lab', fleet: 'f', group: 'web', index: 0, specHash: groupSpecHash(spec.groups.web!),
    host: 'lab/h1', zone: 'a', state: 'running', resources: { cpu: 2, memoryMiB: 4096, diskGiB: 10, gpu: 0 }, image: 'img', labels: {}, addresses: [],
    ...(nics ? { nics } : {}),
  };
}
const hotplug: Capabilities = { ...NO_CAPABILITIES, resize: true, hotplugNics: true };
const classify = (web: Record<string, unknown>, nics: readonly VmNic[] | undefined, can: Capabilities = hotplug) => {
  const f = fleet(web);
  return classifyChanges(expandFleet(f)[0]!, vm(nics, f), can);
};

describe('groups.<g>.nics: validation', () => {
  function problems(web: Record<string, unknown>) {
    const result = validateFleet(fleetInput(web));
    if (result.ok) throw new Error('expected the fleet to be invalid');
    return result.error.problems.map((p) => `${p.path}: ${p.message}`);
  }

  it('reports each problem with its path', () => {
    const found = problems({ nics: [{ network: 'lan' }, { network: '' }, { network: 'a b' }, { network: 'lan', model: 'ne2k' }, { netwrok: 'x' }] });
    expect(found).toEqual([
      expect.stringMatching(/^groups\.web\.nics\[1\]\.network: name the network/),
      expect.stringMatching(/^groups\.web\.nics\[2\]\.network: network names have no spaces/),
      expect.stringMatching(/^groups\.web\.nics\[3\]\.model: /),
      'groups.web.nics[4].network: required (string)',
      'groups.web.nics[4].netwrok: unknown key (did you mean "network"?)',
    ]);
  });

  it('takes one to eight NICs, or none declared', () => {
    expect(problems({ nics: [] })).toEqual([expect.stringMatching(/^groups\.web\.nics: declare at least one NIC/)]);
    expect(problems({ nics: Array.from({ length: 9 }, (_, i) => ({ network: `n${i}` })) })).toEqual([expect.stringMatching(/^groups\.web\.nics: at most 8 NICs/)]);
    expect(fleet({ nics: Array.from({ length: 8 }, (_, i) => ({ network: `n${i}` })) }).groups.web!.nics).toHaveLength(8);
    expect(fleet().groups.web!.nics).toBeUndefined();
  });
});

describe('diffNics', () => {
  it('matches by network and model, not by position', () => {
    const have = [nic('a', 'm1'), nic('b', 'm2')];
    expect(diffNics([{ network: 'b' }, { network: 'a' }], have)).toMatchObject({ attach: [], detach: [], remodel: [] });
    expect(diffNics([{ network: 'a' }, { network: 'a' }], have)).toMatchObject({ attach: [{ network: 'a' }], detach: [have[1]], remodel: [] });
    expect(diffNics([{ network: 'a', model: 'e1000e' }, { network: 'b' }], have)).toMatchObject({ attach: [], detach: [], remodel: [{ from: have[0], to: { network: 'a', model: 'e1000e' } }] });
  });

  it('prefers an exact model match over a model change when a network has several NICs', () => {
    const have = [nic('a', 'm1', 'virtio'), nic('a', 'm2', 'e1000e')];
    expect(diffNics([{ network: 'a', model: 'e1000e' }], have)).toMatchObject({ detach: [have[0]], remodel: [], kept: [{ from: have[1] }] });
  });
});

describe('classifyChanges: nics', () => {
  it('never compares NICs the group does not declare, nor NICs the provider does not report', () => {
    expect(classify({}, [nic('default', 'm1'), nic('other', 'm2')]).class).toBe('none');
    expect(classify({ nics: [{ network: 'lan' }] }, undefined).class).toBe('none');
    // An undeclared model is the provider's default, never drift.
    expect(classify({ nics: [{ network: 'default' }] }, [nic('default', 'm1', 'e1000')]).class).toBe('none');
  });

  it('hot-plugs an added or removed NIC where the provider can, and says what it does', () => {
    const grow = classify({ nics: [{ network: 'default' }, { network: 'lan2' }] }, [nic('default', 'm1')]);
    expect(grow).toEqual({
      class: 'hot-plug',
      changes: [{ field: 'nics', from: 'default(virtio)', to: 'default,lan2', class: 'hot-plug', reason: 'attach lan2: hot-plugged into the running guest' }],
    });
    const shrink = classify({ nics: [{ network: 'default' }] }, [nic('default', 'm1'), nic('lan2', '52:54:00:00:00:02')]);
    expect(shrink.changes[0]).toMatchObject({ class: 'hot-plug', reason: 'detach lan2(virtio) 52:54:00:00:00:02: hot-plugged into the running guest' });
  });

  it('changes a model by detaching and attaching again, and says the guest sees it', () => {
    const change = classify({ nics: [{ network: 'default', model: 'e1000e' }] }, [nic('default', 'm1')]);
    expect(change.changes[0]).toMatchObject({ class: 'hot-plug', reason: expect.stringMatching(/^default m1 model virtio → e1000e: hot-plugged .*detached and attached again, so the guest sees it go and come back$/) });
  });

  it('replaces where the provider cannot hot-plug NICs, or where the primary NIC is the instance’s own', () => {
    const add = { nics: [{ network: 'subnet-a' }, { network: 'subnet-b' }] };
    expect(classify(add, [nic('subnet-a', 'm1')], { ...NO_CAPABILITIES, resize: true }).changes[0]).toMatchObject({ class: 'replace', reason: 'attach subnet-b: the provider sets a VM’s NICs only when it creates it'.replace('’', "'") });
    const ec2: Capabilities = { ...hotplug, fixedPrimaryNic: true };
    expect(classify(add, [nic('subnet-a', 'm1')], ec2).class).toBe('hot-plug');
    expect(classify({ nics: [{ network: 'subnet-b' }] }, [nic('subnet-a', 'm1')], ec2).changes[0]).toMatchObject({ class: 'replace', reason: expect.stringMatching(/the primary NIC \(subnet-a\(virtio\)\) cannot be detached/) });
  });
});

describe('plan and apply: nics', () => {
  const observed = (vms: VmRecord[], capabilities = hotplug) => ({ hosts, vms, capabilities: { lab: capabilities } });

  it('plans an update that carries the declared NICs, with the class and reason; creates carry them too', () => {
    const f = fleet({ count: 2, nics: [{ network: 'default' }, { network: 'lan2', model: 'e1000e' }] });
    const p = plan(f, observed([vm([nic('default', 'm1')], f)]));
    const update = p.steps.find((s): s is UpdateStep => s.kind === 'update')!;
    expect(update).toMatchObject({ changeClass: 'hot-plug', nics: f.groups.web!.nics, reason: 'nics default(virtio) → default,lan2(e1000e) [hot-plug: attach lan2(e1000e): hot-plugged into the running guest]' });
    const create = p.steps.find((s) => s.kind === 'create');
    expect(create?.kind === 'create' && create.request.nics).toEqual(f.groups.web!.nics);
    // Without the capability: replaced, the new VM made with the NICs.
    const replaced = plan(f, observed([vm([nic('default', 'm1')], f)], { ...NO_CAPABILITIES, resize: true }));
    expect(replaced.steps.map((s) => s.kind)).toEqual(['delete', 'replace', 'create']);
    const replace = replaced.steps[1]!;
    expect(replace.kind === 'replace' && replace.request.nics).toEqual(f.groups.web!.nics);
  });

  it('a failed NIC hot-plug stops with what failed unless the group allows a replace; never a reboot', async () => {
    const run = async (fallbackToReplace: boolean) => {
      const calls: string[] = [];
      const seen: ResizeRequest[] = [];
      const provider: Provider = {
        name: 'lab', kind: 'test', capabilities: hotplug,
        inventory: async () => [], list: async () => [],
        create: async (r) => { calls.push(`create ${r.nics?.map((n) => n.network).join(',')}`); return { ...vm([]), nics: r.nics?.map((n, i) => nic(n.network, `new${i}`)) ?? [] }; },
        start: async () => { throw new Error('unused'); }, stop: async () => { throw new Error('unused'); },
        delete: async () => { calls.push('delete'); },
        resize: async (_ref, request) => { seen.push(request); calls.push('resize'); throw new NovaCronError('Conflict', 'client', 'attach-interface refused by the guest'); },
      };
      const f = fleet({ nics: [{ network: 'default' }, { network: 'lan2' }], changes: { fallbackToReplace } });
      const p = plan(f, observed([vm([nic('default', 'm1')], f)]));
      const result = await apply(p, new ProviderSet(new Map([['lab', provider]])), { middleware: new MiddlewareStack() });
      return { calls, seen, result };
    };
    const stopped = await run(false);
    expect(stopped.calls).toEqual(['resize']);
    expect(stopped.seen[0]).toMatchObject({ allowReboot: false, nics: [{ network: 'default' }, { network: 'lan2' }] });
    const error = stopped.result.outcomes[0]!.error!;
    expect(error.message).toBe('hot-plug change failed (attach-interface refused by the guest); the VM was not replaced');
    expect(error.hint).toMatch(/groups\.web\.changes\.fallbackToReplace: true/);
    const replaced = await run(true);
    expect(replaced.result.ok).toBe(true);
    expect(replaced.calls).toEqual(['resize', 'delete', 'create default,lan2']);
  });
});
