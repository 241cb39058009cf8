import { EC2Client } from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import type { AwsProviderConfig } from '@novacron/core';

/** Builds the SDK clients. Injected so tests hand in mocked clients and nothing reads credentials. */
export interface AwsClientFactory {
  ec2(config: AwsProviderConfig): EC2Client;
  s3(config: AwsProviderConfig): S3Client;
}

/**
 * The real clients. Credentials come from the SDK's default chain (env, shared config and
 * SSO via `profile`, web identity, container and instance roles), resolved by the client
 * at its first request, never at import time.
 *
 * `maxAttempts` is the config's `sdkMaxAttempts` (default 1): the core's retry middleware
 * already retries throttling and faults with backoff and full jitter, honours the apply's
 * AbortSignal and reports each retry as an event. Letting the SDK retry as well would
 * multiply attempts (3 SDK x 4 core = 12 calls for one step) and hide them from the user.
 */
export const defaultClientFactory: AwsClientFactory = {
  ec2: (config) =>
    new EC2Client({
      region: config.region,
      maxAttempts: config.sdkMaxAttempts,
      ...(config.endpoint ? { endpoint: config.endpoint } : {}),
      ...(config.profile ? { profile: config.profile } : {}),
    }),
  s3: (config) =>
    new S3Client({
      region: config.region,
      maxAttempts: config.sdkMaxAttempts,
      ...(config.s3Endpoint ? { endpoint: config.s3Endpoint, forcePathStyle: true } : {}),
      ...(config.profile ? { profile: config.profile } : {}),
    }),
};
