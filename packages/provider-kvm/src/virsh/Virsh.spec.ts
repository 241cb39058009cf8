import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConflictError, NotFoundError } from '@novacron/core';
import type { SshEndpoint } from '../config.js';
import { localShellTransport, recordingTransport } from '../testing.js';
import type { Transport } from '../transport.js';
import { splitMarked, Virsh, virshCommandLine } from './Virsh.js';

/**
 * The command lines the virsh layer builds, run by a real /bin/sh against a fake `virsh` on
 * PATH that echoes its argv (NUL-separated) and fails on demand: what a host's shell would
 * hand to virsh, without a host.
 */
const bin = mkdtempSync(join(tmpdir(), 'nc-virsh-'));
writeFileSync(
  join(bin, 'virsh'),
  `#!/bin/sh
for a in "$@"; do printf '%s\\0' "$a"; done
case "$*" in
  *missing*) echo "error: failed to get domain 'missing'" >&2; exit 1 ;;
  *dup*) echo "error: operation failed: storage vol 'dup' already exists" >&2; exit 1 ;;
esac
if [ ! -t 0 ]; then input=$(cat); [ -z "$input" ] || printf 'stdin=%s' "$input"; fi
exit 0
`,
);
chmodSync(join(bin, 'virsh'), 0o755);

const localShell = localShellTransport({ PATH: `${bin}:/usr/bin:/bin` });

const endpoint = { label: 'hv1', address: '127.0.0.1', port: 22, user: 'root' } as SshEndpoint;
const virsh = new Virsh(localShell, endpoint, 'lab');
const argv = (stdout: string) => stdout.split('\0').filter((s, i, all) => i < all.length - 1 || s !== '');

describe('Virsh command layer', () => {
  it('hands hostile arguments to virsh exactly as given', async () => {
    const hostile = ["x'; reboot; '", '$(id)', '`id`', 'a b', '--', '*', 'line\nbreak'];
    const out = await virsh.run(['desc', ...hostile]);
    expect(argv(out)).toEqual(['-q', '-c', 'qemu:///system', 'desc', ...hostile]);
  });

  it('builds one command line, English and quiet', () => {
    expect(virshCommandLine(['start', 'a b'])).toBe("LC_ALL=C virsh -q -c qemu:///system start 'a b'");
  });

  it('passes stdin through (define /dev/stdin, vol-upload)', async () => {
    const out = await virsh.run(['define', '/dev/stdin'], { stdin: '<domain/>' });
    expect(out).toContain('stdin=<domain/>');
  });

  it('maps failures to typed errors with the host, VM and operation', async () => {
    const error = await virsh.run(['dominfo', 'missing'], { vm: 'missing', operation: 'start' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NotFoundError);
    expect((error as NotFoundError).context).toEqual({ provider: 'lab', host: 'hv1', vm: 'missing', operation: 'start' });
    const r = await virsh.tryRun(['vol-create-as', 'default', 'dup']);
    expect(r.error).toBeInstanceOf(ConflictError);
    expect(r.error?.rule).toBe('already-exists');
  });

  it('runs a batch in one round trip with each command’s own output and status', async () => {
    const recorder = recordingTransport();
    const counted: Transport = { exec: (h, r) => (recorder.exec(h, r), localShell.exec(h, r)) };
    const v = new Virsh(counted, endpoint, 'lab');
    const results = await v.batch([['domstate', 'a'], ['dominfo', 'missing'], ['domstate', "b'c"]]);
    expect(recorder.commands).toHaveLength(1);
    expect(results.map((r) => r.code)).toEqual([0, 1, 0]);
    expect(argv(results[0]!.stdout)).toEqual(['-q', '-c', 'qemu:///system', 'domstate', 'a']);
    expect(results[1]!.error).toBeInstanceOf(NotFoundError);
    expect(results[1]!.stderr).toContain("failed to get domain 'missing'");
    expect(argv(results[2]!.stdout).at(-1)).toBe("b'c");
  });

  it('gives stdin to one command of a batch only', async () => {
    const results = await virsh.batch([['define', '/dev/stdin'], ['start', 'a']], { stdin: '<domain/>', stdinFor: 0 });
    expect(results[0]!.stdout).toContain('stdin=<domain/>');
    expect(results[1]!.stdout).not.toContain('stdin=');
  });

  it('stops a batch at the first failure when asked', async () => {
    const results = await virsh.batch([['a'], ['missing'], ['c']], { stopOnError: true });
    expect(results.map((r) => r.code)).toEqual([0, 1]);
  });

  it('splits marked output and ignores look-alike markers', () => {
    const m = '@@novacron-abc';
    const text = `one\n${m} 0 0\ntwo\n@@novacron-xyz 1 0\n${m} 1 3\n`;
    const parts = splitMarked(text, m);
    expect(parts.get(0)).toEqual({ text: 'one', code: 0 });
    expect(parts.get(1)).toEqual({ text: 'two\n@@novacron-xyz 1 0', code: 3 });
  });
});
