import type { CloudInit, MigrationPolicy } from '../model/index.js';
import type { Labels } from '../model/common.js';
import type { Host, Ownership, Resources, VmRecord } from '../model/records.js';

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
  readonly image: string;
  readonly labels: Labels;
  readonly instanceType?: string;
  /**
   * Other places of this provider that placement also found acceptable, best first. A
   * provider told "no capacity" at `host`/`instanceType` tries these in order before it
   * fails with CapacityExceeded; the returned record says where the VM went.
   */
  readonly alternatives?: readonly { readonly host: string; readonly instanceType?: string }[];
  readonly cloudInit?: CloudInit;
  /** Hints for providers that model guests (the sim provider). */
  readonly workload?: { readonly workingSetMiB?: number; readonly dirtyRateMiBps?: number };
}

export interface StopOptions {
  /** Time to wait for a graceful shutdown before forcing it. */
  readonly gracefulTimeoutMs?: number;
  readonly force?: boolean;
}

export interface ResizeRequest {
  readonly resources: Resources;
  readonly specHash: string;
  /** Allow a reboot when the change cannot be hot-plugged. */
  readonly allowReboot: boolean;
  /** The instance or machine type placement chose for the new size; cloud providers pick the cheapest fit when absent. */
  readonly instanceType?: string;
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

export type SnapshotKind = 'full' | 'incremental' | 'disk';
export type SnapshotConsistency = 'crash' | 'quiesced';

export interface SnapshotRecord {
  readonly id: string;
  readonly provider: string;
  readonly vm: string;
  readonly fleet: string;
  readonly group: string;
  readonly takenAt: string;
  readonly kind: SnapshotKind;
  readonly parent?: string;
  readonly consistency: SnapshotConsistency;
  readonly sizeBytes: number;
  readonly location?: string;
  readonly verified?: { readonly at: string; readonly ok: boolean; readonly detail?: string };
}

export interface SnapshotRequest {
  readonly kind: SnapshotKind;
  /** For incrementals: the snapshot this one builds on. */
  readonly parent?: string;
  readonly target?: string;
  readonly id?: string;
}

export interface RestoreRequest {
  readonly snapshot: string;
  /** Restore into a new VM of this name instead of in place. */
  readonly asName?: string;
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

  snapshot?(vm: VmRef, request: SnapshotRequest, ctx?: OperationContext): Promise<SnapshotRecord>;
  listSnapshots?(fleet: string, ctx?: OperationContext): Promise<readonly SnapshotRecord[]>;
  restore?(vm: VmRef, request: RestoreRequest, ctx?: OperationContext): Promise<VmRecord>;
  deleteSnapshot?(snapshotId: string, ctx?: OperationContext): Promise<void>;

  exportImage?(vm: VmRef, ctx?: OperationContext): Promise<ImageArtifact>;
  importImage?(artifact: ImageArtifact, imageName: string, ctx?: OperationContext): Promise<string>;

  /** Releases connections and flushes state. */
  close?(): Promise<void>;
}

type CapabilityOps = {
  resize: 'resize';
  liveMigration: 'migrate' | 'estimateMigration';
  coldMigration: 'migrate';
  snapshots: 'snapshot' | 'listSnapshots' | 'restore' | 'deleteSnapshot';
  incrementalSnapshots: 'snapshot' | 'listSnapshots' | 'restore' | 'deleteSnapshot';
  imageExport: 'exportImage';
  imageImport: 'importImage';
};

export type ProviderWith<C extends keyof CapabilityOps> = Provider & Required<Pick<Provider, CapabilityOps[C]>>;

/** Narrows a provider to one that offers a capability's operations. */
export function supports<C extends keyof CapabilityOps>(provider: Provider, capability: C): provider is ProviderWith<C> {
  return provider.capabilities[capability];
}
