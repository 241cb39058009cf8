import type { CloudInit } from '../model/fleet.js';

/**
 * The user data cloud-init reads at first boot, rendered the same way by every provider
 * and front door. NovaCron's own settings (authorized keys, a hostname) go in a
 * `#cloud-config`; when the user brings data of their own, both become parts of a MIME
 * multipart archive, so cloud-init applies both and the user's YAML or script is passed
 * through untouched rather than merged by us.
 */
export function renderUserData(cloudInit: CloudInit | undefined, boundarySeed: string, options: { readonly hostname?: string } = {}): string | undefined {
  const keys = cloudInit?.sshAuthorizedKeys ?? [];
  const own = cloudInit?.userData;
  const lines = [
    ...(options.hostname ? [`hostname: ${JSON.stringify(options.hostname)}`] : []),
    ...(keys.length > 0 ? ['ssh_authorized_keys:', ...keys.map((k) => `  - ${JSON.stringify(k)}`)] : []),
  ];
  const ours = lines.length > 0 ? `#cloud-config\n${lines.join('\n')}\n` : undefined;
  if (!ours) return own;
  if (own === undefined || own.trim() === '') return ours;
  const boundary = `==NOVACRON-${boundarySeed}==`;
  const part = (type: string, body: string) => `--${boundary}\nContent-Type: ${type}; charset="utf-8"\nMIME-Version: 1.0\n\n${body.endsWith('\n') ? body : `${body}\n`}`;
  return [`Content-Type: multipart/mixed; boundary="${boundary}"\nMIME-Version: 1.0\n`, part('text/cloud-config', ours), part(userDataType(own), own), `--${boundary}--\n`].join('\n');
}

/** The MIME type cloud-init gives a user-data document by its first line. */
export function userDataType(data: string): string {
  if (data.startsWith('#cloud-config')) return 'text/cloud-config';
  if (data.startsWith('#!')) return 'text/x-shellscript';
  if (data.startsWith('#include')) return 'text/x-include-url';
  if (data.startsWith('#cloud-boothook')) return 'text/cloud-boothook';
  return 'text/plain';
}
