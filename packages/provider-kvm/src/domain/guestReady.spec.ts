import { appendFileSync, chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kvmProviderConfig, type Clock } from '@novacron/core';
import { KvmProvider } from '../KvmProvider.js';
import { localShellTransport } from '../testing.js';
import { buildDomainXml } from './domainXml.js';
import { STILL_RUNNING_MS, watchGuest } from './guestReady.js';

// awaitReady (and the cold move's check it shares) against a "host" that is this machine:
// commands run in a real sh, with a fake `virsh` on the PATH that answers domstate and
// dumpxml from files, and the serial console a local file the test writes to.

const FAKE_VIRSH = `#!/bin/sh
shift 3 # -q -c URI
cmd=$1; shift
[ "$1" = --inactive ] && shift
d="$FAKE_VIRSH_DIR/$1"
[ -d "$d" ] || { echo "error: failed to get domain '$1'" >&2; exit 1; }
case $cmd in
  domstate) cat "$d/state" ;;
  dumpxml) cat "$d/xml" ;;
  *) echo "error: unexpected virsh $cmd" >&2; exit 1 ;;
esac
`;

function host(readyMarker?: string) {
  const dir = mkdtempSync(join(tmpdir(), 'nc-ready-'));
  mkdirSync(join(dir, 'bin'));
  writeFileSync(join(dir, 'bin', 'virsh'), FAKE_VIRSH);
  chmodSync(join(dir, 'bin', 'virsh'), 0o755);
  const env = { ...process.env, PATH: `${join(dir, 'bin')}:${process.env['PATH'] ?? ''}`, FAKE_VIRSH_DIR: join(dir, 'domains') };
  const transport = localShellTransport(env);
  /** Sleeps move time on and let the test change the world at a given time. */
  let now = 0;
  const at: { ms: number; run: () => void }[] = [];
  const clock: Clock = {
    now: () => now,
    sleep: async (ms, signal) => {
      signal?.throwIfAborted();
      now += ms;
      for (const e of at.filter((x) => x.ms <= now)) {
        e.run();
        at.splice(at.indexOf(e), 1);
      }
    },
  };
  const config = kvmProviderConfig.parse({
    type: 'kvm',
    hosts: [{ name: 'hv1', address: '192.0.2.1' }],
    images: { 'debian-12': { volume: 'debian-12.qcow2', ...(readyMarker ? { readyMarker } : {}) }, other: { volume: 'other.qcow2' } },
    bootTimeout: '20s',
  });
  const provider = new KvmProvider({ name: 'lab', config, cwd: dir, env: { HOME: dir }, transport, clock });
  const domain = (name: string, state: string, options: { fleet?: string; image?: string } = {}) => {
    const d = join(dir, 'domains', name);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'state'), `${state}\n`);
    const serialLog = join(d, 'console.log');
    writeFileSync(serialLog, '');
    writeFileSync(
      join(d, 'xml'),
      buildDomainXml({
        name, type: 'kvm', vcpus: 1, maxVcpus: 1, memoryMiB: 512, maxMemoryMiB: 512, disks: [], network: 'default', serialLog,
        metadata: { fleet: options.fleet ?? 'shop', group: 'web', index: 0, specHash: 'h', image: options.image ?? 'debian-12', diskGiB: 10, labels: {}, createdAt: '2026-01-01T00:00:00.000Z' },
      }),
    );
    return {
      print: (text: string) => appendFileSync(serialLog, text),
      setState: (s: string) => writeFileSync(join(d, 'state'), `${s}\n`),
    };
  };
  return { provider, domain, at, clock, now: () => now };
}

const ref = { name: 'shop-web-0', fleet: 'shop', host: 'lab/hv1' };

describe('KvmProvider awaitReady (a running VM watched until its guest is up)', () => {
  it('is ready once the console shows the default marker and the VM has stayed running', async () => {
    const { provider, domain, at } = host();
    const vm = domain('shop-web-0', 'running');
    vm.print('SeaBIOS\r\nBooting from Hard Disk...\r\n');
    at.push({ ms: 6_000, run: () => vm.print('Debian GNU/Linux 12 shop-web-0 ttyS0\r\n\r\nshop-web-0 login: ') });
    const ready = await provider.awaitReady(ref);
    expect(ready.ok).toBe(true);
    expect(ready.durationMs).toBeGreaterThanOrEqual(6_000);
    expect(ready.detail).toMatch(/^shop-web-0 runs on hv1 and its console showed its ready marker .* after 6\.0 s$/);
  });

  it('waits at least a moment even when the marker is there at once', async () => {
    const { provider, domain } = host();
    domain('shop-web-0', 'running').print('NOVACRON-GUEST-READY\n');
    const ready = await provider.awaitReady(ref);
    expect(ready).toMatchObject({ ok: true });
    expect(ready.durationMs).toBeGreaterThanOrEqual(STILL_RUNNING_MS);
  });

  it('is not ready, with the console\'s last output, when no marker shows in time (the image\'s own marker when it has one)', async () => {
    const { provider, domain } = host('^app ready$');
    // The default marker would match; the image declares its own.
    domain('shop-web-0', 'running').print('Booting from Hard Disk...\r\nshop-web-0 login: \r\nNo bootable device.\r\n');
    const ready = await provider.awaitReady(ref, { timeoutMs: 10_000 });
    expect(ready.ok).toBe(false);
    expect(ready.detail).toBe('no ready marker (^app ready$) on the serial console of shop-web-0 on hv1 within 10 s; last output: Booting from Hard Disk... shop-web-0 login: No bootable device.');
    expect(ready.durationMs).toBeGreaterThan(10_000);
  });

  it('waits the provider\'s bootTimeout by default', async () => {
    const { provider, domain } = host();
    domain('shop-web-0', 'running');
    const ready = await provider.awaitReady(ref);
    expect(ready.ok).toBe(false);
    expect(ready.detail).toMatch(/within 20 s; last output: \(none\)$/);
  });

  it('is not ready when the guest stops instead of coming up', async () => {
    const { provider, domain, at } = host();
    const vm = domain('shop-web-0', 'running');
    at.push({ ms: 2_000, run: () => vm.setState('shut off') });
    const ready = await provider.awaitReady(ref);
    expect(ready).toMatchObject({ ok: false, durationMs: 2_000 });
    expect(ready.detail).toMatch(/^shop-web-0 is shut off on hv1 instead of running/);
  });

  it('refuses a VM that does not exist or is another fleet\'s', async () => {
    const { provider, domain } = host();
    domain('other-web-0', 'running', { fleet: 'other' });
    await expect(provider.awaitReady(ref)).rejects.toMatchObject({ code: 'NotFound' });
    await expect(provider.awaitReady({ name: 'other-web-0', fleet: 'shop' })).rejects.toMatchObject({ code: 'Conflict' });
  });
});

describe('watchGuest (what a cold move checks on its destination, shared with awaitReady)', () => {
  it('without a marker to wait for, a guest that stays running is up', async () => {
    const { provider, domain, clock } = host();
    domain('shop-web-0', 'running');
    const watch = { virsh: provider.virshFor('hv1'), vm: 'shop-web-0', serialLog: '/nonexistent', expect: undefined, timeoutMs: 60_000, clock, operation: 'migrate' };
    expect(await watchGuest(watch)).toEqual({ ok: true, durationMs: STILL_RUNNING_MS });
  });

  it('reports what virsh said of a guest that is not running, and a vanished one as gone', async () => {
    const { provider, domain, clock } = host();
    domain('shop-web-0', 'paused');
    const watch = { virsh: provider.virshFor('hv1'), vm: 'shop-web-0', serialLog: '/nonexistent', expect: /ready/, timeoutMs: 60_000, clock, operation: 'migrate' };
    expect(await watchGuest(watch)).toEqual({ ok: false, reason: 'stopped', state: 'paused', durationMs: 0 });
    expect(await watchGuest({ ...watch, vm: 'shop-web-9' })).toEqual({ ok: false, reason: 'stopped', state: '', durationMs: 0 });
  });
});
