/**
 * What the orchestrator needs from a hypervisor to drive one live migration. The KVM
 * provider implements it over libvirt (virsh domjobinfo, migrate-setmaxdowntime,
 * migrate-setspeed, migrate-postcopy, QMP parameters); the sim provider implements it
 * with the pre-copy model in simulated time. The orchestrator stays the same.
 */
export type MigrationCompression = 'none' | 'xbzrle' | 'multifd-zstd' | 'multifd-zlib';

export interface MigrationSettings {
  readonly downtimeLimitMs: number;
  /** undefined: as fast as the link allows. */
  readonly bandwidthBytesPerSec?: number;
  /** Enable the auto-converge capability (engaged later by `engageAutoConverge`, or at once when `autoConvergeNow`). */
  readonly autoConverge: boolean;
  readonly autoConvergeNow: boolean;
  /** Enable the post-copy capability, so a switch is possible later. */
  readonly postCopy: boolean;
  readonly compression: MigrationCompression;
  readonly parallelConnections: number;
}

export type MigrationStatus = 'setup' | 'active' | 'postcopy-active' | 'completed' | 'failed' | 'cancelled';

export interface MigrationStats {
  readonly status: MigrationStatus;
  readonly iteration: number;
  readonly dataTotalBytes: number;
  readonly dataProcessedBytes: number;
  readonly dataRemainingBytes: number;
  readonly dirtyRateBytesPerSec: number;
  /** Measured throughput of the migration stream. */
  readonly throughputBytesPerSec: number;
  readonly expectedDowntimeMs?: number;
  /** Set once completed. */
  readonly downtimeMs?: number;
  /** Bytes actually put on the wire (after compression), when known. */
  readonly wireBytes?: number;
  readonly elapsedMs: number;
  readonly error?: string;
}

export interface MigrationDriver {
  /**
   * The guest's pause at switchover besides sending the last dirty pages (device state,
   * disk hand-over, resuming on the destination), when the hypervisor's downtime limit does
   * not include it (QEMU's does not). The orchestrator keeps that limit this much below the
   * policy's `maxDowntimeMs`. @default 0
   */
  readonly switchoverMs?: number;
  /**
   * What the path carries for the memory stream, as the provider last measured it (bytes/s);
   * undefined when not known. The orchestrator paces the stream at the policy's `pacing`
   * share of it, so the path's buffers hold no backlog at the switch.
   */
  readonly linkBytesPerSec?: number;
  start(settings: MigrationSettings): Promise<void>;
  poll(): Promise<MigrationStats>;
  setDowntimeLimit(ms: number): Promise<void>;
  setBandwidth(bytesPerSec: number | undefined): Promise<void>;
  engageAutoConverge(): Promise<void>;
  switchToPostCopy(): Promise<void>;
  /** Cancels; the guest keeps running on the source. */
  abort(): Promise<void>;
}
