import { NovaCronError } from '@novacron/core';
import { describe, expect, it } from 'vitest';
import { mapAwsError } from './errors.js';
import { ec2Error } from './testing/fakeEc2.js';

const where = { provider: 'aws', vm: 'shop-web-0', host: 'aws/us-east-1a', operation: 'create' };

describe('mapAwsError', () => {
  it.each([
    ['RequestLimitExceeded', 503, 'Throttled', true],
    ['InsufficientInstanceCapacity', 500, 'CapacityExceeded', false],
    ['VcpuLimitExceeded', 400, 'CapacityExceeded', false],
    ['UnauthorizedOperation', 403, 'AuthFailed', false],
    ['AuthFailure', 401, 'AuthFailed', false],
    ['ExpiredToken', 400, 'AuthFailed', false],
    ['InvalidInstanceID.NotFound', 400, 'NotFound', false],
    ['InvalidAMIID.NotFound', 400, 'NotFound', false],
    ['InvalidParameterValue', 400, 'InvalidInput', false],
    ['IncorrectInstanceState', 400, 'Conflict', true],
    ['IdempotentParameterMismatch', 400, 'Conflict', false],
    ['Unsupported', 400, 'Unsupported', false],
    ['InternalError', 500, 'Unreachable', true],
    ['SomethingNew', 400, 'Provider', false],
  ] as const)('%s becomes %s (retryable %s) with the call context', (code, status, expected, retryable) => {
    const mapped = mapAwsError(ec2Error(code, `message for ${code}`, status), where);
    expect(NovaCronError.isInstance(mapped)).toBe(true);
    expect(mapped).toMatchObject({ code: expected, retryable, context: where });
    expect(mapped.message).toContain(`(${code}, request `);
    expect(mapped.cause).toBeDefined();
  });

  it('gives a hint for every auth problem, naming the way out', () => {
    expect(mapAwsError(ec2Error('UnauthorizedOperation', 'You are not authorized', 403), where).hint).toMatch(/IAM permission.*decode-authorization-message/);
    const noCredentials = Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' });
    expect(mapAwsError(noCredentials, where)).toMatchObject({ code: 'AuthFailed', hint: expect.stringMatching(/AWS_PROFILE.*docs\/aws\.md/) });
    expect(mapAwsError(ec2Error('ExpiredToken', 'The security token included in the request is expired', 400), where).hint).toMatch(/aws sso login/);
  });

  it('tells a quota from a capacity shortage in its hint', () => {
    expect(mapAwsError(ec2Error('VcpuLimitExceeded', 'You have requested more vCPU capacity than your current vCPU limit', 400), where).hint).toMatch(/quota/);
    expect(mapAwsError(ec2Error('InsufficientInstanceCapacity', 'no capacity', 500), where).hint).toMatch(/other zones or instance types/);
  });

  it('maps socket errors to Unreachable and keeps NovaCron errors as they are', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:4566'), { code: 'ECONNREFUSED' });
    expect(mapAwsError(refused, where)).toMatchObject({ code: 'Unreachable', retryable: true, hint: expect.stringMatching(/endpoint/) });
    const own = mapAwsError(ec2Error('RequestLimitExceeded', 'x', 503), where);
    expect(mapAwsError(own, { provider: 'other' })).toBe(own);
    expect(mapAwsError(Object.assign(new Error('aborted'), { name: 'AbortError' }), where)).toMatchObject({ code: 'Aborted' });
  });
});
