import { Testing } from 'cdktf';
import { describe, expect, it } from 'vitest';
import { FleetSpecError, InvalidInputError, parseFleet, plan, validateFleet } from '@novacron/core';
import { DataAwsAmi } from './generated/aws/data-aws-ami/index.js';
import { Instance } from './generated/aws/instance/index.js';
import { AwsProvider } from './generated/aws/provider/index.js';
import { ComputeInstance } from './generated/google/compute-instance/index.js';
import { GoogleProvider } from './generated/google/provider/index.js';
import { CloudinitDisk } from './generated/libvirt/cloudinit-disk/index.js';
import { Domain } from './generated/libvirt/domain/index.js';
import { LibvirtProvider } from './generated/libvirt/provider/index.js';
import { kvmFleet, kvmInventory, multiCloudFleet, multiCloudInventory } from './testing/fleets.js';
import './testing/matchers.js';
import { DataResource } from 'cdktf';
import { loadSchemas, validateSynth } from './validate/schemaValidator.js';
import { VmFleet, type VmFleetProps } from './VmFleet.js';

const schemas = loadSchemas();

function synth(props: VmFleetProps): { json: string; doc: Record<string, Record<string, Record<string, Record<string, unknown>>>>; fleet: VmFleet } {
  let fleet: VmFleet | undefined;
  const json = Testing.synthScope((scope) => {
    fleet = new VmFleet(scope, 'fleet', props);
  });
  return { json, doc: JSON.parse(json), fleet: fleet! };
}

/** Resources of one type, keyed by the VM-ish part of their name. */
function resources(doc: ReturnType<typeof synth>['doc'], type: string): Record<string, Record<string, unknown>> {
  return doc['resource']?.[type] ?? {};
}

describe('VmFleet (CDKTF)', () => {
  it('places the fleet exactly as the core planner does with the same inventory', () => {
    const { fleet } = synth({ spec: kvmFleet(), inventory: kvmInventory() });
    const expected = plan(parseFleet(kvmFleet()), { hosts: kvmInventory(), vms: [], capabilities: {} }).placement.assignments;
    expect(Object.fromEntries(fleet.placement.vms.map((vm) => [vm.name, vm.host.id]))).toEqual(expected);
    expect(Object.keys(fleet.vms).sort()).toEqual(['shop-db-0', 'shop-web-0', 'shop-web-1', 'shop-web-2']);
  });

  it('synthesizes a libvirt provider alias per KVM host, with its qemu+ssh URI', () => {
    const { json } = synth({ spec: kvmFleet(), inventory: kvmInventory() });
    expect(json).toHaveProviderWithProperties(LibvirtProvider, { alias: 'lab-hv1', uri: 'qemu+ssh://root@10.0.0.11/system?keyfile=%2Fhome%2Fops%2F.ssh%2Fid_ed25519&knownhosts=%2Fhome%2Fops%2F.ssh%2Fknown_hosts' });
    expect(json).toHaveProviderWithProperties(LibvirtProvider, { alias: 'lab-hv2', uri: expect.stringMatching(/^qemu\+ssh:\/\/root@10\.0\.0\.12:2222\/system\?/) });
    // A host behind a jump host goes through the system ssh (and its ProxyJump).
    expect(json).toHaveProviderWithProperties(LibvirtProvider, { alias: 'lab-hv3', uri: expect.stringMatching(/^qemu\+sshcmd:\/\/root@hv3\.lab\/system/) });
    expect(JSON.parse(json).terraform.required_providers.libvirt).toEqual({ source: 'registry.terraform.io/dmacvicar/libvirt', version: '~> 0.9.1' });
  });

  it('synthesizes each KVM VM as a copy-on-write volume over the base volume, a cloud-init disk and a domain, on its host', () => {
    const { json, doc, fleet } = synth({ spec: kvmFleet(), inventory: kvmInventory() });
    const web0 = fleet.placement.vms.find((vm) => vm.name === 'shop-web-0')!;
    const alias = `libvirt.lab-${web0.host.name}`;

    expect(json).toHaveResourceWithProperties(Domain, {
      name: 'shop-web-0',
      type: 'kvm',
      memory: 4096,
      memory_unit: 'MiB',
      vcpu: 2,
      running: true,
      provider: alias,
      metadata: { xml: expect.stringMatching(/^<novacron:vm xmlns:novacron="https:\/\/novacron\.dev\/xmlns\/vm\/1" fleet="shop" group="web" index="0" specHash="[0-9a-f]+" image="debian-12" diskGiB="20"\/>$/) },
    });
    expect(json).toHaveResourceWithProperties(CloudinitDisk, {
      name: 'shop-web-0-cloudinit',
      user_data: '#cloud-config\nssh_authorized_keys:\n  - "ssh-ed25519 AAAA ops@example"\n',
      meta_data: 'instance-id: shop-web-0\nlocal-hostname: shop-web-0\n',
    });

    const volumes = resources(doc, 'libvirt_volume');
    const root = Object.values(volumes).find((v) => v['name'] === 'shop-web-0-root.qcow2')!;
    const base = Object.entries(volumes).find(([, v]) => v['name'] === 'novacron-base-debian-12.qcow2' && v['provider'] === alias)!;
    expect(root).toMatchObject({ pool: 'default', capacity: 20 * 1024 ** 3, provider: alias, target: { format: { type: 'qcow2' } } });
    expect(root['backing_store']).toEqual({ path: `\${libvirt_volume.${base[0]}.path}`, format: { type: 'qcow2' } });
    expect(base[1]).toMatchObject({ create: { content: { url: expect.stringContaining('debian-12-genericcloud') } } });

    const domain = Object.values(resources(doc, 'libvirt_domain')).find((d) => d['name'] === 'shop-web-0')!;
    const devices = domain['devices'] as { disks: Record<string, unknown>[]; interfaces: Record<string, unknown>[] };
    expect(devices.disks[0]).toMatchObject({ source: { volume: { pool: 'default', volume: expect.stringMatching(/^\$\{libvirt_volume\..*\.name\}$/) } }, target: { dev: 'vda', bus: 'virtio' } });
    expect(devices.disks[1]).toMatchObject({ device: 'cdrom', read_only: true, target: { dev: 'sda', bus: 'sata' } });
    expect(devices.interfaces).toEqual([{ model: { type: 'virtio' }, source: { network: { network: 'default' } } }]);

    // The base volume is made once per host and image, and a base given by name is a path in its pool.
    const bases = Object.values(volumes).filter((v) => String(v['name']).startsWith('novacron-base-'));
    expect(bases.length).toBe(new Set(fleet.placement.vms.filter((vm) => vm.spec.image === 'debian-12').map((vm) => vm.host.name)).size);
    const db = Object.values(volumes).find((v) => v['name'] === 'shop-db-0-root.qcow2')!;
    expect(db['backing_store']).toEqual({ path: '/var/lib/libvirt/images/ubuntu-24.04-base.qcow2', format: { type: 'qcow2' } });
  });

  it('synthesizes EC2 and GCE VMs with the instance type placement chose, in its zone, with ownership tags', () => {
    const { json, doc, fleet } = synth({ spec: multiCloudFleet(), inventory: multiCloudInventory() });
    const app0 = fleet.placement.vms.find((vm) => vm.name === 'multi-app-0')!;
    expect(app0.instanceType).toBe('t3.medium');
    expect(json).toHaveProviderWithProperties(AwsProvider, { alias: 'east', region: 'us-east-1' });
    expect(json).toHaveResourceWithProperties(Instance, {
      ami: 'ami-0123456789abcdef0',
      instance_type: 't3.medium',
      availability_zone: app0.host.zone,
      subnet_id: app0.host.zone === 'us-east-1a' ? 'subnet-aaa' : 'subnet-bbb',
      vpc_security_group_ids: ['sg-123'],
      key_name: 'ops',
      user_data: '#cloud-config\npackages: [nginx]\n',
      provider: 'aws.east',
      tags: expect.objectContaining({ Name: 'multi-app-0', 'novacron:fleet': 'multi', 'novacron:group': 'app', 'novacron:index': '0', team: 'shop' }),
      root_block_device: { volume_size: 10, volume_type: 'gp3', delete_on_termination: true },
    });

    expect(json).toHaveProviderWithProperties(GoogleProvider, { alias: 'west', project: 'shop-prod', region: 'europe-west1' });
    expect(json).toHaveResourceWithProperties(ComputeInstance, {
      name: 'multi-batch-0',
      machine_type: 'e2-standard-4',
      zone: 'europe-west1-b',
      provider: 'google.west',
      labels: expect.objectContaining({ 'novacron-fleet': 'multi', 'novacron-group': 'batch', 'novacron-index': '0' }),
      metadata: expect.objectContaining({ 'novacron-image': 'debian-12', 'novacron-resources': '4/16384/10/0' }),
      boot_disk: { auto_delete: true, initialize_params: { image: 'projects/debian-cloud/global/images/family/debian-12', size: 10, type: 'pd-balanced' } },
    });
    expect(Object.keys(resources(doc, 'libvirt_domain'))).toHaveLength(1);
  });

  it('looks an owner/name-pattern image up with a data.aws_ami (most recent available match) and launches that AMI', () => {
    const spec = multiCloudFleet();
    const east = spec.providers['east'] as { images: Record<string, string> };
    east.images = { 'debian-12': '136693071363/debian-12-amd64-*' };
    const { json, doc } = synth({ spec, inventory: multiCloudInventory() });
    expect(json).toHaveDataSourceWithProperties(DataAwsAmi, {
      provider: 'aws.east',
      owners: ['136693071363'],
      most_recent: true,
      filter: [
        { name: 'name', values: ['debian-12-amd64-*'] },
        { name: 'state', values: ['available'] },
      ],
    });
    // One lookup per image, shared by every VM on it; each instance launches the AMI it found.
    const lookups = Object.keys((doc as unknown as { data: Record<string, Record<string, unknown>> }).data['aws_ami'] ?? {});
    expect(lookups).toHaveLength(1);
    const instances = Object.values(resources(doc, 'aws_instance'));
    expect(instances).toHaveLength(2);
    for (const instance of instances) {
      expect(instance['ami']).toBe(`\${data.aws_ami.${lookups[0]}.id}`);
      // A newer matching AMI later must not make Terraform replace the running VMs.
      expect(instance['lifecycle']).toEqual({ ignore_changes: ['ami'] });
    }
    expect(validateSynth(json, schemas)).toEqual([]);
  });

  it('synthesizes a group\'s NICs: libvirt interfaces in order with their models, GCE interfaces per network, the EC2 subnet of a single NIC', () => {
    const kvm = kvmFleet();
    (kvm.groups['web'] as { nics?: unknown }).nics = [{ network: 'default' }, { network: 'storage', model: 'e1000e' }];
    const { doc } = synth({ spec: kvm, inventory: kvmInventory() });
    const domain = Object.values(resources(doc, 'libvirt_domain')).find((d) => d['name'] === 'shop-web-0')!;
    expect((domain['devices'] as { interfaces: unknown[] }).interfaces).toEqual([
      { model: { type: 'virtio' }, source: { network: { network: 'default' } } },
      { model: { type: 'e1000e' }, source: { network: { network: 'storage' } } },
    ]);

    const multi = multiCloudFleet();
    (multi.groups['batch'] as { nics?: unknown }).nics = [{ network: 'prod-vpc' }, { network: 'backend' }];
    (multi.groups['app'] as { nics?: unknown }).nics = [{ network: 'subnet-0ccc' }];
    const cloud = synth({ spec: multi, inventory: multiCloudInventory() });
    const batch = Object.values(resources(cloud.doc, 'google_compute_instance')).find((i) => i['name'] === 'multi-batch-0')!;
    expect(batch['network_interface']).toEqual([{ network: 'prod-vpc' }, { network: 'backend' }]);
    expect(cloud.json).toHaveResourceWithProperties(Instance, { tags: expect.objectContaining({ Name: 'multi-app-0' }), subnet_id: 'subnet-0ccc' });
    expect(validateSynth(cloud.json, schemas)).toEqual([]);

    (multi.groups['app'] as { nics?: unknown }).nics = [{ network: 'subnet-0ccc' }, { network: 'subnet-0ddd' }];
    expect(() => synth({ spec: multi, inventory: multiCloudInventory() })).toThrow(/declares 2 NICs; the CDKTF AWS target makes one NIC per instance/);
  });

  it('refuses an AWS image that is neither an AMI id nor owner/name-pattern, naming its path', () => {
    const spec = multiCloudFleet();
    (spec.providers['east'] as { images: Record<string, string> }).images = { 'debian-12': 'debian-12-amd64' };
    let error: unknown;
    try {
      synth({ spec, inventory: multiCloudInventory() });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as InvalidInputError).message).toMatch(/neither an AMI id \(ami-…\) nor owner\/name-pattern/);
    expect((error as InvalidInputError).context).toMatchObject({ path: 'providers.east.images.debian-12' });
  });

  it('records sim VMs as terraform_data, since the simulator has no Terraform provider', () => {
    const spec = { name: 'quick', providers: { sim: { type: 'sim' as const, hosts: [{ name: 'h1', cpu: 8, memory: '16GiB' }] } }, groups: { web: { count: 2, cpu: 1, memory: 1024, image: 'debian-12' } } };
    const inventory = [{ ...multiCloudInventory()[0]!, id: 'sim/h1', provider: 'sim', name: 'h1' }];
    const { json } = synth({ spec, inventory });
    expect(json).toHaveResourceWithProperties(DataResource, { input: expect.objectContaining({ fleet: 'quick', group: 'web', host: 'sim/h1' }) });
  });

  it('outputs the placement explanation', () => {
    const { doc } = synth({ spec: kvmFleet(), inventory: kvmInventory() });
    const outputs = (doc as unknown as { output: Record<string, { value: Record<string, { host: string; reason: string }> }> }).output;
    const placement = Object.values(outputs)[0]!.value;
    expect(Object.keys(placement).sort()).toEqual(['shop-db-0', 'shop-web-0', 'shop-web-1', 'shop-web-2']);
    expect(placement['shop-db-0']).toMatchObject({ host: expect.stringMatching(/^lab\/hv\d$/), reason: expect.any(String) });
  });

  it('synthesizes only what the provider schemas describe', () => {
    for (const props of [
      { spec: kvmFleet(), inventory: kvmInventory() },
      { spec: multiCloudFleet(), inventory: multiCloudInventory() },
    ]) {
      expect(validateSynth(synth(props).json, schemas)).toEqual([]);
    }
  });

  it('fails an invalid spec at synth with the same path-named problems as the CLI', () => {
    const spec = kvmFleet({ groups: { web: { count: 1, cpu: 2, memory: '4 lots', image: 'debian-12', placement: { zones: [] } } } });
    const cli = validateFleet(spec);
    let error: unknown;
    try {
      synth({ spec, inventory: kvmInventory() });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FleetSpecError);
    expect((error as FleetSpecError).problems).toEqual(cli.ok ? [] : cli.error.problems);
    expect((error as FleetSpecError).problems.map((p) => p.path)).toEqual(['groups.web.memory', 'groups.web.placement.zones']);
  });

  it('refuses a fleet that does not fit its inventory, naming each VM', () => {
    expect(() => synth({ spec: kvmFleet(), inventory: [kvmInventory()[0]!] })).toThrow(/fit nowhere[\s\S]*shop-web-1: no host can take it/);
  });

  it('refuses an image the provider the VM landed on does not declare', () => {
    const spec = kvmFleet({ groups: { web: { count: 1, cpu: 1, memory: 512, image: 'debian-12' } } });
    const broken = { ...spec, providers: { lab: { ...(spec.providers['lab'] as object), images: { 'debian-12': {} } } } } as unknown as typeof spec;
    expect(() => synth({ spec: broken, inventory: kvmInventory() })).toThrow(/neither a volume, a url nor a kernel/);
  });
});
