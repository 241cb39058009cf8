import type { CloudInit, MigrationPolicy, NicSpec } from '../model/index.js';
import type { Labels } from '../model/common.js';
import type { Host, Ownership, Resources, VmAddress, VmRecord, VmState } from '../model/records.js';

/**
 * What a provider can do. The core never checks a provider's kind, only these flags; an
 * optional operation exists on a provider exactly when its flag is true (see `supports`).
 */
export interface Capabilities {
  readonly resize: boolean;
  readonly hotplugCpu: boolean;
  readonly hotplugMemory: boolean;
  readonly liveMigration: boolean;
  readonly coldMigration: boolean;
  readonly snapshots: boolean;
  readonly incrementalSnapshots: boolean;
  readonly imageExport: boolean;
  readonly imageImport: boolean;
  /** `listUnowned` and `adopt`: VMs made outside NovaCron can be taken into a fleet without a restart. */
  readonly adopt?: boolean;
  /** `bootCheck`: a restored VM can be booted to its guest's ready marker, so restore tests also boot (`method: boot`). */
  readonly bootCheck?: boolean;
  /**
   * `awaitReady`: a running VM can be watched until its guest shows it came up (KVM: its
   * image's ready marker on the serial console; EC2: both status checks `ok`), so a move
   * between providers retires the source only then.
   */
  readonly awaitReady?: boolean;
  /**
   * `resize` attaches and detaches NICs (`ResizeRequest.nics`) on a running VM without a
   * reboot. Without it a change of a group's `nics` replaces the VM.
   */
  readonly hotplugNics?: boolean;
  /** The first NIC is the instance's own and cannot be detached (EC2): a change to it replaces the VM. */
  readonly fixedPrimaryNic?: boolean;
}

export const NO_CAPABILITIES: Capabilities = Object.freeze({
  resize: false,
  hotplugCpu: false,
  hotplugMemory: false,
  liveMigration: false,
  coldMigration: false,
  snapshots: false,
  incrementalSnapshots: false,
  imageExport: false,
  imageImport: false,
  adopt: false,
  bootCheck: false,
  awaitReady: false,
  hotplugNics: false,
  fixedPrimaryNic: false,
});

/** Progress of a long operation, reported through `OperationContext.onProgress`. */
export interface OperationProgress {
  readonly operation: string;
  readonly phase: string;
  /** 0..1 when known. */
  readonly fraction?: number;
  readonly message?: string;
  readonly migration?: MigrationProgress;
}

/** Passed to every provider call: cancellation, progress and retry notices. */
export interface OperationContext {
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: OperationProgress) => void;
  /** Called by the retry middleware before it waits and tries again. */
  readonly onRetry?: (notice: { attempt: number; delayMs: number; error: Error }) => void;
}

/** A VM named for an operation. Providers check `fleet` against the ownership on the VM before changing it. */
export interface VmRef {
  readonly name: string;
  readonly fleet: string;
  readonly id?: string;
  /** Host id (`provider/name`) when known. */
  readonly host?: string;
}

export interface CreateVmRequest {
  readonly name: string;
  readonly ownership: Ownership;
  /** Host id (`provider/name`) chosen by placement. */
  readonly host: string;
  readonly resources: Resources;
  /** The logical image (the fleet's name for it), recorded on the VM. */
  readonly image: string;
  /** Build the disk from this imported image instead (a VM moved from another provider); the VM still records `image`. */
  readonly fromImage?: string;
  readonly labels: Labels;
  readonly instanceType?: string;
  /**
   * Other places of this provider that placement also found acceptable, best first. A
   * provider told "no capacity" at `host`/`instanceType` tries these in order before it
   * fails with CapacityExceeded; the returned record says where the VM went.
   */
  readonly alternatives?: readonly { readonly host: string; readonly instanceType?: string }[];
  readonly cloudInit?: CloudInit;
  /** The NICs to make, in order (the first is the primary); absent: the provider's default NIC. */
  readonly nics?: readonly NicSpec[];
  /** Hints for providers that model guests (the sim provider). */
  readonly workload?: { readonly workingSetMiB?: number; readonly dirtyRateMiBps?: number };
}

export interface StopOptions {
  /** Time to wait for a graceful shutdown before forcing it. */
  readonly gracefulTimeoutMs?: number;
  readonly force?: boolean;
}

/**
 * A change made to a VM in place: new resources (hot-plugged when the provider can, else at
 * a reboot when allowed), labels, or cloud-init data (applied at the next boot).
 */
export interface ResizeRequest {
  readonly resources: Resources;
  readonly specHash: string;
  /** Allow a reboot when the change cannot be hot-plugged. */
  readonly allowReboot: boolean;
  /** Labels the fleet declares: set these keys, leave the others alone. */
  readonly labels?: Labels;
  /** New cloud-init data, with `reboot` when the group's policy reboots on a change. */
  readonly cloudInit?: CloudInit;
  /** Reboot even though every change could be made live (the cloud-init reboot policy). */
  readonly reboot?: boolean;
  /** The instance or machine type placement chose for the new size; cloud providers pick the cheapest fit when absent. */
  readonly instanceType?: string;
  /**
   * The NICs the VM should have (capability `hotplugNics`): the provider diffs them against
   * the VM's own (`diffNics`), so a re-run after an interruption does only what is left.
   * Absent: NICs are left as they are.
   */
  readonly nics?: readonly NicSpec[];
}

/**
 * A VM on the provider's hosts that no fleet owns (no ownership record on it): what
 * adoption matches against a fleet's groups.
 */
export interface UnownedVm {
  readonly name: string;
  /** The provider's own id (domain UUID, instance id). */
  readonly id: string;
  readonly provider: string;
  /** Host id (`provider/name`). */
  readonly host: string;
  readonly zone: string;
  readonly state: VmState;
  /** Its size as the provider reads it (the root disk's virtual size, rounded up to GiB). */
  readonly resources: Resources;
  /** The provider config's image name the VM's disk was made from, when the provider can tell (KVM: the root disk's backing volume). */
  readonly image?: string;
  /** What the provider knows of the disk's origin when no configured image matches (a backing volume, an AMI id), for a new fleet file. */
  readonly imageSource?: string;
  /** An image entry for the provider's config that would describe this VM's disk, for a new fleet file (KVM: `{ volume }`; EC2: the AMI id). */
  readonly imageSuggestion?: { readonly name: string; readonly config: string | Readonly<Record<string, unknown>> };
  readonly labels: Labels;
  readonly addresses: readonly VmAddress[];
}

/** What `adopt` records on a VM: the fleet's ownership, and the image and labels the fleet declares for it. */
export interface AdoptRequest {
  readonly ownership: Ownership;
  readonly image: string;
  readonly labels: Labels;
}

export interface MigrationProgress {
  readonly iteration: number;
  readonly dataTotalBytes: number;
  readonly dataProcessedBytes: number;
  readonly dataRemainingBytes: number;
  readonly dirtyRateBytesPerSec: number;
  readonly bandwidthBytesPerSec: number;
  readonly expectedDowntimeMs?: number;
  readonly elapsedMs: number;
}

export interface MigrateRequest {
  /** Destination host id (`provider/name`). */
  readonly toHost: string;
  readonly mode: 'live' | 'cold';
  readonly policy: MigrationPolicy;
}

export interface MigrationResult {
  readonly vm: VmRecord;
  readonly mode: 'live' | 'cold';
  readonly durationMs: number;
  /** The guest's pause. 0 for a post-copy move on KVM: libvirt and QEMU 7.2 report none (see docs/migration.md). */
  readonly downtimeMs: number;
  readonly bytesTransferred: number;
  readonly iterations: number;
  readonly postCopy: boolean;
  /** What the orchestrator did along the way (downtime steps, auto-converge, post-copy, rate changes). */
  readonly actions?: readonly { readonly kind: string; readonly atMs: number }[];
}

/** What a migration prediction needs to know about a VM and the link to its destination. */
export interface MigrationEstimateInputs {
  readonly memoryBytes: number;
  readonly workingSetBytes: number;
  readonly dirtyRateBytesPerSec: number;
  readonly bandwidthBytesPerSec: number;
  readonly zeroFraction?: number;
  readonly compressibility?: number;
  readonly diskBytes?: number;
}

/**
 * `full`: restorable alone. `incremental`: the blocks changed since `parent` (libvirt
 * checkpoint + push-mode backup job; the sim's changed blocks). `disk`: a snapshot kept next
 * to the disk for quick rollback (qcow2 internal or external snapshot, EBS or GCE disk
 * snapshot), restorable alone.
 */
export type SnapshotKind = 'full' | 'incremental' | 'disk';
/** `quiesced`: the guest agent froze the file systems; `crash`: as if the power had been cut. */
export type SnapshotConsistency = 'crash' | 'quiesced';
/** `incomplete`: started and not finished (interrupted or failed). Never a parent, never restored. */
export type SnapshotState = 'complete' | 'incomplete';

/** The outcome of a restore test, stored with the snapshot by `recordVerification`. */
export interface SnapshotVerification {
  readonly at: string;
  readonly ok: boolean;
  /** `checksum`: restored into a scratch VM and its disk digest compared; `boot`: also booted to the guest's marker. */
  readonly method: 'checksum' | 'boot';
  readonly detail?: string;
}

/**
 * A snapshot or backup as its provider records it, next to the data (the sim's world, a
 * libvirt backup folder's metadata, EBS snapshot tags, GCE snapshot labels), so any machine
 * can list, prune and restore without a state file.
 */
export interface SnapshotRecord {
  /** Unique within the provider: the request's id when it named one. */
  readonly id: string;
  readonly provider: string;
  readonly vm: string;
  readonly fleet: string;
  readonly group: string;
  /** The point in time the data is from (ISO 8601). */
  readonly takenAt: string;
  /** What was taken, which may differ from what was asked (see `Provider.snapshot`). */
  readonly kind: SnapshotKind;
  /** For incrementals: the snapshot this one builds on. A full or disk snapshot has none. */
  readonly parent?: string;
  readonly consistency: SnapshotConsistency;
  readonly state: SnapshotState;
  /** Bytes this snapshot stores itself (an incremental: its changed blocks), metadata included. */
  readonly sizeBytes: number;
  /** The virtual size of the disk it restores. */
  readonly diskBytes: number;
  /**
   * Digest of the whole disk as of `takenAt`, in a form the provider chooses
   * (`sha256-blocks:1048576:<hex>`) and computes the same way when it reads a restored disk
   * back; verification compares the two for equality. Absent when the provider cannot tell.
   */
  readonly digest?: string;
  /** Where the data lives: a host's backup folder, a region's snapshot store. */
  readonly location?: string;
  /** The schedule slot it was taken for (ISO 8601), when the snapshot engine took it. */
  readonly scheduledFor?: string;
  /** Why an incomplete snapshot stopped, when known. */
  readonly error?: string;
  readonly verified?: SnapshotVerification;
}

export interface SnapshotRequest {
  readonly kind: SnapshotKind;
  /** For incrementals: the snapshot this one builds on. */
  readonly parent?: string;
  /** Where backups go: a host name (KVM: its backup folder). Providers with their own store ignore it. */
  readonly target?: string;
  /**
   * The idempotency key. A complete snapshot with this id is returned as it is; an
   * incomplete one is resumed (or redone) under the same id.
   */
  readonly id?: string;
  /** Freeze the guest's file systems through its agent when there is one. @default true */
  readonly quiesce?: boolean;
  /** The schedule slot, recorded on the snapshot. */
  readonly scheduledFor?: string;
}

export interface RestoreRequest {
  readonly snapshot: string;
  /**
   * Restore into a new VM of this name instead of in place. The new VM belongs to no fleet
   * (reconcile leaves it alone) and is labelled with where it came from.
   */
  readonly asName?: string;
  /** With `asName`: a throwaway VM for verification, left stopped; a scratch VM of that name left by an earlier run is replaced. */
  readonly scratch?: boolean;
}

export interface RestoreResult {
  /** The VM restored in place, or the new one. */
  readonly vm: VmRecord;
  /** The restored disk's digest, read back from it after writing (never copied from the record). */
  readonly digest?: string;
  readonly bytesWritten: number;
}

export interface BootCheckOptions {
  /** How long the guest may take to report ready; the provider's own default when absent. */
  readonly timeoutMs?: number;
}

/** A restored VM booted for a restore test: whether its guest reported ready, and what was seen. */
export interface BootCheckResult {
  readonly ok: boolean;
  readonly detail: string;
  readonly durationMs: number;
}

export interface ImageArtifact {
  readonly path: string;
  readonly format: 'raw' | 'qcow2' | 'vmdk' | 'tar.gz';
  readonly sizeBytes: number;
  readonly sha256: string;
}

/**
 * The provider contract. Every mutating call is idempotent on the VM's name; `create` is
 * transactional (if it fails, nothing it made is left behind); every call honours the
 * context's AbortSignal.
 */
export interface Provider {
  /** The provider's name in the fleet spec (`providers.<name>`). */
  readonly name: string;
  readonly kind: string;
  readonly capabilities: Capabilities;

  /** Hosts or zones with capacity, allocation, labels and price. */
  inventory(ctx?: OperationContext): Promise<readonly Host[]>;
  /** The VMs this fleet owns, by the ownership recorded on each VM. */
  list(fleet: string, ctx?: OperationContext): Promise<readonly VmRecord[]>;
  create(request: CreateVmRequest, ctx?: OperationContext): Promise<VmRecord>;
  start(vm: VmRef, ctx?: OperationContext): Promise<VmRecord>;
  stop(vm: VmRef, options?: StopOptions, ctx?: OperationContext): Promise<VmRecord>;
  /** Removes the VM and everything create made for it. Deleting what is gone succeeds. */
  delete(vm: VmRef, ctx?: OperationContext): Promise<void>;
  resize?(vm: VmRef, request: ResizeRequest, ctx?: OperationContext): Promise<VmRecord>;

  migrate?(vm: VmRef, request: MigrateRequest, ctx?: OperationContext): Promise<MigrationResult>;
  /** Measures (or knows) what the pre-copy model needs to predict a migration to `toHost`. */
  estimateMigration?(vm: VmRef, toHost: string, ctx?: OperationContext): Promise<MigrationEstimateInputs>;

  /**
   * Takes a snapshot of the VM's disk. Idempotent on `request.id`. An incremental whose
   * `parent` the provider cannot build on (gone, incomplete, or its change tracking lost, as
   * after a restore in place) is taken as a full: the record says what was taken. The record
   * is written as `incomplete` before any data moves, so an interruption leaves a trace that
   * blocks pruning and that the next call with the same id completes; existing snapshots are
   * never touched, so every chain stays restorable.
   */
  snapshot?(vm: VmRef, request: SnapshotRequest, ctx?: OperationContext): Promise<SnapshotRecord>;
  /** Every snapshot of the fleet's VMs, including VMs deleted since, incomplete ones too. */
  listSnapshots?(fleet: string, ctx?: OperationContext): Promise<readonly SnapshotRecord[]>;
  /**
   * Writes a complete snapshot back, byte for byte, reconstructing it from its chain: in
   * place (the VM must exist and belong to `vm.fleet`; a running VM is stopped and started
   * again) or as a new VM (`asName`, which must not be taken, except by a scratch VM when
   * `scratch`). The source VM need not exist for `asName`.
   */
  restore?(vm: VmRef, request: RestoreRequest, ctx?: OperationContext): Promise<RestoreResult>;
  /**
   * Removes a snapshot without breaking any other: the data of a snapshot that others build
   * on is merged into each child first (the child is rebased onto the deleted one's parent,
   * or becomes a full), and only then is the snapshot removed, so a crash in between leaves
   * both restorable. Deleting what is gone succeeds.
   */
  deleteSnapshot?(snapshotId: string, ctx?: OperationContext): Promise<void>;
  /** Stores a restore test's outcome with the snapshot (backup metadata, tags, labels). */
  recordVerification?(snapshotId: string, verification: SnapshotVerification, ctx?: OperationContext): Promise<SnapshotRecord>;
  /**
   * Boots a stopped VM (the scratch VM a restore test restored into), waits until its guest
   * reports ready, and stops it again. Refuses a VM that is neither `vm.fleet`'s nor one the
   * provider restored. A guest that does not come up in time is `ok: false`, not an error.
   */
  bootCheck?(vm: VmRef, options?: BootCheckOptions, ctx?: OperationContext): Promise<BootCheckResult>;
  /**
   * Waits until a VM that runs shows that its guest came up, more than the provider's
   * `running` (which only says the hypervisor started it): KVM, still running a moment later
   * and its image's ready marker on the serial console; EC2, both status checks `ok`. A guest
   * that does not come up in time, a failed check, or a VM that stops meanwhile is `ok: false`
   * with what was seen, not an error; a VM that does not exist or is not `vm.fleet`'s is one.
   */
  awaitReady?(vm: VmRef, options?: BootCheckOptions, ctx?: OperationContext): Promise<BootCheckResult>;

  exportImage?(vm: VmRef, ctx?: OperationContext): Promise<ImageArtifact>;
  importImage?(artifact: ImageArtifact, imageName: string, ctx?: OperationContext): Promise<string>;

  /** VMs on the provider's hosts that carry no fleet's ownership (capability `adopt`). */
  listUnowned?(ctx?: OperationContext): Promise<readonly UnownedVm[]>;
  /**
   * Records a fleet's ownership on a VM that has none, without restarting or otherwise
   * changing it. A VM owned by another fleet is refused (Conflict); adopting again into the
   * same fleet and slot returns it as it is (idempotent).
   */
  adopt?(vm: VmRef, request: AdoptRequest, ctx?: OperationContext): Promise<VmRecord>;

  /** Releases connections and flushes state. */
  close?(): Promise<void>;
}

type CapabilityOps = {
  resize: 'resize';
  liveMigration: 'migrate' | 'estimateMigration';
  coldMigration: 'migrate';
  snapshots: 'snapshot' | 'listSnapshots' | 'restore' | 'deleteSnapshot' | 'recordVerification';
  incrementalSnapshots: 'snapshot' | 'listSnapshots' | 'restore' | 'deleteSnapshot' | 'recordVerification';
  imageExport: 'exportImage';
  imageImport: 'importImage';
  adopt: 'listUnowned' | 'adopt';
  bootCheck: 'bootCheck';
  awaitReady: 'awaitReady';
};

export type ProviderWith<C extends keyof CapabilityOps> = Provider & Required<Pick<Provider, CapabilityOps[C]>>;

/** Narrows a provider to one that offers a capability's operations. */
export function supports<C extends keyof CapabilityOps>(provider: Provider, capability: C): provider is ProviderWith<C> {
  return provider.capabilities[capability] === true;
}
