/**
 * A pre-copy live-migration model: predicts rounds, bytes, total time and downtime from
 * the guest's memory, its dirtying behaviour, the link and the policy. It follows what
 * QEMU does: round 0 sends all memory, each later round resends what was dirtied during
 * the previous one, and the migration stops the guest once the pages still dirty can be
 * sent within the downtime limit. Auto-converge throttles the vCPUs (20% at first, 10%
 * more per round) when dirtying outpaces sending twice in a row; post-copy switches the
 * guest to the destination and pulls the remaining pages afterwards.
 */

export interface PreCopyInput {
  readonly memoryBytes: number;
  /** The set of pages the guest keeps rewriting; dirtying saturates at this size. */
  readonly workingSetBytes: number;
  readonly dirtyRateBytesPerSec: number;
  /** What the link carries for the migration stream. */
  readonly bandwidthBytesPerSec: number;
  readonly maxDowntimeMs: number;
  /** Fraction of memory that is zero pages (sent as a flag, nearly free). @default 0 */
  readonly zeroFraction?: number;
  /** Bytes on the wire per byte of page data (multifd compression). @default 1 */
  readonly compressionRatio?: number;
  /** Bytes on the wire per byte of a re-sent page with XBZRLE deltas. @default compressionRatio */
  readonly resendRatio?: number;
  readonly autoConverge?: boolean;
  /**
   * Rounds before auto-converge can begin counting (the orchestrator engages it only once a
   * round shows pre-copy is not converging). QEMU then throttles after two more. @default 0
   */
  readonly autoConvergeAfterRounds?: number;
  /** Switch to post-copy after this many rounds when not converged. */
  readonly postCopyAfterRounds?: number;
  /** Give up (not converged) after this long. @default 10 minutes */
  readonly timeoutMs?: number;
  /**
   * Guest pause at switchover besides the last dirty pages: device state, handing the disks
   * over, resuming on the destination. A few ms on KVM hosts; 100–200 ms under TCG with a
   * storage copy (measured on the testbed, see docs/migration.md). @default 5
   */
  readonly switchoverMs?: number;
  /** Fixed time before any page moves: connections, starting the destination QEMU. @default 0 */
  readonly setupMs?: number;
  /** Disk data copied before memory when storage is not shared (a live storage copy). @default 0 */
  readonly storageCopyBytes?: number;
  /** Rate of that copy. @default bandwidthBytesPerSec */
  readonly storageBandwidthBytesPerSec?: number;
}

export interface PredictedRound {
  readonly round: number;
  readonly bytesSent: number;
  readonly durationMs: number;
  readonly dirtiedBytes: number;
  readonly throttle: number;
}

export interface Prediction {
  readonly converges: boolean;
  readonly strategy: 'pre-copy' | 'auto-converge' | 'post-copy' | 'none';
  readonly rounds: number;
  readonly totalMs: number;
  readonly downtimeMs: number;
  readonly bytesSent: number;
  readonly timeline: readonly PredictedRound[];
  /** Why it will or will not converge, in a sentence. */
  readonly reason: string;
}

const THROTTLE_INITIAL = 0.2;
const THROTTLE_STEP = 0.1;
const THROTTLE_MAX = 0.99;
const MAX_ROUNDS = 10_000;

export function predictPreCopy(input: PreCopyInput): Prediction {
  const B = input.bandwidthBytesPerSec;
  const switchover = input.switchoverMs ?? 5;
  const ratio = input.compressionRatio ?? 1;
  const resend = input.resendRatio ?? ratio;
  const timeout = input.timeoutMs ?? 600_000;
  const ws = Math.min(input.workingSetBytes, input.memoryBytes);
  if (!(B > 0)) {
    return { converges: false, strategy: 'none', rounds: 0, totalMs: Infinity, downtimeMs: Infinity, bytesSent: 0, timeline: [], reason: 'no bandwidth' };
  }

  const timeline: PredictedRound[] = [];
  let throttle = 0;
  let highRounds = 0;
  // Set-up and the disk copy come first; memory rounds (and the timeout) start after them.
  const before = (input.setupMs ?? 0) + ((input.storageCopyBytes ?? 0) / (input.storageBandwidthBytesPerSec ?? B)) * 1000;
  let elapsed = 0;
  let sent = 0;
  // Round 0: all non-zero pages.
  let pending = input.memoryBytes * (1 - (input.zeroFraction ?? 0));
  let wireRatio = ratio;
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const wire = pending * wireRatio;
    const ms = (wire / B) * 1000;
    const dirtied = Math.min(ws, input.dirtyRateBytesPerSec * (1 - throttle) * (ms / 1000));
    timeline.push({ round, bytesSent: wire, durationMs: ms, dirtiedBytes: dirtied, throttle });
    elapsed += ms;
    sent += wire;
    wireRatio = resend;
    const downtime = ((dirtied * wireRatio) / B) * 1000 + switchover;
    if (downtime <= input.maxDowntimeMs) {
      const strategy = throttle > 0 ? 'auto-converge' : 'pre-copy';
      return {
        converges: true, strategy, rounds: round + 1, downtimeMs: downtime, totalMs: before + elapsed + downtime, bytesSent: sent + dirtied * wireRatio, timeline,
        reason: strategy === 'pre-copy' ? `the dirty set shrinks each round and fits the ${input.maxDowntimeMs} ms downtime after ${round + 1} rounds` : `converges with the vCPUs throttled to ${Math.round(throttle * 100)}%`,
      };
    }
    if (input.postCopyAfterRounds !== undefined && round + 1 >= input.postCopyAfterRounds) {
      const rest = ((dirtied * wireRatio) / B) * 1000;
      return {
        converges: true, strategy: 'post-copy', rounds: round + 1, downtimeMs: switchover, totalMs: before + elapsed + switchover + rest, bytesSent: sent + dirtied * wireRatio, timeline,
        reason: `switches to post-copy after ${round + 1} rounds; the remaining ${formatBytes(dirtied)} follow on demand`,
      };
    }
    if (elapsed >= timeout) break;
    // QEMU throttles when a round dirties more than half of what it sent, twice in a row.
    if (input.autoConverge && round >= (input.autoConvergeAfterRounds ?? 0) && dirtied > 0.5 * (wire / wireRatio)) {
      highRounds++;
      if (highRounds >= 2) throttle = throttle === 0 ? THROTTLE_INITIAL : Math.min(THROTTLE_MAX, throttle + THROTTLE_STEP);
    } else highRounds = 0;
    // A steady state with no throttle left to add never converges.
    if (dirtied >= pending && (!input.autoConverge || throttle >= THROTTLE_MAX) && round > 2) break;
    pending = dirtied;
  }
  const last = timeline.at(-1);
  return {
    converges: false, strategy: 'none', rounds: timeline.length, totalMs: Infinity, downtimeMs: Infinity, bytesSent: sent, timeline,
    reason: `the guest dirties ${formatBytes(input.dirtyRateBytesPerSec)}/s of a ${formatBytes(ws)} working set; each round leaves ${formatBytes(last?.dirtiedBytes ?? 0)} dirty, more than ${input.maxDowntimeMs} ms of transfer`,
  };
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)}${units[unit]}`;
}
