import { createHash } from 'node:crypto';

export interface CreateIdentity {
  readonly fleet: string;
  readonly name: string;
  readonly specHash: string;
  readonly zone: string;
  readonly instanceType: string;
}

/**
 * The RunInstances client token: derived, never random, so a retry of the same create (by
 * the core's retry, or a re-run after a crash) gets the instance the first try made instead
 * of a second one. The zone, type and a digest of the other parameters are part of it
 * because EC2 refuses a token reused with other parameters; `after` chains a fresh token once the instance a token made has been
 * terminated (EC2 keeps answering a token with its instance for about a day).
 */
export function clientToken(identity: CreateIdentity, parameters = '', after?: string): string {
  const hash = createHash('sha256')
    .update(['novacron-create-v1', identity.fleet, identity.name, identity.specHash, identity.zone, identity.instanceType, parameters, after ?? ''].join('\u0000'))
    .digest('hex');
  // At most 64 ASCII characters; the readable prefix helps when reading CloudTrail.
  return `nc-${identity.name.slice(0, 28)}-${hash.slice(0, 32)}`;
}

/** A client token for other idempotent calls (imports, exports): a hash of what identifies the request. */
export function derivedToken(...parts: readonly string[]): string {
  return `nc-${createHash('sha256').update(parts.join('\u0000')).digest('hex').slice(0, 48)}`;
}
