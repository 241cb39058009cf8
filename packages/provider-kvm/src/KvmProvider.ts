import { randomBytes } from 'node:crypto';
import {
  AbortedError,
  assertOwned,
  CapacityExceededError,
  ConflictError,
  hostId,
  InvalidInputError,
  NotFoundError,
  splitHostId,
  systemClock,
  throwIfAborted,
  UnreachableError,
  UnsupportedError,
  type AdoptRequest,
  type Capabilities,
  type Clock,
  type CloudInit,
  type CreateVmRequest,
  type ErrorContext,
  type Host,
  type KvmProviderConfig,
  type MigrateRequest,
  type MigrationResult,
  type OperationContext,
  type Provider,
  type ResizeRequest,
  type Resources,
  type StopOptions,
  type StoragePool,
  type UnownedVm,
  type VmAddress,
  type VmRecord,
  type VmRef,
  type VmState,
  type ImageArtifact,
  type NicSpec,
  type RestoreRequest,
  type RestoreResult,
  type SnapshotRecord,
  type SnapshotRequest,
  type SnapshotVerification,
  type BootCheckOptions,
  type BootCheckResult,
} from '@novacron/core';
import { resolveAddresses, waitForAddresses } from './addresses/addresses.js';
import { buildSeedIso } from './cloudinit/seed.js';
import { resolveHosts, type KvmHost } from './config.js';
import { buildDomainXml, parseDomainXml, serialLogPath, type DomainSpec } from './domain/domainXml.js';
import { metadataCommand, type NovaCronMetadata } from './domain/metadata.js';
import { assertName } from './names.js';
import { assertNetworks, attachInterfaceArgs, detachInterfaceArgs, domainNics, nicChanges, nicsOfInterfaces, readNetworks, type NicChanges } from './domain/nics.js';
import { SshPool } from './ssh/SshPool.js';
import type { Transport } from './transport.js';
import { readHostState, type DomainView, type HostState } from './virsh/hostState.js';
import type { Lease, PoolInfo } from './virsh/parsers.js';
import { Virsh } from './virsh/Virsh.js';
import { imageOfBackingFile, type BaseVolume, type ImageConfig } from './images.js';
import { ImageCache, type ImageCacheStats } from './image-cache/ImageCache.js';
import { KeyedQueue } from './locks/KeyedQueue.js';
import { CLAIM_TTL_SEC, claimScript, nameProbeScript, parseClaims, releaseScript } from './locks/claims.js';
import { probeRootDisks } from './adopt/diskProbe.js';
import { lastLine, readyMarkerFor, serialLogOf, watchGuest } from './domain/guestReady.js';
import { KvmSnapshots } from './snapshots/KvmSnapshots.js';
import { KvmImages } from './images/KvmImages.js';
import { KvmMigrations } from './migration/KvmMigrations.js';
import type { KvmMigrationEstimate } from './migration/estimate.js';

export interface KvmProviderOptions {
  readonly name: string;
  readonly config: KvmProviderConfig;
  readonly cwd: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly clock?: Clock;
  readonly log?: (message: string) => void;
  /** How commands reach hosts; the SSH pool by default. Tests pass a recording or failing one. */
  readonly transport?: Transport;
}

/** A domain found on a host, with what the provider needs to act on it. */
export interface LocatedDomain {
  readonly host: KvmHost;
  readonly virsh: Virsh;
  readonly view: DomainView;
}

/** Volumes NovaCron makes for a VM are named after it, so they can be found without a state file. */
export function rootVolumeName(vm: string): string {
  return `${vm}-root.qcow2`;
}
export function seedVolumeName(vm: string): string {
  return `${vm}-seed.iso`;
}

const POLL_MS = 500;
/** How long a running guest has to release a detached NIC (PCI hot-unplug is the guest's to acknowledge; slow under emulation). */
const NIC_RELEASE_MS = 60_000;
/** How long a create waits for another host to say whether a VM name is taken there. */
const NAME_PROBE_MS = 5_000;

/**
 * VMs on the user's own KVM hosts: libvirt driven through `virsh` over one pooled SSH
 * connection per host. Ownership lives in each domain's XML (`<metadata><novacron:vm …>`),
 * so `list` needs nothing but the hosts. `create` is transactional: what it made is removed
 * when it fails. Domains without NovaCron's record, or with another fleet's, are never
 * changed.
 */
export class KvmProvider implements Provider {
  readonly kind = 'kvm';
  readonly capabilities: Capabilities;
  readonly name: string;
  readonly hosts: ReadonlyMap<string, KvmHost>;
  readonly transport: Transport;
  readonly #config: KvmProviderConfig;
  readonly #clock: Clock;
  readonly #log: ((message: string) => void) | undefined;
  readonly #hostLocks = new Map<string, Promise<void>>();
  readonly #books = new Map<string, { seq: number; active: Map<symbol, Resources>; released: { at: number; resources: Resources }[] }>();
  /** Per-host and per-pool queues (day-2 concurrency); the hosts' own locks order work across processes. */
  readonly #queue = new KeyedQueue();
  readonly #imageCache: ImageCache;
  /** This provider's mark on the name claims it writes on hosts. */
  readonly #claimToken = randomBytes(8).toString('hex');
  readonly #releasing = new Set<Promise<void>>();
  readonly #snapshots: KvmSnapshots;
  readonly #images: KvmImages;
  /** Live and cold moves between the hosts, and what they have measured (calibration). */
  readonly migrations: KvmMigrations;

  constructor(options: KvmProviderOptions) {
    this.name = options.name;
    this.#config = options.config;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.log;
    this.hosts = new Map(resolveHosts(options.name, options.config, options).map((h) => [h.name, h]));
    this.transport = options.transport ?? new SshPool({ env: options.env, ...(options.log ? { log: options.log } : {}) });
    this.#imageCache = new ImageCache({
      hosts: this.hosts,
      virshFor: (h) => this.virshFor(h),
      queue: this.#queue,
      perPool: options.config.queues?.perPool ?? 2,
      ...(options.config.lockDir ? { lockDir: options.config.lockDir } : {}),
      ...(options.log ? { log: options.log } : {}),
    });
    this.#snapshots = new KvmSnapshots(this, { config: options.config, clock: this.#clock, ...(options.log ? { log: options.log } : {}) });
    this.#images = new KvmImages(this, { config: options.config, ...(options.log ? { log: options.log } : {}) });
    this.migrations = new KvmMigrations({
      provider: this,
      config: options.config,
      clock: this.#clock,
      ensureImage: (host, imageName, ctx) => this.#imageCache.ensure(host, imageName, this.#config.images[imageName]!, ctx),
      ...(options.log ? { log: options.log } : {}),
    });
    this.capabilities = {
      resize: true,
      // Live only up to the ceilings VMs are defined with; without them a resize reboots.
      hotplugCpu: options.config.hotplug?.cpu !== undefined,
      hotplugMemory: options.config.hotplug?.memory !== undefined,
      // Between this provider's hosts (migration/): live through the core's orchestrator, cold with checksums.
      liveMigration: true,
      coldMigration: true,
      // Backup folders, checkpoints and qcow2 internal snapshots (snapshots/); disk images (images/).
      snapshots: true,
      incrementalSnapshots: true,
      imageExport: true,
      imageImport: true,
      // Restore tests boot the restored VM to its image's ready marker.
      bootCheck: true,
      // A VM made from another provider's disk is watched to its image's ready marker, as a cold move's destination is.
      awaitReady: true,
      adopt: true,
      // attach-interface / detach-interface, live and in the config (domain/nics.ts).
      hotplugNics: true,
    };
  }

  // ---- the provider contract -----------------------------------------------------------

  async inventory(ctx: OperationContext = {}): Promise<readonly Host[]> {
    return Promise.all(
      [...this.hosts.values()].map(async (host): Promise<Host> => {
        try {
          const state = await readHostState(this.virshFor(host.name), { node: true, pool: host.pool, pools: true, signal: signalOf(ctx), operation: 'inventory' });
          return this.#toHost(host, state);
        } catch (error) {
          // One host down must not hide the others from placement: it is reported down.
          if (error instanceof UnreachableError) {
            this.#log?.(`kvm: ${error.describe()}`);
            return this.#toHost(host, undefined);
          }
          throw error;
        }
      }),
    );
  }

  async list(fleet: string, ctx: OperationContext = {}): Promise<readonly VmRecord[]> {
    // Every host must answer: a VM missing from the list would be created again elsewhere.
    const perHost = await Promise.all(
      [...this.hosts.values()].map(async (host) => {
        const virsh = this.virshFor(host.name);
        const state = await readHostState(virsh, { network: host.network, signal: signalOf(ctx), operation: 'list' });
        const mine = state.domains.filter((d) => d.info.metadata?.fleet === fleet);
        const addresses = await this.#addressesOf(host, virsh, mine, state.leases, ctx);
        return mine.map((d) => this.#toRecord(host, d, addresses.get(d.info.uuid) ?? []));
      }),
    );
    return perHost.flat();
  }

  async create(request: CreateVmRequest, ctx: OperationContext = {}): Promise<VmRecord> {
    const targets = [request.host, ...(request.alternatives ?? []).map((a) => a.host)];
    let lastCapacityError: CapacityExceededError | undefined;
    for (const target of targets) {
      try {
        const host = this.#hostOf(target, 'create');
        return await this.#queue.run(`host:${host.name}`, this.#config.queues?.perHost ?? 4, () => this.#createOn(host, request, ctx), ctx.signal);
      } catch (error) {
        // "No room here" moves on to the next place placement found acceptable.
        if (error instanceof CapacityExceededError && target !== targets.at(-1)) {
          lastCapacityError = error;
          this.#log?.(`kvm: ${error.describe()}; trying the next host`);
          continue;
        }
        throw error;
      }
    }
    throw lastCapacityError ?? new InvalidInputError('no host given for create', { context: { provider: this.name, vm: request.name, operation: 'create' }, hint: 'plan the fleet first: placement chooses the host' });
  }

  async start(ref: VmRef, ctx: OperationContext = {}): Promise<VmRecord> {
    const found = await this.#owned(ref, 'start', ctx);
    if (found.view.state !== 'running') {
      progress(ctx, 'start', 'starting');
      const r = await found.virsh.tryRun(['start', ref.name], { signal: signalOf(ctx), vm: ref.name, operation: 'start' });
      if (r.error && !/already (?:running|active)/.test(r.stderr)) throw r.error;
    }
    return this.#reread(found, 'start', ctx);
  }

  async stop(ref: VmRef, options: StopOptions = {}, ctx: OperationContext = {}): Promise<VmRecord> {
    const found = await this.#owned(ref, 'stop', ctx);
    await this.#powerOff(found, options, ctx);
    return this.#reread(found, 'stop', ctx);
  }

  async delete(ref: VmRef, ctx: OperationContext = {}): Promise<void> {
    const name = assertName('vm', ref.name, 'VM name', { provider: this.name });
    const found = await this.locate(ref, 'delete', ctx);
    if (found) {
      assertOwnedOnHost(found, ref, this.name, 'delete');
      const { virsh, view, host } = found;
      const opts = { signal: signalOf(ctx), vm: name, operation: 'delete' };
      progress(ctx, 'delete', 'domain');
      if (view.state !== 'shut off') {
        const r = await virsh.tryRun(['destroy', name], opts);
        if (r.error && !/not running/.test(r.stderr)) throw r.error;
      }
      const undefine = ['undefine', name, '--managed-save', '--snapshots-metadata', '--checkpoints-metadata', ...(view.info.hasNvram ? ['--nvram'] : [])];
      const u = await virsh.tryRun(undefine, opts);
      if (u.error && u.error.code !== 'NotFound') throw u.error;
      // Every disk of this VM that is a volume named after it in our pool: root, seed, and
      // whatever extensions add later (`<vm>-data1.qcow2`). Never the base image.
      const volumes = new Set(
        view.info.disks.filter((d) => d.pool === host.pool && d.volume?.startsWith(`${name}-`)).map((d) => d.volume!),
      );
      volumes.add(rootVolumeName(name));
      volumes.add(seedVolumeName(name));
      progress(ctx, 'delete', 'volumes');
      await this.#deleteVolumes(virsh, host.pool, [...volumes], opts);
      return;
    }
    // The domain is gone. A create that was interrupted before its define may have left
    // volumes named after the VM: remove those no domain uses, so a re-run converges.
    await Promise.all(
      this.#hostsFor(ref).map(async (host) => {
        try {
          await this.#removeLeftoverVolumes(host, name, ctx);
        } catch (error) {
          if (!(error instanceof UnreachableError) || ref.host) throw error;
        }
      }),
    );
  }

  async resize(ref: VmRef, request: ResizeRequest, ctx: OperationContext = {}): Promise<VmRecord> {
    const found = await this.#owned(ref, 'resize', ctx);
    const { virsh, view, host } = found;
    const info = view.info;
    const meta = info.metadata!;
    const want = request.resources;
    const opts = { signal: signalOf(ctx), vm: ref.name, operation: 'resize' };
    if (want.diskGiB < meta.diskGiB) {
      throw new InvalidInputError(`VM "${ref.name}" has a ${meta.diskGiB} GiB disk; disks only grow (asked for ${want.diskGiB} GiB)`, {
        context: virsh.context(opts),
        hint: 'shrinking a disk loses data: replace the VM instead',
      });
    }
    if (want.gpu > 0) throw new UnsupportedError('GPUs are not supported on KVM hosts yet', { context: virsh.context(opts), hint: 'set gpu: 0 for groups placed on KVM hosts, or place them on a cloud provider' });
    const grow = { cpu: Math.max(0, want.cpu - info.vcpus), memoryMiB: Math.max(0, want.memoryMiB - info.memoryMiB) };
    if (grow.cpu > 0 || grow.memoryMiB > 0) await this.#assertRoom(host, virsh, { ...grow, diskGiB: 0, gpu: 0 }, ref.name, 'resize', ctx);
    // NICs: names and networks checked before anything changes.
    let nics: NicChanges | undefined;
    if (request.nics) {
      const context = { ...virsh.context(opts), host: host.name };
      domainNics(request.nics, context);
      assertNetworks(request.nics, await readNetworks(virsh, request.nics.map((n) => n.network), opts), host.name, context);
      nics = nicChanges(request.nics, info.interfaces);
    }

    const running = view.state !== 'shut off';
    if (nics) await this.#hotplugNics(found, nics, running, opts, ctx);
    // New cloud-init data is written into the seed while the VM is off, and read at the next
    // boot: with the reboot policy that boot is now (one reboot, shared with a resize that needs one).
    const newSeed = request.reboot && request.cloudInit ? this.#seedFor(ref.name, request.cloudInit) : undefined;
    let rebooted = false;
    const cpuChange = want.cpu !== info.vcpus;
    const memChange = want.memoryMiB !== info.memoryMiB;
    if (cpuChange || memChange) {
      const maxVcpus = Math.max(want.cpu, info.maxVcpus);
      const maxMemoryMiB = Math.max(want.memoryMiB, info.maxMemoryMiB);
      const live = running && want.cpu <= info.maxVcpus && want.memoryMiB <= info.maxMemoryMiB;
      let done = false;
      if (live) {
        progress(ctx, 'resize', 'hotplug');
        const results = await virsh.batch(
          [
            ...(cpuChange ? [['setvcpus', ref.name, String(want.cpu), '--live', '--config']] : []),
            ...(memChange ? [['setmem', ref.name, `${want.memoryMiB}MiB`, '--live', '--config']] : []),
          ],
          { ...opts, stopOnError: true },
        );
        // A guest may refuse to give a vCPU back; then the reboot path below applies.
        done = results.length === Number(cpuChange) + Number(memChange) && results.every((r) => !r.error);
        if (!done && !request.allowReboot) throw results.find((r) => r.error)?.error ?? new ConflictError('live resize failed', { context: virsh.context(opts), hint: 'allow reboots for this group (changes.allowReboot)' });
      }
      if (!done) {
        if (running && !request.allowReboot) {
          throw new ConflictError(`VM "${ref.name}" needs a reboot to get ${want.cpu} vCPUs / ${want.memoryMiB} MiB (its live maxima are ${info.maxVcpus} / ${info.maxMemoryMiB} MiB)`, {
            context: virsh.context(opts),
            hint: 'allow reboots for this group (changes.allowReboot), or set hotplug ceilings in the provider config for new VMs',
          });
        }
        progress(ctx, 'resize', 'config');
        const config: string[][] = [];
        if (maxVcpus !== info.maxVcpus) config.push(['setvcpus', ref.name, String(maxVcpus), '--maximum', '--config']);
        config.push(['setvcpus', ref.name, String(want.cpu), '--config']);
        if (maxMemoryMiB !== info.maxMemoryMiB) config.push(['setmaxmem', ref.name, `${maxMemoryMiB}MiB`, '--config']);
        config.push(['setmem', ref.name, `${want.memoryMiB}MiB`, '--config']);
        for (const r of await virsh.batch(config, { ...opts, stopOnError: true })) if (r.error) throw r.error;
        if (running) {
          progress(ctx, 'resize', 'reboot');
          await this.#powerOff(found, {}, ctx);
          if (newSeed) await this.#replaceSeed(host, virsh, ref.name, newSeed, opts, ctx);
          await virsh.run(['start', ref.name], opts);
          rebooted = true;
        }
      }
    }
    if (newSeed && !rebooted) {
      if (running && !request.allowReboot) {
        throw new ConflictError(`VM "${ref.name}" needs a reboot to read its new cloud-init data, and reboots are not allowed`, {
          context: virsh.context(opts),
          hint: 'allow reboots for this group (changes.allowReboot), or set cloudInit.onChange: ignore',
        });
      }
      progress(ctx, 'resize', 'reboot');
      if (running) await this.#powerOff(found, {}, ctx);
      await this.#replaceSeed(host, virsh, ref.name, newSeed, opts, ctx);
      if (running) await virsh.run(['start', ref.name], opts);
    }
    if (want.diskGiB > meta.diskGiB) {
      progress(ctx, 'resize', 'disk');
      const stillRunning = (await this.#reread(found, 'resize', ctx)).state === 'running';
      if (stillRunning) await virsh.run(['blockresize', ref.name, 'vda', `${want.diskGiB}G`], opts);
      else await virsh.run(['vol-resize', rootVolumeName(ref.name), `${want.diskGiB}G`, '--pool', host.pool], opts);
    }
    const now = await this.#reread(found, 'resize', ctx);
    // Labels the fleet declares are set; others (put there by hand or another tool) stay.
    const nextMeta: NovaCronMetadata = { ...meta, specHash: request.specHash, diskGiB: want.diskGiB, labels: { ...meta.labels, ...(request.labels ?? {}) } };
    await virsh.run(metadataCommand(ref.name, nextMeta, now.state === 'running'), opts);
    return this.#reread(found, 'resize', ctx);
  }

  /**
   * Detaches, then attaches, live and in the config. A running guest must release each
   * detached NIC (PCI hot-unplug); its removal is awaited, so a NIC whose model changes is
   * attached again only once the old one is gone. A NIC still in the running guest but no
   * longer in the config (a detach the guest had not finished when an earlier run stopped)
   * is detached from the guest again, so a re-run converges.
   */
  async #hotplugNics(found: LocatedDomain, changes: NicChanges, running: boolean, opts: { signal?: AbortSignal; vm: string; operation: string }, ctx: OperationContext): Promise<void> {
    const { virsh, host } = found;
    const name = found.view.info.name;
    const configMacs = new Set(found.view.info.interfaces.map((i) => i.mac));
    const liveNow = running ? parseDomainXml(await virsh.run(['dumpxml', name], opts)).interfaces : [];
    const pending = liveNow.filter((i) => i.mac && !configMacs.has(i.mac)).map((i) => ({ type: i.type, mac: i.mac!, network: i.source ?? i.type }));
    if (changes.detach.length === 0 && changes.attach.length === 0 && pending.length === 0) return;
    progress(ctx, 'resize', 'nics');
    const detaching = [...changes.detach, ...pending];
    if (detaching.length > 0) {
      const results = await virsh.batch(
        [...changes.detach.map((n) => detachInterfaceArgs(name, n, running)), ...pending.map((n) => detachInterfaceArgs(name, n, running, true))],
        { ...opts, stopOnError: true },
      );
      const failed = results.find((r) => r.error && r.error.code !== 'NotFound');
      if (failed?.error) throw failed.error;
      if (running) {
        const deadline = this.#clock.now() + NIC_RELEASE_MS;
        for (;;) {
          const live = new Set(parseDomainXml(await virsh.run(['dumpxml', name], opts)).interfaces.map((i) => i.mac));
          const left = detaching.filter((n) => live.has(n.mac));
          if (left.length === 0) break;
          if (this.#clock.now() >= deadline) {
            throw new ConflictError(`${host.name}: the guest of VM "${name}" did not release NIC ${left.map((n) => `${n.mac} (${n.network})`).join(', ')} within ${NIC_RELEASE_MS / 1000} s; it is gone from the VM's config, so it goes at the next reboot`, {
              context: virsh.context(opts),
              hint: 'the guest must support PCI hot-unplug (ACPI): reboot the VM to finish, or set changes.fallbackToReplace: true to replace VMs whose hot-plug fails',
            });
          }
          await this.#clock.sleep(POLL_MS, opts.signal);
        }
      }
    }
    if (changes.attach.length > 0) {
      for (const r of await virsh.batch(changes.attach.map((n) => attachInterfaceArgs(name, n, running)), { ...opts, stopOnError: true })) if (r.error) throw r.error;
    }
  }

  /** Domains on the hosts without NovaCron's record (another fleet's are not listed): what `novacron adopt` matches. */
  async listUnowned(ctx: OperationContext = {}): Promise<readonly UnownedVm[]> {
    const perHost = await Promise.all(
      [...this.hosts.values()].map(async (host) => {
        const virsh = this.virshFor(host.name);
        const state = await readHostState(virsh, { network: host.network, signal: signalOf(ctx), operation: 'adopt' });
        const foreign = state.domains.filter((d) => !d.info.metadata);
        const disks = await probeRootDisks(virsh, foreign.map((d) => d.info), signalOf(ctx));
        return foreign.map((d): UnownedVm => {
          const disk = disks.get(d.info.uuid || d.info.name) ?? {};
          const image = disk.backingFile ? imageOfBackingFile(this.#config.images, disk.backingFile) : undefined;
          const base = disk.backingFile?.slice(disk.backingFile.lastIndexOf('/') + 1);
          return {
            name: d.info.name,
            id: d.info.uuid,
            provider: this.name,
            host: hostId(this.name, host.name),
            zone: host.zone,
            state: vmState(d.state),
            resources: { cpu: d.info.vcpus, memoryMiB: d.info.memoryMiB, diskGiB: Math.ceil((disk.capacityBytes ?? 0) / 1024 ** 3), gpu: 0 },
            ...(image ? { image } : {}),
            ...(base ? { imageSource: `backing file ${disk.backingFile}` } : { imageSource: disk.path ? `its own disk ${disk.path} (no base image)` : 'no disk' }),
            ...(!image && base ? { imageSuggestion: { name: base.replace(/\.(qcow2|raw|img)$/, '').toLowerCase().replace(/[^a-z0-9._-]+/g, '-'), config: { volume: base, format: disk.format === 'raw' ? 'raw' : 'qcow2' } } } : {}),
            labels: {},
            addresses: leaseAddresses(d.info.macs, state.leases),
          };
        });
      }),
    );
    return perHost.flat();
  }

  /**
   * Writes the fleet's record into a domain that has none (`virsh metadata`, live and in its
   * config): the VM keeps running, nothing else in it changes. Idempotent for the same slot;
   * a domain that another fleet, or another slot, owns is refused.
   */
  async adopt(ref: VmRef, request: AdoptRequest, ctx: OperationContext = {}): Promise<VmRecord> {
    const context = { provider: this.name, vm: ref.name, operation: 'adopt' };
    const found = await this.locate(ref, 'adopt', ctx);
    if (!found) throw new NotFoundError(`VM "${ref.name}" is on no host of provider "${this.name}"`, { context, hint: 'run `novacron adopt --dry-run` again: it may have been removed' });
    assertName('vm', ref.name, 'VM name', { ...context, host: found.host.name });
    const meta = found.view.info.metadata;
    const { ownership } = request;
    if (meta) {
      if (meta.fleet === ownership.fleet && meta.group === ownership.group && meta.index === ownership.index) return this.#reread(found, 'adopt', ctx);
      throw new ConflictError(`${found.host.name}: VM "${ref.name}" is already owned (fleet "${meta.fleet}", group "${meta.group}", index ${meta.index})`, {
        context: { ...context, host: found.host.name },
        hint: 'a VM belongs to one fleet: remove it from the other fleet first',
      });
    }
    const disk = (await probeRootDisks(found.virsh, [found.view.info], signalOf(ctx))).get(found.view.info.uuid || found.view.info.name);
    const next: NovaCronMetadata = {
      ...ownership,
      image: request.image,
      diskGiB: Math.ceil((disk?.capacityBytes ?? 0) / 1024 ** 3),
      labels: request.labels,
      createdAt: new Date(this.#clock.now()).toISOString(),
    };
    progress(ctx, 'adopt', 'metadata');
    await found.virsh.run(metadataCommand(ref.name, next, vmState(found.view.state) === 'running'), { signal: signalOf(ctx), vm: ref.name, operation: 'adopt' });
    return this.#reread(found, 'adopt', ctx);
  }

  // ---- moves between hosts (migration/KvmMigrations.ts) ------------------------------------

  migrate(ref: VmRef, request: MigrateRequest, ctx: OperationContext = {}): Promise<MigrationResult> {
    return this.migrations.migrate(ref, request, ctx);
  }

  estimateMigration(ref: VmRef, toHost: string, ctx: OperationContext = {}): Promise<KvmMigrationEstimate> {
    return this.migrations.estimate(ref, toHost, ctx);
  }

  // ---- snapshots (snapshots/KvmSnapshots.ts) and image moves (images/KvmImages.ts) -------

  snapshot(ref: VmRef, request: SnapshotRequest, ctx: OperationContext = {}): Promise<SnapshotRecord> {
    return this.#snapshots.snapshot(ref, request, ctx);
  }

  listSnapshots(fleet: string, ctx: OperationContext = {}): Promise<readonly SnapshotRecord[]> {
    return this.#snapshots.listSnapshots(fleet, ctx);
  }

  restore(ref: VmRef, request: RestoreRequest, ctx: OperationContext = {}): Promise<RestoreResult> {
    return this.#snapshots.restore(ref, request, ctx);
  }

  deleteSnapshot(snapshotId: string, ctx: OperationContext = {}): Promise<void> {
    return this.#snapshots.deleteSnapshot(snapshotId, ctx);
  }

  recordVerification(snapshotId: string, verification: SnapshotVerification, ctx: OperationContext = {}): Promise<SnapshotRecord> {
    return this.#snapshots.recordVerification(snapshotId, verification, ctx);
  }

  bootCheck(ref: VmRef, options: BootCheckOptions = {}, ctx: OperationContext = {}): Promise<BootCheckResult> {
    return this.#snapshots.bootCheck(ref, options, ctx);
  }

  /**
   * Waits until a running VM's guest is up, as a cold move checks its destination: still
   * running STILL_RUNNING_MS later, and its image's `readyMarker` (else the default marker)
   * on the serial console, within `timeoutMs` (default: the provider's `bootTimeout`). A
   * guest that stops, or shows no marker in time, is `ok: false` with the console's last
   * output. The VM is left as it is either way.
   */
  async awaitReady(ref: VmRef, options: BootCheckOptions = {}, ctx: OperationContext = {}): Promise<BootCheckResult> {
    const found = await this.#owned(ref, 'awaitReady', ctx);
    const { virsh, host } = found;
    const opts = { operation: 'awaitReady', ...(ctx.signal ? { signal: ctx.signal } : {}) };
    const { marker } = readyMarkerFor(this.#config, found.view.info.metadata?.image);
    const timeoutMs = options.timeoutMs ?? this.#config.bootTimeout;
    progress(ctx, 'awaitReady', 'console');
    const serialLog = await serialLogOf(virsh, ref.name, opts);
    const seen = await watchGuest({ virsh, vm: ref.name, serialLog, expect: marker, timeoutMs, clock: this.#clock, ...opts });
    const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    if (seen.ok) return { ok: true, detail: `${ref.name} runs on ${host.name} and its console showed its ready marker (${marker.source}) after ${seconds(seen.durationMs)}`, durationMs: seen.durationMs };
    if (seen.reason === 'stopped') return { ok: false, detail: `${ref.name} is ${seen.state || 'gone'} on ${host.name} instead of running (see /var/log/libvirt/qemu/${ref.name}.log there)`, durationMs: seen.durationMs };
    return { ok: false, detail: `no ready marker (${marker.source}) on the serial console of ${ref.name} on ${host.name} within ${Math.round(timeoutMs / 1000)} s; last output: ${lastLine(seen.lastOutput)}`, durationMs: seen.durationMs };
  }

  exportImage(ref: VmRef, ctx: OperationContext = {}): Promise<ImageArtifact> {
    return this.#images.exportImage(ref, ctx);
  }

  importImage(artifact: ImageArtifact, imageName: string, ctx: OperationContext = {}): Promise<string> {
    return this.#images.importImage(artifact, imageName, ctx);
  }

  async close(): Promise<void> {
    await Promise.all(this.#releasing);
    await this.transport.close?.();
  }

  // ---- for extensions (migration, snapshots) and tests ----------------------------------

  /** The virsh command layer for a host of this provider. */
  virshFor(hostName: string): Virsh {
    const host = this.hosts.get(hostName);
    if (!host) throw new NotFoundError(`host "${hostName}" is not in provider "${this.name}"`, { context: { provider: this.name, host: hostName }, hint: `hosts: ${[...this.hosts.keys()].join(', ')}` });
    return new Virsh(this.transport, host.ssh, this.name);
  }

  /**
   * Finds a domain by name: on `ref.host` first, then on every other host (a VM may have
   * moved). Undefined when no host has it. A VM's name is unique across the provider's hosts.
   */
  async locate(ref: VmRef, operation: string, ctx: OperationContext = {}): Promise<LocatedDomain | undefined> {
    const preferred = ref.host ? this.#hostOf(ref.host, operation) : undefined;
    if (preferred) {
      const hit = await this.#lookupOn(preferred, ref.name, operation, ctx);
      if (hit) return hit;
    }
    const others = [...this.hosts.values()].filter((h) => h !== preferred);
    const hits = (await Promise.all(others.map((h) => this.#lookupOn(h, ref.name, operation, ctx)))).filter((h): h is LocatedDomain => h !== undefined);
    if (hits.length > 1) {
      throw new ConflictError(`VM "${ref.name}" exists on several hosts: ${hits.map((h) => h.host.name).join(', ')}`, {
        context: { provider: this.name, vm: ref.name, operation },
        hint: 'a half-finished migration or a copy made by hand: remove the stale domain',
      });
    }
    return hits[0];
  }

  /** The domain's record as NovaCron reports it. */
  toRecord(found: LocatedDomain, leases: readonly Lease[] = []): VmRecord {
    return this.#toRecord(found.host, found.view, leaseAddresses(found.view.info.macs, leases));
  }

  // ---- internals -------------------------------------------------------------------------

  /**
   * Four round trips: read the host (existence and room, under the host lock), make both
   * volumes (in parallel channels), upload the seed, then define + start + read back in one
   * batch. Everything made is undone, in reverse order, if a later step fails.
   */
  async #createOn(host: KvmHost, request: CreateVmRequest, ctx: OperationContext): Promise<VmRecord> {
    const name = assertName('vm', request.name, 'VM name', { provider: this.name, host: host.name });
    const virsh = this.virshFor(host.name);
    const opts = { signal: signalOf(ctx), vm: name, operation: 'create' };
    // A VM moved from another provider boots the fleet's image as configured here (kernel,
    // command line) when there is such an entry, with the imported disk either way.
    const image = request.fromImage !== undefined ? (this.#config.images[request.image] ?? { format: 'qcow2' as const }) : this.#image(request.image, host, name);
    throwIfAborted(ctx.signal, virsh.context(opts));
    if (request.resources.gpu > 0) throw new UnsupportedError('GPUs are not supported on KVM hosts yet', { context: virsh.context(opts), hint: 'set gpu: 0 for groups placed on KVM hosts, or place them on a cloud provider' });
    domainNics(request.nics, { ...virsh.context(opts), host: host.name });

    progress(ctx, 'create', 'capacity', 0.05);
    const seen = await this.#reserve(host, virsh, name, request.resources, ctx, request.ownership.fleet, request.nics);
    if (seen.existing) {
      const existing: LocatedDomain = { host, virsh, view: seen.existing };
      assertOwnedOnHost(existing, { name, fleet: request.ownership.fleet }, this.name, 'create');
      // Ours already: a retried create. Make sure it runs, and report it.
      if (existing.view.state !== 'running') await virsh.run(['start', name], opts);
      return this.#reread(existing, 'create', ctx);
    }

    const undo: { what: string; run: () => Promise<unknown> }[] = [];
    try {
      progress(ctx, 'create', 'image', 0.1);
      const imported = request.fromImage !== undefined ? await this.#images.baseFor(host, request.fromImage, ctx) : undefined;
      // Atomic names: no other host has (or is making) a VM of this name; checked while the disks are made.
      const elsewhere = this.#nameElsewhere(host, name, ctx);
      elsewhere.catch(() => undefined);
      const base = imported ?? (await this.#imageCache.ensure(host, request.image, image, ctx));
      // An imported disk larger than the group's size keeps its size: never cut.
      const diskGiB = Math.max(request.resources.diskGiB, Math.ceil((imported?.capacityBytes ?? 0) / 1024 ** 3));
      const seed = this.#seedFor(name, request.cloudInit);
      const xml = buildDomainXml(this.#domainSpec(host, name, request, image));

      progress(ctx, 'create', 'volume', 0.2);
      const made = await Promise.allSettled([
        image.clone === 'full' && !imported
          ? this.#fullClone(host, virsh, base, rootVolumeName(name), diskGiB, opts, ctx)
          : this.#createVolume(host, virsh, rootVolumeName(name), ['vol-create-as', host.pool, rootVolumeName(name), `${diskGiB}G`, '--format', 'qcow2', '--backing-vol', base.volume, '--backing-vol-format', base.format], opts, ctx),
        this.#createVolume(host, virsh, seedVolumeName(name), ['vol-create-as', host.pool, seedVolumeName(name), String(seed.length), '--format', 'raw'], opts, ctx),
      ]);
      for (const [i, volume] of [rootVolumeName(name), seedVolumeName(name)].entries()) {
        if (made[i]!.status === 'fulfilled') undo.push({ what: `volume ${volume}`, run: () => this.#deleteVolumes(virsh, host.pool, [volume], {}) });
      }
      const failed = made.find((m): m is PromiseRejectedResult => m.status === 'rejected');
      if (failed) throw failed.reason;

      progress(ctx, 'create', 'seed', 0.35);
      // libvirt makes qcow2 v2 volumes, which cannot hold the dirty bitmaps that incremental
      // backups need: the root disk is made v3 alongside the seed upload.
      const [uploaded, upgraded] = await Promise.allSettled([
        virsh.run(['vol-upload', '--pool', host.pool, seedVolumeName(name), '/dev/stdin'], { ...opts, stdin: seed }),
        virsh.script(KvmImages.upgradeScript(virsh, host.pool, rootVolumeName(name)), { ...(ctx.signal ? { signal: ctx.signal } : {}) }),
      ]);
      if (uploaded.status === 'rejected') throw uploaded.reason;
      if (upgraded.status === 'rejected') throw upgraded.reason;
      if (upgraded.value.code !== 0) this.#log?.(`kvm: ${host.name}: could not make ${rootVolumeName(name)} qcow2 v3 (${upgraded.value.stderr.trim()}); its backups will all be fulls`);

      const taken = await elsewhere;
      if (taken) throw taken;
      progress(ctx, 'create', 'define', 0.5);
      const [defined, started, state, dumped] = await virsh.batch(
        [['define', '/dev/stdin'], ['start', name], ['domstate', name], ['dumpxml', '--inactive', name]],
        { ...opts, stdin: xml, stdinFor: 0, stopOnError: true },
      );
      if (defined && !defined.error) undo.push({ what: `domain ${name}`, run: () => virsh.tryRun(['undefine', name, '--managed-save'], {}) });
      seen.release(); // defined (or failed): libvirt counts it from here on
      if (started && !started.error) undo.push({ what: `running domain ${name}`, run: () => virsh.tryRun(['destroy', name], {}) });
      throwIfAborted(ctx.signal, virsh.context(opts));
      const failure = [defined, started, state, dumped].find((r) => r?.error)?.error;
      if (failure) throw failure;
      if (!state || !dumped) throw new UnreachableError(`${host.name}: no answer from virsh while creating ${name}`, { context: virsh.context(opts), hint: 'the command was cut short (connection lost?): re-run; create is idempotent' });
      const view: DomainView = { state: state.stdout.trim(), info: parseDomainXml(dumped.stdout) };
      const addresses = await this.#firstAddresses(host, virsh, view, ctx);
      progress(ctx, 'create', 'done', 1);
      return this.#toRecord(host, view, addresses);
    } catch (error) {
      seen.release();
      const failures: string[] = [];
      for (const step of undo.reverse()) {
        try {
          await step.run();
        } catch (cleanupError) {
          failures.push(`${step.what}: ${(cleanupError as Error).message}`);
        }
      }
      if (failures.length > 0) this.#log?.(`kvm: create of ${name} on ${host.name} failed and cleanup left: ${failures.join('; ')}`);
      throw error;
    }
  }

  /** With `addresses.waitOnCreate`, waits that long at most for the new VM's first address; never fails for want of one. */
  async #firstAddresses(host: KvmHost, virsh: Virsh, view: DomainView, ctx: OperationContext): Promise<VmAddress[]> {
    const { sources, sourceTimeout, waitOnCreate } = this.#addressConfig;
    if (waitOnCreate <= 0) return [];
    progress(ctx, 'create', 'addresses', 0.9);
    try {
      return await waitForAddresses(virsh, { id: view.info.uuid, macs: view.info.macs, running: true, agentChannel: view.info.hasAgentChannel !== false }, {
        sources, sourceTimeoutMs: sourceTimeout, network: host.network, waitMs: waitOnCreate, clock: this.#clock, ...(ctx.signal ? { signal: ctx.signal } : {}),
      });
    } catch (error) {
      if (error instanceof AbortedError) throw error;
      // The VM is made; an address that cannot be read now is read by the next list.
      this.#log?.(`kvm: ${host.name}: no address for ${view.info.name} yet: ${(error as Error).message}`);
      return [];
    }
  }

  /** The config as parsed has these defaults; a config built by hand may lack them. */
  get #addressConfig(): KvmProviderConfig['addresses'] {
    return this.#config.addresses ?? { sources: ['lease', 'agent', 'arp'], sourceTimeout: 3_000, waitOnCreate: 0 };
  }

  #seedFor(name: string, cloudInit: CloudInit | undefined): Buffer {
    return buildSeedIso({ vmName: name, ...(cloudInit ? { cloudInit } : {}), date: new Date(this.#clock.now()) });
  }

  /** Writes a new seed into the VM's seed volume (made anew at the new size) while the VM is off. */
  async #replaceSeed(host: KvmHost, virsh: Virsh, name: string, seed: Buffer, opts: { signal?: AbortSignal; vm: string; operation: string }, ctx: OperationContext): Promise<void> {
    progress(ctx, opts.operation, 'seed');
    const volume = seedVolumeName(name);
    await this.#deleteVolumes(virsh, host.pool, [volume], opts);
    await virsh.run(['vol-create-as', host.pool, volume, String(seed.length), '--format', 'raw'], opts);
    await virsh.run(['vol-upload', '--pool', host.pool, volume, '/dev/stdin'], { ...opts, stdin: seed });
  }

  #domainSpec(host: KvmHost, name: string, request: CreateVmRequest, image: ImageConfig): DomainSpec {
    const hotplug = this.#config.hotplug;
    return {
      name,
      type: this.#config.domainType,
      vcpus: request.resources.cpu,
      maxVcpus: Math.max(request.resources.cpu, hotplug?.cpu ?? 0),
      memoryMiB: request.resources.memoryMiB,
      maxMemoryMiB: Math.max(request.resources.memoryMiB, hotplug?.memory ?? 0),
      ...(image.kernel ? { kernel: { kernel: image.kernel, ...(image.initrd ? { initrd: image.initrd } : {}), ...(image.cmdline ? { cmdline: image.cmdline } : {}) } } : {}),
      disks: [
        { device: 'disk', pool: host.pool, volume: rootVolumeName(name), format: 'qcow2', target: 'vda', bus: 'virtio' },
        { device: 'cdrom', pool: host.pool, volume: seedVolumeName(name), format: 'raw', target: 'sda', bus: 'sata' },
      ],
      network: host.network,
      ...(request.nics ? { nics: domainNics(request.nics, { provider: this.name, host: host.name, vm: name })! } : {}),
      serialLog: serialLogPath(name),
      description: `Managed by NovaCron (fleet ${request.ownership.fleet}, group ${request.ownership.group}); changes made by hand may be overwritten`,
      metadata: {
        ...request.ownership,
        image: request.image,
        diskGiB: request.resources.diskGiB,
        labels: request.labels,
        createdAt: new Date(this.#clock.now()).toISOString(),
      },
    };
  }

  /**
   * Reads the host once (does the VM exist? is there room?) and, when it may be created,
   * reserves its resources in this process until its domain is defined. Two creates in one
   * process can thus never both take the last room, while the slow parts of a create
   * (volumes, upload, QEMU start) run concurrently. The host lock covers only the read and
   * the check. A reservation released while a later create's read was already under way is
   * still counted by that create (it may not see the new domain yet): conservative, never
   * over-committing.
   */
  async #reserve(host: KvmHost, virsh: Virsh, name: string, need: Resources, ctx: OperationContext, fleet = '', nics?: readonly NicSpec[]): Promise<{ existing?: DomainView; release: () => void }> {
    const book = this.#bookFor(host.name);
    return this.#withHostLock(host.name, async () => {
      const readSeq = book.seq++;
      // Under the host's own lock (other processes too): the claims of creates under way
      // anywhere, and this one's claim written, in the same round trip as the host read.
      const claim = { name, fleet, resources: need, token: this.#claimToken };
      const state = await readHostState(virsh, { node: true, signal: signalOf(ctx), operation: 'create', prelude: claimScript(virsh, this.#config.lockDir, claim), ...(nics ? { networks: [...new Set(nics.map((n) => n.network))] } : {}) });
      const existing = state.domains.find((d) => d.info.name === name);
      const unclaim = () => {
        // Not waited for by the create (libvirt counts the domain from here); close() waits for it.
        const done = virsh.script(releaseScript(virsh, this.#config.lockDir, name, this.#claimToken)).then(() => undefined, () => undefined);
        this.#releasing.add(done);
        void done.finally(() => this.#releasing.delete(done));
      };
      if (existing) {
        unclaim();
        return { existing, release: () => undefined };
      }
      const defined = new Set(state.domains.map((d) => d.info.name));
      const claims = parseClaims(state.prelude ?? '').filter((c) => c.ageSec < CLAIM_TTL_SEC && !defined.has(c.name));
      const rival = claims.find((c) => c.name === name && c.token !== this.#claimToken);
      if (rival) {
        unclaim();
        throw new ConflictError(`${host.name}: VM "${name}" is being created on this host by another process (fleet "${rival.fleet}")`, {
          context: virsh.context({ vm: name, operation: 'create' }),
          retryable: true,
          hint: 'two applies of the same VM at once: this one waits and tries again',
        });
      }
      // Other processes' creates under way count as allocated; this process's are in its book.
      const others = claims.filter((c) => c.token !== this.#claimToken).map((c) => c.resources);
      const pending = [...book.active.values(), ...book.released.filter((g) => g.at > readSeq).map((g) => g.resources), ...others];
      book.released = book.released.filter((g) => g.at > readSeq);
      try {
        this.#checkRoom(host, state, need, pending, virsh.context({ vm: name, operation: 'create' }), name);
        if (nics) assertNetworks(nics, state.networks, host.name, virsh.context({ vm: name, operation: 'create' }));
      } catch (error) {
        unclaim();
        throw error;
      }
      const id = Symbol(name);
      book.active.set(id, need);
      let released = false;
      return {
        release: () => {
          if (released) return;
          released = true;
          book.active.delete(id);
          book.released.push({ at: book.seq, resources: need });
          unclaim();
        },
      };
    });
  }

  #bookFor(host: string): { seq: number; active: Map<symbol, Resources>; released: { at: number; resources: Resources }[] } {
    let book = this.#books.get(host);
    if (!book) {
      book = { seq: 0, active: new Map(), released: [] };
      this.#books.set(host, book);
    }
    return book;
  }

  /**
   * Another host of this provider with a domain of this name, or a live claim on it by
   * another process: the error to stop this create with (undefined when the name is free
   * everywhere else). Retryable: the retry finds the VM made by the other process, or the
   * name free. Hosts that do not answer are passed over: whoever creates there checks again.
   */
  async #nameElsewhere(here: KvmHost, name: string, ctx: OperationContext): Promise<Error | undefined> {
    const others = [...this.hosts.values()].filter((h) => h.name !== here.name);
    const answers = await Promise.all(
      others.map(async (h) => {
        const v = this.virshFor(h.name);
        // A host that does not answer soon is passed over: a create must not wait a connect timeout on a host that is down.
        const probe = v.script(nameProbeScript(v, this.#config.lockDir, name), { ...(ctx.signal ? { signal: ctx.signal } : {}), timeoutMs: 60_000 }).catch(() => undefined);
        let timer: NodeJS.Timeout | undefined;
        const r = await Promise.race([probe, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), NAME_PROBE_MS)))]).finally(() => clearTimeout(timer));
        return { host: h, text: r?.code === 0 ? r.stdout : '' };
      }),
    );
    for (const { host, text } of answers) {
      const context = { provider: this.name, host: host.name, vm: name, operation: 'create' };
      if (/^D /m.test(text)) {
        return new ConflictError(`VM name "${name}" is taken on host ${host.name}: one name, one VM across the provider's hosts`, {
          context,
          hint: 'a domain of that name was made there by hand or by another fleet: rename it, or the group or fleet',
        });
      }
      const claim = parseClaims(text).find((c) => c.name === name && c.token !== this.#claimToken && c.ageSec < CLAIM_TTL_SEC);
      if (claim) {
        return new ConflictError(`VM "${name}" is being created on host ${host.name} by another process (fleet "${claim.fleet}")`, {
          context,
          retryable: true,
          hint: 'two applies of the same VM at once: this one waits and tries again',
        });
      }
    }
    return undefined;
  }

  /** A full, independent copy of the base made on the host (`vol-clone`), grown to the disk size; disk-heavy, so queued per pool. */
  async #fullClone(host: KvmHost, virsh: Virsh, base: BaseVolume, volume: string, diskGiB: number, opts: { signal?: AbortSignal; vm: string; operation: string }, ctx: OperationContext): Promise<void> {
    await this.#queue.run(`pool:${host.name}/${host.pool}`, this.#config.queues?.perPool ?? 2, async () => {
      progress(ctx, 'create', 'clone');
      await this.#createVolume(host, virsh, volume, ['vol-clone', '--pool', host.pool, base.volume, volume], opts, ctx);
    }, ctx.signal);
    const info = await virsh.run(['vol-info', volume, '--pool', host.pool, '--bytes'], opts);
    const capacity = Number(/Capacity:\s+(\d+)/.exec(info)?.[1] ?? 0);
    if (capacity < diskGiB * 1024 ** 3) await virsh.run(['vol-resize', volume, `${diskGiB}G`, '--pool', host.pool], opts);
  }

  /** How images reached the hosts in this provider's life: cache hits, fetches by URL, host-to-host copies. */
  get imageStats(): ImageCacheStats {
    return this.#imageCache.stats;
  }

  /** vol-create-as, replacing a leftover of an interrupted create that no domain uses. */
  async #createVolume(host: KvmHost, virsh: Virsh, volume: string, args: string[], opts: { signal?: AbortSignal; vm: string; operation: string }, ctx: OperationContext): Promise<void> {
    const first = await virsh.tryRun(args, opts);
    if (!first.error) return;
    if (first.error.code !== 'Conflict' || first.error.rule !== 'already-exists') throw first.error;
    const state = await readHostState(virsh, { signal: signalOf(ctx), operation: 'create' });
    if (volumeInUse(state, host.pool, volume)) {
      throw new ConflictError(`${host.name}: volume ${volume} already exists in pool ${host.pool} and a domain uses it`, {
        context: virsh.context(opts),
        hint: 'another VM (or a copy made by hand) uses this name: rename the group or fleet',
      });
    }
    this.#log?.(`kvm: ${host.name}: replacing leftover volume ${volume} (no domain uses it)`);
    await this.#deleteVolumes(virsh, host.pool, [volume], opts);
    await virsh.run(args, opts);
  }

  async #removeLeftoverVolumes(host: KvmHost, name: string, ctx: OperationContext): Promise<void> {
    const virsh = this.virshFor(host.name);
    const state = await readHostState(virsh, { signal: signalOf(ctx), operation: 'delete' });
    const candidates = [rootVolumeName(name), seedVolumeName(name)].filter((v) => !volumeInUse(state, host.pool, v));
    await this.#deleteVolumes(virsh, host.pool, candidates, { signal: signalOf(ctx), vm: name, operation: 'delete' });
  }

  /** Deletes volumes in one round trip; a volume already gone is fine. */
  async #deleteVolumes(virsh: Virsh, pool: string, volumes: readonly string[], opts: { signal?: AbortSignal; vm?: string; operation?: string }): Promise<void> {
    const results = await virsh.batch(
      volumes.map((v) => ['vol-delete', v, '--pool', pool]),
      opts,
    );
    const failed = results.find((r) => r.error && r.error.code !== 'NotFound');
    if (failed?.error) throw failed.error;
  }

  async #powerOff(found: LocatedDomain, options: StopOptions, ctx: OperationContext): Promise<void> {
    const { virsh } = found;
    const name = found.view.info.name;
    const opts = { signal: signalOf(ctx), vm: name, operation: 'stop' };
    // The state read by whoever found the domain, a moment ago: one round trip saved.
    let state = found.view.state;
    if (state === 'shut off') return;
    if (!options.force) {
      // The ACPI power button: the guest shuts down cleanly if it listens for it.
      const timeoutMs = options.gracefulTimeoutMs ?? this.#config.stopTimeout;
      progress(ctx, 'stop', 'shutdown');
      const r = await virsh.tryRun(['shutdown', name], opts);
      if (r.error && !/not running/.test(r.stderr)) throw r.error;
      const deadline = this.#clock.now() + timeoutMs;
      while (state !== 'shut off' && this.#clock.now() < deadline) {
        await this.#clock.sleep(Math.min(POLL_MS, Math.max(0, deadline - this.#clock.now())), ctx.signal);
        state = (await virsh.tryRun(['domstate', name], opts)).stdout.trim() || 'shut off';
      }
      if (state === 'shut off') return;
      this.#log?.(`kvm: ${found.host.name}: ${name} did not power off within ${timeoutMs} ms; forcing it off`);
    }
    progress(ctx, 'stop', 'destroy');
    const d = await virsh.tryRun(['destroy', name], opts);
    if (d.error && !/not running/.test(d.stderr)) throw d.error;
  }

  async #owned(ref: VmRef, operation: string, ctx: OperationContext): Promise<LocatedDomain> {
    assertName('vm', ref.name, 'VM name', { provider: this.name });
    const found = await this.locate(ref, operation, ctx);
    if (!found) {
      throw new NotFoundError(`VM "${ref.name}" does not exist on any host of provider "${this.name}"`, {
        context: { provider: this.name, vm: ref.name, operation, ...(ref.host ? { host: splitHostId(ref.host).name } : {}) },
        hint: 'it may have been deleted by hand: re-run apply to recreate it',
      });
    }
    assertOwnedOnHost(found, ref, this.name, operation);
    return found;
  }

  async #lookupOn(host: KvmHost, name: string, operation: string, ctx: OperationContext): Promise<LocatedDomain | undefined> {
    const virsh = this.virshFor(host.name);
    // The persistent configuration, as in readHostState: what NovaCron set.
    const [state, xml] = await virsh.batch([['domstate', name], ['dumpxml', '--inactive', name]], { signal: signalOf(ctx), vm: name, operation, stopOnError: true });
    if (state?.error?.code === 'NotFound' || xml?.error?.code === 'NotFound') return undefined;
    if (state?.error) throw state.error;
    if (xml?.error) throw xml.error;
    if (!state || !xml) throw new UnreachableError(`${host.name}: no answer from virsh`, { context: virsh.context({ vm: name, operation }), hint: 'the command was cut short (connection lost?): retry' });
    return { host, virsh, view: { state: state.stdout.trim(), info: parseDomainXml(xml.stdout) } };
  }

  async #reread(found: LocatedDomain, operation: string, ctx: OperationContext): Promise<VmRecord> {
    const now = await this.#lookupOn(found.host, found.view.info.name, operation, ctx);
    if (!now) throw new NotFoundError(`VM "${found.view.info.name}" vanished`, { context: found.virsh.context({ vm: found.view.info.name, operation }), hint: 'something else removed it meanwhile: re-run apply' });
    return this.#toRecord(found.host, now.view, []);
  }

  async #assertRoom(host: KvmHost, virsh: Virsh, need: Resources, vm: string, operation: string, ctx: OperationContext): Promise<void> {
    const state = await readHostState(virsh, { node: true, signal: signalOf(ctx), operation });
    this.#checkRoom(host, state, need, [], virsh.context({ vm, operation }), vm);
  }

  /** Free memory now, and allocation (defined domains + pending creates) within capacity × overcommit. */
  #checkRoom(host: KvmHost, state: HostState, need: Resources, pending: readonly Resources[], context: ErrorContext, vm: string): void {
    const h = this.#toHost(host, state);
    const pendingMemory = pending.reduce((sum, r) => sum + r.memoryMiB, 0);
    const availableMiB = Math.floor((state.memory?.availableKiB ?? 0) / 1024) - pendingMemory;
    if (need.memoryMiB > 0 && need.memoryMiB > availableMiB) {
      throw new CapacityExceededError(`${host.name}: not enough free memory for VM "${vm}": it needs ${need.memoryMiB} MiB, the host has ${availableMiB} MiB free`, { context });
    }
    const checks = [
      ['memory', 'memoryMiB', host.overcommit.memory, 'MiB'],
      ['cpu', 'cpu', host.overcommit.cpu, 'vCPUs'],
    ] as const;
    for (const [what, key, factor, unit] of checks) {
      const limit = Math.floor(h.capacity[key] * factor);
      const used = h.allocated[key] + pending.reduce((sum, r) => sum + r[key], 0);
      if (need[key] > 0 && used + need[key] > limit) {
        throw new CapacityExceededError(`${host.name}: not enough ${what} for VM "${vm}": ${used} + ${need[key]} ${unit} would exceed ${limit} ${unit} (capacity ${h.capacity[key]} × overcommit ${factor})`, { context });
      }
    }
  }

  #image(imageName: string, host: KvmHost, vm: string): ImageConfig {
    const image = this.#config.images[imageName];
    const context = { provider: this.name, host: host.name, vm, operation: 'create' };
    if (!image) {
      const known = Object.keys(this.#config.images);
      throw new NotFoundError(`image "${imageName}" is not configured for provider "${this.name}"`, {
        context,
        hint: known.length > 0 ? `known images: ${known.join(', ')}` : `add it under providers.${this.name}.images`,
      });
    }
    if (image.kernel) assertName('path', image.kernel, `image "${imageName}" kernel`, context);
    if (image.initrd) assertName('path', image.initrd, `image "${imageName}" initrd`, context);
    if (image.volume) assertName('object', image.volume, `image "${imageName}" volume`, context);
    return image;
  }

  #hostOf(id: string, operation: string): KvmHost {
    const { provider, name } = splitHostId(id);
    if (provider && provider !== this.name) {
      throw new NotFoundError(`host "${id}" belongs to provider "${provider}", not "${this.name}"`, { context: { provider: this.name, host: id, operation }, hint: 'the request went to the wrong provider: a bug in the caller' });
    }
    const host = this.hosts.get(name);
    if (!host) {
      throw new NotFoundError(`host "${name}" is not in provider "${this.name}"`, {
        context: { provider: this.name, host: name, operation },
        hint: `hosts: ${[...this.hosts.keys()].join(', ')}`,
      });
    }
    return host;
  }

  #hostsFor(ref: VmRef): KvmHost[] {
    return ref.host ? [this.#hostOf(ref.host, 'delete')] : [...this.hosts.values()];
  }

  /** Serializes the capacity read-and-check per host (see #reserve). */
  async #withHostLock<T>(host: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#hostLocks.get(host) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const chained = previous.then(() => mine);
    this.#hostLocks.set(host, chained);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.#hostLocks.get(host) === chained) this.#hostLocks.delete(host);
    }
  }

  #toHost(host: KvmHost, state: HostState | undefined): Host {
    const allocated = { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 };
    for (const d of state?.domains ?? []) {
      allocated.cpu += d.info.vcpus;
      allocated.memoryMiB += d.info.memoryMiB;
    }
    if (state?.pool) allocated.diskGiB = Math.ceil(state.pool.allocationBytes / 1024 ** 3);
    return {
      id: hostId(this.name, host.name),
      provider: this.name,
      name: host.name,
      zone: host.zone,
      ...(host.region ? { region: host.region } : {}),
      labels: host.labels,
      capacity: {
        cpu: state?.node?.cpus ?? 0,
        memoryMiB: Math.floor((state?.node?.memoryKiB ?? 0) / 1024),
        diskGiB: Math.floor((state?.pool?.capacityBytes ?? 0) / 1024 ** 3),
        gpu: 0,
      },
      allocated,
      overcommit: host.overcommit,
      pricePerHour: host.pricePerHour,
      state: state ? 'up' : 'down',
      ...(state?.memory ? { freeMemoryMiB: Math.floor(state.memory.availableKiB / 1024) } : {}),
      ...(state?.pools ? { storagePools: state.pools.map(toStoragePool) } : {}),
      ...(state ? { runningVms: state.runningDomains } : {}),
    };
  }

  /**
   * Addresses of these domains: from the leases already read, and for running domains the
   * leases do not cover, from the other configured sources (agent, ARP) in one more round
   * trip, each source bounded by `addresses.sourceTimeout`.
   */
  async #addressesOf(host: KvmHost, virsh: Virsh, domains: readonly DomainView[], leases: readonly Lease[], ctx: OperationContext): Promise<Map<string, VmAddress[]>> {
    const { sources, sourceTimeout } = this.#addressConfig;
    const out = new Map<string, VmAddress[]>();
    for (const d of domains) out.set(d.info.uuid, sources.includes('lease') ? leaseAddresses(d.info.macs, leases) : []);
    const others = sources.filter((s) => s !== 'lease');
    const missing = domains.filter((d) => out.get(d.info.uuid)!.length === 0 && vmState(d.state) === 'running');
    if (others.length === 0 || missing.length === 0) return out;
    const found = await resolveAddresses(
      virsh,
      missing.map((d) => ({ id: d.info.uuid, macs: d.info.macs, running: true, agentChannel: d.info.hasAgentChannel === true })),
      { sources: others, sourceTimeoutMs: sourceTimeout, network: host.network, ...(ctx.signal ? { signal: ctx.signal } : {}) },
    );
    for (const [id, list] of found) out.set(id, list);
    return out;
  }

  #toRecord(host: KvmHost, view: DomainView, addresses: readonly VmAddress[]): VmRecord {
    const info = view.info;
    const meta = info.metadata;
    return {
      name: info.name,
      id: info.uuid,
      provider: this.name,
      fleet: meta?.fleet ?? '',
      group: meta?.group ?? '',
      index: meta?.index ?? 0,
      specHash: meta?.specHash ?? '',
      host: hostId(this.name, host.name),
      zone: host.zone,
      state: vmState(view.state),
      resources: { cpu: info.vcpus, memoryMiB: info.memoryMiB, diskGiB: meta?.diskGiB ?? 0, gpu: 0 },
      image: meta?.image ?? 'unknown',
      labels: meta?.labels ?? {},
      addresses,
      nics: nicsOfInterfaces(info.interfaces),
      ...(meta?.createdAt ? { createdAt: meta.createdAt } : {}),
    };
  }
}

/** A pool as inventory reports it: sizes in GiB to two decimals; an inactive pool reports none (0). */
function toStoragePool(pool: PoolInfo): StoragePool {
  const gib = (bytes: number) => Math.round((bytes / 1024 ** 3) * 100) / 100;
  return { name: pool.name, capacityGiB: gib(pool.capacityBytes), freeGiB: gib(pool.availableBytes), active: pool.state === 'running' };
}

function leaseAddresses(macs: readonly string[], leases: readonly Lease[]): VmAddress[] {
  const mine = new Set(macs.map((m) => m.toLowerCase()));
  return leases.filter((l) => mine.has(l.mac)).map((l) => ({ address: l.address, source: 'lease' as const }));
}

/** libvirt's state words → NovaCron's. */
export function vmState(state: string): VmState {
  switch (state) {
    case 'running':
    case 'idle':
    case 'blocked':
    case 'in shutdown':
    case 'paused':
      return 'running';
    case 'shut off':
    case 'pmsuspended':
      return 'stopped';
    case 'crashed':
      return 'error';
    default:
      return 'unknown';
  }
}

function volumeInUse(state: HostState, pool: string, volume: string): boolean {
  return state.domains.some((d) => d.info.disks.some((disk) => (disk.pool === pool && disk.volume === volume) || disk.file?.endsWith(`/${volume}`)));
}

/**
 * The core's ownership guard, with the host added to the error: the domain must carry this
 * fleet's record. A domain without NovaCron's metadata belongs to nobody and is refused too.
 */
export function assertOwnedOnHost(found: LocatedDomain, ref: Pick<VmRef, 'name' | 'fleet'>, provider: string, operation: string): void {
  try {
    assertOwned({ name: found.view.info.name, fleet: found.view.info.metadata?.fleet ?? '' }, { name: ref.name, fleet: ref.fleet }, provider);
  } catch (error) {
    if (error instanceof ConflictError) {
      throw new ConflictError(`${found.host.name}: ${error.message}`, {
        context: { ...error.context, host: found.host.name, operation },
        ...(error.hint ? { hint: error.hint } : {}),
      });
    }
    throw error;
  }
}

function signalOf(ctx: OperationContext): AbortSignal | undefined {
  return ctx.signal;
}

function progress(ctx: OperationContext, operation: string, phase: string, fraction?: number): void {
  ctx.onProgress?.({ operation, phase, ...(fraction !== undefined ? { fraction } : {}) });
}
