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
 * AWS error codes by what they mean to NovaCron. Kept as named rule sets rather than `if`
 * branches in each operation, so every call site maps errors alike and a new code is one line.
 */
const THROTTLING = new Set([
  'RequestLimitExceeded', 'Throttling', 'ThrottlingException', 'ThrottledException', 'RequestThrottled',
  'RequestThrottledException', 'TooManyRequestsException', 'SlowDown', 'EC2ThrottledException',
  'BandwidthLimitExceeded', 'PriorRequestNotComplete', 'ProvisionedThroughputExceededException',
]);
/** The zone is short of this instance type right now: another type or zone may work. */
const CAPACITY = new Set([
  'InsufficientInstanceCapacity', 'Server.InsufficientInstanceCapacity', 'InsufficientHostCapacity',
  'InsufficientReservedInstanceCapacity', 'InsufficientCapacity', 'InsufficientVolumeCapacity',
  'InsufficientFreeAddressesInSubnet', 'InsufficientCapacityOnOutpost',
]);
/** An account quota: no other zone or type of the same family helps; a quota increase does. */
const QUOTA = new Set([
  'InstanceLimitExceeded', 'VcpuLimitExceeded', 'VolumeLimitExceeded', 'SnapshotLimitExceeded',
  'MaxSpotInstanceCountExceeded', 'ResourceLimitExceeded', 'AddressLimitExceeded', 'ResourceCountExceeded',
  'ImageLimitExceeded', 'ResourceLimitExceededException',
]);
const AUTH = new Set([
  'AuthFailure', 'UnauthorizedOperation', 'InvalidClientTokenId', 'ExpiredToken', 'ExpiredTokenException',
  'SignatureDoesNotMatch', 'AccessDenied', 'AccessDeniedException', 'OptInRequired', 'Blocked',
  'CredentialsProviderError', 'InvalidAccessKeyId', 'TokenRefreshRequired', 'InvalidToken', 'MissingAuthenticationToken',
  'UnrecognizedClientException', 'PendingVerification',
]);
const CONFLICT = new Set([
  'IncorrectInstanceState', 'IncorrectState', 'IdempotentParameterMismatch', 'InvalidInstanceID', 'OperationNotPermitted',
  'ConcurrentSnapshotLimitExceeded', 'InvalidStateTransition', 'InvalidState',
]);
/** The state will move on by itself (an instance still stopping, say): worth another try later. */
const CONFLICT_RETRYABLE = new Set(['IncorrectInstanceState', 'IncorrectState', 'ConcurrentSnapshotLimitExceeded', 'InvalidStateTransition']);
const UNSUPPORTED = new Set(['Unsupported', 'UnsupportedOperation', 'UnsupportedInstanceType', 'UnsupportedHibernationConfiguration', 'NotImplemented']);
const SERVER = new Set([
  'InternalError', 'InternalFailure', 'ServiceUnavailable', 'Unavailable', 'ServerInternal', 'InternalServerError',
  'ServiceUnavailableException', 'RequestTimeout', 'RequestTimeoutException',
]);
const NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH']);

/** What an AWS error looks like from the outside: SDK v3 service exceptions, credential errors, socket errors. */
interface AwsErrorShape {
  readonly name?: string;
  readonly code?: string;
  readonly Code?: string;
  readonly message?: string;
  readonly $fault?: 'client' | 'server';
  readonly $metadata?: { readonly httpStatusCode?: number; readonly requestId?: string };
}

/** The error code of anything an AWS SDK call can throw. */
export function awsErrorCode(error: unknown): string {
  if (typeof error !== 'object' || error === null) return 'Unknown';
  const e = error as AwsErrorShape;
  return e.Code ?? (typeof e.code === 'string' && !/^\d+$/.test(e.code) ? e.code : undefined) ?? e.name ?? 'Unknown';
}

/** True for codes that mean "this zone has no room for this type now", the cue to try another. */
export function isCapacityShortage(code: string): boolean {
  return CAPACITY.has(code);
}

/** True when an error names one resource (so splitting a batched call isolates it). */
export function isPerResourceError(code: string): boolean {
  return /^Invalid(Instance|Snapshot|Volume)ID\./.test(code) || CONFLICT.has(code);
}

export function isThrottling(error: unknown): boolean {
  if (error instanceof ThrottledError || (NovaCronError.isInstance(error) && error.code === 'Throttled')) return true;
  return THROTTLING.has(awsErrorCode(error));
}

/**
 * Turns anything an AWS call threw into the core's error types, with where it happened.
 * NovaCron errors pass through unchanged.
 */
export function mapAwsError(error: unknown, context: ErrorContext, api = 'EC2'): NovaCronError {
  if (NovaCronError.isInstance(error)) return error;
  const e = (typeof error === 'object' && error !== null ? error : {}) as AwsErrorShape;
  const code = awsErrorCode(error);
  const requestId = e.$metadata?.requestId;
  const said = (e.message ?? String(error)).trim() || code;
  const message = `${api} refused ${context.operation ?? 'the call'}: ${said} (${code}${requestId ? `, request ${requestId}` : ''})`;
  const options = { context, cause: error };

  if (code === 'AbortError' || e.name === 'AbortError') return new AbortedError('the operation was aborted', options);
  if (THROTTLING.has(code)) {
    return new ThrottledError(message, { ...options, hint: 'the request rate limit of the account was reached; NovaCron retries with backoff, and lower apply concurrency helps' });
  }
  if (CAPACITY.has(code)) {
    return new CapacityExceededError(message, { ...options, hint: 'AWS has no capacity for this instance type in this zone right now; allow other zones or instance types, or try later' });
  }
  if (QUOTA.has(code)) {
    return new CapacityExceededError(message, { ...options, hint: 'an account quota is used up: request an increase in the Service Quotas console, or free resources' });
  }
  if (AUTH.has(code)) return new AuthFailedError(message, { ...options, hint: authHint(code) });
  if (code.endsWith('.NotFound') || code === 'NotFound' || code === 'NoSuchKey' || code === 'NoSuchBucket' || code === 'NoSuchUpload') {
    return new NotFoundError(message, { ...options, hint: notFoundHint(code) });
  }
  if (code.endsWith('.Malformed') || code === 'InvalidParameterValue' || code === 'InvalidParameterCombination' || code === 'MissingParameter' || code === 'InvalidParameter' || code === 'ValidationError') {
    return new InvalidInputError(message, { ...options, hint: 'a value NovaCron sent was refused; check the provider config (subnets, security groups, key name, images) in the fleet file' });
  }
  if (CONFLICT.has(code)) {
    return new ConflictError(message, {
      ...options,
      retryable: CONFLICT_RETRYABLE.has(code),
      ...(code === 'IdempotentParameterMismatch' ? { hint: 'an earlier request with the same client token asked for something else; this resolves itself once AWS forgets the token (about a day)' } : {}),
    });
  }
  if (UNSUPPORTED.has(code)) return new UnsupportedError(message, { ...options, hint: 'this zone or account does not offer that; choose another instance type or zone' });
  if (SERVER.has(code) || e.$fault === 'server' || (e.$metadata?.httpStatusCode ?? 0) >= 500) {
    return new UnreachableError(message, { ...options, hint: 'AWS reported a fault on its side; NovaCron retries' });
  }
  if (code === 'TimeoutError') return new TimeoutError(message, options);
  if (NETWORK.has(code) || /socket hang up|connect ECONNREFUSED|getaddrinfo/i.test(said)) {
    return new UnreachableError(`${api} could not be reached for ${context.operation ?? 'the call'}: ${said}`, {
      ...options,
      hint: 'check the network and the provider\'s endpoint/region setting',
    });
  }
  return new NovaCronError('Provider', e.$fault === 'client' ? 'client' : 'server', message, options);
}

function authHint(code: string): string {
  switch (code) {
    case 'CredentialsProviderError':
      return 'no AWS credentials were found: set AWS_PROFILE (or the provider\'s "profile"), AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with a role (instance profile, IRSA, SSO); see docs/aws.md';
    case 'UnauthorizedOperation':
    case 'AccessDenied':
    case 'AccessDeniedException':
      return 'the credentials lack an IAM permission for this call: attach the policy in docs/aws.md (`aws sts decode-authorization-message` shows which one)';
    case 'ExpiredToken':
    case 'ExpiredTokenException':
    case 'TokenRefreshRequired':
      return 'the session credentials have expired: refresh them (aws sso login, or re-assume the role)';
    case 'OptInRequired':
      return 'the region is not enabled for this account, or the account is not subscribed: enable it in the AWS console';
    default:
      return 'AWS did not accept the credentials: check AWS_PROFILE / the provider\'s "profile" and that the keys are current';
  }
}

function notFoundHint(code: string): string | undefined {
  if (code.startsWith('InvalidAMIID')) return 'the AMI in the provider\'s "images" does not exist in this region or is not shared with the account';
  if (code.startsWith('InvalidSubnetID')) return 'a subnet in "subnetIds" does not exist in this region';
  if (code.startsWith('InvalidGroup')) return 'a security group in "securityGroupIds" does not exist in this region';
  if (code.startsWith('InvalidKeyPair')) return 'the "keyName" key pair does not exist in this region';
  if (code === 'NoSuchBucket') return 'the "imageBucket" does not exist or is in another account';
  return undefined;
}
