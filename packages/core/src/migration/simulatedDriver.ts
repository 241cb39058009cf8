import type { Clock } from '../util/clock.js';
import type { MigrationDriver, MigrationSettings, MigrationStats, MigrationStatus } from './driver.js';

export interface SimulatedGuest {
  readonly memoryBytes: number;
  readonly workingSetBytes: number;
  readonly dirtyRateBytesPerSec: number;
  /** Fraction of memory that is zero pages. @default 0 */
  readonly zeroFraction?: number;
  /** How well the guest's pages compress (bytes out per byte in) with multifd-zstd/zlib. @default 1 */
  readonly compressibility?: number;
}

export interface SimulatedLink {
  readonly bandwidthBytesPerSec: number;
  /** Per-connection limit (CPU-bound streams); multifd spreads over several. @default Infinity */
  readonly perConnectionBytesPerSec?: number;
  /** The link fails this long after the start. */
  readonly failAfterMs?: number;
}

/**
 * A live migration in simulated time, with the dynamics of QEMU's pre-copy: round 0 sends
 * all non-zero pages, each later round what was dirtied during the previous one (bounded
 * by the working set), stop-and-copy once the rest fits the downtime limit; auto-converge
 * throttles dirtying; post-copy pulls what is left after switching over. The sim provider
 * migrates with it, and the orchestrator is tested against it.
 */
export class SimulatedMigrationDriver implements MigrationDriver {
  #settings: MigrationSettings | undefined;
  #status: MigrationStatus = 'setup';
  #iteration = 0;
  #pendingRound = 0;
  #dirty = 0;
  #roundSent = 0;
  #processed = 0;
  #wire = 0;
  #throttle = 0;
  #highRounds = 0;
  #autoConverge = false;
  #startedAt = 0;
  #lastAt = 0;
  #downtimeMs: number | undefined;
  #lastThroughput = 0;
  #error: string | undefined;
  static readonly SWITCHOVER_MS = 5;

  /** The link is known, as a provider that measured it would know it: the orchestrator paces as it would there. */
  readonly linkBytesPerSec: number;

  constructor(
    private readonly guest: SimulatedGuest,
    private readonly link: SimulatedLink,
    private readonly clock: Clock,
  ) {
    this.linkBytesPerSec = link.bandwidthBytesPerSec;
  }

  async start(settings: MigrationSettings): Promise<void> {
    this.#settings = settings;
    this.#status = 'active';
    this.#autoConverge = settings.autoConverge && settings.autoConvergeNow;
    this.#pendingRound = this.guest.memoryBytes * (1 - (this.guest.zeroFraction ?? 0));
    this.#startedAt = this.#lastAt = this.clock.now();
  }

  async poll(): Promise<MigrationStats> {
    this.#advance();
    const remaining = this.#pendingRound + (this.#status === 'postcopy-active' ? 0 : this.#dirty);
    const bw = this.#bandwidth();
    return {
      status: this.#status,
      iteration: this.#iteration,
      dataTotalBytes: this.guest.memoryBytes,
      dataProcessedBytes: Math.round(this.#processed),
      dataRemainingBytes: Math.round(remaining),
      dirtyRateBytesPerSec: this.#status === 'active' ? this.guest.dirtyRateBytesPerSec * (1 - this.#throttle) : 0,
      throughputBytesPerSec: this.#lastThroughput || bw,
      expectedDowntimeMs: ((remaining * this.#ratio()) / bw) * 1000,
      ...(this.#downtimeMs === undefined ? {} : { downtimeMs: this.#downtimeMs }),
      wireBytes: Math.round(this.#wire),
      elapsedMs: this.#lastAt - this.#startedAt,
      ...(this.#error ? { error: this.#error } : {}),
    };
  }

  async setDowntimeLimit(ms: number): Promise<void> {
    this.#advance();
    this.#settings = { ...this.#settings!, downtimeLimitMs: ms };
  }

  async setBandwidth(bytesPerSec: number | undefined): Promise<void> {
    this.#advance();
    const { bandwidthBytesPerSec: _, ...rest } = this.#settings!;
    this.#settings = bytesPerSec === undefined ? rest : { ...rest, bandwidthBytesPerSec: bytesPerSec };
  }

  async engageAutoConverge(): Promise<void> {
    this.#advance();
    if (!this.#settings?.autoConverge) throw new Error('auto-converge capability was not enabled at start');
    this.#autoConverge = true;
  }

  async switchToPostCopy(): Promise<void> {
    this.#advance();
    if (!this.#settings?.postCopy) throw new Error('post-copy capability was not enabled at start');
    if (this.#status !== 'active') return;
    this.#status = 'postcopy-active';
    this.#downtimeMs = SimulatedMigrationDriver.SWITCHOVER_MS;
    // The guest now runs on the destination: what is dirty there is already there.
    this.#pendingRound += this.#dirty;
    this.#dirty = 0;
  }

  async abort(): Promise<void> {
    this.#advance();
    if (this.#status === 'active' || this.#status === 'setup') this.#status = 'cancelled';
  }

  #bandwidth(): number {
    const s = this.#settings;
    const streams = s && s.compression.startsWith('multifd') ? s.parallelConnections : 1;
    const perConn = (this.link.perConnectionBytesPerSec ?? Infinity) * streams;
    return Math.min(this.link.bandwidthBytesPerSec, perConn, s?.bandwidthBytesPerSec ?? Infinity);
  }

  /** Bytes on the wire per byte of page data. */
  #ratio(): number {
    const c = this.#settings?.compression ?? 'none';
    if (c === 'multifd-zstd' || c === 'multifd-zlib') return this.guest.compressibility ?? 1;
    // XBZRLE only helps re-sent pages, and only as much as they compress as deltas.
    if (c === 'xbzrle' && this.#iteration > 0) return Math.max(0.05, this.guest.compressibility ?? 1);
    return 1;
  }

  #advance(): void {
    const now = this.clock.now();
    let dt = (now - this.#lastAt) / 1000;
    const startDt = dt;
    const wireBefore = this.#wire;
    this.#lastAt = now;
    if (this.link.failAfterMs !== undefined && now - this.#startedAt >= this.link.failAfterMs && (this.#status === 'active' || this.#status === 'postcopy-active')) {
      // In post-copy a broken link loses the guest in QEMU; we model pre-copy failure only.
      this.#status = 'failed';
      this.#error = 'connection to the destination lost';
      return;
    }
    while (dt > 1e-9 && (this.#status === 'active' || this.#status === 'postcopy-active')) {
      const bw = this.#bandwidth();
      const ratio = this.#ratio();
      const roundLeft = (this.#pendingRound * ratio) / bw;
      const step = Math.min(dt, roundLeft);
      const pages = (bw * step) / ratio;
      this.#pendingRound -= pages;
      this.#processed += pages;
      this.#roundSent += pages;
      this.#wire += bw * step;
      if (this.#status === 'active') {
        this.#dirty = Math.min(this.guest.workingSetBytes, this.#dirty + this.guest.dirtyRateBytesPerSec * (1 - this.#throttle) * step);
      }
      dt -= step;
      if (this.#pendingRound <= 1e-6) this.#endRound();
    }
    if (startDt > 0) this.#lastThroughput = (this.#wire - wireBefore) / startDt || this.#lastThroughput;
  }

  #endRound(): void {
    this.#pendingRound = 0;
    if (this.#status === 'postcopy-active') {
      this.#status = 'completed';
      return;
    }
    this.#iteration++;
    const bw = this.#bandwidth();
    const ratio = this.#ratio();
    const downtime = ((this.#dirty * ratio) / bw) * 1000 + SimulatedMigrationDriver.SWITCHOVER_MS;
    if (downtime <= this.#settings!.downtimeLimitMs) {
      this.#processed += this.#dirty;
      this.#wire += this.#dirty * ratio;
      this.#dirty = 0;
      this.#downtimeMs = downtime;
      this.#status = 'completed';
      return;
    }
    if (this.#autoConverge && this.#dirty > 0.5 * this.#roundSent) {
      this.#highRounds++;
      if (this.#highRounds >= 2) this.#throttle = this.#throttle === 0 ? 0.2 : Math.min(0.99, this.#throttle + 0.1);
    } else this.#highRounds = 0;
    this.#pendingRound = this.#dirty;
    this.#dirty = 0;
    this.#roundSent = 0;
  }
}
