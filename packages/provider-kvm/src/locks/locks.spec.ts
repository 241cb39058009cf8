import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { SshEndpoint } from '../config.js';
import { recordingTransport } from '../testing.js';
import { Virsh } from '../virsh/Virsh.js';
import { CLAIM_TTL_SEC, claimScript, parseClaims, releaseScript } from './claims.js';
import { KeyedQueue } from './KeyedQueue.js';

const virsh = new Virsh(recordingTransport(), { label: 'hv1', address: 'x', port: 22, user: 'root', auth: {} } as unknown as SshEndpoint, 'lab');
const sh = (script: string) => execFileSync('sh', ['-c', script], { encoding: 'utf8' });
/** The shells a host may run the scripts with: /bin/sh (dash here), bash, busybox's ash. */
const shells = [['/bin/sh'], ['bash'], ['busybox', 'sh']].filter(([cmd]) => {
  try {
    execFileSync(cmd!, [...(cmd === 'busybox' ? ['sh'] : []), '-c', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
});

describe('name claims (the scripts run by a real sh)', () => {
  it('records a claim under the host lock, shows it to the next create, and releases only its own', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nc-locks-'));
    const need = { cpu: 2, memoryMiB: 512, diskGiB: 10, gpu: 0 };
    expect(parseClaims(sh(claimScript(virsh, dir, { name: 'shop-web-0', fleet: 'shop', resources: need, token: 'aaa' })))).toEqual([]);
    const seen = parseClaims(sh(claimScript(virsh, dir, { name: 'other-db-0', fleet: 'other', resources: need, token: 'bbb' })));
    expect(seen).toEqual([{ name: 'shop-web-0', fleet: 'shop', resources: need, token: 'aaa', ageSec: expect.any(Number) }]);
    expect(seen[0]!.ageSec).toBeLessThan(5);
    sh(releaseScript(virsh, dir, 'shop-web-0', 'bbb')); // not its claim: stays
    expect(readdirSync(join(dir, 'claims')).sort()).toEqual(['other-db-0', 'shop-web-0']);
    sh(releaseScript(virsh, dir, 'shop-web-0', 'aaa'));
    expect(readdirSync(join(dir, 'claims'))).toEqual(['other-db-0']);
    expect(parseClaims(sh(claimScript(virsh, dir, undefined))).map((c) => c.name)).toEqual(['other-db-0']);
  });

  const need = { cpu: 2, memoryMiB: 512, diskGiB: 10, gpu: 0 };
  const claimOf = (name: string, token: string) => ({ name, fleet: 'shop', resources: need, token });

  it.each(shells.map((cmd) => [cmd.join(' '), cmd] as const))('never lets a rival overwrite or release a live claim (%s)', (_, [cmd, ...pre]) => {
    const run = (script: string) => execFileSync(cmd!, [...pre, '-c', script], { encoding: 'utf8' });
    const dir = mkdtempSync(join(tmpdir(), 'nc-locks-'));
    const file = join(dir, 'claims', 'shop-web-0');
    // A claims the name and starts its create.
    expect(parseClaims(run(claimScript(virsh, dir, claimOf('shop-web-0', 'aaa'))))).toEqual([]);
    const held = readFileSync(file, 'utf8');
    expect(held).toMatch(/^shop 2 512 10 \d+ aaa\n$/);
    // B, for the same name, sees A as its rival, and backs off: its release (the create's
    // clean-up) must leave A's claim as it was.
    const b = parseClaims(run(claimScript(virsh, dir, claimOf('shop-web-0', 'bbb'))));
    expect(b.map((c) => [c.name, c.token])).toEqual([['shop-web-0', 'aaa']]);
    expect(readFileSync(file, 'utf8')).toBe(held);
    run(releaseScript(virsh, dir, 'shop-web-0', 'bbb'));
    expect(readFileSync(file, 'utf8')).toBe(held);
    // C, creating another VM, counts A's create as allocated; for the same name, it is refused too.
    expect(parseClaims(run(claimScript(virsh, dir, claimOf('shop-web-1', 'ccc'))))).toEqual([{ ...claimOf('shop-web-0', 'aaa'), ageSec: expect.any(Number) }]);
    const c = parseClaims(run(claimScript(virsh, dir, claimOf('shop-web-0', 'ccc'))));
    expect(c.filter((x) => x.name === 'shop-web-0').map((x) => x.token)).toEqual(['aaa']);
    run(releaseScript(virsh, dir, 'shop-web-0', 'ccc'));
    expect(readFileSync(file, 'utf8')).toBe(held);
    // A's domain is defined: A releases its claim; now the name is free for the next one.
    run(releaseScript(virsh, dir, 'shop-web-0', 'aaa'));
    expect(existsSync(file)).toBe(false);
    expect(parseClaims(run(claimScript(virsh, dir, claimOf('shop-web-0', 'ccc')))).map((x) => x.name)).toEqual(['shop-web-1']);
    expect(readFileSync(file, 'utf8')).toMatch(/ ccc\n$/);
    expect(readdirSync(join(dir, 'claims')).sort()).toEqual(['shop-web-0', 'shop-web-1']); // no temporary files left
  });

  it('lets exactly one of many simultaneous claims on a name win, even on a host without flock', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nc-locks-'));
    const tokens = Array.from({ length: 12 }, (_, i) => `t${i}`);
    // `flock` as a shell function that takes no lock: every script runs at once.
    const unlocked = (token: string) => `flock() { return 0; }\n${claimScript(virsh, dir, claimOf('shop-web-0', token))}`;
    const outs = await Promise.all(
      tokens.map((token) => new Promise<string>((resolve, reject) => execFile('/bin/sh', ['-c', unlocked(token)], (error, stdout) => (error ? reject(error) : resolve(stdout))))),
    );
    const holder = readFileSync(join(dir, 'claims', 'shop-web-0'), 'utf8').trim().split(' ').at(-1);
    const winners = tokens.filter((_, i) => !parseClaims(outs[i]!).some((c) => c.name === 'shop-web-0'));
    expect(winners).toEqual([holder]);
    for (const [i, out] of outs.entries()) if (tokens[i] !== holder) expect(parseClaims(out).map((c) => c.token)).toEqual([holder]);
    expect(readdirSync(join(dir, 'claims'))).toEqual(['shop-web-0']);
  });

  it('replaces an expired claim, renews its own, and still sweeps old claim files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nc-locks-'));
    const file = join(dir, 'claims', 'shop-web-0');
    const now = Math.floor(Date.now() / 1000);
    mkdirSync(join(dir, 'claims'));
    // A crashed process's claim, older than the TTL by its record (the file itself looks recent).
    writeFileSync(file, `shop 2 512 10 ${now - CLAIM_TTL_SEC - 5} dead\n`);
    const seen = parseClaims(sh(claimScript(virsh, dir, claimOf('shop-web-0', 'aaa'))));
    expect(seen).toEqual([]);
    expect(readFileSync(file, 'utf8')).toMatch(/ aaa\n$/);
    // Just inside the TTL, a claim is live: kept, and shown as the rival.
    writeFileSync(file, `shop 2 512 10 ${now - CLAIM_TTL_SEC + 60} live\n`);
    expect(parseClaims(sh(claimScript(virsh, dir, claimOf('shop-web-0', 'aaa')))).map((c) => c.token)).toEqual(['live']);
    expect(readFileSync(file, 'utf8')).toMatch(/ live\n$/);
    // An unreadable claim (not NovaCron's format) cannot be live.
    writeFileSync(file, 'garbage\n');
    sh(claimScript(virsh, dir, claimOf('shop-web-0', 'aaa')));
    expect(readFileSync(file, 'utf8')).toMatch(/ aaa\n$/);
    // The same process claiming again renews its claim.
    writeFileSync(file, `shop 1 1 1 ${now - 600} aaa\n`);
    expect(parseClaims(sh(claimScript(virsh, dir, claimOf('shop-web-0', 'aaa'))))).toEqual([]);
    expect(Number(readFileSync(file, 'utf8').split(' ')[4])).toBeGreaterThanOrEqual(now);
    // Claim files untouched for longer than the TTL go, whatever they say.
    const other = join(dir, 'claims', 'other-db-0');
    writeFileSync(other, `other 1 1 1 ${now} zzz\n`);
    const old = Date.now() / 1000 - CLAIM_TTL_SEC - 120;
    utimesSync(other, old, old);
    expect(parseClaims(sh(claimScript(virsh, dir, undefined))).map((c) => c.name)).toEqual(['shop-web-0']);
    expect(readdirSync(join(dir, 'claims'))).toEqual(['shop-web-0']);
  });
});

describe('KeyedQueue', () => {
  it('runs at most the limit per key, in order, and keys apart', async () => {
    const q = new KeyedQueue();
    const order: string[] = [];
    const task = (key: string, i: number) => q.run(key, 2, async () => {
      order.push(`${key}${i}`);
      await new Promise((r) => setTimeout(r, 5));
    });
    await Promise.all([...[0, 1, 2, 3, 4].map((i) => task('a', i)), ...[0, 1].map((i) => task('b', i))]);
    expect(q.peak('a')).toBe(2);
    expect(q.peak('b')).toBe(2);
    expect(order.filter((x) => x.startsWith('a'))).toEqual(['a0', 'a1', 'a2', 'a3', 'a4']);
  });
});
