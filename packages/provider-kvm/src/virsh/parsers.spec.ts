import { describe, expect, it } from 'vitest';
import { parseDomainDump, parseLeases, parseNodeInfo, parseNodeMemStats, parsePoolInfo } from './parsers.js';

// Outputs as libvirt 9.0 prints them (captured on the testbed).
describe('virsh output parsers', () => {
  it('reads nodeinfo and nodememstats', () => {
    expect(parseNodeInfo('CPU model:           x86_64\nCPU(s):              2\nCPU frequency:       2300 MHz\nMemory size:         5859544 KiB\n')).toEqual({ cpus: 2, memoryKiB: 5859544, cpuModel: 'x86_64' });
    expect(parseNodeMemStats('total  :             24684096 KiB\nfree   :             23947328 KiB\nbuffers:                 4496 KiB\ncached :               339468 KiB\n')).toEqual({
      totalKiB: 24684096,
      freeKiB: 23947328,
      availableKiB: 23947328 + 4496 + 339468,
    });
  });

  it('reads pool-info --bytes', () => {
    const text = 'Name:           default\nUUID:           a715e7be\nState:          running\nPersistent:     yes\nAutostart:      yes\nCapacity:       270548598784\nAllocation:     25383256064\nAvailable:      245165342720\n';
    expect(parsePoolInfo(text)).toEqual({ name: 'default', state: 'running', capacityBytes: 270548598784, allocationBytes: 25383256064, availableBytes: 245165342720 });
  });

  it('reads DHCP leases', () => {
    const text = ` Expiry Time           MAC address         Protocol   IP address          Hostname    Client ID or DUID
-------------------------------------------------------------------------------------------------------------
 2026-11-27 21:00:00   52:54:00:AA:bb:01   ipv4       192.168.122.57/24   nc-guest    ff:00
 2026-11-27 21:00:00   52:54:00:aa:bb:02   ipv6       fd00::2/64          -           -
`;
    expect(parseLeases(text)).toEqual([{ mac: '52:54:00:aa:bb:01', address: '192.168.122.57' }]);
  });

  it('pairs states with domain documents, and drops a state whose domain vanished', () => {
    const dump = `running\n\n<domain type='qemu' id='1'>\n  <name>a</name>\n</domain>\n\nshut off\n\n<domain type='qemu'>\n  <name>b</name>\n  <description>&lt;/domain&gt;</description>\n</domain>\n\nrunning\n\nshut off\n<domain type='qemu'>\n  <name>d</name>\n</domain>\n`;
    const parsed = parseDomainDump(dump);
    expect(parsed.map((d) => d.state)).toEqual(['running', 'shut off', 'shut off']);
    expect(parsed.map((d) => /<name>(\w+)</.exec(d.xml)?.[1])).toEqual(['a', 'b', 'd']);
  });
});
