import type { KvmProviderConfig, OperationContext, StopOptions, VmRecord, VmRef, Clock } from '@novacron/core';
import type { KvmHost } from '../config.js';
import type { LocatedDomain } from '../KvmProvider.js';
import type { Lease } from '../virsh/parsers.js';
import type { Virsh } from '../virsh/Virsh.js';
import type { MigrationCalibration } from './calibration.js';

/** What migration needs from the provider: its public surface, nothing private. */
export interface MigrationHostAccess {
  readonly name: string;
  readonly hosts: ReadonlyMap<string, KvmHost>;
  virshFor(hostName: string): Virsh;
  locate(ref: VmRef, operation: string, ctx?: OperationContext): Promise<LocatedDomain | undefined>;
  toRecord(found: LocatedDomain, leases?: readonly Lease[]): VmRecord;
  stop(ref: VmRef, options?: StopOptions, ctx?: OperationContext): Promise<VmRecord>;
}

/** The context every migration step gets: no module state, everything passed in. */
export interface MigrationEnv {
  readonly provider: MigrationHostAccess;
  readonly config: KvmProviderConfig;
  readonly clock: Clock;
  readonly random: () => number;
  readonly calibration: MigrationCalibration;
  /** Makes the image available on a host (fetched or copied there once), as create does. */
  readonly ensureImage?: (host: KvmHost, imageName: string, ctx: OperationContext) => Promise<unknown>;
  readonly log?: (message: string) => void;
}
