import { describe, expect, it } from 'vitest';
import { fleetForUnowned, parseFleet, planAdoption, type UnownedVm, type VmRecord } from '../index.js';

const fleet = parseFleet({
  name: 'shop',
  providers: { lab: { type: 'sim' } },
  groups: {
    web: { count: 3, cpu: 2, memory: '2GiB', disk: '20GiB', image: 'debian-12' },
    db: { count: 1, cpu: 4, memory: '8GiB', disk: '50GiB', image: 'debian-12' },
  },
});
function unowned(name: string, patch: Partial<UnownedVm> = {}): UnownedVm {
  return { name, id: `id-${name}`, provider: 'lab', host: 'lab/h1', zone: 'a', state: 'running', resources: { cpu: 2, memoryMiB: 2048, diskGiB: 20, gpu: 0 }, image: 'debian-12', labels: {}, addresses: [], ...patch };
}
const owned = (group: string, index: number) => ({ name: `shop-${group}-${index}`, fleet: 'shop', group, index }) as VmRecord;

describe('planAdoption', () => {
  it('matches by size and image into free slots, by name into its own slot, and explains every VM', () => {
    const plan = planAdoption(fleet, [owned('web', 0)], [
      unowned('old-web-a'),
      unowned('shop-web-2'),
      unowned('big', { resources: { cpu: 4, memoryMiB: 8192, diskGiB: 50, gpu: 0 } }),
      unowned('odd', { resources: { cpu: 3, memoryMiB: 2048, diskGiB: 20, gpu: 0 } }),
      unowned('other-image', { image: 'ubuntu' }),
    ]);
    expect(plan.adoptions.map((a) => [a.vm.name, a.group, a.index])).toEqual([
      ['big', 'db', 0],
      ['old-web-a', 'web', 1],
      ['shop-web-2', 'web', 2],
    ]);
    expect(plan.adoptions.find((a) => a.vm.name === 'shop-web-2')!.reason).toMatch(/^named as slot 2 of group "web": 2 vCPU, 2048 MiB, 20 GiB, image debian-12$/);
    expect(plan.skipped.map((s) => s.vm.name)).toEqual(['odd', 'other-image']);
    expect(plan.skipped[0]!.reason).toMatch(/group "web": size differs \(cpu 3 ≠ 2\)/);
  });

  it('skips when the group is full, when groups tie, and when the image cannot be told unless the group is named', () => {
    const full = planAdoption(fleet, [owned('web', 0), owned('web', 1), owned('web', 2)], [unowned('extra')]);
    expect(full.skipped[0]!.reason).toMatch(/group "web" is full \(count 3\)/);
    const unknown = unowned('mystery', { image: undefined, imageSource: 'volume base.qcow2' });
    expect(planAdoption(fleet, [], [unknown]).skipped[0]!.reason).toMatch(/cannot be told \(volume base.qcow2\); name the group "web" with --group/);
    expect(planAdoption(fleet, [], [unknown], { group: 'web' }).adoptions[0]).toMatchObject({ group: 'web', index: 0, image: 'debian-12' });
    expect(planAdoption(fleet, [], [unowned('a'), unowned('b')], { names: 'b*' }).adoptions.map((a) => a.vm.name)).toEqual(['b']);
  });
});

describe('fleetForUnowned', () => {
  it('writes one group per size and image, named after the VMs, with image entries the provider suggests', () => {
    const { spec, members } = fleetForUnowned('legacy', { lab: { type: 'kvm', hosts: [] } }, [
      unowned('app-1', { image: undefined, imageSuggestion: { name: 'base', config: { volume: 'base.qcow2' } } }),
      unowned('app-2', { image: undefined, imageSuggestion: { name: 'base', config: { volume: 'base.qcow2' } } }),
      unowned('db', { resources: { cpu: 4, memoryMiB: 4096, diskGiB: 40, gpu: 0 } }),
    ]);
    expect(spec).toEqual({
      name: 'legacy',
      providers: { lab: { type: 'kvm', hosts: [], images: { base: { volume: 'base.qcow2' } } } },
      groups: {
        app: { count: 2, cpu: 2, memory: '2048MiB', disk: '20GiB', image: 'base' },
        db: { count: 1, cpu: 4, memory: '4096MiB', disk: '40GiB', image: 'debian-12' },
      },
    });
    expect(members).toEqual({ app: ['app-1', 'app-2'], db: ['db'] });
  });

  it('puts a cloud provider\'s image suggestion (an AMI id, a plain string) into its images map, and the file parses', () => {
    const aws = { type: 'aws', region: 'us-east-1', zones: ['us-east-1a'], images: { 'debian-12': 'ami-0123456789abcdef0' } };
    const vm = unowned('legacy-1', { provider: 'aws', host: 'aws/us-east-1a', zone: 'us-east-1a', image: undefined, imageSource: 'AMI ami-0000000000000aaaa (Team Base 7)', imageSuggestion: { name: 'team-base-7', config: 'ami-0000000000000aaaa' } });
    const { spec } = fleetForUnowned('legacy', { aws }, [vm]);
    expect((spec['providers'] as Record<string, { images: unknown }>)['aws']!.images).toEqual({ 'debian-12': 'ami-0123456789abcdef0', 'team-base-7': 'ami-0000000000000aaaa' });
    expect(aws.images).toEqual({ 'debian-12': 'ami-0123456789abcdef0' });
    const parsed = parseFleet(spec);
    expect(parsed.groups['legacy']).toMatchObject({ count: 1, image: 'team-base-7' });
  });
});
