import type { protos } from '@google-cloud/compute';
import { AbortedError, throwIfAborted, TimeoutError, type Clock, type ErrorContext, type OperationContext } from '@novacron/core';
import type { GcpClients } from './clients.js';
import { isThrottling, mapGcpError, OperationError } from './errors.js';

type Operation = protos.google.cloud.compute.v1.IOperation;

/**
 * Call options for every Compute Engine call: no retries inside google-gax. The core's
 * retry middleware retries throttling and faults with backoff and full jitter, honours the
 * apply's AbortSignal and reports each retry; a second retry layer would multiply attempts.
 */
export const NO_RETRY = { retry: null, autoPaginate: false } as const;

/**
 * Settles with the call, or with AbortedError as soon as the signal fires. The client
 * library gives no handle to cancel a REST call once made; its answer is then ignored,
 * which is safe because every mutating call carries a request id.
 */
export function abortable<T>(call: Promise<T>, signal: AbortSignal | undefined, context: ErrorContext): Promise<T> {
  if (!signal) return call;
  throwIfAborted(signal, context);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new AbortedError(undefined, { context, cause: signal.reason }));
    signal.addEventListener('abort', onAbort, { once: true });
    call.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

export interface WaitOptions {
  readonly clients: GcpClients;
  readonly project: string;
  readonly clock: Clock;
  readonly timeoutMs: number;
  /** Pause between `wait` calls that came back before the operation finished. */
  readonly pollMs: number;
}

/**
 * Waits for a zone (or, without a zone, global) operation to finish, with the operations'
 * `wait` method (the server holds each call until the operation is done or about two
 * minutes pass). A throttled poll lengthens the pause instead of failing the operation. An
 * operation that finished with errors throws an OperationError carrying the first code.
 */
export async function waitOperation(op: Operation, zone: string | undefined, options: WaitOptions, where: ErrorContext, ctx: OperationContext): Promise<Operation> {
  let current = op;
  const deadline = options.clock.now() + options.timeoutMs;
  let pause = options.pollMs;
  while (current.status !== 'DONE') {
    throwIfAborted(ctx.signal, where);
    if (options.clock.now() >= deadline) {
      throw new TimeoutError(`${current.operationType ?? 'operation'} ${current.name} did not finish within ${Math.round(options.timeoutMs / 1000)}s`, {
        context: where,
        hint: 'it may still finish; the next plan sees the result. Raise the provider\'s waitTimeout if this is normal here',
      });
    }
    try {
      const request = { project: options.project, operation: current.name! };
      const call = zone
        ? options.clients.zoneOperations.wait({ ...request, zone }, { retry: null, timeout: 150_000 })
        : options.clients.globalOperations.wait(request, { retry: null, timeout: 150_000 });
      [current] = await abortable(call, ctx.signal, where);
      pause = options.pollMs;
      if (current.progress !== undefined && current.progress !== null) {
        ctx.onProgress?.({ operation: where.operation ?? 'wait', phase: `${current.operationType ?? 'operation'} ${String(current.status).toLowerCase()}`, fraction: Number(current.progress) / 100 });
      }
    } catch (error) {
      if (!isThrottling(error)) throw mapGcpError(error, where);
      pause = Math.min(30_000, pause * 2);
    }
    if (current.status !== 'DONE') await options.clock.sleep(pause, ctx.signal);
  }
  const errors = current.error?.errors ?? [];
  if (errors.length > 0) {
    throw new OperationError(errors[0]!.code ?? 'UNKNOWN', errors.map((e) => e.message ?? e.code).join('; '), current.httpErrorStatusCode ?? undefined);
  }
  return current;
}
