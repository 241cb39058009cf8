import { InvalidInputError, renderUserData, type CloudInit } from '@novacron/core';

/** EC2 takes at most 16 KiB of user data before base64. */
export const MAX_USER_DATA_BYTES = 16 * 1024;

/** Base64 user data for RunInstances, refused early when EC2 would refuse it. */
export function ec2UserData(cloudInit: CloudInit | undefined, seed: string, vm: string, provider: string): string | undefined {
  const text = renderUserData(cloudInit, seed);
  if (text === undefined) return undefined;
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_USER_DATA_BYTES) {
    throw new InvalidInputError(`the cloud-init data of VM "${vm}" is ${bytes} bytes; EC2 takes at most ${MAX_USER_DATA_BYTES}`, {
      context: { provider, vm, operation: 'create' },
      hint: 'move large files out of userData (fetch them at boot, or use #include with a URL)',
    });
  }
  return Buffer.from(text, 'utf8').toString('base64');
}
