import { spawn } from 'node:child_process';
import type { SshEndpoint } from './config.js';
import type { ExecRequest, ExecResult, Transport } from './transport.js';

/**
 * Transports for tests, exported so extensions (migration, snapshots) test the same way:
 * record the command lines the virsh layer builds, or fail a chosen command of a real run.
 */
export interface RecordedCommand {
  readonly host: string;
  readonly command: string;
  readonly stdin?: Buffer | string;
}

/**
 * Runs every command with the local /bin/sh, as a host's shell would (stdin passed on):
 * the command layer tested for real without a host. `env` is the shell's whole
 * environment — put fake tools (a `virsh` script) first on its PATH.
 */
export function localShellTransport(env: NodeJS.ProcessEnv = process.env): Transport {
  return {
    exec: (_endpoint, request) =>
      new Promise((resolve, reject) => {
        const child = spawn('/bin/sh', ['-c', request.command], { env, stdio: ['pipe', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ stdout, stderr, code }));
        // A command that never reads its stdin may have exited already: EPIPE is no failure.
        child.stdin.on('error', () => undefined);
        child.stdin.end(request.stdin ?? '');
      }),
  };
}

/** Answers every command with `respond` (default: exit 0, no output) and records it. */
export function recordingTransport(respond: (command: string, host: string) => Partial<ExecResult> = () => ({})): Transport & { readonly commands: RecordedCommand[] } {
  const commands: RecordedCommand[] = [];
  return {
    commands,
    async exec(endpoint: SshEndpoint, request: ExecRequest): Promise<ExecResult> {
      commands.push({ host: endpoint.label, command: request.command, ...(request.stdin !== undefined ? { stdin: request.stdin } : {}) });
      return { stdout: '', stderr: '', code: 0, ...respond(request.command, endpoint.label) };
    },
  };
}

/**
 * Passes commands to `inner` until `shouldFail(command, n)` says yes (n counts from 1), then
 * answers that one as a failed virsh command with `stderr` (without running it): a fault
 * injected at an exact step of a real operation.
 */
export function failingTransport(
  inner: Transport,
  shouldFail: (command: string, n: number) => boolean,
  stderr = 'error: injected failure',
): Transport & { readonly failed: string[] } {
  let n = 0;
  const failed: string[] = [];
  return {
    failed,
    async exec(endpoint, request) {
      n++;
      if (shouldFail(request.command, n)) {
        failed.push(request.command);
        return { stdout: '', stderr, code: 1 };
      }
      return inner.exec(endpoint, request);
    },
    close: () => inner.close?.() ?? Promise.resolve(),
  };
}
