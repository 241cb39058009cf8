import type { MigrationSettings } from '@novacron/core';

/**
 * The `virsh migrate` command line for one live migration, from the orchestrator's settings.
 * Plain data in, argv out, so every flag combination is unit-tested without a host.
 *
 * The data never leaves the source host unencrypted: QEMU's memory stream and the NBD disk
 * copy go to ports on the source's loopback that an SSH connection forwards to the
 * destination's loopback, where the destination QEMU listens (`--listen-address 127.0.0.1`).
 * libvirt's own control connection to the destination is `qemu+ssh` too.
 */
export interface MigrateCommand {
  readonly domain: string;
  /** `qemu+ssh://user@address:port/system`, as the source host reaches the destination. */
  readonly destinationUri: string;
  readonly memoryPort: number;
  readonly diskPort: number;
  readonly settings: MigrationSettings;
  /** Copy disks (no shared storage): `--copy-storage-all` over the disk port. */
  readonly copyStorage: boolean;
  /** Files on the source host: the destination's live and persistent definitions. */
  readonly xmlFile?: string;
  readonly persistentXmlFile?: string;
}

const MiB = 1024 * 1024;

export function migrateArgs(c: MigrateCommand): string[] {
  const s = c.settings;
  const multifd = s.compression === 'multifd-zstd' || s.compression === 'multifd-zlib' || s.parallelConnections > 1;
  const args = ['migrate', '--live', '--persistent', '--undefinesource', '--abort-on-error'];
  args.push('--migrateuri', `tcp://127.0.0.1:${c.memoryPort}`, '--listen-address', '127.0.0.1');
  if (c.copyStorage) args.push('--copy-storage-all', '--disks-uri', `tcp://127.0.0.1:${c.diskPort}`);
  if (s.autoConverge) args.push('--auto-converge');
  if (s.postCopy) args.push('--postcopy');
  if (s.compression === 'xbzrle') args.push('--compressed', '--comp-methods', 'xbzrle');
  if (multifd) args.push('--parallel', '--parallel-connections', String(Math.max(1, s.parallelConnections)));
  if (s.bandwidthBytesPerSec !== undefined) args.push('--bandwidth', String(bandwidthMiB(s.bandwidthBytesPerSec)));
  if (c.xmlFile) args.push('--xml', c.xmlFile);
  if (c.persistentXmlFile) args.push('--persistent-xml', c.persistentXmlFile);
  args.push(c.domain, c.destinationUri);
  return args;
}

/** libvirt takes MiB/s, whole numbers, at least 1. */
export function bandwidthMiB(bytesPerSec: number): number {
  return Math.max(1, Math.ceil(bytesPerSec / MiB));
}

/** libvirt's "unlimited" for migrate-setspeed (its maximum: INT64_MAX bytes/s in MiB/s). */
export const UNLIMITED_MIB = 8_796_093_022_207;

/**
 * QEMU parameters libvirt 9.0 does not manage, set on the source before the job starts:
 * the downtime limit, multifd compression (the destination gets the same through
 * `-global migration.multifd-compression`, see destinationXml), and the auto-converge
 * trigger — held back (100: dirtying must outrun sending) until the orchestrator engages it.
 */
export function preMigrationParameters(s: MigrationSettings): Record<string, number | string> {
  return {
    'downtime-limit': Math.max(1, Math.round(s.downtimeLimitMs)),
    'multifd-compression': multifdCompression(s),
    ...(s.autoConverge ? { 'throttle-trigger-threshold': s.autoConvergeNow ? ENGAGED_THRESHOLD : HELD_THRESHOLD } : {}),
  };
}

/** QEMU's default trigger: dirtying more than half of what a round sent, twice. */
export const ENGAGED_THRESHOLD = 50;
export const HELD_THRESHOLD = 100;

export function multifdCompression(s: Pick<MigrationSettings, 'compression'>): 'none' | 'zstd' | 'zlib' {
  return s.compression === 'multifd-zstd' ? 'zstd' : s.compression === 'multifd-zlib' ? 'zlib' : 'none';
}
