import { InvalidInputError, type CloudInit } from '@novacron/core';

/** EC2 takes at most 16 KiB of user data before base64. */
export const MAX_USER_DATA_BYTES = 16 * 1024;

/**
 * The user data cloud-init reads at first boot. Keys alone become a `#cloud-config`; keys
 * with the user's own data become a MIME multipart archive, so cloud-init applies both
 * without NovaCron having to merge the user's YAML or script.
 */
export function renderUserData(cloudInit: CloudInit | undefined, boundarySeed: string): string | undefined {
  const keys = cloudInit?.sshAuthorizedKeys ?? [];
  const own = cloudInit?.userData;
  const keysConfig = keys.length > 0 ? `#cloud-config\nssh_authorized_keys:\n${keys.map((k) => `  - ${JSON.stringify(k)}`).join('\n')}\n` : undefined;
  if (!keysConfig) return own;
  if (own === undefined || own.trim() === '') return keysConfig;
  const boundary = `==NOVACRON-${boundarySeed}==`;
  const part = (type: string, body: string) => `--${boundary}\nContent-Type: ${type}; charset="utf-8"\nMIME-Version: 1.0\n\n${body.endsWith('\n') ? body : `${body}\n`}`;
  return [
    `Content-Type: multipart/mixed; boundary="${boundary}"\nMIME-Version: 1.0\n`,
    part('text/cloud-config', keysConfig),
    part(partType(own), own),
    `--${boundary}--\n`,
  ].join('\n');
}

function partType(data: string): string {
  if (data.startsWith('#cloud-config')) return 'text/cloud-config';
  if (data.startsWith('#!')) return 'text/x-shellscript';
  if (data.startsWith('#include')) return 'text/x-include-url';
  if (data.startsWith('#cloud-boothook')) return 'text/cloud-boothook';
  return 'text/plain';
}

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
