import { describe, expect, it } from 'vitest';
import { InvalidInputError, NotFoundError } from '@novacron/core';
import { buildDomainXml, parseDomainXml, type DomainSpec } from './domainXml.js';
import { assertNetworks, attachInterfaceArgs, detachInterfaceArgs, domainNics, nicChanges, nicsOfInterfaces, readNetworks } from './nics.js';

const spec: DomainSpec = {
  name: 'f-web-0', type: 'qemu', vcpus: 1, maxVcpus: 1, memoryMiB: 128, maxMemoryMiB: 128, disks: [], network: 'default', serialLog: '/var/log/x.log',
  metadata: { fleet: 'f', group: 'web', index: 0, specHash: 'h', image: 'tiny', diskGiB: 1, labels: {}, createdAt: '' },
};

describe('domain XML with NICs', () => {
  it('renders the declared NICs in order and reads them back as the fleet model reports NICs', () => {
    const xml = buildDomainXml({ ...spec, nics: [{ network: 'novacron', model: 'virtio' }, { network: 'lan2', model: 'e1000e', mac: '52:54:00:AA:00:01' }] });
    const info = parseDomainXml(xml);
    expect(info.interfaces).toEqual([
      { type: 'network', source: 'novacron', model: 'virtio' },
      { type: 'network', source: 'lan2', model: 'e1000e', mac: '52:54:00:aa:00:01' },
    ]);
    expect(nicsOfInterfaces(info.interfaces)).toEqual([{ network: 'novacron', model: 'virtio' }, { network: 'lan2', model: 'e1000e', mac: '52:54:00:aa:00:01' }]);
  });

  it('keeps one virtio NIC on the host network when the fleet declares none', () => {
    expect(parseDomainXml(buildDomainXml(spec)).interfaces).toEqual([{ type: 'network', source: 'default', model: 'virtio' }]);
  });

  it('reports a bridge interface by its bridge', () => {
    const xml = buildDomainXml(spec).replace(/<interface type="network">[\s\S]*?<\/interface>/, '<interface type="bridge"><mac address="52:54:00:00:00:09"/><source bridge="br0"/><model type="e1000"/></interface>');
    expect(nicsOfInterfaces(parseDomainXml(xml).interfaces)).toEqual([{ network: 'br0', mac: '52:54:00:00:00:09', model: 'e1000' }]);
  });
});

describe('NIC changes on KVM', () => {
  const have = [
    { type: 'network', source: 'novacron', mac: '52:54:00:00:00:01', model: 'virtio' },
    { type: 'network', source: 'old', mac: '52:54:00:00:00:02', model: 'virtio' },
  ];

  it('detaches by MAC, attaches what is missing, and keeps the MAC of a NIC whose model changes', () => {
    expect(nicChanges([{ network: 'novacron', model: 'e1000e' }, { network: 'lan2' }], have)).toEqual({
      detach: [{ type: 'network', mac: '52:54:00:00:00:02', network: 'old' }, { type: 'network', mac: '52:54:00:00:00:01', network: 'novacron' }],
      attach: [{ network: 'novacron', model: 'e1000e', mac: '52:54:00:00:00:01' }, { network: 'lan2', model: 'virtio' }],
    });
    expect(nicChanges([{ network: 'old' }, { network: 'novacron' }], have)).toEqual({ detach: [], attach: [] });
  });

  it('builds virsh arguments live and in the config while running, in the config only when off', () => {
    expect(attachInterfaceArgs('vm', { network: 'lan2', model: 'virtio' }, true)).toEqual(['attach-interface', 'vm', 'network', 'lan2', '--model', 'virtio', '--live', '--config']);
    expect(attachInterfaceArgs('vm', { network: 'lan2', model: 'e1000e', mac: '52:54:00:00:00:01' }, false)).toEqual(['attach-interface', 'vm', 'network', 'lan2', '--model', 'e1000e', '--mac', '52:54:00:00:00:01', '--config']);
    expect(detachInterfaceArgs('vm', { type: 'network', mac: '52:54:00:00:00:02' }, true)).toEqual(['detach-interface', 'vm', 'network', '--mac', '52:54:00:00:00:02', '--live', '--config']);
    expect(detachInterfaceArgs('vm', { type: 'bridge', mac: '52:54:00:00:00:02' }, true, true)).toEqual(['detach-interface', 'vm', 'bridge', '--mac', '52:54:00:00:00:02', '--live']);
  });

  it('refuses a network name that is no libvirt object name, and a network the host lacks or has stopped', async () => {
    expect(() => domainNics([{ network: 'lan;rm -rf /' }], { host: 'h1' })).toThrow(InvalidInputError);
    const networks = await readNetworks(
      { batch: async (commands) => commands.map((args) => (args[1] === 'up' ? { args, stdout: 'Name: up\nActive:         yes\n', stderr: '', code: 0 } : args[1] === 'down' ? { args, stdout: 'Name: down\nActive:         no\n', stderr: '', code: 0 } : { args, stdout: '', stderr: 'error: failed to get network', code: 1, error: new NotFoundError('no network') })) },
      ['up', 'down', 'gone', 'up'],
      {},
    );
    expect([...networks]).toEqual([['up', { defined: true, active: true }], ['down', { defined: true, active: false }], ['gone', { defined: false, active: false }]]);
    expect(() => assertNetworks([{ network: 'up' }], networks, 'h1', {})).not.toThrow();
    expect(() => assertNetworks([{ network: 'up' }, { network: 'gone' }], networks, 'h1', {})).toThrow(/^h1: libvirt network "gone" does not exist; nothing was changed$/);
    expect(() => assertNetworks([{ network: 'down' }], networks, 'h1', {})).toThrow(/is not active/);
  });
});
