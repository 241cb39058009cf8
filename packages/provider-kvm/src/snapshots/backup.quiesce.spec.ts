// Quiescing of online backups: with a guest agent that answers, the guest's file systems are
// frozen just for the start of the backup job and thawed right after (also when the job
// fails), and the record says `quiesced`; without one, or when the freeze fails, the backup is
// crash-consistent and says `crash`. The provider's scripts run through a real /bin/sh against
// a fake `virsh` on PATH (one running domain, a guest agent and a frozen flag kept in files)
// and the real qemu-img on a small qcow2 disk; the fake logs each call, and at backup-begin
// whether the guest was frozen then.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { kvmProviderConfig, type Clock } from '@novacron/core';
import { KvmProvider } from '../KvmProvider.js';
import { NOVACRON_XMLNS } from '../domain/metadata.js';
import { localShellTransport } from '../testing.js';

const dir = mkdtempSync(join(tmpdir(), 'nc-quiesce-'));
const bin = join(dir, 'bin');
const disk = join(dir, 'disk.qcow2');
const backups = join(dir, 'backups');
const calls = join(dir, 'calls');
/** Flags: the guest agent answers; the guest's file systems are frozen; injected failures. */
const agent = join(dir, 'agent');
const frozen = join(dir, 'frozen');
const freezeFails = join(dir, 'freeze-fails');
const beginFails = join(dir, 'begin-fails');
const jobFails = join(dir, 'job-fails');

writeFileSync(
  join(dir, 'domain.xml'),
  `<domain type='kvm'>
  <name>shop-db-0</name>
  <uuid>0b6c4d0e-1111-2222-3333-444455556666</uuid>
  <metadata>
    <novacron:vm xmlns:novacron="${NOVACRON_XMLNS}" fleet="shop" group="db" index="0" specHash="h" image="tiny" diskGiB="1" createdAt="2026-01-01T00:00:00.000Z"/>
  </metadata>
  <memory unit='KiB'>262144</memory>
  <vcpu placement='static'>1</vcpu>
  <os><type>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${disk}'/><target dev='vda' bus='virtio'/></disk>
  </devices>
</domain>
`,
);
const made = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '2M'], { encoding: 'utf8' });
if (made.status !== 0) throw new Error(`qemu-img create: ${made.stderr}`);

// argv: -q -c qemu:///system <command> <args>. Only the domain shop-db-0 exists, running.
mkdirSync(bin);
writeFileSync(
  join(bin, 'virsh'),
  `#!/bin/sh
shift 3
cmd=$1; shift
dom=$1; [ "$cmd" = dumpxml ] && for a; do dom=$a; done
if [ "$dom" != shop-db-0 ]; then echo "error: failed to get domain '$dom'" >&2; exit 1; fi
case "$cmd" in
  domstate) echo running ;;
  dumpxml) cat "${join(dir, 'domain.xml')}" ;;
  checkpoint-list|checkpoint-delete) ;;
  qemu-agent-command)
    echo "$cmd" >> "${calls}"
    if [ ! -e "${agent}" ]; then echo "error: Guest agent is not responding: QEMU guest agent is not connected" >&2; exit 1; fi
    echo '{"return":{}}' ;;
  domfsfreeze)
    echo "$cmd" >> "${calls}"
    if [ -e "${freezeFails}" ]; then
      # The agent timed out, having frozen the file systems all the same.
      : > "${frozen}"
      echo "error: Guest agent is not responding: Guest agent not available for now" >&2; exit 1
    fi
    : > "${frozen}"; echo "Froze 1 filesystem(s)" ;;
  domfsthaw)
    echo "$cmd" >> "${calls}"
    rm -f "${frozen}"; echo "Thawed 1 filesystem(s)" ;;
  backup-begin)
    if [ -e "${frozen}" ]; then echo "backup-begin frozen" >> "${calls}"; else echo "backup-begin running" >> "${calls}"; fi
    if [ -e "${beginFails}" ]; then echo "error: internal error: unable to execute QEMU command 'blockdev-add': Could not open backup target" >&2; exit 1; fi
    target=$(sed -n 's:.*<target file="\\([^"]*\\)".*:\\1:p' "$2")
    cp "${disk}" "$target" || exit 1
    echo "Backup started" ;;
  domjobinfo)
    case "$*" in
      *--completed*)
        if [ -e "${jobFails}" ]; then printf 'Job type:         Failed\\nOperation:        Backup\\nError message:    No space left on device\\n'
        else printf 'Job type:         Completed\\nOperation:        Backup\\n'; fi ;;
      *) echo "domjobinfo" >> "${calls}"; printf 'Job type:         None\\n' ;;
    esac ;;
  *) echo "error: unexpected virsh $cmd" >&2; exit 1 ;;
esac
`,
);
chmodSync(join(bin, 'virsh'), 0o755);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs every command through /bin/sh with the fake virsh first on PATH (stdin passed on). */
const shell = localShellTransport({ PATH: `${bin}:/usr/bin:/bin` });

const clock: Clock = { now: () => Date.parse('2026-02-01T02:00:00.000Z'), sleep: async () => undefined };

function setup() {
  const log: string[] = [];
  const config = kvmProviderConfig.parse({ type: 'kvm', hosts: [{ name: 'hv1', address: '192.0.2.10' }], backupDir: backups, ssh: { identityFile: '/dev/null', knownHosts: '/dev/null', config: false } });
  const provider = new KvmProvider({ name: 'lab', config, cwd: dir, env: { HOME: dir }, clock, transport: shell, log: (m) => log.push(m) });
  return { provider, log };
}

const ref = { name: 'shop-db-0', fleet: 'shop', host: 'lab/hv1' };
/** The calls the fake virsh logged, in order (`domjobinfo` polls of the running job included). */
const logged = () => (existsSync(calls) ? readFileSync(calls, 'utf8').split('\n').filter(Boolean) : []);
/** The record on the target host. */
const record = (id: string) => JSON.parse(readFileSync(join(backups, 'shop-db-0', id, 'meta.json'), 'utf8')) as { consistency: string; state: string; error?: string };

beforeEach(() => {
  for (const f of [calls, agent, frozen, freezeFails, beginFails, jobFails, backups]) rmSync(f, { recursive: true, force: true });
});

describe('online backups: quiesced with the guest agent, crash-consistent otherwise', () => {
  it('freezes the guest just for the start of the job when its agent answers, and records the backup as quiesced', async () => {
    writeFileSync(agent, '');
    const { provider } = setup();
    const done = await provider.snapshot(ref, { kind: 'full', id: 'q1' });

    expect(done).toMatchObject({ id: 'q1', kind: 'full', state: 'complete', consistency: 'quiesced' });
    expect(record('q1')).toMatchObject({ state: 'complete', consistency: 'quiesced' });
    // Asked the agent, froze, began the job with the guest frozen, thawed, then watched the job.
    expect(logged()).toEqual(['qemu-agent-command', 'domfsfreeze', 'backup-begin frozen', 'domfsthaw', 'domjobinfo']);
    expect(existsSync(frozen)).toBe(false);
  });

  it('thaws the guest when the job cannot start, and the record stays incomplete with the error', async () => {
    writeFileSync(agent, '');
    writeFileSync(beginFails, '');
    const { provider } = setup();
    await expect(provider.snapshot(ref, { kind: 'full', id: 'q2' })).rejects.toThrow(/Could not open backup target/);

    expect(logged()).toEqual(['qemu-agent-command', 'domfsfreeze', 'backup-begin frozen', 'domfsthaw']);
    expect(existsSync(frozen)).toBe(false);
    expect(record('q2')).toMatchObject({ state: 'incomplete', error: expect.stringMatching(/Could not open backup target/) });
  });

  it('has thawed the guest before a job that fails later ends', async () => {
    writeFileSync(agent, '');
    writeFileSync(jobFails, '');
    const { provider } = setup();
    await expect(provider.snapshot(ref, { kind: 'full', id: 'q3' })).rejects.toThrow(/backup job of shop-db-0 ended failed: No space left on device/);

    expect(logged()).toEqual(['qemu-agent-command', 'domfsfreeze', 'backup-begin frozen', 'domfsthaw', 'domjobinfo']);
    expect(existsSync(frozen)).toBe(false);
    expect(record('q3')).toMatchObject({ state: 'incomplete', error: expect.stringMatching(/No space left on device/) });
  });

  it('without an agent: no freeze, and the record says crash', async () => {
    const { provider } = setup();
    const done = await provider.snapshot(ref, { kind: 'full', id: 'c1' });

    expect(done).toMatchObject({ id: 'c1', state: 'complete', consistency: 'crash' });
    expect(record('c1')).toMatchObject({ state: 'complete', consistency: 'crash' });
    expect(logged()).toEqual(['qemu-agent-command', 'backup-begin running', 'domjobinfo']);
  });

  it('with quiesce: false the agent is not even asked: crash-consistent', async () => {
    writeFileSync(agent, '');
    const { provider } = setup();
    const done = await provider.snapshot(ref, { kind: 'full', id: 'c2', quiesce: false });

    expect(done.consistency).toBe('crash');
    expect(logged()).toEqual(['backup-begin running', 'domjobinfo']);
  });

  it('when the freeze fails: thaws whatever it froze, takes the backup crash-consistent and records it as crash', async () => {
    writeFileSync(agent, '');
    writeFileSync(freezeFails, '');
    const { provider, log } = setup();
    const done = await provider.snapshot(ref, { kind: 'full', id: 'c3' });

    expect(done).toMatchObject({ id: 'c3', state: 'complete', consistency: 'crash' });
    expect(record('c3')).toMatchObject({ state: 'complete', consistency: 'crash' });
    // The failed freeze had frozen the guest all the same: thawed before the job, not left so.
    expect(logged()).toEqual(['qemu-agent-command', 'domfsfreeze', 'domfsthaw', 'backup-begin running', 'domjobinfo']);
    expect(existsSync(frozen)).toBe(false);
    expect(log).toContainEqual(expect.stringMatching(/shop-db-0: the guest agent answers but could not freeze: .*Guest agent not available.*; crash-consistent/));
  });
});
