import { resolve } from 'node:path';
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { z } from 'zod';
import {
  formatBytes,
  InvalidInputError,
  listFleetSnapshots,
  NovaCronError,
  nextSlots,
  restoreAt,
  systemClock,
  tick,
  toNovaCronError,
  verifySnapshots,
  type Clock,
  type FleetSpec,
  type ProviderSet,
  type SnapshotEvent,
  type SnapshotRecord,
  type TickResult,
  type VerifyOutcome,
} from '@novacron/core';
import { createRegistry, loadFleet, writeJson, type GlobalOptions, type Io } from '../context.js';
import { EXIT } from '../exit.js';
import { formatMs, table } from '../output/table.js';

type Run = (fn: (opts: Record<string, unknown>) => Promise<number>) => (opts: Record<string, unknown>, cmd: Command) => Promise<void>;

/** `novacron snapshot …`: tick, run --daemon, list, restore, verify. */
export function registerSnapshotCommands(program: Command, io: Io, common: (cmd: Command) => Command, run: Run): void {
  const snapshot = program.command('snapshot').description('scheduled, incremental, verified snapshots: take what is due, prune, list, restore, verify');
  common(snapshot.command('tick').description('take the snapshots that are due and prune what retention no longer keeps (idempotent: run it from cron)'))
    .option('--now <time>', 'act as if it were this time (ISO 8601); default: now')
    .option('--no-prune', 'take what is due, remove nothing')
    .option('--verify', 'verify the snapshots taken (default: each group\'s verify)')
    .action(run((o) => tickCommand(io, parse(tickFlags, o))));
  common(snapshot.command('run').description('tick on schedule until SIGINT or SIGTERM, showing when the next snapshots are due'))
    .option('--daemon', 'keep running (required: for a single pass use `snapshot tick`)', false)
    .action(run((o) => runCommand(io, parse(runFlags, o))));
  common(snapshot.command('list').description("the fleet's snapshots as the providers record them"))
    .option('--vm <vm>', 'only this VM')
    .action(run((o) => listCommand(io, parse(listFlags, o))));
  common(snapshot.command('restore <vm>').description('restore a VM from its newest snapshot at or before a time, in place or as a new VM'))
    .requiredOption('--at <time>', 'ISO 8601 time, or "now" for the newest snapshot')
    .option('--as <name>', 'restore into a new VM of this name (outside the fleet) instead of in place')
    .option('-y, --yes', 'do not ask before overwriting the VM in place', false)
    .action((vm: string, opts: Record<string, unknown>, cmd: Command) => run((o) => restoreCommand(io, vm, parse(restoreFlags, o)))(opts, cmd));
  common(snapshot.command('verify').description('restore snapshots into scratch VMs and check them against their recorded digests'))
    .option('--vm <vm>', 'only this VM')
    .option('--all', 'every complete snapshot, not only the newest of each VM', false)
    .action(run((o) => verifyCommand(io, parse(verifyFlags, o))));
}

// ---- flags, checked at the boundary --------------------------------------------------

const globals = {
  file: z.string(),
  json: z.boolean(),
  debug: z.boolean(),
  stateDir: z.string().optional(),
};
const time = (flag: string) =>
  z.string().transform((value, ctx) => {
    if (value === 'now') return Date.now();
    const ms = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(value) ? Date.parse(value) : Number.NaN;
    if (Number.isNaN(ms)) {
      ctx.addIssue({ code: 'custom', message: `${flag}: "${value}" is not a time: use ISO 8601 such as 2025-01-02T03:00:00Z, or "now"` });
      return z.NEVER;
    }
    return ms;
  });
const tickFlags = z.object({ ...globals, now: time('--now').optional(), prune: z.boolean().default(true), verify: z.boolean().optional() });
const runFlags = z.object({ ...globals, daemon: z.boolean() });
const listFlags = z.object({ ...globals, vm: z.string().min(1).optional() });
const restoreFlags = z.object({
  ...globals,
  at: time('--at'),
  as: z.string().regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, '--as: VM names use lowercase letters, digits and \'-\'').optional(),
  yes: z.boolean(),
});
const verifyFlags = z.object({ ...globals, vm: z.string().min(1).optional(), all: z.boolean() });

function parse<T extends z.ZodType>(schema: T, options: Record<string, unknown>): z.output<T> {
  const result = schema.safeParse(options);
  if (!result.success) throw new InvalidInputError(result.error.issues.map((i) => i.message).join('; '), { hint: 'see `novacron snapshot --help`' });
  return result.data;
}

// ---- commands -------------------------------------------------------------------------

type TickFlags = z.output<typeof tickFlags>;

async function tickCommand(io: Io, options: TickFlags): Promise<number> {
  const fleet = await loadFleet(io, options);
  const clock = options.now === undefined ? systemClock : shiftedClock(options.now);
  const result = await withClockProviders(io, options, fleet, clock, (providers) =>
    tick(fleet, providers, options.now ?? clock.now(), {
      clock,
      prune: options.prune,
      ...(options.verify !== undefined ? { verify: options.verify } : {}),
      ...(options.json ? {} : { onEvent: progressLines(io.stderr) }),
    }),
  );
  if (options.json) writeJson(io, tickJson(result));
  else io.stdout.write(`${renderTick(result)}\n`);
  return result.ok ? EXIT.ok : EXIT.failed;
}

async function runCommand(io: Io, options: z.output<typeof runFlags>): Promise<number> {
  if (!options.daemon) {
    throw new InvalidInputError('`snapshot run` runs until stopped and needs --daemon', { hint: 'for a single pass, use `novacron snapshot tick`' });
  }
  let fleet = await loadFleet(io, options);
  const controller = new AbortController();
  const stop = (signal: string) => {
    if (controller.signal.aborted) return;
    io.stderr.write(`\n${signal}: finishing the snapshots under way, then stopping.\n`);
    controller.abort(new Error(signal));
  };
  const onInt = () => stop('SIGINT');
  const onTerm = () => stop('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  const clock = systemClock;
  let failures = 0;
  try {
    while (!controller.signal.aborted) {
      // The fleet file is read again before each pass; a broken edit keeps the last good one.
      fleet = await loadFleet(io, options).catch((error: unknown) => {
        io.stderr.write(`warning: ${toNovaCronError(error).message}; keeping the fleet as last read\n`);
        return fleet;
      });
      let result: TickResult | undefined;
      try {
        // Providers are opened for each pass, so nothing (the sim's world, SSH sessions) is held while waiting.
        result = await withClockProviders(io, options, fleet, clock, (providers) =>
          tick(fleet, providers, clock.now(), { clock, signal: controller.signal, ...(options.json ? {} : { onEvent: progressLines(io.stderr) }) }),
        );
      } catch (error) {
        if (controller.signal.aborted) break;
        io.stderr.write(`error: ${describe(error)}\n`);
      }
      if (result) {
        if (options.json) io.stdout.write(`${JSON.stringify(tickJson(result))}\n`);
        else io.stdout.write(`${renderTick(result)}\n`);
      }
      failures = result?.ok ? 0 : failures + 1;
      const now = clock.now();
      const slots = nextSlots(fleet, now);
      // After a failure, try again soon (1, 2, 4 … 15 minutes) rather than waiting for the next slot.
      const retryAt = failures > 0 ? now + Math.min(15, 2 ** (failures - 1)) * 60_000 : Infinity;
      const wake = Math.min(slots[0]?.at ?? Infinity, retryAt);
      if (!Number.isFinite(wake)) {
        io.stderr.write('No schedule fires again; stopping.\n');
        break;
      }
      const groups = slots.filter((s) => s.at === slots[0]?.at).map((s) => s.group);
      const line = wake === retryAt ? `retrying failed snapshots at ${iso(wake)}` : `next due ${iso(wake)} (${groups.join(', ')})`;
      if (options.json) io.stdout.write(`${JSON.stringify({ next: iso(wake), groups: wake === retryAt ? [] : groups, retry: wake === retryAt })}\n`);
      else io.stderr.write(`Waiting: ${line}. Stop with Ctrl-C.\n`);
      try {
        await clock.sleep(Math.max(0, wake - clock.now()), controller.signal);
      } catch {
        break; // aborted
      }
    }
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
  io.stderr.write('Stopped.\n');
  return EXIT.ok;
}

async function listCommand(io: Io, options: z.output<typeof listFlags>): Promise<number> {
  const fleet = await loadFleet(io, options);
  const all = await withClockProviders(io, options, fleet, systemClock, (providers) => listFleetSnapshots(fleet, providers));
  const records = options.vm === undefined ? all : all.filter((r) => r.vm === options.vm);
  if (options.json) {
    writeJson(io, { fleet: fleet.name, snapshots: records });
    return EXIT.ok;
  }
  if (records.length === 0) {
    io.stdout.write(`Fleet ${fleet.name}: no snapshots${options.vm ? ` of ${options.vm}` : ''}.\n`);
    return EXIT.ok;
  }
  const stored = records.reduce((sum, r) => sum + r.sizeBytes, 0);
  const vms = new Set(records.map((r) => r.vm)).size;
  io.stdout.write(`Fleet ${fleet.name}: ${records.length} snapshot(s) of ${vms} VM(s), ${formatBytes(stored)} stored.\n\n`);
  const shown = records.slice(0, 200);
  io.stdout.write(
    `${table(
      ['VM', 'SNAPSHOT', 'KIND', 'TAKEN', 'PARENT', 'STORED', 'CONSISTENCY', 'STATE', 'VERIFIED'],
      shown.map((r) => [r.vm, r.id, r.kind, r.takenAt.replace(/\.\d+Z$/, 'Z'), r.parent ?? '-', formatBytes(r.sizeBytes), r.consistency, r.state, verifiedText(r)]),
    )}\n`,
  );
  if (records.length > shown.length) io.stdout.write(`… and ${records.length - shown.length} more (use --vm or --json)\n`);
  return EXIT.ok;
}

async function restoreCommand(io: Io, vm: string, options: z.output<typeof restoreFlags>): Promise<number> {
  const fleet = await loadFleet(io, options);
  if (options.as === undefined && !options.yes && !options.json) {
    io.stderr.write(`This overwrites the disk of "${vm}" with its snapshot from ${iso(options.at)} or before. Type the VM name to confirm: `);
    const rl = createInterface({ input: io.stdin, output: io.stderr, terminal: false });
    const answer = await Promise.race([rl.question(''), new Promise<null>((done) => io.stdin.once('end', () => done(null)))]);
    rl.close();
    if (answer?.trim() !== vm) {
      io.stderr.write('\nNot confirmed; nothing was restored.\n');
      return EXIT.failed;
    }
  } else if (options.as === undefined && !options.yes) {
    throw new InvalidInputError(`restoring "${vm}" in place overwrites its disk`, { hint: 'add --yes, or restore as a new VM with --as NAME' });
  }
  const started = Date.now();
  const result = await withClockProviders(io, options, fleet, systemClock, (providers) =>
    restoreAt(fleet, providers, vm, options.at, {
      ...(options.as ? { asName: options.as } : {}),
      ...(options.json ? {} : { onProgress: throttledProgress(io.stderr, `restoring ${vm}`) }),
    }),
  );
  const durationMs = Date.now() - started;
  const digestOk = result.digest === undefined || result.snapshot.digest === undefined ? undefined : result.digest === result.snapshot.digest;
  if (options.json) {
    writeJson(io, { ok: digestOk !== false, snapshot: result.snapshot, vm: result.vm, bytesWritten: result.bytesWritten, digest: result.digest ?? null, digestMatches: digestOk ?? null, durationMs });
  } else {
    const target = options.as ? `new VM ${result.vm.name} (outside the fleet; delete or adopt it yourself)` : `${vm} in place`;
    io.stdout.write(`Restored ${result.snapshot.id} (${result.snapshot.kind}, taken ${result.snapshot.takenAt}) into ${target}: ${formatBytes(result.bytesWritten)} in ${formatMs(durationMs)}.\n`);
    if (digestOk === true) io.stdout.write('The restored disk matches the digest recorded at backup time.\n');
    if (digestOk === false) io.stdout.write(`Warning: the restored disk's digest differs from the recorded one (${result.digest} vs ${result.snapshot.digest}).\n`);
  }
  return digestOk === false ? EXIT.failed : EXIT.ok;
}

async function verifyCommand(io: Io, options: z.output<typeof verifyFlags>): Promise<number> {
  const fleet = await loadFleet(io, options);
  const result = await withClockProviders(io, options, fleet, systemClock, (providers) =>
    verifySnapshots(fleet, providers, { ...(options.vm ? { vm: options.vm } : {}), all: options.all, ...(options.json ? {} : { onEvent: progressLines(io.stderr) }) }),
  );
  if (options.json) {
    writeJson(io, {
      ok: result.ok,
      results: result.results.map((r) => ({ snapshot: r.snapshot.id, vm: r.snapshot.vm, ...r.verification, recorded: r.recorded })),
      failed: result.failed.map((f) => ({ vm: f.vm, snapshot: f.snapshotId, error: f.error.toJSON() })),
    });
  } else {
    const ok = result.results.filter((r) => r.verification.ok).length;
    io.stdout.write(`Verified ${result.results.length} snapshot(s): ${ok} ok, ${result.results.length - ok} failed${result.failed.length ? `, ${result.failed.length} could not be checked` : ''}.\n`);
    for (const r of result.results) io.stdout.write(`  ${r.verification.ok ? '✓' : '✗'} ${r.snapshot.id}: ${r.verification.detail ?? ''}${r.recorded ? '' : ' (not recorded: the provider cannot store results)'}\n`);
    for (const f of result.failed) io.stdout.write(`  ! ${f.snapshotId}: ${f.error.describe()}\n`);
  }
  return result.ok ? EXIT.ok : EXIT.failed;
}

// ---- helpers -----------------------------------------------------------------------------

/** A clock that starts at `start` and runs at wall-clock speed: `--now` for the engine and the providers alike. */
function shiftedClock(start: number): Clock {
  const offset = start - Date.now();
  return { now: () => Date.now() + offset, sleep: systemClock.sleep };
}

/** Like `withProviders`, with the clock the providers should keep (the sim stamps snapshots with it). */
async function withClockProviders<T>(io: Io, options: GlobalOptions, fleet: FleetSpec, clock: Clock, fn: (providers: ProviderSet) => Promise<T>): Promise<T> {
  const env = options.stateDir ? { ...io.env, NOVACRON_STATE_DIR: resolve(io.cwd, options.stateDir) } : io.env;
  const providers = await createRegistry().open(fleet, { cwd: io.cwd, env, clock });
  try {
    return await fn(providers);
  } finally {
    await providers.close();
  }
}

/** One line per finished snapshot, prune and verification: readable in a terminal and in a log. */
function progressLines(stream: NodeJS.WriteStream): (event: SnapshotEvent) => void {
  let total = 0;
  let done = 0;
  return (event) => {
    switch (event.type) {
      case 'tick.start':
        total = event.due;
        if (total > 0) stream.write(`Taking ${total} snapshot(s)…\n`);
        break;
      case 'snapshot.done':
        done++;
        stream.write(`  ✓ [${done}/${total}] ${event.record.vm}: ${event.record.kind} ${event.record.id}, ${formatBytes(event.record.sizeBytes)} stored (${formatMs(event.durationMs)})\n`);
        break;
      case 'snapshot.failed':
        done++;
        stream.write(`  ✗ [${done}/${total}] ${event.vm}: ${event.error.describe()}\n`);
        break;
      case 'prune.removed':
        stream.write(`  - pruned ${event.removal.snapshot.id}${event.removal.mergedInto.length ? ` (merged into ${event.removal.mergedInto.join(', ')})` : ''}\n`);
        break;
      case 'prune.failed':
        stream.write(`  ✗ pruning ${event.removal.snapshot.id}: ${event.error.describe()}\n`);
        break;
      case 'verify.done':
        stream.write(`  ${event.verification.ok ? '✓' : '✗'} verified ${event.snapshot.id}: ${event.verification.detail ?? ''}\n`);
        break;
      case 'verify.failed':
        stream.write(`  ! verifying ${event.snapshot.id}: ${event.error.describe()}\n`);
        break;
      default:
        break;
    }
  };
}

function throttledProgress(stream: NodeJS.WriteStream, label: string) {
  let last = -1;
  return (progress: { fraction?: number }) => {
    const pct = Math.floor((progress.fraction ?? 0) * 10) * 10;
    if (pct > last && stream.isTTY) {
      last = pct;
      stream.write(`\r${label}: ${pct}%`);
      if (pct >= 100) stream.write('\n');
    }
  };
}

function renderTick(result: TickResult): string {
  const lines: string[] = [];
  const failedSnapshots = result.failed.filter((f) => f.operation === 'snapshot');
  lines.push(
    `Fleet ${result.fleet} at ${result.at}: ${result.taken.length} taken, ${failedSnapshots.length} failed, ${result.pruned.length} pruned${result.verified.length ? `, ${result.verified.length} verified` : ''} (${formatMs(result.durationMs)}).`,
  );
  if (result.taken.length + result.failed.length + result.pruned.length === 0) lines.push('Nothing was due and nothing expired.');
  for (const b of result.blocked) lines.push(`  ! ${b.vm}: ${b.reason}`);
  for (const s of uniqueSkips(result)) lines.push(`  - ${s}`);
  for (const f of result.failed) lines.push(`  ✗ ${f.operation} ${f.snapshotId ?? f.vm}: ${f.error.describe()}`);
  for (const n of result.next) lines.push(`Next: ${n.group} at ${n.at}`);
  if (!result.ok) lines.push('Run tick again to retry: it completes interrupted snapshots under the same id.');
  return lines.join('\n');
}

function uniqueSkips(result: TickResult): string[] {
  return [...new Set(result.skipped.map((s) => (s.reason.startsWith('provider') ? `${s.group}: ${s.reason}` : `${s.vm}: ${s.reason}`)))];
}

function tickJson(result: TickResult) {
  return {
    ok: result.ok,
    fleet: result.fleet,
    at: result.at,
    durationMs: result.durationMs,
    taken: result.taken.map((t) => ({ ...t.record, reason: t.reason, durationMs: t.durationMs })),
    failed: result.failed.map((f) => ({ vm: f.vm, operation: f.operation, snapshot: f.snapshotId, error: f.error.toJSON() })),
    pruned: result.pruned.map((p) => ({ id: p.snapshot.id, vm: p.snapshot.vm, takenAt: p.snapshot.takenAt, reason: p.reason, mergedInto: p.mergedInto })),
    blocked: result.blocked,
    verified: result.verified.map((v: VerifyOutcome) => ({ snapshot: v.snapshot.id, ...v.verification, recorded: v.recorded })),
    skipped: result.skipped,
    next: result.next,
  };
}

function verifiedText(r: SnapshotRecord): string {
  if (!r.verified) return '-';
  return `${r.verified.ok ? 'ok' : 'FAILED'} ${r.verified.at.replace(/\.\d+Z$/, 'Z')}`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

function describe(error: unknown): string {
  return NovaCronError.isInstance(error) ? error.describe() : toNovaCronError(error).message;
}

