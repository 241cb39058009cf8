import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { Writable, type Readable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import type { ClientChannel } from 'ssh2';
import { AbortedError, NovaCronError, UnreachableError, UnsupportedError } from '@novacron/core';
import type { SshEndpoint } from '../config.js';
import { SshPool } from '../ssh/SshPool.js';
import type { Transport } from '../transport.js';

/**
 * Moving files between this machine and hosts, and between hosts, over the pooled SSH
 * connections: disk images out (export) and in (import), backups to a target host. The
 * command layer (`Transport.exec`) buffers output as text, which suits virsh but not a
 * multi-GiB binary stream; these open their own exec channel on the host's pooled
 * connection and stream with backpressure. Host to host goes through this machine, so hosts
 * need no SSH trust between them.
 *
 * Remote ends write into a `.part` file and rename it only when the transfer completed and
 * its checksum matched, so an interrupted transfer never leaves a file that looks whole.
 */

export interface StreamResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

async function channel(transport: Transport, endpoint: SshEndpoint, command: string, signal?: AbortSignal): Promise<ClientChannel> {
  if (!(transport instanceof SshPool)) {
    throw new UnsupportedError(`${endpoint.label}: streaming a file needs the SSH transport`, { context: { host: endpoint.label }, hint: 'use the default SSH pool (tests with a recording transport cannot move files)' });
  }
  const connection = await transport.connection(endpoint, signal);
  return new Promise((resolve, reject) => {
    connection.client.exec(command, (error, stream) => {
      if (error) reject(new UnreachableError(`${endpoint.label}: the host refused a new SSH channel: ${error.message}`, { context: { host: endpoint.label }, cause: error }));
      else resolve(stream);
    });
  });
}

/** Waits for a channel's exit status and close; collects what it prints unless its stdout is piped elsewhere. */
function finished(ch: ClientChannel, endpoint: SshEndpoint, signal: AbortSignal | undefined, collectStdout: boolean): Promise<StreamResult> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let code: number | null = null;
  if (collectStdout) ch.on('data', (b: Buffer) => out.push(b));
  ch.stderr.on('data', (b: Buffer) => err.push(b));
  ch.on('exit', (c: number | null) => (code = typeof c === 'number' ? c : null));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      ch.close();
      reject(new AbortedError(undefined, { context: { host: endpoint.label }, cause: signal?.reason }));
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    ch.on('close', () => {
      signal?.removeEventListener('abort', onAbort);
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    ch.on('error', (e: Error) => reject(new UnreachableError(`${endpoint.label}: the transfer broke off: ${e.message}`, { context: { host: endpoint.label }, cause: e })));
  });
}

function failIfError(stream: NodeJS.EventEmitter, reject: (e: unknown) => void): void {
  stream.on('error', reject);
}

/**
 * Runs `command` on the host with `source` (a local stream) as its stdin, gzipped in transit
 * when `gzip` (the command then reads the gzip stream: put `gunzip -c |` in front).
 */
export async function pushStream(transport: Transport, endpoint: SshEndpoint, command: string, source: Readable, options: { gzip?: boolean; signal?: AbortSignal } = {}): Promise<StreamResult> {
  const ch = await channel(transport, endpoint, command, options.signal);
  const done = finished(ch, endpoint, options.signal, true);
  const broken = new Promise<never>((_, reject) => {
    failIfError(source, reject);
    if (options.gzip) {
      const gz = createGzip({ level: 1 });
      failIfError(gz, reject);
      source.pipe(gz).pipe(ch);
    } else source.pipe(ch);
  });
  return Promise.race([done, broken]);
}

/** Runs `command` on the host and writes its stdout (gunzipped when `gunzip`) into `sink`. */
export async function pullStream(transport: Transport, endpoint: SshEndpoint, command: string, sink: Writable, options: { gunzip?: boolean; signal?: AbortSignal } = {}): Promise<StreamResult> {
  const ch = await channel(transport, endpoint, command, options.signal);
  ch.end();
  const done = finished(ch, endpoint, options.signal, false);
  const written = new Promise<void>((resolve, reject) => {
    failIfError(sink, reject);
    sink.on('finish', resolve);
    if (options.gunzip) {
      const gz = createGunzip();
      failIfError(gz, reject);
      ch.pipe(gz).pipe(sink);
    } else ch.pipe(sink);
  });
  const [result] = await Promise.all([done, written]);
  return result;
}

/**
 * Copies a file from one host to another through this machine: `cat` there, into a `.part`
 * file here that is checked against the source's sha256 and only then renamed to `toPath`.
 */
export async function relayFile(transport: Transport, from: SshEndpoint, fromPath: string, to: SshEndpoint, toPath: string, q: (s: string) => string, signal?: AbortSignal): Promise<{ bytes: number; sha256: string }> {
  const sum = await pullText(transport, from, `sha256sum ${q(fromPath)} && stat -c %s ${q(fromPath)}`, signal);
  const [sha256, size] = [sum.split(/\s+/)[0]!, Number(sum.trim().split('\n').at(-1))];
  const part = `${toPath}.part`;
  const receive = `set -e; d=$(dirname ${q(toPath)}); mkdir -p "$d"; cat > ${q(part)}; ` +
    `s=$(sha256sum ${q(part)} | cut -d' ' -f1); if [ "$s" != ${q(sha256)} ]; then rm -f ${q(part)}; echo "error: checksum mismatch after copy ($s)" >&2; exit 1; fi; mv -f ${q(part)} ${q(toPath)}`;
  const source = await channel(transport, from, `cat ${q(fromPath)}`, signal);
  source.end();
  const sourceDone = finished(source, from, signal, false);
  const target = await channel(transport, to, receive, signal);
  const targetDone = finished(target, to, signal, true);
  source.pipe(target);
  // A receiving end that stops early (no space, a failed check) must not leave the sender
  // blocked on a full channel.
  target.on('exit', (code: number | null) => {
    if (code !== 0) source.close();
  });
  const [s, t] = await Promise.all([sourceDone, targetDone]);
  if (t.code !== 0) throw streamError(to, `writing ${toPath}`, t);
  if (s.code !== 0) throw streamError(from, `reading ${fromPath}`, s);
  return { bytes: size, sha256 };
}

/** A small command's stdout (through the channel, not the command layer, so a transfer's checks share its connection). */
async function pullText(transport: Transport, endpoint: SshEndpoint, command: string, signal?: AbortSignal): Promise<string> {
  const ch = await channel(transport, endpoint, command, signal);
  ch.end();
  const r = await finished(ch, endpoint, signal, true);
  if (r.code !== 0) throw streamError(endpoint, command, r);
  return r.stdout;
}

export function streamError(endpoint: SshEndpoint, what: string, result: StreamResult): NovaCronError {
  const detail = result.stderr.trim().split('\n').filter(Boolean).slice(-3).join(' ') || `exit ${result.code}`;
  return new NovaCronError('Provider', 'server', `${endpoint.label}: ${what} failed: ${detail}`, {
    context: { host: endpoint.label },
    hint: 'check free space and permissions on the host; the transfer can be repeated',
  });
}

/**
 * A file written from a stream, sparse: 1 MiB blocks of zeros are skipped rather than
 * written (a raw disk image is mostly holes), and the file is cut to its full length at the
 * end. Hashes what passes through.
 */
export class SparseFileWriter extends Writable {
  readonly #hash = createHash('sha256');
  #file: FileHandle | undefined;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #position = 0;
  #bytes = 0;

  constructor(
    readonly path: string,
    readonly blockBytes = 1024 * 1024,
  ) {
    super();
  }

  get bytes(): number {
    return this.#bytes;
  }

  get sha256(): string {
    return this.#hash.copy().digest('hex');
  }

  override _construct(callback: (error?: Error | null) => void): void {
    open(this.path, 'w').then(
      (f) => {
        this.#file = f;
        callback();
      },
      (e: Error) => callback(e),
    );
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#hash.update(chunk);
    this.#bytes += chunk.length;
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    if (this.#pendingBytes < this.blockBytes) return callback();
    const all = Buffer.concat(this.#pending);
    const whole = all.length - (all.length % this.blockBytes);
    this.#pending = whole < all.length ? [all.subarray(whole)] : [];
    this.#pendingBytes = all.length - whole;
    this.#flush(all.subarray(0, whole)).then(() => callback(), (e: Error) => callback(e));
  }

  override _final(callback: (error?: Error | null) => void): void {
    const rest = Buffer.concat(this.#pending);
    this.#flush(rest)
      .then(() => this.#file!.truncate(this.#bytes))
      .then(() => this.#file!.close())
      .then(() => callback(), (e: Error) => callback(e));
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const file = this.#file;
    this.#file = undefined;
    if (!file) return callback(error);
    file.close().then(() => callback(error), () => callback(error));
  }

  async #flush(data: Buffer): Promise<void> {
    for (let at = 0; at < data.length; at += this.blockBytes) {
      const block = data.subarray(at, at + this.blockBytes);
      if (!isZero(block)) await this.#file!.write(block, 0, block.length, this.#position);
      this.#position += block.length;
    }
  }
}

const ZERO = Buffer.alloc(64 * 1024);
function isZero(block: Buffer): boolean {
  for (let at = 0; at < block.length; at += ZERO.length) {
    const part = block.subarray(at, at + ZERO.length);
    if (!part.equals(ZERO.subarray(0, part.length))) return false;
  }
  return true;
}

export function readLocal(path: string): Readable {
  return createReadStream(path, { highWaterMark: 1024 * 1024 });
}
