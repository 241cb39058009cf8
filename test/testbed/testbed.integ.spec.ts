// The testbed itself: hosts are independent libvirt hosts, reachable over ssh with the
// recorded keys, and the tiny guest boots, answers and obeys its control endpoints.
// Fails (does not skip) when the testbed is not up.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import {
  defineDomainOnHost,
  execOnHost,
  guestHttpGet,
  loadTestbed,
  parseKeyValues,
  tinyGuestDomainXml,
  virshOnHost,
  waitForGuestMarker,
} from './index.ts';

const run = promisify(execFile);
const tb = loadTestbed();
const DOMAIN = 'nc-tbspec';

describe('testbed hosts', () => {
  it('are separate hosts: own hostname, host UUID and libvirtd', async () => {
    const seen = new Set<string>();
    for (const host of tb.hosts) {
      const r = await execOnHost(host, ['hostname']);
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe(host.name);
      const caps = await virshOnHost(host, ['capabilities']);
      const uuid = /<uuid>([^<]+)<\/uuid>/.exec(caps)?.[1];
      expect(uuid).toBe(host.hostUuid);
      seen.add(uuid ?? '');
      expect(await virshOnHost(host, ['net-list', '--name'])).toContain(tb.guest.network);
      expect(await virshOnHost(host, ['vol-list', tb.guest.pool])).toContain(tb.guest.baseVolume);
    }
    expect(seen.size).toBe(tb.hosts.length);
  });

  it('accept ssh with the testbed key, verified by both known_hosts files', async () => {
    for (const knownHosts of [tb.knownHosts, tb.knownHostsHashed]) {
      for (const host of tb.hosts) {
        const { stdout } = await run('ssh', [
          '-n', '-i', tb.keyFile, '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null',
          '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes',
          `root@${host.address}`, 'hostname',
        ]);
        expect(stdout.trim()).toBe(host.name);
      }
    }
  });

  it('serve libvirt over ssh with host key verification (libssh2 URI)', async () => {
    const host = tb.hosts[0]!;
    const { stdout } = await run('virsh', ['-c', host.libvirtUri, 'hostname']);
    expect(stdout.trim()).toBe(host.name);
  });
});

describe('tiny guest', () => {
  const host = tb.hosts[tb.hosts.length - 1]!;

  afterAll(async () => {
    await execOnHost(host, ['virsh', '-q', 'destroy', DOMAIN]);
    await execOnHost(host, ['virsh', '-q', 'undefine', DOMAIN]);
    await execOnHost(host, ['virsh', '-q', 'vol-delete', `${DOMAIN}.qcow2`, tb.guest.pool]);
  });

  it('boots, answers HTTP and runs its disk and memory workloads on demand', { timeout: 180_000 }, async () => {
    await execOnHost(host, ['virsh', '-q', 'destroy', DOMAIN]);
    await execOnHost(host, ['virsh', '-q', 'undefine', DOMAIN]);
    await execOnHost(host, ['virsh', '-q', 'vol-delete', `${DOMAIN}.qcow2`, tb.guest.pool]);
    await virshOnHost(host, [
      'vol-create-as', tb.guest.pool, `${DOMAIN}.qcow2`, String(tb.guest.baseVolumeBytes), '--format', 'qcow2',
      '--backing-vol', tb.guest.baseVolume, '--backing-vol-format', 'qcow2',
    ]);
    const xml = tinyGuestDomainXml(tb, { name: DOMAIN, volume: `${DOMAIN}.qcow2` });
    await defineDomainOnHost(host, xml);
    await virshOnHost(host, ['start', DOMAIN]);
    const ready = await waitForGuestMarker(host, DOMAIN, 120_000);
    expect(ready.ip).toMatch(/^192\.168\.122\.\d+$/);
    const ip = ready.ip!;

    const id = parseKeyValues(await guestHttpGet(host, ip, '/cgi-bin/id'));
    expect(id.name).toBe(DOMAIN);
    const base = parseKeyValues(await guestHttpGet(host, ip, `/cgi-bin/diskhash?offset=${tb.guest.baseContent.offsetMiB}&mib=1`));
    expect(base.sha256).toBe(tb.guest.baseContent.sha256);

    const written = parseKeyValues(await guestHttpGet(host, ip, '/cgi-bin/diskwrite?mib=2&offset=20'));
    const reread = parseKeyValues(await guestHttpGet(host, ip, '/cgi-bin/diskhash?offset=20&mib=2'));
    expect(reread.sha256).toBe(written.sha256);

    await guestHttpGet(host, ip, '/cgi-bin/dirty?mib=8&rate=1000&content=compressible');
    await new Promise((r) => setTimeout(r, 2500));
    const dirty = parseKeyValues(await guestHttpGet(host, ip, '/cgi-bin/dirty?rate=0'));
    expect(dirty.content).toBe('compressible');
    expect(Number(dirty.pages_written)).toBeGreaterThan(500);
  });
});
