import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kvmProviderConfig } from '@novacron/core';
import type { SshEndpoint } from '../config.js';
import { KvmProvider } from '../KvmProvider.js';
import { localShellTransport, recordingTransport } from '../testing.js';
import type { Transport } from '../transport.js';
import { readHostState } from './hostState.js';
import { parsePoolInfos } from './parsers.js';
import { Virsh } from './Virsh.js';

// pool-info --bytes as libvirt 9.0 prints it, two pools in one virsh process: an inactive pool prints no sizes.
const POOL_DEFAULT = 'Name:           default\nUUID:           a715e7be-0000-4000-8000-000000000001\nState:          running\nPersistent:     yes\nAutostart:      yes\nCapacity:       270548598784\nAllocation:     25383256064\nAvailable:      245165342720\n';
const POOL_SPARE = 'Name:           spare\nUUID:           a715e7be-0000-4000-8000-000000000002\nState:          inactive\nPersistent:     yes\nAutostart:      no\n';
const domain = (name: string, uuid: string) => `<domain type='qemu'>\n  <name>${name}</name>\n  <uuid>${uuid}</uuid>\n  <memory unit='KiB'>131072</memory>\n  <vcpu>1</vcpu>\n</domain>\n`;

/**
 * A fake `virsh` on PATH answering what readHostState's script asks, run by a real /bin/sh:
 * the script itself (loops, UUID filter, sections) is what is tested, without a host.
 * Domain d3 is running but its XML is unreadable; a bogus pool-list line must be dropped.
 */
const bin = mkdtempSync(join(tmpdir(), 'nc-hoststate-'));
writeFileSync(
  join(bin, 'virsh'),
  `#!/bin/sh
shift 3 # -q -c qemu:///system
case "$*" in
  nodeinfo) printf 'CPU model:           x86_64\\nCPU(s):              2\\nMemory size:         5859544 KiB\\n' ;;
  nodememstats) printf 'total  :             5859544 KiB\\nfree   :             2097152 KiB\\nbuffers:                 1024 KiB\\ncached :                 1024 KiB\\n' ;;
  'pool-info --bytes default') printf '%s' '${POOL_DEFAULT}' ;;
  'pool-list --all --uuid')
    if [ -n "$NC_POOLS_FAIL" ]; then echo 'error: failed to list pools' >&2; exit 1; fi
    printf 'a715e7be-0000-4000-8000-000000000001\\na715e7be-0000-4000-8000-000000000002\\nnot;a-uuid\\n' ;;
  *'pool-info --bytes a715e7be-0000-4000-8000-000000000001; pool-info --bytes a715e7be-0000-4000-8000-000000000002;')
    printf '%s\\n%s\\n' '${POOL_DEFAULT}' '${POOL_SPARE}' ;;
  'list --all --uuid') printf 'd1\\nd2\\nd3\\n' ;;
  *'domstate d1; dumpxml --inactive d1; domstate d2; dumpxml --inactive d2; domstate d3; dumpxml --inactive d3;')
    printf 'running\\n\\n%s\\nshut off\\n\\n%s\\nrunning\\n\\n<domain>\\n  <oops/>\\n</domain>\\n' "${domain('a', 'd1')}" "${domain('b', 'd2')}" ;;
  *) echo "fake virsh: unexpected: $*" >&2; exit 2 ;;
esac
`,
);
chmodSync(join(bin, 'virsh'), 0o755);

const shell = (env: Record<string, string> = {}) => localShellTransport({ PATH: `${bin}:/usr/bin:/bin`, ...env });

const endpoint = { label: 'hv1', address: '127.0.0.1', port: 22, user: 'root' } as SshEndpoint;

describe('readHostState', () => {
  it('reads node, the configured pool, every pool and the running domains in one round trip', async () => {
    const recorder = recordingTransport();
    const inner = shell();
    const counted: Transport = { exec: (h, r) => (recorder.exec(h, r), inner.exec(h, r)) };
    const state = await readHostState(new Virsh(counted, endpoint, 'lab'), { node: true, pool: 'default', pools: true, operation: 'inventory' });
    expect(recorder.commands).toHaveLength(1);
    expect(state.node).toMatchObject({ cpus: 2, memoryKiB: 5859544 });
    expect(state.pool).toMatchObject({ name: 'default', capacityBytes: 270548598784 });
    expect(state.pools).toEqual([
      { name: 'default', state: 'running', capacityBytes: 270548598784, allocationBytes: 25383256064, availableBytes: 245165342720 },
      { name: 'spare', state: 'inactive', capacityBytes: 0, allocationBytes: 0, availableBytes: 0 },
    ]);
    // d3's XML is unreadable: it is not listed, but it is still a running VM on the host.
    expect(state.domains.map((d) => [d.info.name, d.state])).toEqual([
      ['a', 'running'],
      ['b', 'shut off'],
    ]);
    expect(state.runningDomains).toBe(2);
  });

  it('leaves pools out when virsh cannot list them, without failing the read', async () => {
    const state = await readHostState(new Virsh(shell({ NC_POOLS_FAIL: '1' }), endpoint, 'lab'), { pools: true });
    expect(state.pools).toBeUndefined();
    expect(state.runningDomains).toBe(2);
  });

  it('asks for pools only when told to', async () => {
    const recorder = recordingTransport();
    await readHostState(new Virsh(recorder, endpoint, 'lab'), { node: true }).catch(() => undefined);
    expect(recorder.commands[0]!.command).not.toContain('pool-list');
  });
});

describe('KvmProvider.inventory', () => {
  it('reports every pool in GiB and every running domain, owned or not', async () => {
    const config = kvmProviderConfig.parse({ type: 'kvm', hosts: [{ name: 'hv1', address: '192.0.2.10' }], ssh: { identityFile: '/dev/null', knownHosts: '/dev/null', config: false } });
    const provider = new KvmProvider({ name: 'lab', config, cwd: bin, env: { HOME: bin }, transport: shell() });
    const [host] = await provider.inventory();
    expect(host).toMatchObject({
      id: 'lab/hv1',
      state: 'up',
      capacity: { cpu: 2, diskGiB: 251 },
      freeMemoryMiB: 2050,
      runningVms: 2,
      storagePools: [
        { name: 'default', capacityGiB: 251.97, freeGiB: 228.33, active: true },
        { name: 'spare', capacityGiB: 0, freeGiB: 0, active: false },
      ],
    });
  });
});

describe('parsePoolInfos', () => {
  it('splits several pool-info outputs, and reads none from nothing', () => {
    expect(parsePoolInfos(`${POOL_DEFAULT}\n${POOL_SPARE}\n`).map((p) => [p.name, p.state])).toEqual([
      ['default', 'running'],
      ['spare', 'inactive'],
    ]);
    expect(parsePoolInfos('')).toEqual([]);
  });
});
