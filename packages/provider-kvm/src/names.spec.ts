import { describe, expect, it } from 'vitest';
import { assertName, validName } from './names.js';

describe('names', () => {
  it('accepts what NovaCron generates and libvirt defaults', () => {
    expect(validName('vm', 'shop-web-0')).toBe(true);
    expect(validName('object', 'nc-tiny-base.qcow2')).toBe(true);
    expect(validName('object', 'default')).toBe(true);
    expect(validName('path', '/var/lib/novacron-testbed/guest/vmlinuz')).toBe(true);
  });

  it.each([
    ['vm', 'Web'],
    ['vm', '-web'],
    ['vm', 'web-'],
    ['vm', 'a'.repeat(64)],
    ['vm', 'a b'],
    ['vm', "a';reboot"],
    ['object', '../etc/passwd'],
    ['object', 'a/b'],
    ['object', '.hidden'],
    ['object', 'x\ny'],
    ['path', 'relative/file'],
    ['path', '/a/../etc/shadow'],
    ['path', '/a b'],
    ['path', '/a/$(x)'],
  ] as const)('rejects %s %j', (kind, value) => {
    expect(validName(kind, value)).toBe(false);
    expect(() => assertName(kind, value, 'thing', { host: 'h1' })).toThrow(/not a valid/);
  });
});
