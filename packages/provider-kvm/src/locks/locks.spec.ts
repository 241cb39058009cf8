import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { SshEndpoint } from '../config.js';
import { recordingTransport } from '../testing.js';
import { Virsh } from '../virsh/Virsh.js';
import { claimScript, parseClaims, releaseScript } from './claims.js';
import { KeyedQueue } from './KeyedQueue.js';

const virsh = new Virsh(recordingTransport(), { label: 'hv1', address: 'x', port: 22, user: 'root', auth: {} } as unknown as SshEndpoint, 'lab');
const sh = (script: string) => execFileSync('sh', ['-c', script], { encoding: 'utf8' });

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
