// `stop` without a host: the ACPI power button, then (when the guest ignores it past the
// graceful timeout) a forced power-off. The commands the provider builds run through a real
// /bin/sh against a fake `virsh` on PATH that keeps one domain's state in a file, recorded by
// the test transport; time is a fake clock, so the timeout passes at once.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { kvmProviderConfig, type Clock } from '@novacron/core';
import { KvmProvider } from './KvmProvider.js';
import { NOVACRON_XMLNS } from './domain/metadata.js';
import { recordingTransport } from './testing.js';

const dir = mkdtempSync(join(tmpdir(), 'nc-stop-'));
const bin = join(dir, 'bin');
const state = join(dir, 'state');
/** While this file exists the guest powers off when the power button is pressed. */
const obeysShutdown = join(dir, 'obeys-shutdown');

writeFileSync(
  join(dir, 'domain.xml'),
  `<domain type='kvm'>
  <name>shop-web-0</name>
  <uuid>0b6c4d0e-1111-2222-3333-444455556666</uuid>
  <metadata>
    <novacron:vm xmlns:novacron="${NOVACRON_XMLNS}" fleet="shop" group="web" index="0" specHash="h" image="tiny" diskGiB="2" createdAt="2026-01-01T00:00:00.000Z"/>
  </metadata>
  <memory unit='KiB'>262144</memory>
  <vcpu placement='static'>1</vcpu>
  <os><type>hvm</type></os>
  <devices/>
</domain>
`,
);
// argv: -q -c qemu:///system <command> <args>. Only the domain shop-web-0 exists.
mkdirSync(bin);
writeFileSync(
  join(bin, 'virsh'),
  `#!/bin/sh
shift 3
cmd=$1; shift
dom=$1; [ "$cmd" = dumpxml ] && dom=$2
if [ "$dom" != shop-web-0 ]; then echo "error: failed to get domain '$dom'" >&2; exit 1; fi
case "$cmd" in
  domstate) cat "${state}" ;;
  dumpxml) cat "${join(dir, 'domain.xml')}" ;;
  shutdown)
    if [ "$(cat "${state}")" != running ]; then echo "error: Requested operation is not valid: domain is not running" >&2; exit 1; fi
    [ -e "${obeysShutdown}" ] && echo 'shut off' > "${state}"
    echo "Domain '$dom' is being shutdown" ;;
  destroy)
    if [ "$(cat "${state}")" != running ]; then echo "error: Requested operation is not valid: domain is not running" >&2; exit 1; fi
    echo 'shut off' > "${state}"
    echo "Domain '$dom' destroyed" ;;
  *) echo "error: unexpected virsh $cmd" >&2; exit 1 ;;
esac
`,
);
chmodSync(join(bin, 'virsh'), 0o755);

/** Virtual time: `sleep` returns at once and moves the clock on. */
function fakeClock(): Clock & { slept: number[] } {
  let now = 1_000_000;
  const slept: number[] = [];
  return {
    slept,
    now: () => now,
    sleep: async (ms) => {
      slept.push(ms);
      now += ms;
    },
  };
}

/** The virsh subcommands a recorded command line (or batch script) ran, in order. */
const virshCalls = (command: string) => [...command.matchAll(/virsh -q -c qemu:\/\/\/system ([a-z-]+)/g)].map((m) => m[1]!);

function setup() {
  const clock = fakeClock();
  /** The fake clock's time when each virsh subcommand was sent. */
  const at: { call: string; t: number }[] = [];
  const transport = recordingTransport((command) => {
    for (const call of virshCalls(command)) at.push({ call, t: clock.now() });
    const r = spawnSync('/bin/sh', ['-c', command], { env: { PATH: `${bin}:/usr/bin:/bin` }, encoding: 'utf8', input: '' });
    return { stdout: r.stdout, stderr: r.stderr, code: r.status };
  });
  const config = kvmProviderConfig.parse({ type: 'kvm', hosts: [{ name: 'hv1', address: '192.0.2.10' }], ssh: { identityFile: '/dev/null', knownHosts: '/dev/null', config: false } });
  const provider = new KvmProvider({ name: 'lab', config, cwd: dir, env: { HOME: dir }, clock, transport });
  const calls = () => transport.commands.flatMap((c) => virshCalls(c.command));
  return { provider, clock, at, calls };
}

const ref = { name: 'shop-web-0', fleet: 'shop', host: 'lab/hv1' };

beforeEach(() => {
  writeFileSync(state, 'running\n');
  rmSync(obeysShutdown, { force: true });
});

describe('KvmProvider.stop', () => {
  it('presses the power button, waits gracefulTimeoutMs while the domain stays running, then forces it off', async () => {
    const { provider, clock, at, calls } = setup();
    const started = clock.now();
    const phases: string[] = [];
    const record = await provider.stop(ref, { gracefulTimeoutMs: 2_000 }, { onProgress: (p) => phases.push(p.phase) });

    expect(record).toMatchObject({ name: 'shop-web-0', state: 'stopped', host: 'lab/hv1' });
    const sequence = calls();
    // Found (domstate + dumpxml), shutdown, domstate polled until the timeout, destroy, read back.
    expect(sequence.slice(0, 3)).toEqual(['domstate', 'dumpxml', 'shutdown']);
    expect(sequence.slice(-3)).toEqual(['destroy', 'domstate', 'dumpxml']);
    expect(sequence.filter((c) => c === 'shutdown')).toHaveLength(1);
    expect(sequence.filter((c) => c === 'destroy')).toHaveLength(1);
    const polls = sequence.slice(3, -3);
    expect(polls.length).toBeGreaterThanOrEqual(2);
    expect(new Set(polls)).toEqual(new Set(['domstate']));
    // destroy only once the graceful timeout had passed, and not much later (no waiting on the config's 60 s stopTimeout).
    const shutdownAt = at.find((a) => a.call === 'shutdown')!.t;
    const destroyAt = at.find((a) => a.call === 'destroy')!.t;
    expect(destroyAt - shutdownAt).toBeGreaterThanOrEqual(2_000);
    expect(destroyAt - started).toBeLessThanOrEqual(2_000 + 500);
    expect(phases).toEqual(['shutdown', 'destroy']);
  });

  it('uses the provider stopTimeout when the request gives none', async () => {
    const { provider, at } = setup();
    const record = await provider.stop(ref);
    expect(record.state).toBe('stopped');
    const shutdownAt = at.find((a) => a.call === 'shutdown')!.t;
    const destroyAt = at.find((a) => a.call === 'destroy')!.t;
    expect(destroyAt - shutdownAt).toBeGreaterThanOrEqual(60_000);
    expect(destroyAt - shutdownAt).toBeLessThanOrEqual(60_000 + 500);
  });

  it('does not force a guest that powers off within the timeout', async () => {
    writeFileSync(obeysShutdown, '');
    const { provider, calls } = setup();
    const record = await provider.stop(ref, { gracefulTimeoutMs: 2_000 });
    expect(record.state).toBe('stopped');
    expect(calls()).not.toContain('destroy');
    expect(calls()).toContain('shutdown');
  });

  it('with force, destroys at once without the power button', async () => {
    const { provider, clock, calls } = setup();
    const record = await provider.stop(ref, { force: true });
    expect(record.state).toBe('stopped');
    expect(calls()).toEqual(['domstate', 'dumpxml', 'destroy', 'domstate', 'dumpxml']);
    expect(clock.slept).toEqual([]);
  });
});
