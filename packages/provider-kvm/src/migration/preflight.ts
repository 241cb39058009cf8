import {
  assertPolicyPossible,
  CapacityExceededError,
  ConflictError,
  InvalidInputError,
  NotFoundError,
  splitHostId,
  UnsupportedError,
  type MigrateRequest,
  type OperationContext,
} from '@novacron/core';
import type { KvmHost } from '../config.js';
import type { LocatedDomain } from '../KvmProvider.js';
import { readHostState } from '../virsh/hostState.js';
import type { Virsh } from '../virsh/Virsh.js';
import type { MigrationEnv } from './access.js';
import type { HostLink } from './sshLink.js';
import { baseName, poolDisks, readVolumes, type VolumeInfo } from './volumes.js';

export interface MovePlan {
  readonly mode: 'live' | 'cold';
  readonly source: LocatedDomain;
  readonly destination: KvmHost;
  readonly destinationVirsh: Virsh;
  /** How the source host reaches the destination over SSH. */
  readonly link: HostLink;
  /** The VM's volumes in the source pool, with what they hold. */
  readonly volumes: readonly (VolumeInfo & { readonly readonly: boolean })[];
}

const MiB = 1024 * 1024;
const NOTHING_MOVED = 'nothing was moved';

/**
 * Everything that can be known to fail before anything moves: the destination (known, not
 * the source, reachable, no domain of that name), its room (free memory, the memory and CPU
 * allocation under overcommit, the pool's free space for the disks), the image the disks
 * are built on, the policy (the same checks as `novacron migrate`), and, when post-copy may
 * be used, whether the destination's QEMU may use userfaultfd.
 */
export async function planMove(env: MigrationEnv, found: LocatedDomain, request: MigrateRequest, ctx: OperationContext): Promise<MovePlan> {
  const { provider } = env;
  const vm = found.view.info.name;
  const context = { provider: provider.name, vm, operation: 'migrate' };
  const { provider: providerName, name } = splitHostId(request.toHost);
  if (providerName && providerName !== provider.name) {
    throw new NotFoundError(`host "${request.toHost}" belongs to provider "${providerName}", not "${provider.name}"`, { context, hint: 'a move between providers goes through image export and import' });
  }
  const destination = provider.hosts.get(name);
  if (!destination) throw new NotFoundError(`host "${name}" is not in provider "${provider.name}"`, { context: { ...context, host: name }, hint: `hosts: ${[...provider.hosts.keys()].join(', ')}` });
  if (destination.name === found.host.name) {
    throw new InvalidInputError(`${vm} already runs on ${provider.name}/${destination.name}`, { context: { ...context, host: destination.name }, hint: `choose another host; ${NOTHING_MOVED}` });
  }
  const running = found.view.state !== 'shut off';
  const mode = request.mode === 'live' && running ? 'live' : 'cold';
  const info = found.view.info;
  assertPolicyPossible(request.policy, info.memoryMiB);

  const signal = ctx.signal;
  const opts = { ...(signal ? { signal } : {}), vm, operation: 'migrate' };
  const disks = poolDisks(info, found.host.pool);
  const volumes = (await readVolumes(found.virsh, found.host.pool, disks.map((d) => d.volume), opts)).map((v, i) => ({ ...v, readonly: disks[i]!.readonly }));
  const destinationVirsh = provider.virshFor(destination.name);
  const where = { ...context, host: destination.name };

  // The image first (a URL image is fetched by the destination if it lacks it): the rest of the checks then see it.
  const bases = [...new Set(volumes.filter((v) => v.backing).map((v) => baseName(v.backing!.path)))];
  const image = info.metadata?.image ? env.config.images[info.metadata.image] : undefined;
  if (bases.length > 0 && image?.url && !image.volume && env.ensureImage) await env.ensureImage(destination, info.metadata!.image, ctx);
  const state = await readHostState(destinationVirsh, { node: true, pool: destination.pool, ...(signal ? { signal } : {}), operation: 'migrate' });
  if (state.domains.some((d) => d.info.name === vm)) {
    throw new ConflictError(`${destination.name} already has a domain named ${vm}`, { context: where, hint: `a half-finished move or a copy made by hand: remove the stale one; ${NOTHING_MOVED}` });
  }
  const missing = await missingVolumes(destinationVirsh, destination.pool, bases, opts);
  if (missing.length > 0) {
    throw new NotFoundError(`${destination.name} lacks the image ${info.metadata?.image ? `"${info.metadata.image}" ` : ''}that ${vm}'s disk is built on (volume ${missing.join(', ')} in pool ${destination.pool})`, {
      context: where,
      hint: `put the image into the destination's pool, or choose another host; ${NOTHING_MOVED}`,
    });
  }

  const freeMiB = Math.floor((state.memory?.availableKiB ?? 0) / 1024);
  const problems: string[] = [];
  if (info.memoryMiB > freeMiB) problems.push(`it needs ${info.memoryMiB} MiB of memory and the host has ${freeMiB} MiB free`);
  const allocated = state.domains.reduce((sum, d) => ({ cpu: sum.cpu + d.info.vcpus, memoryMiB: sum.memoryMiB + d.info.memoryMiB }), { cpu: 0, memoryMiB: 0 });
  const capacity = { cpu: state.node?.cpus ?? 0, memoryMiB: Math.floor((state.node?.memoryKiB ?? 0) / 1024) };
  const limits = { cpu: Math.floor(capacity.cpu * destination.overcommit.cpu), memoryMiB: Math.floor(capacity.memoryMiB * destination.overcommit.memory) };
  if (allocated.memoryMiB + info.memoryMiB > limits.memoryMiB) problems.push(`${allocated.memoryMiB} + ${info.memoryMiB} MiB of memory would exceed ${limits.memoryMiB} MiB (capacity × overcommit ${destination.overcommit.memory})`);
  if (allocated.cpu + info.vcpus > limits.cpu) problems.push(`${allocated.cpu} + ${info.vcpus} vCPUs would exceed ${limits.cpu} (capacity × overcommit ${destination.overcommit.cpu})`);
  const diskBytes = volumes.reduce((sum, v) => sum + (mode === 'cold' || v.readonly ? v.physicalBytes : v.allocationBytes), 0);
  const poolFree = state.pool?.availableBytes ?? 0;
  if (diskBytes > poolFree) problems.push(`its disks need ${Math.ceil(diskBytes / MiB)} MiB and pool ${destination.pool} has ${Math.floor(poolFree / MiB)} MiB free`);
  if (problems.length > 0) {
    throw new CapacityExceededError(`${destination.name} cannot take ${vm}: ${problems.join('; ')}`, { context: where, hint: `choose another host or free capacity; ${NOTHING_MOVED}` });
  }

  if (mode === 'live' && request.policy.postCopy.allowed) await assertPostCopyPossible(destinationVirsh, where);
  return { mode, source: found, destination, destinationVirsh, link: { address: destination.ssh.address, port: destination.ssh.port, user: destination.ssh.user }, volumes };
}

async function missingVolumes(virsh: Virsh, pool: string, names: readonly string[], opts: { signal?: AbortSignal; vm?: string; operation?: string }): Promise<string[]> {
  if (names.length === 0) return [];
  const results = await virsh.batch(
    names.map((n) => ['vol-info', '--pool', pool, n]),
    opts,
  );
  const missing: string[] = [];
  for (const [i, n] of names.entries()) {
    const r = results[i];
    if (r?.error?.code === 'NotFound') missing.push(n);
    else if (r?.error) throw r.error;
  }
  return missing;
}

/**
 * Post-copy needs userfaultfd in the destination QEMU. QEMU 7.2 gets it from the system
 * call, which the kernel refuses to unprivileged users unless vm.unprivileged_userfaultfd
 * is 1; QEMU under libvirt runs as its own user (libvirt-qemu on Debian, qemu on Fedora).
 */
async function assertPostCopyPossible(virsh: Virsh, context: { provider: string; vm: string; host: string; operation: string }): Promise<void> {
  const r = await virsh.script(`cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null || echo absent; sed -n 's/^[[:space:]]*user[[:space:]]*=[[:space:]]*"\\(.*\\)".*/user=\\1/p' /etc/libvirt/qemu.conf 2>/dev/null; exit 0`, { timeoutMs: 30_000 });
  const sysctl = r.stdout.split('\n')[0]?.trim();
  const user = /^user=(.*)$/m.exec(r.stdout)?.[1];
  if (sysctl === '1' || user === 'root' || user === '+0') return;
  throw new UnsupportedError(`${context.host} cannot run post-copy: its QEMU (user ${user ?? 'libvirt default, not root'}) may not use userfaultfd (vm.unprivileged_userfaultfd is ${sysctl})`, {
    context,
    hint: `set vm.unprivileged_userfaultfd=1 on the destination (sysctl), or disallow post-copy (migration.postCopy.allowed: false in the group); ${NOTHING_MOVED}`,
  });
}
