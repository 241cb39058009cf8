/**
 * A NovaCron fleet as a CDKTF stack: two KVM hosts and an AWS region.
 *
 *   cdktf synth        (or, with the community fork: cdktn synth)
 *
 * Synthesis is offline: placement uses the inventory in inventory.json (hosts with their
 * capacity, AWS zones with the instance types and prices to choose from).
 */
import { readFileSync } from 'node:fs';
import { App, TerraformStack } from 'cdktf';
import type { Construct } from 'constructs';
import { VmFleet, type FleetSpecInput, type Host } from '@novacron/cdktf';

export const spec: FleetSpecInput = {
  name: 'shop',
  providers: {
    lab: {
      type: 'kvm',
      ssh: { user: 'root', identityFile: '/home/ops/.ssh/id_ed25519', knownHosts: '/home/ops/.ssh/known_hosts' },
      hosts: [
        { name: 'hv1', address: '10.0.0.11', zone: 'rack-1', labels: { ssd: 'true' } },
        { name: 'hv2', address: '10.0.0.12', zone: 'rack-2', labels: { ssd: 'true' } },
      ],
      images: {
        'debian-12': { url: 'https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2' },
      },
    },
    cloud: {
      type: 'aws',
      region: 'eu-central-1',
      zones: ['eu-central-1a', 'eu-central-1b'],
      subnetIds: { 'eu-central-1a': 'subnet-0a1b2c3d', 'eu-central-1b': 'subnet-4e5f6a7b' },
      securityGroupIds: ['sg-0123456789abcdef0'],
      keyName: 'ops',
      images: { 'debian-12': 'ami-0c1d2e3f4a5b6c7d8' },
    },
  },
  groups: {
    db: { count: 2, cpu: 8, memory: '32GiB', disk: '200GiB', image: 'debian-12', placement: { providers: ['lab'], hostLabels: { ssd: 'true' }, antiAffinity: 'host' } },
    web: {
      count: 3,
      cpu: 2,
      memory: '4GiB',
      image: 'debian-12',
      placement: { providers: ['cloud'] },
      cloudInit: { userData: '#cloud-config\npackages: [nginx]\n', sshAuthorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample ops@example'] },
    },
  },
};

export function loadInventory(file = new URL('./inventory.json', import.meta.url)): Host[] {
  return JSON.parse(readFileSync(file, 'utf8')) as Host[];
}

export class FleetStack extends TerraformStack {
  readonly fleet: VmFleet;

  constructor(scope: Construct, id: string, inventory: readonly Host[]) {
    super(scope, id);
    this.fleet = new VmFleet(this, 'shop', { spec, inventory });
  }
}

export function buildStack(app: App): FleetStack {
  return new FleetStack(app, 'shop', loadInventory());
}

// `cdktf synth` runs this file (cdktf.json: "app"); tests import buildStack instead.
if (process.argv[1] === import.meta.filename) {
  const app = new App();
  buildStack(app);
  app.synth();
}
