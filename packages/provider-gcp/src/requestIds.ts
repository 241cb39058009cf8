import { createHash } from 'node:crypto';

/**
 * A Compute Engine request id: a UUID derived from what identifies the request, never
 * random, so a retry of the same create (by the core's retry, or a re-run after a crash)
 * gets the operation the first try started instead of a second one. Compute Engine keeps
 * request ids for at least 60 minutes. `after` chains a fresh id once the operation an id
 * started has finished with an error: re-sending the old id would only replay that failure.
 */
export function requestId(parts: readonly string[], after?: string): string {
  const hex = createHash('sha256')
    .update(['novacron-gce-v1', ...parts, after ?? ''].join('\u0000'))
    .digest('hex');
  // RFC 4122 layout, version 5 (name-based, SHA) and the RFC variant bits.
  const variant = ((Number.parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}
