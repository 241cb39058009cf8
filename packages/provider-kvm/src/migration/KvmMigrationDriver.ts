import { NovaCronError, type Clock, type MigrationDriver, type MigrationSettings, type MigrationStats } from '@novacron/core';
import type { Virsh } from '../virsh/Virsh.js';
import { destinationXml } from './destinationXml.js';
import { JOB_TYPE, parseDomState, parseRawJobStats, statusOf, toMigrationStats, type JobSample, type RawJobStats } from './jobStats.js';
import { ENGAGED_THRESHOLD, migrateArgs, multifdCompression, preMigrationParameters, UNLIMITED_MIB, bandwidthMiB } from './migrateArgs.js';
import { MigrationTunnel } from './MigrationTunnel.js';
import { destinationUri, shellQuote, virshLine, type HostLink } from './sshLink.js';

export interface KvmMigrationDriverOptions {
  readonly domain: string;
  /** virsh on the source and the destination host. */
  readonly source: Virsh;
  readonly destination: Virsh;
  /** How the source host reaches the destination over SSH. */
  readonly link: HostLink;
  /** Copy the disks (no shared storage). */
  readonly copyStorage: boolean;
  readonly clock: Clock;
  readonly random: () => number;
  /** See MigrationDriver.switchoverMs: what this host pair adds to the last pages' transfer. */
  readonly switchoverMs: number;
  /** How long the tunnel may live if nobody closes it. */
  readonly lifetimeSec: number;
  readonly log?: (message: string) => void;
}

/** What the driver learnt about a finished job, for results and calibration. */
export interface KvmMigrationOutcome {
  readonly succeeded: boolean;
  /** From the start call to the first memory round (set-up and the storage copy). */
  readonly toMemoryMs?: number;
  readonly memoryBytesOnWire?: number;
  readonly diskBytesOnWire?: number;
  /** The destination's completed-job statistics. */
  readonly completed?: RawJobStats;
  readonly lastLimitMs: number;
  /** The memory stream's cap when the job ended (the policy's limit or pacing); undefined: uncapped. */
  readonly lastCapBytesPerSec?: number;
  readonly error?: string;
}

/**
 * The core's MigrationDriver over libvirt (client-driven `virsh migrate` run on the source
 * host), with the data through an SSH tunnel between the hosts (MigrationTunnel).
 *
 * `start` opens the tunnel, writes the destination's definitions next to it, sets the
 * QEMU parameters libvirt does not manage, and launches `virsh migrate` detached on the
 * source (so a dropped NovaCron connection does not cut the job short); `poll` reads the
 * job (`domjobinfo --rawstats`), the domain's state, the command's exit and the tunnel's
 * byte counters in one round trip. Steering uses libvirt's calls — migrate-setmaxdowntime,
 * migrate-setspeed, migrate-postcopy, domjobabort — and QMP for the auto-converge trigger.
 */
export class KvmMigrationDriver implements MigrationDriver {
  readonly switchoverMs: number;
  /** See MigrationDriver.linkBytesPerSec; set before the job starts (liveMigration measures the link while it prepares). */
  linkBytesPerSec: number | undefined;
  #tunnel: MigrationTunnel | undefined;
  #settings: MigrationSettings | undefined;
  #startedAt = 0;
  #memoryAt: number | undefined;
  #last: { processed: number; at: number } | undefined;
  #throughput = 0;
  #limitMs = 0;
  #finished: { ok: boolean; stats: MigrationStats; completed?: RawJobStats; error?: string } | undefined;
  #wire: { memory?: number; disk?: number } = {};
  /** The memory stream's cap, re-asserted until memory moves (see start). */
  #memoryCap: number | undefined;
  #capHeld = false;
  /** QEMU's own downtime once post-copy has switched (libvirt reports none for post-copy). */
  #postCopyDowntime: number | undefined;
  #wireAtStart: { memory?: number; disk?: number } = {};

  constructor(private readonly o: KvmMigrationDriverOptions) {
    this.switchoverMs = o.switchoverMs;
  }

  get outcome(): KvmMigrationOutcome {
    return {
      succeeded: this.#finished?.ok === true,
      ...(this.#memoryAt === undefined ? {} : { toMemoryMs: this.#memoryAt - this.#startedAt }),
      ...(this.#wire.memory === undefined ? {} : { memoryBytesOnWire: this.#wire.memory - (this.#wireAtStart.memory ?? 0) }),
      ...(this.#wire.disk === undefined ? {} : { diskBytesOnWire: this.#wire.disk - (this.#wireAtStart.disk ?? 0) }),
      ...(this.#finished?.completed ? { completed: this.#finished.completed } : {}),
      lastLimitMs: this.#limitMs,
      ...(this.#memoryCap === undefined ? {} : { lastCapBytesPerSec: this.#memoryCap }),
      ...(this.#finished?.error ? { error: this.#finished.error } : {}),
    };
  }

  async start(settings: MigrationSettings): Promise<void> {
    const { o } = this;
    this.#settings = settings;
    this.#limitMs = settings.downtimeLimitMs;
    this.#startedAt = o.clock.now();
    const opts = { vm: o.domain, operation: 'migrate' };
    this.#tunnel = await MigrationTunnel.open(o.source, o.link, { lifetimeSec: o.lifetimeSec, random: o.random, vm: o.domain });
    const dir = this.#tunnel.dir;
    const [live, persistent] = await o.source.batch(
      [
        ['dumpxml', '--migratable', o.domain],
        ['dumpxml', '--migratable', '--inactive', o.domain],
      ],
      { ...opts, stopOnError: true },
    );
    if (!live || live.error) throw live?.error ?? this.#error('cannot read the domain before migrating it');
    if (!persistent || persistent.error) throw persistent?.error ?? this.#error('cannot read the domain before migrating it');
    const compression = multifdCompression(settings);
    await Promise.all([
      this.#writeFile(`${dir}/live.xml`, destinationXml(live.stdout, { multifdCompression: compression })),
      this.#writeFile(`${dir}/persistent.xml`, destinationXml(persistent.stdout)),
    ]);
    await this.#qmp('migrate-set-parameters', preMigrationParameters(settings));
    // The cap is for memory only. libvirt would apply --bandwidth to the storage copy too, and
    // QEMU 7.2 charges the zero areas a sparse copy skips against it (a 1 GiB disk holding
    // 2 MiB took 100 s at 80 Mbit/s): start uncapped (also clearing a cap a failed attempt
    // left on the domain), and cap QEMU's memory stream itself until memory moves.
    await this.#run(['migrate-setspeed', o.domain, String(UNLIMITED_MIB)]);
    this.#memoryCap = settings.bandwidthBytesPerSec;
    this.#wireAtStart = await this.#tunnel.bytes();
    const { bandwidthBytesPerSec: _cap, ...uncapped } = settings;
    const args = migrateArgs({
      domain: o.domain,
      destinationUri: destinationUri(o.link),
      memoryPort: this.#tunnel.ports.memory,
      diskPort: this.#tunnel.ports.disk,
      settings: uncapped,
      copyStorage: o.copyStorage,
      xmlFile: `${dir}/live.xml`,
      persistentXmlFile: `${dir}/persistent.xml`,
    });
    const d = shellQuote(dir);
    // Detached: the job outlives this channel; its exit status lands in a file poll reads.
    const launch = `nohup sh -c ${shellQuote(`${virshLine(args)} >${dir}/out 2>${dir}/err </dev/null; echo $? >${dir}/rc.tmp; mv ${dir}/rc.tmp ${dir}/rc`)} >/dev/null 2>&1 &\necho started`;
    const r = await o.source.script(launch, { timeoutMs: 30_000 });
    if (r.code !== 0 || !r.stdout.includes('started')) throw this.#error(`could not launch virsh migrate in ${d}: ${r.stderr.trim()}`);
    await this.#holdCap();
  }

  /** QEMU's max-bandwidth for the memory stream, set again until the first memory round has seen it. */
  async #holdCap(): Promise<void> {
    if (this.#memoryCap === undefined || this.#capHeld) return;
    await this.#qmp('migrate-set-parameters', { 'max-bandwidth': Math.round(this.#memoryCap) }).catch((error: unknown) => this.o.log?.(`kvm: ${this.o.source.host}: capping the memory stream: ${String(error)}`));
  }

  async poll(): Promise<MigrationStats> {
    if (this.#finished) return this.#finished.stats;
    const { o } = this;
    const tunnel = this.#tunnel!;
    const dir = shellQuote(tunnel.dir);
    const marker = `@@nc-${Math.floor(o.random() * 1e9)}`;
    const script = [
      `${virshLine(['domjobinfo', '--rawstats', o.domain])} </dev/null`,
      `echo ${marker}`,
      `${virshLine(['domstate', '--reason', o.domain])} </dev/null`,
      `echo ${marker}`,
      `cat ${dir}/rc 2>/dev/null`,
      `echo ${marker}`,
      tunnel.bytesScript(),
    ].join('\n');
    const r = await o.source.script(script, { timeoutMs: 60_000 });
    const [jobText = '', stateText = '', rcText = '', bytesText = ''] = r.stdout.split(`${marker}\n`);
    const now = o.clock.now();
    this.#readWire(bytesText);
    const rc = rcText.trim();
    if (rc !== '') return this.#finish(rc === '0', now);

    const sample: JobSample = { raw: parseRawJobStats(jobText), domState: parseDomState(stateText), atMs: now };
    const status = statusOf(sample);
    if (status === 'setup' || (status === 'active' && this.#memoryAt === undefined)) await this.#holdCap();
    if (status === 'active') this.#capHeld = true;
    if (status === 'active' && this.#memoryAt === undefined) this.#memoryAt = now;
    if (status === 'postcopy-active' && this.#postCopyDowntime === undefined) await this.#readPostCopyDowntime();
    this.#updateThroughput(sample.raw, now);
    return toMigrationStats(sample, { elapsedMs: now - this.#startedAt, throughputBytesPerSec: this.#throughput, ...this.#memoryWire() });
  }

  async setDowntimeLimit(ms: number): Promise<void> {
    this.#limitMs = ms;
    await this.#run(['migrate-setmaxdowntime', this.o.domain, String(Math.max(1, Math.round(ms)))]);
  }

  async setBandwidth(bytesPerSec: number | undefined): Promise<void> {
    this.#memoryCap = bytesPerSec;
    await this.#run(['migrate-setspeed', this.o.domain, String(bytesPerSec === undefined ? UNLIMITED_MIB : bandwidthMiB(bytesPerSec))]);
  }

  async engageAutoConverge(): Promise<void> {
    if (!this.#settings?.autoConverge) throw this.#error('auto-converge was not enabled when the migration started');
    await this.#qmp('migrate-set-parameters', { 'throttle-trigger-threshold': ENGAGED_THRESHOLD });
  }

  async switchToPostCopy(): Promise<void> {
    if (!this.#settings?.postCopy) throw this.#error('post-copy was not enabled when the migration started');
    await this.#run(['migrate-postcopy', this.o.domain]);
  }

  /** Cancels the job and waits (up to a minute) for libvirt to hand the guest back to the source. */
  async abort(): Promise<void> {
    if (this.#finished) return;
    const r = await this.o.source.tryRun(['domjobabort', this.o.domain], { vm: this.o.domain, operation: 'migrate' });
    if (r.error) this.o.log?.(`kvm: ${this.o.source.host}: domjobabort ${this.o.domain}: ${r.error.message}`);
    const until = this.o.clock.now() + 60_000;
    while (!this.#finished && this.o.clock.now() < until) {
      await this.o.clock.sleep(250);
      await this.poll();
    }
  }

  /** Closes the tunnel and removes the job's folder on the source. */
  async close(): Promise<void> {
    const tunnel = this.#tunnel;
    this.#tunnel = undefined;
    await tunnel?.close().catch((error: unknown) => this.o.log?.(`kvm: ${this.o.source.host}: closing the migration tunnel: ${String(error)}`));
  }

  async #finish(ok: boolean, now: number): Promise<MigrationStats> {
    const { o } = this;
    const dir = shellQuote(this.#tunnel!.dir);
    let completed: RawJobStats | undefined;
    let error: string | undefined;
    if (ok) {
      const c = await o.destination.tryRun(['domjobinfo', '--completed', '--keep-completed', '--rawstats', o.domain], { vm: o.domain, operation: 'migrate' });
      if (!c.error) completed = parseRawJobStats(c.stdout);
    } else {
      const e = await o.source.script(`cat ${dir}/err 2>/dev/null; echo; tail -n 20 /var/log/libvirt/qemu/${shellQuote(`${o.domain}.log`)} 2>/dev/null | grep -E 'qemu-system[^:]*: ' | tail -n 2`, { timeoutMs: 30_000 });
      error = e.stdout
        .split('\n')
        .map((l) => l.replace(/^error:\s*/, '').trim())
        .filter(Boolean)
        .join('; ')
        .slice(0, 800);
    }
    const n = completed?.numbers;
    const stats: MigrationStats = {
      status: ok ? 'completed' : /cancel|abort/i.test(error ?? '') ? 'cancelled' : 'failed',
      iteration: Math.max(0, (n?.get('memory_iteration') ?? 1) - 1),
      dataTotalBytes: n?.get('memory_total') ?? 0,
      dataProcessedBytes: n?.get('memory_processed') ?? 0,
      dataRemainingBytes: 0,
      dirtyRateBytesPerSec: 0,
      throughputBytesPerSec: this.#throughput,
      ...(ok ? downtimeOf(n, this.#postCopyDowntime) : {}),
      ...this.#memoryWire(),
      elapsedMs: now - this.#startedAt,
      ...(error ? { error } : {}),
    };
    this.#finished = { ok, stats, ...(completed ? { completed } : {}), ...(error ? { error } : {}) };
    return stats;
  }

  #memoryWire(): { wireBytes?: number } {
    return this.#wire.memory === undefined ? {} : { wireBytes: this.#wire.memory - (this.#wireAtStart.memory ?? 0) };
  }

  #readWire(text: string): void {
    const memory = /^memory=(\d+)$/m.exec(text)?.[1];
    const disk = /^disk=(\d+)$/m.exec(text)?.[1];
    // A counter that vanished (the client exited at the end) keeps its last value.
    if (memory) this.#wire.memory = Number(memory);
    if (disk) this.#wire.disk = Number(disk);
  }

  /** Memory throughput from the processed counter between samples, smoothed; QEMU's own rate before that. */
  #updateThroughput(raw: RawJobStats, now: number): void {
    const processed = raw.numbers.get('memory_processed');
    if (processed === undefined || raw.type !== JOB_TYPE.unbounded) return;
    const last = this.#last;
    this.#last = { processed, at: now };
    if (last && now > last.at && processed >= last.processed) {
      const rate = ((processed - last.processed) / (now - last.at)) * 1000;
      this.#throughput = this.#throughput > 0 ? 0.5 * this.#throughput + 0.5 * rate : rate;
    } else if (!this.#throughput) {
      this.#throughput = raw.numbers.get('memory_bps') ?? 0;
    }
  }

  async #readPostCopyDowntime(): Promise<void> {
    const out = await this.o.source
      .run(['qemu-monitor-command', this.o.domain, JSON.stringify({ execute: 'query-migrate' })], { vm: this.o.domain, operation: 'migrate' })
      .catch(() => '');
    const m = /"downtime":\s*(\d+)/.exec(out);
    if (m) this.#postCopyDowntime = Number(m[1]);
  }

  async #run(args: string[]): Promise<void> {
    await this.o.source.run(args, { vm: this.o.domain, operation: 'migrate' });
  }

  async #qmp(command: string, args: Record<string, unknown>): Promise<void> {
    const out = await this.o.source.run(['qemu-monitor-command', this.o.domain, JSON.stringify({ execute: command, arguments: args })], { vm: this.o.domain, operation: 'migrate' });
    if (/"error"/.test(out)) throw this.#error(`QEMU refused ${command} ${JSON.stringify(args)}: ${out.trim().slice(0, 300)}`);
  }

  async #writeFile(path: string, content: string): Promise<void> {
    const r = await this.o.source.script(`cat > ${shellQuote(path)}`, { stdin: content, timeoutMs: 30_000 });
    if (r.code !== 0) throw this.#error(`cannot write ${path}: ${r.stderr.trim()}`);
  }

  #error(message: string): NovaCronError {
    return new NovaCronError('Provider', 'server', `${this.o.source.host}: ${message}`, { context: this.o.source.context({ vm: this.o.domain, operation: 'migrate' }), hint: 'nothing was moved; the VM runs on the source', retryable: true });
  }
}

/** libvirt's total downtime, unless it reports none (post-copy): then QEMU's, read when post-copy began. */
function downtimeOf(n: ReadonlyMap<string, number> | undefined, postCopy: number | undefined): { downtimeMs?: number } {
  const libvirt = n?.get('downtime');
  if (libvirt !== undefined && libvirt > 0) return { downtimeMs: libvirt };
  if (postCopy !== undefined) return { downtimeMs: postCopy };
  return libvirt === undefined ? {} : { downtimeMs: libvirt };
}
