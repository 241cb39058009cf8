import type { SshEndpoint } from './config.js';

/** One command to run on a host: a complete POSIX shell command line, every argument quoted. */
export interface ExecRequest {
  readonly command: string;
  /** Written to the command's stdin, which is then closed. */
  readonly stdin?: Buffer | string;
  readonly signal?: AbortSignal;
  /** Fails with a TimeoutError after this long (the channel is closed; the command may go on). */
  readonly timeoutMs?: number;
  /** Forward the user's agent into this command (only where the endpoint's `forwardAgent` allows it). */
  readonly agentForward?: boolean;
}

export interface ExecResult {
  readonly stdout: string;
  readonly stderr: string;
  /** Exit status; null when the command died of a signal. */
  readonly code: number | null;
}

/**
 * The seam between NovaCron and a host: run one command line, get its output. The SSH pool
 * implements it for real; tests implement it to record the command lines the virsh layer
 * builds (no host needed) or to fail the Nth command (a fault mid-create).
 *
 * Implementations reject with typed NovaCron errors (UnreachableError, AuthFailedError,
 * TimeoutError, AbortedError) naming the host; a command that ran and exited non-zero is
 * not an error here, it is an ExecResult with that code.
 */
export interface Transport {
  exec(host: SshEndpoint, request: ExecRequest): Promise<ExecResult>;
  close?(): Promise<void>;
}
