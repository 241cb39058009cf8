import { InvalidInputError } from '@novacron/core';

/**
 * What may be used as a name on a host. Every value here is also shell-quoted and
 * XML-escaped wherever it goes; these rules exist so that a name is also a valid libvirt
 * object name, a sane file name in a storage pool, and unambiguous in logs. They reject
 * rather than rewrite: a name that would need changing is a spec error, not ours to fix.
 */
export const NAME_RULES = {
  /** Domain names NovaCron creates (`<fleet>-<group>-<index>`): DNS-label-like. */
  vm: /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/,
  /** Storage pools, networks, volumes: libvirt object names without path separators or spaces. */
  object: /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/,
  /** Absolute paths on the host (kernel, initrd): no `..` segments, no control characters. */
  path: /^\/(?:[A-Za-z0-9._+@=,-]+\/)*[A-Za-z0-9._+@=,-]+$/,
} as const;

export type NameKind = keyof typeof NAME_RULES;

export function validName(kind: NameKind, value: string): boolean {
  if (!NAME_RULES[kind].test(value)) return false;
  if (kind === 'path') return !value.split('/').includes('..');
  return true;
}

/** Throws InvalidInputError naming what was wrong and the rule it broke. */
export function assertName(kind: NameKind, value: string, what: string, context: { provider?: string; host?: string; vm?: string } = {}): string {
  if (!validName(kind, value)) {
    throw new InvalidInputError(`${what} ${JSON.stringify(value)} is not a valid ${kind === 'path' ? 'absolute path' : 'name'} for a KVM host`, {
      context,
      hint: `use a value matching ${NAME_RULES[kind].source}`,
    });
  }
  return value;
}
