import { describe, expect, it } from 'vitest';
import { AuthFailedError, kvmProviderConfig, NotFoundError } from '@novacron/core';
import { resolveHosts } from '../config.js';
import { KeyedQueue } from '../locks/KeyedQueue.js';
import { recordingTransport } from '../testing.js';
import { Virsh } from '../virsh/Virsh.js';
import { ImageCache } from './ImageCache.js';

/** Hosts whose pools are a set of volume names; fetches and host-to-host copies fill them. */
function world(present: Record<string, string[]>, options: { pushFails?: string } = {}) {
  const pools = new Map(Object.entries(present).map(([h, v]) => [h, new Set(v)]));
  const config = kvmProviderConfig.parse({ type: 'kvm', ssh: { config: false, identityFile: '/k' }, hosts: Object.keys(present).map((name, i) => ({ name, address: `10.0.0.${i + 1}` })) });
  const hosts = new Map(resolveHosts('lab', config, { cwd: '/', env: { HOME: '/nonexistent' } }).map((h) => [h.name, h]));
  const byAddress = new Map([...hosts.values()].map((h) => [h.ssh.address, h.name]));
  const transport = recordingTransport((command, host) => {
    const vol = /vol-info'? '?([^' ]+)'? '?--pool/.exec(command);
    if (vol) return pools.get(host)!.has(vol[1]!) ? { stdout: 'Name: x\n' } : { code: 1, stderr: 'error: failed to get vol\nerror: Storage volume not found: no storage vol with matching path' };
    if (command.includes('pool-dumpxml')) return { stdout: "<pool type='dir'><name>default</name><target><path>/var/lib/libvirt/images</path></target></pool>" };
    if (command.includes('curl')) {
      pools.get(host)!.add(/ f='?([^' ;]+)'?;/.exec(command)![1]!);
      return { stdout: 'fetched\n' };
    }
    if (command.includes('novacron-copy')) {
      if (options.pushFails) return { code: 255, stderr: options.pushFails };
      const target = byAddress.get(/'?root@([0-9.]+)'? "\$rc/.exec(command)![1]!)!;
      pools.get(target)!.add(/vol-path'? '?--pool'? '?default'? '?([^' )]+)'?/.exec(command)![1]!);
      return { stdout: 'pushed\n' };
    }
    return {};
  });
  const logs: string[] = [];
  const cache = new ImageCache({ hosts, virshFor: (h) => new Virsh(transport, hosts.get(h)!.ssh, 'lab'), queue: new KeyedQueue(), perPool: 2, log: (m) => logs.push(m) });
  return { cache, hosts, pools, transport, logs };
}
const image = { url: 'http://images.example/base.qcow2', checksum: `sha256:${'a'.repeat(64)}`, format: 'qcow2' as const, clone: 'cow' as const };

describe('ImageCache', () => {
  it('lets one host fetch an image and the others copy it from that host, host to host', async () => {
    const { cache, hosts, pools, transport } = world({ h1: [], h2: [], h3: [] });
    const bases = await Promise.all([...hosts.values()].map((h) => cache.ensure(h, 'base', image)));
    expect(new Set(bases.map((b) => b.volume)).size).toBe(1);
    expect(cache.stats).toEqual({ hits: 0, fetches: 1, pushes: 2 });
    expect([...pools.values()].every((p) => p.has(bases[0]!.volume))).toBe(true);
    // The copies ran on the host that fetched, not through this machine.
    const copies = transport.commands.filter((c) => c.command.includes('novacron-copy'));
    const fetcher = transport.commands.find((c) => c.command.includes('curl'))!.host;
    expect(copies.map((c) => c.host)).toEqual([fetcher, fetcher]);
    expect(copies.every((c) => c.stdin === undefined && /UserKnownHostsFile="\$kh"/.test(c.command) && /StrictHostKeyChecking=yes/.test(c.command))).toBe(true);
    // Known present now: no more questions.
    const asked = transport.commands.length;
    await cache.ensure(hosts.get('h2')!, 'base', image);
    expect(transport.commands.length).toBe(asked);
  });

  it('falls back to the URL when a copy is refused, and names the cause when there is no URL', async () => {
    const refused = 'root@10.0.0.2: Permission denied (publickey).';
    const withUrl = world({ h1: [], h2: [] }, { pushFails: refused });
    await withUrl.cache.ensure(withUrl.hosts.get('h1')!, 'base', image);
    await withUrl.cache.ensure(withUrl.hosts.get('h2')!, 'base', image);
    expect(withUrl.cache.stats).toMatchObject({ fetches: 2, pushes: 0 });
    expect(withUrl.logs.join('\n')).toMatch(/copying image .* from h1 to h2 failed .*Permission denied.*fetching it from its URL instead/);

    const golden = { volume: 'golden.qcow2', format: 'qcow2' as const, clone: 'cow' as const };
    const noUrl = world({ h1: ['golden.qcow2'], h2: [] }, { pushFails: refused });
    const error = await noUrl.cache.ensure(noUrl.hosts.get('h2')!, 'golden', golden).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthFailedError);
    expect((error as AuthFailedError).message).toMatch(/h1 may not log in to h2 over SSH to copy an image/);
    expect((error as AuthFailedError).hint).toMatch(/authorize h1's key .* or set ssh.forwardAgent/);
    const nowhere = world({ h1: [], h2: [] });
    await expect(nowhere.cache.ensure(nowhere.hosts.get('h2')!, 'golden', golden)).rejects.toBeInstanceOf(NotFoundError);
  });
});
