import type { Labels, Overcommit } from './common.js';

/** Resource amounts in one place, so every dimension is handled alike. */
export interface Resources {
  readonly cpu: number;
  readonly memoryMiB: number;
  readonly diskGiB: number;
  readonly gpu: number;
}

export const RESOURCE_DIMENSIONS = ['cpu', 'memoryMiB', 'diskGiB', 'gpu'] as const satisfies readonly (keyof Resources)[];
export type ResourceDimension = (typeof RESOURCE_DIMENSIONS)[number];

export const ZERO_RESOURCES: Resources = Object.freeze({ cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 });

export type HostState = 'up' | 'down' | 'maintenance' | 'draining';

/** A size a cloud sells: placement picks the cheapest one a VM fits. */
export interface InstanceType {
  readonly name: string;
  readonly cpu: number;
  readonly memoryMiB: number;
  readonly gpu?: number;
  readonly pricePerHour: number;
}

/**
 * Somewhere a VM can run: a KVM or sim host, or a cloud zone. A host with `instanceTypes`
 * is elastic (a cloud zone): its capacity is what its quota allows, and each VM costs the
 * price of the cheapest type it fits. A host without them costs `pricePerHour` while active.
 */
export interface Host {
  /** Unique across the fleet's providers: `provider/name`. */
  readonly id: string;
  readonly provider: string;
  readonly name: string;
  readonly zone: string;
  readonly region?: string;
  readonly labels: Labels;
  readonly capacity: Resources;
  readonly allocated: Resources;
  readonly overcommit: Overcommit;
  readonly pricePerHour: number;
  readonly state: HostState;
  readonly instanceTypes?: readonly InstanceType[];
  /** Free memory the host reports right now (KVM), as opposed to what is allocated. */
  readonly freeMemoryMiB?: number;
  /**
   * The host's storage pools, every one, active or not (KVM: libvirt's pools; sim: one
   * pool of the host's disk). Informational: placement uses `capacity.diskGiB`.
   */
  readonly storagePools?: readonly StoragePool[];
  /** VMs running on the host right now, every one, whether this fleet owns it or not. */
  readonly runningVms?: number;
}

/** A storage pool on a host, as the provider reports it. */
export interface StoragePool {
  readonly name: string;
  readonly capacityGiB: number;
  readonly freeGiB: number;
  /** Started and usable (libvirt: state `running`). An inactive pool reports no sizes (0). */
  readonly active: boolean;
}

export type VmState = 'creating' | 'running' | 'stopped' | 'migrating' | 'error' | 'unknown';

/** Who owns a VM, recorded on the VM itself (libvirt metadata, EC2 tags, GCE labels). */
export interface Ownership {
  readonly fleet: string;
  readonly group: string;
  readonly index: number;
  /** Hash of the group's VM-shaping fields at creation or last update. */
  readonly specHash: string;
}

/** A VM as a provider reports it. */
export interface VmRecord extends Ownership {
  readonly name: string;
  /** The provider's own id (domain UUID, instance id). */
  readonly id: string;
  readonly provider: string;
  /** Host id (`provider/name`) it runs on. */
  readonly host: string;
  readonly zone: string;
  readonly state: VmState;
  readonly resources: Resources;
  readonly image: string;
  readonly labels: Labels;
  readonly addresses: readonly VmAddress[];
  /**
   * The VM's network interfaces as the provider reads them, in device order. Absent when the
   * provider does not report them; then a group's `nics` are not compared.
   */
  readonly nics?: readonly VmNic[];
  readonly instanceType?: string;
  readonly createdAt?: string;
}

/** A network interface of a VM, as its provider reports it. */
export interface VmNic {
  /** What it is attached to, in the fleet spec's terms (libvirt network, EC2 subnet id, GCE network). */
  readonly network: string;
  readonly mac?: string;
  /** The device model (KVM: virtio, e1000e, …); absent where the provider has no choice of model. */
  readonly model?: string;
  /** The provider's own id for the interface (EC2: the ENI id), when it has one. */
  readonly id?: string;
}

export interface VmAddress {
  readonly address: string;
  /** Where it was learned: a DHCP lease, the guest agent, ARP, or the cloud API. */
  readonly source: 'lease' | 'agent' | 'arp' | 'api' | 'static';
  readonly interface?: string;
}

export function hostId(provider: string, name: string): string {
  return `${provider}/${name}`;
}

export function splitHostId(id: string): { provider: string; name: string } {
  const slash = id.indexOf('/');
  return slash < 0 ? { provider: '', name: id } : { provider: id.slice(0, slash), name: id.slice(slash + 1) };
}
