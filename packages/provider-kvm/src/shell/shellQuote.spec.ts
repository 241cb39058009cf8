import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { shellCommand, shellQuote } from './shellQuote.js';

/** What /bin/sh turns the quoted words back into: the real shell is the judge. */
function roundTrip(args: readonly string[]): string[] {
  const script = `for a in ${args.map(shellQuote).join(' ')}; do printf '%s\\0' "$a"; done`;
  const out = execFileSync('/bin/sh', ['-c', script], { encoding: 'utf8' });
  return out.split('\0').slice(0, -1);
}

const HOSTILE = [
  '',
  ' ',
  "it's",
  "''",
  "'\\''",
  '"double"',
  '$(reboot)',
  '`reboot`',
  '${IFS}',
  'a;b',
  'a && b',
  'a | b',
  'x > /etc/passwd',
  '*',
  '~root',
  '-rf',
  '--',
  'line\nbreak',
  'tab\there',
  '\\',
  '!history',
  '#comment',
  'ünïcødé ✓',
  "'; virsh destroy --all; '",
];

describe('shellQuote', () => {
  it('passes every hostile string through /bin/sh unchanged', () => {
    expect(roundTrip(HOSTILE)).toEqual(HOSTILE);
  });

  it('leaves plain words bare and quotes the rest', () => {
    expect(shellQuote('nc-web-0')).toBe('nc-web-0');
    expect(shellQuote('/var/lib/libvirt/images/a.qcow2')).toBe('/var/lib/libvirt/images/a.qcow2');
    expect(shellQuote('a b')).toBe("'a b'");
    expect(shellQuote("it's")).toBe("'it'\\''s'");
    expect(shellQuote('')).toBe("''");
  });

  it('refuses NUL, which no argv can carry', () => {
    expect(() => shellQuote('a\0b')).toThrow(/NUL/);
  });

  it('builds command lines word by word', () => {
    expect(shellCommand(['virsh', 'start', 'x; rm -rf /'])).toBe("virsh start 'x; rm -rf /'");
    expect(() => shellCommand([])).toThrow();
  });

  it('survives random strings (property)', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const alphabet = "ab '\"\\$`;|&<>(){}[]*?~!#\n\t=%-_.,:";
    const cases = Array.from({ length: 60 }, () =>
      Array.from({ length: 1 + Math.floor(rnd() * 12) }, () => alphabet[Math.floor(rnd() * alphabet.length)]).join(''),
    );
    expect(roundTrip(cases)).toEqual(cases);
  });
});
