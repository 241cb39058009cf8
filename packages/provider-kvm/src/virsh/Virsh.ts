import { randomBytes } from 'node:crypto';
import type { ErrorContext, NovaCronError } from '@novacron/core';
import type { SshEndpoint } from '../config.js';
import { shellCommand, shellQuote } from '../shell/shellQuote.js';
import type { ExecResult, Transport } from '../transport.js';
import { virshError } from './virshErrors.js';

/** libvirt's system instance, where VMs that outlive a login session live. */
export const LIBVIRT_URI = 'qemu:///system';

export interface VirshCallOptions {
  readonly stdin?: Buffer | string;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
  /** Error context: the VM and operation this command is part of. */
  readonly vm?: string;
  readonly operation?: string;
}

export interface VirshResult {
  readonly args: readonly string[];
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number | null;
  /** The typed error for a failed command (not thrown by `tryRun` and `batch`). */
  readonly error?: NovaCronError & { rule?: string };
}

/** The command line for one virsh call: English messages, quiet, the system URI, every argument quoted. */
export function virshCommandLine(args: readonly string[], uri = LIBVIRT_URI): string {
  return `LC_ALL=C ${shellCommand(['virsh', '-q', '-c', uri, ...args])}`;
}

/**
 * virsh on one host, through the transport. This is the command layer the provider and
 * its extensions (migration, snapshots) build on: every call is argv (never a shell
 * string), quoted in one place, and every failure a typed error naming the host, the VM
 * and the operation.
 */
export class Virsh {
  constructor(
    readonly transport: Transport,
    readonly endpoint: SshEndpoint,
    readonly provider: string,
    readonly uri: string = LIBVIRT_URI,
    private readonly nonce: () => string = () => randomBytes(8).toString('hex'),
  ) {}

  get host(): string {
    return this.endpoint.label;
  }

  context(options: { vm?: string; operation?: string } = {}): ErrorContext {
    return { provider: this.provider, host: this.host, ...(options.vm ? { vm: options.vm } : {}), ...(options.operation ? { operation: options.operation } : {}) };
  }

  /** Runs one command; resolves to its stdout, or throws its typed error. */
  async run(args: readonly string[], options: VirshCallOptions = {}): Promise<string> {
    const result = await this.tryRun(args, options);
    if (result.error) throw result.error;
    return result.stdout;
  }

  /** Runs one command and reports failure in the result instead of throwing. Transport errors still throw. */
  async tryRun(args: readonly string[], options: VirshCallOptions = {}): Promise<VirshResult> {
    const result = await this.transport.exec(this.endpoint, {
      command: virshCommandLine(args, this.uri),
      ...(options.stdin !== undefined ? { stdin: options.stdin } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    });
    return this.#result(args, result, options);
  }

  /**
   * Several commands in one round trip, each run as its own virsh process with its own exit
   * status and output (separated by a per-call random marker, so no output can forge one).
   * With `stopOnError` the commands after a failed one do not run (their results are absent).
   * `options.stdin` goes to the command at index `stdinFor` (`define /dev/stdin`); the others
   * read nothing.
   */
  async batch(commands: readonly (readonly string[])[], options: VirshCallOptions & { stopOnError?: boolean; stdinFor?: number } = {}): Promise<VirshResult[]> {
    if (commands.length === 0) return [];
    const marker = `@@novacron-${this.nonce()}`;
    const script = commands
      .map((args, i) => {
        const stop = options.stopOnError ? ' ; [ "$rc" -eq 0 ] || exit 0' : '';
        return `${virshCommandLine(args, this.uri)}${i === options.stdinFor ? '' : ' </dev/null'}; rc=$?; printf '\\n%s %d %d\\n' ${marker} ${i} "$rc"; printf '\\n%s %d\\n' ${marker} ${i} >&2${stop}`;
      })
      .join('\n');
    const result = await this.transport.exec(this.endpoint, {
      command: script,
      ...(options.stdin !== undefined && options.stdinFor !== undefined ? { stdin: options.stdin } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    });
    const outs = splitMarked(result.stdout, marker);
    const errs = splitMarked(result.stderr, marker);
    const results: VirshResult[] = [];
    for (const [i, args] of commands.entries()) {
      const out = outs.get(i);
      if (!out) break; // not reached (stopOnError, or the script died)
      results.push(this.#result(args, { stdout: out.text, stderr: errs.get(i)?.text ?? '', code: out.code }, options));
    }
    if (results.length === 0 && result.code !== 0) {
      // The script itself failed before the first marker (no shell, say).
      results.push(this.#result(commands[0]!, result, options));
    }
    return results;
  }

  /** Runs a fixed script (no user input in it, or only quoted input) and returns its raw result. */
  script(script: string, options: VirshCallOptions = {}): Promise<ExecResult> {
    return this.transport.exec(this.endpoint, {
      command: script,
      ...(options.stdin !== undefined ? { stdin: options.stdin } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    });
  }

  /** A virsh invocation for use inside scripts this layer writes (quoted, English, quiet). */
  commandLine(args: readonly string[]): string {
    return virshCommandLine(args, this.uri);
  }

  quote(arg: string): string {
    return shellQuote(arg);
  }

  #result(args: readonly string[], result: ExecResult, options: VirshCallOptions): VirshResult {
    const base = { args, stdout: result.stdout, stderr: result.stderr, code: result.code };
    if (result.code === 0) return base;
    return { ...base, error: virshError(result.stderr, `virsh ${args[0] ?? ''}`, this.context(options), result.code) };
  }
}

/** Splits `text` at lines `\n<marker> <i>[ <rc>]\n` into each command's part. */
export function splitMarked(text: string, marker: string): Map<number, { text: string; code: number | null }> {
  const out = new Map<number, { text: string; code: number | null }>();
  const re = new RegExp(`\\n${marker} (\\d+)(?: (\\d+))?\\n`, 'g');
  let from = 0;
  for (const m of text.matchAll(re)) {
    out.set(Number(m[1]), { text: text.slice(from, m.index), code: m[2] === undefined ? null : Number(m[2]) });
    from = m.index + m[0].length;
  }
  return out;
}
