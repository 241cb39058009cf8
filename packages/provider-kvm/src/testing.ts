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
