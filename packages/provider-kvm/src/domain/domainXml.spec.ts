import { describe, expect, it } from 'vitest';
import { buildDomainXml, parseDomainXml, serialLogPath, type DomainSpec } from './domainXml.js';
import { NOVACRON_XMLNS } from './metadata.js';

const spec: DomainSpec = {
  name: 'shop-web-0',
  type: 'qemu',
  vcpus: 1,
  maxVcpus: 2,
  memoryMiB: 128,
  maxMemoryMiB: 256,
  kernel: { kernel: '/boot/vmlinuz', initrd: '/boot/initrd.img', cmdline: 'console=ttyS0 nc.name=shop-web-0' },
  disks: [
    { device: 'disk', pool: 'default', volume: 'shop-web-0-root.qcow2', format: 'qcow2', target: 'vda', bus: 'virtio' },
    { device: 'cdrom', pool: 'default', volume: 'shop-web-0-seed.iso', format: 'raw', target: 'sda', bus: 'sata' },
  ],
  network: 'novacron',
  serialLog: serialLogPath('shop-web-0'),
  metadata: {
    fleet: 'shop',
    group: 'web',
    index: 0,
    specHash: 'abc123',
    image: 'tiny',
    diskGiB: 2,
    labels: { tier: 'front', note: `<script>"'&` },
    createdAt: '2026-01-01T00:00:00.000Z',
  },
};

describe('domain XML', () => {
  it('renders the spec (snapshot of the whole document)', () => {
    expect(buildDomainXml(spec)).toMatchInlineSnapshot(`
      "<domain type="qemu">
        <name>shop-web-0</name>
        <metadata>
          <novacron:vm xmlns:novacron="https://novacron.dev/xmlns/vm/1" fleet="shop" group="web" index="0" specHash="abc123" image="tiny" diskGiB="2" createdAt="2026-01-01T00:00:00.000Z">
            <novacron:label key="note" value="&lt;script&gt;&quot;&apos;&amp;"/>
            <novacron:label key="tier" value="front"/>
          </novacron:vm>
        </metadata>
        <memory unit="MiB">256</memory>
        <currentMemory unit="MiB">128</currentMemory>
        <vcpu placement="static" current="1">2</vcpu>
        <os>
          <type arch="x86_64" machine="pc">hvm</type>
          <kernel>/boot/vmlinuz</kernel>
          <initrd>/boot/initrd.img</initrd>
          <cmdline>console=ttyS0 nc.name=shop-web-0</cmdline>
        </os>
        <features>
          <acpi/>
          <apic/>
        </features>
        <on_poweroff>destroy</on_poweroff>
        <on_reboot>restart</on_reboot>
        <on_crash>destroy</on_crash>
        <devices>
          <disk type="volume" device="disk">
            <driver name="qemu" type="qcow2"/>
            <source pool="default" volume="shop-web-0-root.qcow2"/>
            <target dev="vda" bus="virtio"/>
          </disk>
          <disk type="volume" device="cdrom">
            <driver name="qemu" type="raw"/>
            <source pool="default" volume="shop-web-0-seed.iso"/>
            <target dev="sda" bus="sata"/>
            <readonly/>
          </disk>
          <interface type="network">
            <source network="novacron"/>
            <model type="virtio"/>
          </interface>
          <serial type="pty">
            <log file="/var/log/libvirt/qemu/shop-web-0-serial.log" append="off"/>
            <target port="0"/>
          </serial>
          <console type="pty">
            <target type="serial" port="0"/>
          </console>
          <channel type="unix">
            <target type="virtio" name="org.qemu.guest_agent.0"/>
          </channel>
          <memballoon model="virtio"/>
        </devices>
      </domain>
      "
    `);
  });

  it('reads back what it wrote, hostile label values included', () => {
    const info = parseDomainXml(buildDomainXml(spec));
    expect(info).toMatchObject({ name: 'shop-web-0', type: 'qemu', vcpus: 1, maxVcpus: 2, memoryMiB: 128, maxMemoryMiB: 256, networks: ['novacron'] });
    expect(info.metadata).toEqual(spec.metadata);
    expect(info.disks.map((d) => d.volume)).toEqual(['shop-web-0-root.qcow2', 'shop-web-0-seed.iso']);
    expect(info.id).toBeUndefined();
  });

  it('keeps a hostile cmdline inside its element', () => {
    const xml = buildDomainXml({ ...spec, kernel: { kernel: '/k', cmdline: '</cmdline></os><devices><disk/>' } });
    expect(xml).toContain('<cmdline>&lt;/cmdline&gt;&lt;/os&gt;&lt;devices&gt;&lt;disk/&gt;</cmdline>');
    expect(parseDomainXml(xml).disks).toHaveLength(2);
  });

  it('reads what libvirt writes back: KiB units, another prefix, a running id, foreign domains', () => {
    const libvirt = `<domain type='qemu' id='7'>
  <name>other</name>
  <uuid>0b6c4d0e-1111-2222-3333-444455556666</uuid>
  <metadata>
    <nc:vm xmlns:nc="${NOVACRON_XMLNS}" fleet="f" group="g" index="3" specHash="h" image="tiny" diskGiB="4" createdAt="t"/>
    <app:thing xmlns:app="https://example.com/x" fleet="evil"/>
  </metadata>
  <memory unit='KiB'>262144</memory>
  <currentMemory unit='KiB'>131072</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os><type>hvm</type><nvram>/var/lib/libvirt/qemu/nvram/other_VARS.fd</nvram></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/libvirt/images/x.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='default'/></interface>
  </devices>
</domain>`;
    const info = parseDomainXml(libvirt);
    expect(info).toMatchObject({ id: 7, uuid: '0b6c4d0e-1111-2222-3333-444455556666', vcpus: 2, maxVcpus: 2, memoryMiB: 128, maxMemoryMiB: 256, hasNvram: true, macs: ['52:54:00:aa:bb:cc'] });
    expect(info.metadata).toMatchObject({ fleet: 'f', group: 'g', index: 3, diskGiB: 4 });
    expect(info.disks[0]).toMatchObject({ file: '/var/lib/libvirt/images/x.qcow2', target: 'vda' });

    const foreign = parseDomainXml(`<domain type='kvm'><name>x</name><metadata><app:vm xmlns:app="https://example.com/vm" fleet="f" group="g" index="0"/></metadata></domain>`);
    expect(foreign.metadata).toBeUndefined();
  });

  it('refuses a current size above its maximum', () => {
    expect(() => buildDomainXml({ ...spec, vcpus: 4 })).toThrow(/exceed/);
    expect(() => buildDomainXml({ ...spec, memoryMiB: 512 })).toThrow(/exceeds/);
  });
});
