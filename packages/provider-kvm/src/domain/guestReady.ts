import type { Clock, KvmProviderConfig } from '@novacron/core';
import { shellQuote } from '../shell/shellQuote.js';
import { DEFAULT_READY_MARKER } from '../snapshots/bootCheck.js';
import type { Virsh } from '../virsh/Virsh.js';
import { serialLogPath } from './domainXml.js';

/**
 * Whether a started guest came up: what a cold move checks on its destination before the
 * source goes, and what `awaitReady` checks after a VM was made from another provider's
 * disk. Running now and still running a moment later, and (when asked) the serial console
 * shows the ready marker.
 */

/** How long a guest must stay running before it counts as up (a disk that does not boot often stops or resets at once). */
export const STILL_RUNNING_MS = 3_000;

/** The marker an image's guest prints when it is up: its `readyMarker`, else the default one. */
export function readyMarkerFor(config: KvmProviderConfig, image: string | undefined): { readonly marker: RegExp; readonly configured: boolean } {
  const configured = config.images[image ?? '']?.readyMarker;
  return configured ? { marker: new RegExp(configured, 'm'), configured: true } : { marker: DEFAULT_READY_MARKER, configured: false };
}

/** Where a domain's serial console is logged: its definition's `<log file>`, else where NovaCron puts it. */
export async function serialLogOf(virsh: Virsh, vm: string, options: { operation: string; signal?: AbortSignal }): Promise<string> {
  const xml = await virsh.run(['dumpxml', '--inactive', vm], { vm, operation: options.operation, ...(options.signal ? { signal: options.signal } : {}) });
  return /<log\b[^>]*\bfile=(['"])([^'"]+)\1/.exec(xml)?.[2] ?? serialLogPath(vm);
}

/** The last 64 KiB of the guest's serial console log on a host ('' when there is none). */
export async function consoleTail(virsh: Virsh, path: string): Promise<string> {
  const r = await virsh.script(`tail -c 65536 ${shellQuote(path)} 2>/dev/null; exit 0`, { timeoutMs: 30_000 });
  return r.stdout;
}

export interface GuestWatch {
  readonly virsh: Virsh;
  readonly vm: string;
  readonly serialLog: string;
  /** What the console must show; undefined: staying up is enough. */
  readonly expect: RegExp | undefined;
  readonly timeoutMs: number;
  readonly clock: Clock;
  readonly operation: string;
  readonly signal?: AbortSignal;
}

export type GuestReadiness =
  | { readonly ok: true; readonly durationMs: number }
  /** The domain stopped (or vanished) meanwhile: `state` is what virsh said ('' when gone). */
  | { readonly ok: false; readonly reason: 'stopped'; readonly state: string; readonly durationMs: number }
  /** Still running at the deadline, without the marker on its console: `lastOutput` is the console's end. */
  | { readonly ok: false; readonly reason: 'timeout'; readonly lastOutput: string; readonly durationMs: number };

/**
 * Polls the domain once a second until it has been running for STILL_RUNNING_MS with
 * `expect` on its console, it is no longer running, or `timeoutMs` has passed. Never throws
 * for a guest that does not come up (that is the answer); transport errors and an abort do.
 */
export async function watchGuest(watch: GuestWatch): Promise<GuestReadiness> {
  const { virsh, vm, serialLog, expect, clock } = watch;
  const started = clock.now();
  const deadline = started + watch.timeoutMs;
  let runningSince: number | undefined;
  let text = '';
  for (;;) {
    const state = (await virsh.tryRun(['domstate', vm], { vm, operation: watch.operation, ...(watch.signal ? { signal: watch.signal } : {}) })).stdout.trim();
    if (state !== 'running') return { ok: false, reason: 'stopped', state, durationMs: clock.now() - started };
    runningSince ??= clock.now();
    if (expect) text = await consoleTail(virsh, serialLog);
    const consoleOk = !expect || expect.test(text);
    if (consoleOk && clock.now() - runningSince >= STILL_RUNNING_MS) return { ok: true, durationMs: clock.now() - started };
    if (clock.now() > deadline) return { ok: false, reason: 'timeout', lastOutput: text, durationMs: clock.now() - started };
    await clock.sleep(1_000, watch.signal);
  }
}

/** The end of a console's output, on one line, for a message. */
export function lastLine(text: string, chars = 400): string {
  return text.slice(-chars).replace(/\s+/g, ' ').trim() || '(none)';
}
