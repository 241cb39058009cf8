import type { FleetSpecInput, Host, InstanceType } from '@novacron/core';

const zero = { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 };

/** A KVM host as an inventory snapshot shows it. */
export function kvmHost(provider: string, name: string, zone: string, cpu = 32, memoryMiB = 131072): Host {
  return {
    id: `${provider}/${name}`,
    provider,
    name,
    zone,
    labels: {},
    capacity: { cpu, memoryMiB, diskGiB: 2048, gpu: 0 },
    allocated: zero,
    overcommit: { cpu: 4, memory: 1, disk: 1 },
    pricePerHour: 0.4,
    state: 'up',
  };
}

/** A cloud zone: elastic, priced per instance type. */
export function cloudZone(provider: string, zone: string, instanceTypes: InstanceType[]): Host {
  return {
    id: `${provider}/${zone}`,
    provider,
    name: zone,
    zone,
    labels: {},
    capacity: { cpu: 100_000, memoryMiB: 100_000_000, diskGiB: 1_000_000, gpu: 0 },
    allocated: zero,
    overcommit: { cpu: 1, memory: 1, disk: 1 },
    pricePerHour: 0,
    state: 'up',
    instanceTypes,
  };
}

export const EC2_TYPES: InstanceType[] = [
  { name: 't3.medium', cpu: 2, memoryMiB: 4096, pricePerHour: 0.0416 },
  { name: 't3.large', cpu: 2, memoryMiB: 8192, pricePerHour: 0.0832 },
  { name: 'm6i.xlarge', cpu: 4, memoryMiB: 16384, pricePerHour: 0.192 },
];
export const GCE_TYPES: InstanceType[] = [
  { name: 'e2-medium', cpu: 2, memoryMiB: 4096, pricePerHour: 0.0335 },
  { name: 'e2-standard-4', cpu: 4, memoryMiB: 16384, pricePerHour: 0.134 },
];

/** Three KVM hosts behind SSH, cloud images by URL and a pre-made base volume. */
export function kvmFleet(overrides: Partial<FleetSpecInput> = {}): FleetSpecInput {
  return {
    name: 'shop',
    providers: {
      lab: {
        type: 'kvm',
        ssh: { user: 'root', identityFile: '/home/ops/.ssh/id_ed25519', knownHosts: '/home/ops/.ssh/known_hosts' },
        hosts: [
          { name: 'hv1', address: '10.0.0.11', zone: 'rack-1' },
          { name: 'hv2', address: '10.0.0.12', zone: 'rack-1', ssh: { port: 2222 } },
          { name: 'hv3', address: 'hv3.lab', zone: 'rack-2', ssh: { jumpHost: 'bastion.lab' } },
        ],
        images: {
          'debian-12': { url: 'https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2' },
          'ubuntu-24': { volume: 'ubuntu-24.04-base.qcow2' },
        },
      },
    },
    groups: {
      web: { count: 3, cpu: 2, memory: '4GiB', disk: '20GiB', image: 'debian-12', placement: { antiAffinity: 'host' }, cloudInit: { sshAuthorizedKeys: ['ssh-ed25519 AAAA ops@example'] } },
      db: { count: 1, cpu: 8, memory: '32GiB', disk: '200GiB', image: 'ubuntu-24', labels: { tier: 'db' } },
    },
    ...overrides,
  };
}

export const kvmInventory = (): Host[] => [kvmHost('lab', 'hv1', 'rack-1'), kvmHost('lab', 'hv2', 'rack-1'), kvmHost('lab', 'hv3', 'rack-2', 16, 65536)];

/** KVM, EC2 and GCE in one fleet. */
export function multiCloudFleet(): FleetSpecInput {
  return {
    name: 'multi',
    providers: {
      lab: { type: 'kvm', hosts: [{ name: 'hv1', address: '10.0.0.11', zone: 'rack-1' }], images: { 'debian-12': { url: 'https://example.com/debian-12.qcow2' } } },
      east: {
        type: 'aws',
        region: 'us-east-1',
        zones: ['us-east-1a', 'us-east-1b'],
        subnetIds: { 'us-east-1a': 'subnet-aaa', 'us-east-1b': 'subnet-bbb' },
        securityGroupIds: ['sg-123'],
        keyName: 'ops',
        images: { 'debian-12': 'ami-0123456789abcdef0' },
        labels: { team: 'shop' },
      },
      west: { type: 'gcp', project: 'shop-prod', region: 'europe-west1', zones: ['europe-west1-b'], images: { 'debian-12': 'projects/debian-cloud/global/images/family/debian-12' } },
    },
    groups: {
      app: { count: 2, cpu: 2, memory: '4GiB', image: 'debian-12', placement: { providers: ['east'], antiAffinity: 'zone' }, cloudInit: { userData: '#cloud-config\npackages: [nginx]\n' } },
      batch: { count: 2, cpu: 4, memory: '16GiB', image: 'debian-12', placement: { providers: ['west'] } },
      edge: { count: 1, cpu: 2, memory: '2GiB', image: 'debian-12', placement: { providers: ['lab'] } },
    },
  };
}

export const multiCloudInventory = (): Host[] => [
  kvmHost('lab', 'hv1', 'rack-1'),
  cloudZone('east', 'us-east-1a', EC2_TYPES),
  cloudZone('east', 'us-east-1b', EC2_TYPES),
  cloudZone('west', 'europe-west1-b', GCE_TYPES),
];
