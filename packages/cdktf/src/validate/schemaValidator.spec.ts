import { describe, expect, it } from 'vitest';
import { loadSchemas, validateSynth } from './schemaValidator.js';

const schemas = loadSchemas();
const stack = (resource: Record<string, unknown>, provider: Record<string, unknown> = { libvirt: [{ alias: 'a', uri: 'qemu:///system' }] }) => ({
  terraform: { required_providers: { libvirt: { source: 'registry.terraform.io/dmacvicar/libvirt', version: '~> 0.9.1' } } },
  provider,
  resource,
});

describe('validateSynth', () => {
  it('accepts resources that fit the schema, references included', () => {
    const doc = stack({
      libvirt_volume: { base: { name: 'b', pool: 'default', create: { content: { url: 'https://x/y.qcow2' } } }, root: { name: 'r', pool: 'default', capacity: 1, backing_store: { path: '${libvirt_volume.base.path}' } } },
      libvirt_domain: { vm: { name: 'vm', type: 'kvm', memory: 512, running: true, devices: { disks: [{ source: { volume: { pool: 'default', volume: '${libvirt_volume.root.name}' } } }] }, provider: 'libvirt.a', depends_on: [] } },
    });
    expect(validateSynth(doc, schemas)).toEqual([]);
  });

  it('names every attribute that is unknown, missing, read-only or of the wrong type, with its path', () => {
    const doc = stack({
      libvirt_domain: {
        vm: { type: 'kvm', memory: 'lots', uuid: 'x', devices: { disks: [{ target: { dev: 'vda', buss: 'virtio' } }] }, running: 'yes' },
      },
      libvirt_network: { n: { name: 'n' } },
    });
    expect(validateSynth(doc, schemas)).toEqual(
      expect.arrayContaining([
        { path: 'resource.libvirt_domain.vm.memory', message: 'is a number, got a string' },
        { path: 'resource.libvirt_domain.vm.uuid', message: 'is read-only (computed by the provider)' },
        { path: 'resource.libvirt_domain.vm.devices.disks[0].target.buss', message: 'is not in the schema (known: bus, dev)' },
        { path: 'resource.libvirt_domain.vm.running', message: 'is a bool, got a string' },
        { path: 'resource.libvirt_domain.vm.name', message: 'is required' },
        { path: 'resource.libvirt_network.n', message: '"libvirt_network" is not a resource of provider "dmacvicar/libvirt"' },
      ]),
    );
  });

  it('checks provider blocks and blocks of SDK-style providers', () => {
    const doc = {
      terraform: { required_providers: { aws: { source: 'hashicorp/aws' }, nope: { source: 'acme/nope' } } },
      provider: { aws: [{ alias: 'east', regoin: 'us-east-1' }] },
      resource: { aws_instance: { i: { ami: 'ami-1', root_block_device: [{ volume_size: 10 }, { volume_size: 20 }] } } },
    };
    expect(validateSynth(doc, schemas)).toEqual(
      expect.arrayContaining([
        { path: 'terraform.required_providers.nope', message: 'no schema for provider "acme/nope"' },
        { path: 'provider.aws[0].regoin', message: expect.stringContaining('is not in the schema') },
        { path: 'resource.aws_instance.i.root_block_device', message: 'takes at most 1 block(s), got 2' },
      ]),
    );
  });
});
