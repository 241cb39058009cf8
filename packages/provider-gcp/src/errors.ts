import {
  AbortedError,
  AuthFailedError,
  CapacityExceededError,
  ConflictError,
  InvalidInputError,
  NotFoundError,
  NovaCronError,
  ThrottledError,
  TimeoutError,
  UnreachableError,
  UnsupportedError,
  type ErrorContext,
} from '@novacron/core';

/**
 * What a Compute Engine error says, whichever way it arrived: an HTTP error from the REST
 * transport (status, and the JSON body `{error: {code, message, errors: [{reason}], status}}`),
 * a gRPC-style GoogleError (numeric code, reason), or an operation that finished with
 * `error.errors[].code` (ZONE_RESOURCE_POOL_EXHAUSTED and the like arrive this way).
 */
export interface GcpProblem {
  /** HTTP status, when known. */
  readonly status?: number;
  /** The most specific code: an operation error code, else a reason, else the status name. */
  readonly code: string;
  readonly message: string;
}

/** Operation error codes and API reasons by what they mean to NovaCron, as named rule sets. */
const CAPACITY = new Set(['ZONE_RESOURCE_POOL_EXHAUSTED', 'ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS', 'RESOURCE_POOL_EXHAUSTED', 'STOCKOUT']);
const QUOTA = new Set(['QUOTA_EXCEEDED', 'quotaExceeded', 'RESOURCE_EXHAUSTED_QUOTA']);
const THROTTLING = new Set(['rateLimitExceeded', 'userRateLimitExceeded', 'RATE_LIMIT_EXCEEDED', 'RESOURCE_EXHAUSTED']);
const NOT_READY = new Set(['resourceNotReady', 'RESOURCE_NOT_READY', 'resourceInUseByAnotherResource', 'RESOURCE_IN_USE_BY_ANOTHER_RESOURCE', 'conditionNotMet', 'CONDITION_NOT_MET']);
const UNSUPPORTED = new Set(['UNSUPPORTED_OPERATION', 'unsupportedOperation', 'MACHINE_TYPE_NOT_AVAILABLE']);

/** gRPC status codes as the REST transport's errors sometimes carry them. */
const GRPC: Record<number, number> = { 3: 400, 5: 404, 6: 409, 7: 403, 8: 429, 9: 412, 13: 500, 14: 503, 16: 401, 4: 504 };

export function gcpProblem(error: unknown): GcpProblem {
  const e = (typeof error === 'object' && error !== null ? error : {}) as Record<string, unknown>;
  const raw = typeof e['message'] === 'string' ? (e['message'] as string) : String(error);
  let body: { error?: { code?: number; message?: string; status?: string; errors?: { reason?: string; message?: string }[] } } | undefined;
  try {
    body = raw.trim().startsWith('{') ? JSON.parse(raw) : undefined;
  } catch {
    body = undefined;
  }
  const reason = body?.error?.errors?.[0]?.reason ?? (typeof e['reason'] === 'string' ? (e['reason'] as string) : undefined);
  const codeField = e['code'];
  const status =
    body?.error?.code ??
    (typeof e['status'] === 'number' ? (e['status'] as number) : undefined) ??
    (typeof codeField === 'number' ? (codeField >= 100 ? codeField : GRPC[codeField]) : undefined);
  const name = typeof codeField === 'string' && !/^\d+$/.test(codeField) ? codeField : undefined;
  return {
    ...(status !== undefined ? { status } : {}),
    code: reason ?? body?.error?.status ?? name ?? (status !== undefined ? `HTTP ${status}` : (e['name'] as string | undefined) ?? 'Unknown'),
    message: body?.error?.message ?? raw,
  };
}

/** An operation that finished with errors, as an Error the mapper understands. */
export class OperationError extends Error {
  readonly code: string;
  readonly status: number | undefined;
  constructor(code: string, message: string, status?: number) {
    super(message);
    this.name = 'OperationError';
    this.code = code;
    this.status = status;
  }
}

export function isCapacityShortage(error: unknown): boolean {
  return CAPACITY.has(gcpProblem(error).code);
}

export function isThrottling(error: unknown): boolean {
  if (NovaCronError.isInstance(error)) return error.code === 'Throttled';
  const p = gcpProblem(error);
  return p.status === 429 || THROTTLING.has(p.code) || (p.status === 403 && /rate ?limit/i.test(p.message));
}

/**
 * Turns anything a Compute Engine or Cloud Storage call threw into the core's error types,
 * with where it happened. NovaCron errors pass through unchanged.
 */
export function mapGcpError(error: unknown, context: ErrorContext, api = 'Compute Engine'): NovaCronError {
  if (NovaCronError.isInstance(error)) return error;
  const options = { context, cause: error };
  const e = (typeof error === 'object' && error !== null ? error : {}) as Record<string, unknown>;
  if (e['name'] === 'AbortError') return new AbortedError('the operation was aborted', options);
  const raw = typeof e['message'] === 'string' ? (e['message'] as string) : String(error);
  if (/Could not load the default credentials|Unable to detect a Project Id|invalid_grant|Could not refresh access token/i.test(raw)) {
    return new AuthFailedError(`${api} credentials are missing or unusable: ${raw}`, {
      ...options,
      hint: 'run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service account key, or run with an attached service account (docs/gcp.md)',
    });
  }
  const p = gcpProblem(error);
  const message = `${api} refused ${context.operation ?? 'the call'}: ${p.message} (${p.code}${p.status !== undefined && !p.code.startsWith('HTTP') ? `, HTTP ${p.status}` : ''})`;

  if (isThrottling(error) && !QUOTA.has(p.code)) {
    return new ThrottledError(message, { ...options, hint: 'the project\'s API rate limit was reached; NovaCron retries with backoff, and lower apply concurrency helps' });
  }
  if (CAPACITY.has(p.code)) {
    return new CapacityExceededError(message, { ...options, hint: 'the zone has no capacity for this machine type right now; allow other zones or machine types, or try later' });
  }
  if (QUOTA.has(p.code)) {
    return new CapacityExceededError(message, { ...options, hint: 'a project quota is used up (CPUs, disks, addresses): request an increase under IAM & Admin → Quotas' });
  }
  if (p.status === 401) {
    return new AuthFailedError(message, { ...options, hint: 'the credentials were refused: refresh them with `gcloud auth application-default login`, or check GOOGLE_APPLICATION_CREDENTIALS' });
  }
  if (p.status === 403 || p.code === 'PERMISSION_DENIED' || p.code === 'forbidden' || p.code === 'accessNotConfigured') {
    return new AuthFailedError(message, {
      ...options,
      hint: p.code === 'accessNotConfigured' || /has not been used|is disabled/i.test(p.message)
        ? 'enable the Compute Engine API for the project: gcloud services enable compute.googleapis.com'
        : 'the account lacks a permission for this call: grant the roles in docs/gcp.md (roles/compute.instanceAdmin.v1 and friends)',
    });
  }
  if (p.status === 404 || p.code === 'notFound' || p.code === 'NOT_FOUND') return new NotFoundError(message, options);
  if (NOT_READY.has(p.code) || p.status === 412) return new ConflictError(message, { ...options, retryable: true });
  if (p.status === 409 || p.code === 'alreadyExists' || p.code === 'ALREADY_EXISTS') return new ConflictError(message, options);
  if (UNSUPPORTED.has(p.code)) return new UnsupportedError(message, { ...options, hint: 'this zone does not offer that; choose another machine type or zone' });
  if (p.status === 400 || p.code === 'invalid' || p.code === 'badRequest' || p.code === 'INVALID_ARGUMENT') {
    return new InvalidInputError(message, { ...options, hint: 'a value NovaCron sent was refused; check the provider config (project, zones, network, images) in the fleet file' });
  }
  if (p.status === 504 || p.code === 'DEADLINE_EXCEEDED') return new TimeoutError(message, options);
  if ((p.status ?? 0) >= 500 || p.code === 'backendError' || p.code === 'internalError') {
    return new UnreachableError(message, { ...options, hint: 'Google reported a fault on its side; NovaCron retries' });
  }
  const network = typeof e['code'] === 'string' && /^E[A-Z]+$/.test(e['code'] as string);
  if (network || /ECONNREFUSED|ECONNRESET|socket hang up|getaddrinfo|request to .* failed/i.test(raw)) {
    return new UnreachableError(`${api} could not be reached for ${context.operation ?? 'the call'}: ${raw}`, { ...options, hint: 'check the network and the provider\'s endpoint setting' });
  }
  return new NovaCronError('Provider', (p.status ?? 500) < 500 ? 'client' : 'server', message, options);
}
