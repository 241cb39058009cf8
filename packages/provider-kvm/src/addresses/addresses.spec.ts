import { describe, expect, it } from 'vitest';
import type { SshEndpoint } from '../config.js';
import { recordingTransport } from '../testing.js';
import { Virsh } from '../virsh/Virsh.js';
import { parseDomIfAddr, parseNeighbours, resolveAddresses, waitForAddresses } from './addresses.js';

const endpoint = { label: 'hv1', address: '10.0.0.1', port: 22, user: 'root', auth: {} } as unknown as SshEndpoint;

describe('address sources', () => {
  it('parses the guest agent, leaving loopback and link-local out', () => {
    const text = [
      ' Name       MAC address          Protocol     Address',
      '-------------------------------------------------------------------------------',
      ' lo         00:00:00:00:00:00    ipv4         127.0.0.1/8',
      ' -          -                    ipv6         ::1/128',
      ' eth0       52:54:00:AA:BB:CC    ipv4         192.168.122.57/24',
      ' -          -                    ipv6         fe80::5054:ff:feaa:bbcc/64',
      ' -          -                    ipv6         fd00::57/64',
    ].join('\n');
    expect(parseDomIfAddr(text)).toEqual([
      { interface: 'eth0', mac: '52:54:00:aa:bb:cc', address: '192.168.122.57' },
      { interface: 'eth0', mac: '52:54:00:aa:bb:cc', address: 'fd00::57' },
    ]);
  });

  it('parses ip neigh and /proc/net/arp, skipping failed entries', () => {
    expect(parseNeighbours('192.168.122.9 dev ncvbr0 lladdr 52:54:00:00:00:09 REACHABLE\n192.168.122.8 dev ncvbr0  FAILED\n192.168.122.7 dev ncvbr0 lladdr 52:54:00:00:00:07 STALE\n')).toEqual([
      { address: '192.168.122.9', mac: '52:54:00:00:00:09' },
      { address: '192.168.122.7', mac: '52:54:00:00:00:07' },
    ]);
    expect(parseNeighbours('IP address       HW type     Flags       HW address            Mask     Device\n10.0.0.5         0x1         0x2         52:54:00:00:00:05     *        br0\n10.0.0.6         0x1         0x0         00:00:00:00:00:00     *        br0\n')).toEqual([{ address: '10.0.0.5', mac: '52:54:00:00:00:05' }]);
  });

  it('asks every source in one round trip, each bounded by timeout on the host, and says where each address came from', async () => {
    const transport = recordingTransport((command) => {
      const marker = /printf '\\n%s %s %d\\n' (\S+)/.exec(command)![1]!;
      return {
        stdout: [
          '', ' 52:54:00:00:00:01  ipv4  192.168.122.51/24  vm1', `${marker} lease 0`,
          `${marker}-agent-0`, `${marker}-agent-1`, ' eth0 52:54:00:00:00:02 ipv4 10.1.0.2/24', `${marker}-agent-2`, `${marker} agent 0`,
          '192.168.122.53 dev br lladdr 52:54:00:00:00:03 REACHABLE', `${marker} arp 0`, '',
        ].join('\n'),
      };
    });
    const virsh = new Virsh(transport, endpoint, 'lab');
    const found = await resolveAddresses(virsh, [
      { id: 'u1', macs: ['52:54:00:00:00:01'], running: true },
      { id: 'u2', macs: ['52:54:00:00:00:02'], running: true },
      { id: 'u3', macs: ['52:54:00:00:00:03'], running: true },
    ], { sources: ['lease', 'agent', 'arp'], sourceTimeoutMs: 2_000, network: 'default' });
    expect(Object.fromEntries(found)).toEqual({
      u1: [{ address: '192.168.122.51', source: 'lease' }],
      u2: [{ address: '10.1.0.2', source: 'agent', interface: 'eth0' }],
      u3: [{ address: '192.168.122.53', source: 'arp' }],
    });
    expect(transport.commands).toHaveLength(1);
    const script = transport.commands[0]!.command;
    expect(script).toContain('timeout -k 1 2.0');
    expect(script.match(/domifaddr/g)).toHaveLength(3);
    expect(script.match(/virsh/g)!.length).toBeLessThanOrEqual(3); // leases, and one process for every agent
  });

  it('stops waiting at its bound when no source knows the VM', async () => {
    let now = 0;
    const clock = { now: () => now, sleep: async (ms: number) => { now += ms; } };
    const transport = recordingTransport(() => ({ stdout: '' }));
    const found = await waitForAddresses(new Virsh(transport, endpoint, 'lab'), { id: 'u', macs: ['52:54:00:00:00:01'], running: true }, { sources: ['lease', 'agent', 'arp'], sourceTimeoutMs: 1_000, network: 'n', waitMs: 5_000, pollMs: 1_000, clock });
    expect(found).toEqual([]);
    expect(now).toBe(5_000);
    expect(transport.commands.length).toBeLessThanOrEqual(6);
  });
});
