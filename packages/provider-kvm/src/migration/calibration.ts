/**
 * What this provider has measured about its hosts' migrations, so the next prediction (and
 * the next move's pacing) uses it: the memory stream's throughput and the SSH link per host
 * pair (on TCG hosts QEMU's migration thread, not the link, is often the limit), the fixed part of the downtime, the set-up time before
 * memory moves, and per VM the share of zero pages and how well its pages compressed.
 * Per provider instance (no module state); exponentially weighted so it follows change.
 */
export interface CalibrationDefaults {
  readonly switchoverMs: number;
  readonly setupMs: number;
}

/** Measured on the testbed (TCG, storage copied over the SSH tunnel): see docs/migration.md. */
export const TCG_DEFAULTS: CalibrationDefaults = { switchoverMs: 200, setupMs: 4000 };
export const KVM_DEFAULTS: CalibrationDefaults = { switchoverMs: 60, setupMs: 2000 };

const ALPHA = 0.4;

export class MigrationCalibration {
  readonly #throughput = new Map<string, number>();
  readonly #link = new Map<string, number>();
  readonly #zero = new Map<string, number>();
  readonly #compression = new Map<string, number>();
  #switchover: number | undefined;
  #setup: number | undefined;

  constructor(readonly defaults: CalibrationDefaults) {}

  /** The memory stream's throughput in earlier moves between the two hosts (either way). */
  throughput(from: string, to: string): number | undefined {
    return this.#throughput.get(`${from}>${to}`) ?? this.#throughput.get(`${to}>${from}`);
  }

  /**
   * A finished move's throughput. A move held at its cap (`capBytesPerSec`: pacing or the
   * policy's limit) says only that the path carries at least that much, so it is not recorded:
   * recording it would lower the next move's pace, and the next, without end.
   */
  recordThroughput(from: string, to: string, bytesPerSec: number, capBytesPerSec?: number): void {
    if (!(bytesPerSec > 0)) return;
    if (capBytesPerSec !== undefined && bytesPerSec >= 0.9 * capBytesPerSec) return;
    const key = `${from}>${to}`;
    this.#throughput.set(key, ewma(this.#throughput.get(key), bytesPerSec));
  }

  /** What an SSH stream between the hosts carried when last measured (MigrationEstimate). */
  recordLink(from: string, to: string, bytesPerSec: number): void {
    if (bytesPerSec > 0) this.#link.set(`${from}>${to}`, bytesPerSec);
  }

  /**
   * What the path carries for the memory stream: the lower of the stream's throughput in
   * earlier moves (on TCG hosts QEMU's migration thread may be the limit) and the last SSH
   * stream measured between the hosts. undefined until either is known.
   */
  capacity(from: string, to: string): number | undefined {
    const known = [this.throughput(from, to), this.#link.get(`${from}>${to}`) ?? this.#link.get(`${to}>${from}`)].filter((x): x is number => x !== undefined);
    return known.length ? Math.min(...known) : undefined;
  }

  get switchoverMs(): number {
    return Math.round(this.#switchover ?? this.defaults.switchoverMs);
  }

  /** A measured downtime and the hypervisor's limit at the end: the part beyond the last pages. */
  recordDowntime(downtimeMs: number, finalLimitMs: number, maxDowntimeMs: number): void {
    const fixed = Math.max(20, Math.min(0.8 * maxDowntimeMs, downtimeMs - finalLimitMs / 2));
    this.#switchover = ewma(this.#switchover ?? this.defaults.switchoverMs, fixed);
  }

  /** Fixed time of a move besides moving bytes and the downtime (the model's setupMs). */
  get setupMs(): number {
    return Math.round(this.#setup ?? this.defaults.setupMs);
  }

  recordSetup(ms: number): void {
    if (ms > 0) this.#setup = ewma(this.#setup ?? this.defaults.setupMs, ms);
  }

  zeroFraction(vm: string): number | undefined {
    return this.#zero.get(vm);
  }

  recordZeroFraction(vm: string, fraction: number): void {
    if (fraction >= 0 && fraction <= 1) this.#zero.set(vm, fraction);
  }

  /** Wire bytes per byte of page data with multifd compression, as last measured for this VM. */
  compressibility(vm: string): number | undefined {
    return this.#compression.get(vm);
  }

  recordCompressibility(vm: string, ratio: number): void {
    if (ratio > 0 && ratio <= 1.5) this.#compression.set(vm, ratio);
  }
}

function ewma(previous: number | undefined, value: number): number {
  return previous === undefined ? value : (1 - ALPHA) * previous + ALPHA * value;
}
