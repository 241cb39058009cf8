import { describe, expect, it } from 'vitest';
import { gcpProblem, mapGcpError, OperationError } from './errors.js';
import { apiError } from './testing/fakeCompute.js';

const where = { provider: 'gcp', vm: 'shop-web-0', host: 'gcp/us-central1-a', operation: 'create' };

/** What the REST transport throws: the HTTP status as `code`, the response body as the message. */
function httpError(status: number, reason: string, statusName: string, message = `message for ${reason}`) {
  return Object.assign(new Error(JSON.stringify(apiError(status, message, reason, statusName))), { name: 'GaxiosError', code: status, status });
}

describe('mapGcpError', () => {
  it.each([
    [httpError(429, 'rateLimitExceeded', 'RESOURCE_EXHAUSTED'), 'Throttled', true],
    [httpError(403, 'userRateLimitExceeded', 'PERMISSION_DENIED'), 'Throttled', true],
    [new OperationError('ZONE_RESOURCE_POOL_EXHAUSTED', 'The zone does not have enough resources', 503), 'CapacityExceeded', false],
    [new OperationError('QUOTA_EXCEEDED', "Quota 'CPUS' exceeded", 403), 'CapacityExceeded', false],
    [httpError(403, 'quotaExceeded', 'PERMISSION_DENIED'), 'CapacityExceeded', false],
    [httpError(401, 'authError', 'UNAUTHENTICATED'), 'AuthFailed', false],
    [httpError(403, 'forbidden', 'PERMISSION_DENIED'), 'AuthFailed', false],
    [httpError(404, 'notFound', 'NOT_FOUND'), 'NotFound', false],
    [httpError(409, 'alreadyExists', 'ALREADY_EXISTS'), 'Conflict', false],
    [httpError(412, 'conditionNotMet', 'FAILED_PRECONDITION'), 'Conflict', true],
    [httpError(400, 'resourceNotReady', 'FAILED_PRECONDITION'), 'Conflict', true],
    [httpError(400, 'invalid', 'INVALID_ARGUMENT'), 'InvalidInput', false],
    [httpError(503, 'backendError', 'UNAVAILABLE'), 'Unreachable', true],
  ] as const)('%#: becomes %s (retryable %s) with the call context', (error, code, retryable) => {
    expect(mapGcpError(error, where)).toMatchObject({ code, retryable, context: where });
  });

  it('reads the reason and message out of the body the REST transport puts in the message', () => {
    expect(gcpProblem(httpError(404, 'notFound', 'NOT_FOUND', "The resource 'projects/p/zones/z/instances/x' was not found"))).toEqual({
      status: 404,
      code: 'notFound',
      message: "The resource 'projects/p/zones/z/instances/x' was not found",
    });
  });

  it('says how to get credentials when there are none, and how to enable the API', () => {
    expect(mapGcpError(new Error('Could not load the default credentials. Browse to https://cloud.google.com/docs/authentication/getting-started for more information.'), where)).toMatchObject({
      code: 'AuthFailed',
      hint: expect.stringMatching(/gcloud auth application-default login.*GOOGLE_APPLICATION_CREDENTIALS/),
    });
    expect(mapGcpError(httpError(403, 'accessNotConfigured', 'PERMISSION_DENIED', 'Compute Engine API has not been used in project 123 before or it is disabled.'), where).hint).toMatch(/gcloud services enable compute\.googleapis\.com/);
  });
});
