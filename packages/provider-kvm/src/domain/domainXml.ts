import { el, renderXml, type XmlChild } from '../xml/XmlBuilder.js';
import { child, childrenOf, parseXml, textOf, type XmlNode } from '../xml/parseXml.js';
import { metadataElement, readMetadata, type NovaCronMetadata } from './metadata.js';

/**
 * Domain XML: generated from a `DomainSpec` (plain data, so it is unit-tested without a
 * host) and read back into a `DomainInfo`. Migration and snapshot code reuse both: read a
 * domain with `parseDomainXml`, change the spec, render it again.
 */

export interface DomainDisk {
  /** `disk` for data disks, `cdrom` for the cloud-init seed. */
  readonly device: 'disk' | 'cdrom';
  readonly pool: string;
  readonly volume: string;
  readonly format: 'qcow2' | 'raw';
  /** Guest device name: vda, vdb… for virtio disks, sda… for SATA cdroms. */
  readonly target: string;
  readonly bus: 'virtio' | 'sata';
  readonly readonly?: boolean;
}

/** A NIC on a libvirt network. */
export interface DomainNic {
  readonly network: string;
  /** virtio, e1000e, …: what libvirt's `<model type>` takes. */
  readonly model: string;
  /** Fixed when given; libvirt picks one otherwise. */
  readonly mac?: string;
}

export interface DomainSpec {
  readonly name: string;
  readonly type: 'kvm' | 'qemu';
  readonly vcpus: number;
  /** Hot-plug ceiling: `<vcpu current=vcpus>maxVcpus</vcpu>`. */
  readonly maxVcpus: number;
  readonly memoryMiB: number;
  /** Balloon ceiling: `<memory>` is the maximum, `<currentMemory>` what the guest gets. */
  readonly maxMemoryMiB: number;
  /** Direct kernel boot; otherwise the firmware boots the first disk. */
  readonly kernel?: { readonly kernel: string; readonly initrd?: string; readonly cmdline?: string };
  readonly disks: readonly DomainDisk[];
  readonly network: string;
  readonly mac?: string;
  /** The NICs, in order; when absent, one virtio NIC on `network` (with `mac`). */
  readonly nics?: readonly DomainNic[];
  /** Path on the host where the serial console is logged (the guest's boot log). */
  readonly serialLog: string;
  readonly metadata: NovaCronMetadata;
  readonly description?: string;
}

export const GUEST_AGENT_CHANNEL = 'org.qemu.guest_agent.0';

export function serialLogPath(name: string): string {
  return `/var/log/libvirt/qemu/${name}-serial.log`;
}

export function buildDomainXml(spec: DomainSpec): string {
  if (spec.vcpus > spec.maxVcpus) throw new RangeError(`vcpus ${spec.vcpus} exceed the maximum ${spec.maxVcpus}`);
  if (spec.memoryMiB > spec.maxMemoryMiB) throw new RangeError(`memory ${spec.memoryMiB} MiB exceeds the maximum ${spec.maxMemoryMiB} MiB`);
  const os: XmlChild[] = [el('type', { arch: 'x86_64', machine: 'pc' }, 'hvm')];
  if (spec.kernel) {
    os.push(el('kernel', {}, spec.kernel.kernel));
    if (spec.kernel.initrd) os.push(el('initrd', {}, spec.kernel.initrd));
    if (spec.kernel.cmdline) os.push(el('cmdline', {}, spec.kernel.cmdline));
  } else {
    os.push(el('boot', { dev: 'hd' }));
  }
  const disks = spec.disks.map((d) =>
    el(
      'disk',
      { type: 'volume', device: d.device },
      el('driver', { name: 'qemu', type: d.format }),
      el('source', { pool: d.pool, volume: d.volume }),
      el('target', { dev: d.target, bus: d.bus }),
      (d.readonly || d.device === 'cdrom') && el('readonly'),
    ),
  );
  const domain = el(
    'domain',
    { type: spec.type },
    el('name', {}, spec.name),
    spec.description && el('description', {}, spec.description),
    el('metadata', {}, metadataElement(spec.metadata)),
    el('memory', { unit: 'MiB' }, spec.maxMemoryMiB),
    el('currentMemory', { unit: 'MiB' }, spec.memoryMiB),
    el('vcpu', { placement: 'static', current: spec.vcpus === spec.maxVcpus ? undefined : spec.vcpus }, spec.maxVcpus),
    el('os', {}, ...os),
    // ACPI is what lets `virsh shutdown` press the power button; without it only destroy works.
    el('features', {}, el('acpi'), el('apic')),
    el('on_poweroff', {}, 'destroy'),
    el('on_reboot', {}, 'restart'),
    el('on_crash', {}, 'destroy'),
    el(
      'devices',
      {},
      ...disks,
      ...(spec.nics ?? [{ network: spec.network, model: 'virtio', ...(spec.mac ? { mac: spec.mac } : {}) }]).map((nic) =>
        el('interface', { type: 'network' }, nic.mac && el('mac', { address: nic.mac }), el('source', { network: nic.network }), el('model', { type: nic.model })),
      ),
      // A pty serial console whose output virtlogd also writes to a file: the boot log
      // survives the guest and is readable without a console attached. append='off'
      // starts it afresh on every boot.
      el('serial', { type: 'pty' }, el('log', { file: spec.serialLog, append: 'off' }), el('target', { port: 0 })),
      el('console', { type: 'pty' }, el('target', { type: 'serial', port: 0 })),
      // The QEMU guest agent's channel (libvirt picks the socket): a guest that runs the
      // agent reports its addresses through it; one that does not costs nothing.
      el('channel', { type: 'unix' }, el('target', { type: 'virtio', name: GUEST_AGENT_CHANNEL })),
      el('memballoon', { model: 'virtio' }),
    ),
  );
  return renderXml(domain);
}

// ---- reading --------------------------------------------------------------------------

export interface DomainDiskInfo {
  readonly device: string;
  readonly target: string;
  readonly format?: string;
  readonly pool?: string;
  readonly volume?: string;
  /** The file for `type='file'` disks (and what libvirt resolved a volume to, when running). */
  readonly file?: string;
}

export interface DomainInfo {
  readonly name: string;
  readonly uuid: string;
  readonly type: string;
  /** Present while the domain runs. */
  readonly id?: number;
  readonly vcpus: number;
  readonly maxVcpus: number;
  readonly memoryMiB: number;
  readonly maxMemoryMiB: number;
  readonly disks: readonly DomainDiskInfo[];
  readonly macs: readonly string[];
  readonly networks: readonly string[];
  /** Every `<interface>`, in device order: its network (or bridge) and model as libvirt has them. */
  readonly interfaces: readonly DomainInterfaceInfo[];
  readonly hasNvram: boolean;
  /** Whether the domain has a QEMU guest agent channel (only then is the agent asked for addresses). */
  readonly hasAgentChannel?: boolean;
  /** NovaCron's ownership record; undefined for domains NovaCron did not make. */
  readonly metadata?: NovaCronMetadata;
}

export interface DomainInterfaceInfo {
  /** `network`, `bridge`, `direct`, `user`, …: the `<interface type>`. */
  readonly type: string;
  /** The libvirt network (type network), else the bridge or device it attaches to. */
  readonly source?: string;
  readonly mac?: string;
  readonly model?: string;
}

const UNIT_TO_KIB: Readonly<Record<string, number>> = {
  b: 1 / 1024, bytes: 1 / 1024, k: 1, kib: 1, kb: 1000 / 1024, m: 1024, mib: 1024, mb: 1e6 / 1024, g: 1024 ** 2, gib: 1024 ** 2, gb: 1e9 / 1024, t: 1024 ** 3, tib: 1024 ** 3, tb: 1e12 / 1024,
};

function mib(node: XmlNode | undefined): number | undefined {
  if (!node || node.text === '') return undefined;
  const factor = UNIT_TO_KIB[(node.attrs['unit'] ?? 'KiB').toLowerCase()] ?? 1;
  return Math.round((Number(node.text) * factor) / 1024);
}

export function parseDomainXml(xml: string): DomainInfo {
  const { name: rootName, node } = parseXml(xml);
  if (rootName !== 'domain') throw new Error(`expected <domain>, got <${rootName}>`);
  const name = textOf(node, 'name');
  const uuid = textOf(node, 'uuid');
  if (!name) throw new Error('domain XML has no <name>');
  const vcpuNode = child(node, 'vcpu');
  const maxVcpus = Number(vcpuNode?.text ?? 1);
  const vcpus = Number(vcpuNode?.attrs['current'] ?? maxVcpus);
  const maxMemoryMiB = mib(child(node, 'memory')) ?? 0;
  const memoryMiB = mib(child(node, 'currentMemory')) ?? maxMemoryMiB;
  const devices = child(node, 'devices');
  const disks = childrenOf(devices, 'disk').map((d): DomainDiskInfo => {
    const source = child(d, 'source');
    const format = child(d, 'driver')?.attrs['type'];
    return {
      device: d.attrs['device'] ?? 'disk',
      target: child(d, 'target')?.attrs['dev'] ?? '',
      ...(format ? { format } : {}),
      ...(source?.attrs['pool'] ? { pool: source.attrs['pool'] } : {}),
      ...(source?.attrs['volume'] ? { volume: source.attrs['volume'] } : {}),
      ...(source?.attrs['file'] ? { file: source.attrs['file'] } : {}),
    };
  });
  const interfaces = childrenOf(devices, 'interface');
  const id = node.attrs['id'];
  const metadata = readMetadata(child(node, 'metadata'));
  return {
    name,
    uuid: uuid ?? '',
    type: node.attrs['type'] ?? '',
    ...(id !== undefined && id !== '-1' ? { id: Number(id) } : {}),
    vcpus,
    maxVcpus,
    memoryMiB,
    maxMemoryMiB,
    disks,
    macs: interfaces.map((i) => child(i, 'mac')?.attrs['address']).filter((m): m is string => !!m),
    networks: interfaces.map((i) => child(i, 'source')?.attrs['network']).filter((n): n is string => !!n),
    interfaces: interfaces.map((i): DomainInterfaceInfo => {
      const source = child(i, 'source')?.attrs;
      const from = source?.['network'] ?? source?.['bridge'] ?? source?.['dev'];
      const mac = child(i, 'mac')?.attrs['address'];
      const model = child(i, 'model')?.attrs['type'];
      return { type: i.attrs['type'] ?? '', ...(from ? { source: from } : {}), ...(mac ? { mac: mac.toLowerCase() } : {}), ...(model ? { model } : {}) };
    }),
    hasNvram: child(node, 'os', 'nvram') !== undefined,
    hasAgentChannel: childrenOf(devices, 'channel').some((c) => child(c, 'target')?.attrs['name'] === GUEST_AGENT_CHANNEL),
    ...(metadata ? { metadata } : {}),
  };
}
