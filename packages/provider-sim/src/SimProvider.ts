import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  assertOwned,
  CapacityExceededError,
  ConflictError,
  UnsupportedError,
  InvalidInputError,
  type ImageArtifact,
  type MigrateRequest,
  type MigrationEstimateInputs,
  type MigrationResult,
  hostId,
  NotFoundError,
  NovaCronError,
  splitHostId,
  systemClock,
  UnreachableError,
  type Capabilities,
  type Clock,
  type CreateVmRequest,
  type Host,
  type HostState,
  type OperationContext,
  type Provider,
  type ResizeRequest,
  type RestoreRequest,
  type RestoreResult,
  type SnapshotRecord,
  type SnapshotRequest,
  type SnapshotVerification,
  type Resources,
  type SimProviderConfig,
  type StopOptions,
  type VmRecord,
  type VmRef,
  type AdoptRequest,
  type UnownedVm,
  type BootCheckOptions,
  type BootCheckResult,
  type NicSpec,
  diffNics,
  nicDiffIsEmpty,
} from '@novacron/core';
import { FaultInjector, SimulatedCrash } from './faults.js';
import { checkArtifact, exportDisk } from './images.js';
import { migrationInputs, simulateMigration } from './migration.js';
import { SimDisks } from './snapshots.js';
import { WorldStore } from './store.js';
import { World, type SimHost, type SimNic, type SimVm } from './world.js';

export interface SimProviderOptions {
  readonly name: string;
  readonly config: SimProviderConfig;
  /** Where the world is kept; undefined keeps it in memory only. */
  readonly stateDir?: string;
  readonly clock?: Clock;
  readonly faults?: FaultInjector;
}

/** Journal lines after which the world is compacted into a fresh snapshot. */
const COMPACT_AFTER = 50_000;

/**
 * The embedded default provider: a datacenter simulated in process, with the whole VM
 * lifecycle, latencies, fault injection and a world that persists between runs. It plays
 * the part for NovaCron that `setMocks` plays for Pulumi: the real engine, a fake edge.
 */
export class SimProvider implements Provider {
  readonly kind = 'sim';
  readonly capabilities: Capabilities = {
    resize: true,
    hotplugCpu: true,
    hotplugMemory: true,
    liveMigration: true,
    coldMigration: true,
    snapshots: true,
    incrementalSnapshots: true,
    imageExport: true,
    imageImport: true,
    adopt: true,
    awaitReady: true,
    hotplugNics: true,
  };
  readonly name: string;
  readonly faults: FaultInjector;
  readonly world: World;
  /** The block model of every disk and the snapshot store; its helpers write guest data and compare disks in tests. */
  readonly disks: SimDisks;
  readonly #config: SimProviderConfig;
  readonly #clock: Clock;
  readonly #store: WorldStore | undefined;
  /** Where exported disks are written: the state directory, or the system's temp directory for an in-memory world. */
  readonly #exportDir: string;

  private constructor(options: SimProviderOptions, world: World, store: WorldStore | undefined) {
    this.name = options.name;
    this.#config = options.config;
    this.#clock = options.clock ?? systemClock;
    this.faults = options.faults ?? new FaultInjector();
    this.world = world;
    this.#store = store;
    this.#exportDir = join(options.stateDir ?? tmpdir(), 'sim-exports');
    this.disks = new SimDisks({
      name: this.name,
      world,
      clock: this.#clock,
      faults: this.faults,
      config: this.#config,
      create: (request, ctx) => this.create(request, ctx),
      delete: (ref, ctx) => this.delete(ref, ctx),
      record: (vm) => this.#toRecord(vm),
    });
  }

  /** Opens (or creates) the world and brings its hosts in line with the config. */
  static open(options: SimProviderOptions): SimProvider {
    const store = options.stateDir === undefined ? undefined : new WorldStore(join(options.stateDir, 'sim'), options.name);
    const world = new World(store, store?.open());
    const provider = new SimProvider(options, world, store);
    provider.#syncHosts();
    provider.#recoverMigrations();
    return provider;
  }

  // ---- the provider contract ---------------------------------------------------------

  async inventory(ctx: OperationContext = {}): Promise<readonly Host[]> {
    await this.#enter('inventory', ctx, {});
    const running = new Map<string, number>();
    for (const vm of this.world.values('vms')) if (vm.state === 'running') running.set(vm.host, (running.get(vm.host) ?? 0) + 1);
    return [...this.world.values('hosts')].map((h) => this.#toHost(h, running.get(h.name) ?? 0));
  }

  async list(fleet: string, ctx: OperationContext = {}): Promise<readonly VmRecord[]> {
    await this.#enter('list', ctx, {});
    const out: VmRecord[] = [];
    for (const vm of this.world.values('vms')) if (vm.fleet === fleet) out.push(this.#toRecord(vm));
    return out;
  }

  async create(request: CreateVmRequest, ctx: OperationContext = {}): Promise<VmRecord> {
    const hostName = this.#localHost(request.host);
    const stage = await this.#enter('create', ctx, { vm: request.name, host: hostName });
    const host = this.#host(hostName, 'create');
    const existing = this.world.get('vms', request.name);
    assertOwned(existing, { name: request.name, fleet: request.ownership.fleet }, this.name);
    if (existing && existing.state !== 'creating') return this.#toRecord(existing);
    const source = request.fromImage ?? request.image;
    if (request.fromImage ? !this.world.get('images', source) : this.#config.images && !this.#config.images.includes(source)) {
      throw new NotFoundError(`image "${source}" is not available in the simulated datacenter`, {
        context: { provider: this.name, vm: request.name, operation: 'create' },
        hint: request.fromImage ? 'import the image first' : `known images: ${(this.#config.images ?? []).join(', ')}`,
      });
    }
    const target = existing?.host ?? host.name;
    if (!existing) this.#assertRoom(host, request.resources, request.name);
    if (request.nics) this.#assertNetworks(request.nics, request.name, 'create');

    const vm: SimVm = existing ?? {
      name: request.name,
      id: `sim-${this.world.next('vm')}`,
      fleet: request.ownership.fleet,
      group: request.ownership.group,
      index: request.ownership.index,
      specHash: request.ownership.specHash,
      host: target,
      state: 'creating',
      resources: request.resources,
      image: request.image,
      labels: request.labels,
      createdAt: new Date(this.#clock.now()).toISOString(),
      workingSetMiB: request.workload?.workingSetMiB ?? Math.round(request.resources.memoryMiB / 4),
      dirtyRateMiBps: request.workload?.dirtyRateMiBps ?? 8,
      ...(request.instanceType ? { instanceType: request.instanceType } : {}),
      ...(request.nics ? { nics: request.nics.map((nic) => ({ network: nic.network, model: nic.model ?? 'virtio', mac: this.#mac() })) } : {}),
    };
    // Ownership is recorded before anything else is made, so a crash leaves a VM the
    // fleet can see (state "creating") and finish or remove on the next run.
    if (!existing) this.world.put('vms', vm.name, vm);
    try {
      return await this.#finishCreate(vm, stage);
    } catch (error) {
      if (!(error instanceof SimulatedCrash)) this.#remove(vm.name);
      throw error;
    }
  }

  async start(ref: VmRef, ctx: OperationContext = {}): Promise<VmRecord> {
    const stage = await this.#enter('start', ctx, { vm: ref.name });
    const vm = this.#owned(ref, 'start');
    if (vm.state === 'creating') return this.#finishCreate(vm, stage);
    return this.#toRecord(this.#update(vm, { state: 'running' }));
  }

  async stop(ref: VmRef, _options: StopOptions = {}, ctx: OperationContext = {}): Promise<VmRecord> {
    await this.#enter('stop', ctx, { vm: ref.name });
    const vm = this.#owned(ref, 'stop');
    return this.#toRecord(this.#update(vm, { state: 'stopped' }));
  }

  async delete(ref: VmRef, ctx: OperationContext = {}): Promise<void> {
    const stage = await this.#enter('delete', ctx, { vm: ref.name });
    const vm = this.world.get('vms', ref.name);
    assertOwned(vm, ref, this.name);
    if (vm) this.#host(vm.host, 'delete');
    for (const volume of [...this.world.values('volumes')]) {
      if (volume.vm === ref.name && (volume.fleet === ref.fleet || !vm)) this.world.delete('volumes', volume.name);
    }
    await stage('volumes-deleted');
    this.world.delete('vms', ref.name);
  }

  async resize(ref: VmRef, request: ResizeRequest, ctx: OperationContext = {}): Promise<VmRecord> {
    const stage = await this.#enter('resize', ctx, { vm: ref.name });
    const vm = this.#owned(ref, 'resize');
    if (request.nics) this.#assertNetworks(request.nics, vm.name, 'resize');
    const host = this.#host(vm.host, 'resize');
    const delta: Resources = {
      cpu: Math.max(0, request.resources.cpu - vm.resources.cpu),
      memoryMiB: Math.max(0, request.resources.memoryMiB - vm.resources.memoryMiB),
      diskGiB: Math.max(0, request.resources.diskGiB - vm.resources.diskGiB),
      gpu: Math.max(0, request.resources.gpu - vm.resources.gpu),
    };
    const context = { provider: this.name, vm: vm.name, operation: 'resize' };
    if (request.resources.diskGiB < vm.resources.diskGiB) {
      throw new UnsupportedError(`the disk of "${vm.name}" cannot shrink (${vm.resources.diskGiB}GiB → ${request.resources.diskGiB}GiB)`, { context });
    }
    // Growth is hot-plugged; shrinking cpu, memory or gpu, and new cloud-init data, take a reboot.
    const shrinks = request.resources.cpu < vm.resources.cpu || request.resources.memoryMiB < vm.resources.memoryMiB || request.resources.gpu !== vm.resources.gpu;
    if ((shrinks || request.reboot) && !request.allowReboot && vm.state === 'running') {
      throw new ConflictError(`the change to "${vm.name}" needs a reboot, which is not allowed`, { context });
    }
    this.#assertRoom(host, delta, vm.name);
    // Every check is made before anything changes. NICs first: detaches, then attaches, each
    // written as it is made, so a crash between them leaves what a re-run finishes.
    if (request.nics) await this.#hotplugNics(vm, request.nics, stage);
    const volume = this.world.get('volumes', `${vm.name}-root`);
    if (volume) this.world.put('volumes', volume.name, { ...volume, sizeGiB: request.resources.diskGiB });
    const labels = request.labels ? { ...vm.labels, ...request.labels } : vm.labels;
    return this.#toRecord(this.#update(vm, { resources: request.resources, specHash: request.specHash, labels }));
  }

  /** VMs no fleet owns (made by another tool: `addForeignVm`, or restored as a new VM). */
  async listUnowned(ctx: OperationContext = {}): Promise<readonly UnownedVm[]> {
    await this.#enter('listUnowned', ctx, {});
    const images = this.#config.images;
    const out: UnownedVm[] = [];
    for (const vm of this.world.values('vms')) {
      if (vm.fleet !== '') continue;
      const record = this.#toRecord(vm);
      const known = !images || images.includes(vm.image);
      out.push({
        name: vm.name, id: vm.id, provider: this.name, host: record.host, zone: record.zone, state: vm.state, resources: vm.resources,
        ...(known ? { image: vm.image } : { imageSource: `image ${vm.image}` }), labels: vm.labels, addresses: record.addresses,
      });
    }
    return out;
  }

  /** Records the fleet's ownership on a VM that has none, leaving it running as it is. */
  async adopt(ref: VmRef, request: AdoptRequest, ctx: OperationContext = {}): Promise<VmRecord> {
    await this.#enter('adopt', ctx, { vm: ref.name });
    const vm = this.world.get('vms', ref.name);
    const context = { provider: this.name, vm: ref.name, operation: 'adopt' };
    if (!vm) throw new NotFoundError(`VM "${ref.name}" does not exist in the simulated datacenter`, { context });
    const { ownership } = request;
    if (vm.fleet !== '') {
      if (vm.fleet === ownership.fleet && vm.group === ownership.group && vm.index === ownership.index) return this.#toRecord(vm);
      throw new ConflictError(`VM "${ref.name}" is already owned by fleet "${vm.fleet}"`, { context, hint: 'a VM belongs to one fleet' });
    }
    for (const volume of [...this.world.values('volumes')]) if (volume.vm === vm.name && volume.fleet === '') this.world.put('volumes', volume.name, { ...volume, fleet: ownership.fleet });
    return this.#toRecord(this.#update(vm, { fleet: ownership.fleet, group: ownership.group, index: ownership.index, specHash: ownership.specHash, image: request.image, labels: { ...vm.labels, ...request.labels } }));
  }

  async migrate(ref: VmRef, request: MigrateRequest, ctx: OperationContext = {}): Promise<MigrationResult> {
    const stage = await this.#enter('migrate', ctx, { vm: ref.name });
    const vm = this.#owned(ref, 'migrate');
    const toName = this.#localHost(request.toHost);
    const context = { provider: this.name, vm: vm.name, host: toName, operation: 'migrate' };
    if (vm.host === toName) {
      throw new InvalidInputError(`VM "${vm.name}" is already on host "${toName}"`, { context, hint: 'choose another destination' });
    }
    const to = this.#host(toName, 'migrate');
    if (to.state !== 'up') {
      throw new ConflictError(`host "${toName}" is ${to.state} and takes no VMs`, { context });
    }
    this.#assertRoom(to, vm.resources, vm.name);
    if (this.#config.images && !this.#config.images.includes(vm.image)) {
      throw new NotFoundError(`image "${vm.image}" is not available on host "${toName}"`, { context });
    }
    const mode = request.mode === 'live' && vm.state !== 'running' ? 'cold' : request.mode;
    const linkFails = await stage('link').then(
      () => undefined,
      () => 0.5 * ((vm.resources.memoryMiB * 1024 * 1024) / ((this.#config.link.bandwidthMbps * 1e6) / 8)) * 1000,
    );
    const before = this.#update(vm, { state: mode === 'live' ? 'migrating' : 'stopped' });
    try {
      const result = await simulateMigration(before, { ...request, mode }, this.#config, this.#clock, ctx, linkFails);
      await stage('switch');
      const moved = this.#update(before, { host: toName, state: vm.state === 'stopped' ? 'stopped' : 'running' });
      const volume = this.world.get('volumes', `${vm.name}-root`);
      if (volume) this.world.put('volumes', volume.name, { ...volume, host: toName });
      return { ...result, vm: this.#toRecord(moved) };
    } catch (error) {
      if (!(error instanceof SimulatedCrash)) this.#update(before, { state: vm.state });
      throw error;
    }
  }

  async exportImage(ref: VmRef, ctx: OperationContext = {}): Promise<ImageArtifact> {
    await this.#enter('exportImage', ctx, { vm: ref.name });
    const vm = this.#owned(ref, 'exportImage');
    if (vm.state === 'running') {
      throw new ConflictError(`stop "${vm.name}" before exporting its disk`, { context: { provider: this.name, vm: vm.name, operation: 'exportImage' } });
    }
    return exportDisk(vm, join(this.#exportDir, this.name));
  }

  async importImage(artifact: ImageArtifact, imageName: string, ctx: OperationContext = {}): Promise<string> {
    await this.#enter('importImage', ctx, {});
    checkArtifact(artifact);
    if (!this.world.get('images', imageName)) {
      this.world.put('images', imageName, { name: imageName, sha256: artifact.sha256, sizeBytes: artifact.sizeBytes, importedAt: new Date(this.#clock.now()).toISOString() });
    }
    return imageName;
  }

  /**
   * A simulated guest is up as soon as its VM runs. A `fail` fault at stage `guest` is a
   * guest that never comes up: after the timeout, `ok: false` with the rule's message (a
   * disk that does not boot where it was moved to, say); other actions act as anywhere.
   */
  async awaitReady(ref: VmRef, options: BootCheckOptions = {}, ctx: OperationContext = {}): Promise<BootCheckResult> {
    const started = this.#clock.now();
    const stage = await this.#enter('awaitReady', ctx, { vm: ref.name });
    const vm = this.#owned(ref, 'awaitReady');
    const timeoutMs = options.timeoutMs ?? 300_000;
    if (vm.state !== 'running') return { ok: false, detail: `${vm.name} is ${vm.state}, not running`, durationMs: this.#clock.now() - started };
    try {
      await stage('guest');
    } catch (error) {
      if (error instanceof SimulatedCrash || !NovaCronError.isInstance(error) || error.code !== 'Provider') throw error;
      await this.#clock.sleep(timeoutMs, ctx.signal);
      return { ok: false, detail: `the guest of ${vm.name} did not come up within ${Math.round(timeoutMs / 1000)} s (${error.message})`, durationMs: this.#clock.now() - started };
    }
    return { ok: true, detail: `${vm.name} runs on ${vm.host}; a simulated guest is up once it runs`, durationMs: this.#clock.now() - started };
  }

  async estimateMigration(ref: VmRef, _toHost: string, ctx: OperationContext = {}): Promise<MigrationEstimateInputs> {
    await this.#enter('estimateMigration', ctx, { vm: ref.name });
    return migrationInputs(this.#owned(ref, 'estimateMigration'), this.#config);
  }

  snapshot(ref: VmRef, request: SnapshotRequest, ctx?: OperationContext): Promise<SnapshotRecord> {
    return this.disks.snapshot(ref, request, ctx);
  }

  listSnapshots(fleet: string, ctx?: OperationContext): Promise<readonly SnapshotRecord[]> {
    return this.disks.listSnapshots(fleet, ctx);
  }

  restore(ref: VmRef, request: RestoreRequest, ctx?: OperationContext): Promise<RestoreResult> {
    return this.disks.restore(ref, request, ctx);
  }

  deleteSnapshot(id: string, ctx?: OperationContext): Promise<void> {
    return this.disks.deleteSnapshot(id, ctx);
  }

  recordVerification(id: string, verification: SnapshotVerification, ctx?: OperationContext): Promise<SnapshotRecord> {
    return this.disks.recordVerification(id, verification, ctx);
  }

  async close(): Promise<void> {
    this.#store?.close(this.world.toStored());
  }

  // ---- for tests and the simulated world -------------------------------------------

  /** Drops the provider as if its process were killed: nothing is flushed beyond the journal. */
  kill(): void {
    this.#store?.abandon();
  }

  /** Takes a host down (operations on its VMs fail as unreachable) or brings it back. */
  setHostState(name: string, state: HostState): void {
    const host = this.#host(name, 'setHostState', true);
    this.world.put('hosts', name, { ...host, state });
  }

  /** Puts a VM on a host as another tool (or another fleet) would: owned by `fleet`, or by no one when empty. */
  addForeignVm(vm: { name: string; host: string; fleet?: string; resources: Resources; image?: string }): VmRecord {
    const record: SimVm = {
      name: vm.name,
      id: `sim-${this.world.next('vm')}`,
      fleet: vm.fleet ?? '',
      group: '',
      index: 0,
      specHash: '',
      host: vm.host,
      state: 'running',
      resources: vm.resources,
      image: vm.image ?? 'unknown',
      labels: {},
      createdAt: new Date(this.#clock.now()).toISOString(),
      workingSetMiB: vm.resources.memoryMiB / 4,
      dirtyRateMiBps: 0,
    };
    this.world.put('vms', record.name, record);
    return this.#toRecord(record);
  }

  /** Volumes no VM uses: what a leaking create or delete would leave. */
  orphanVolumes(): string[] {
    return [...this.world.values('volumes')].filter((v) => !this.world.get('vms', v.vm)).map((v) => v.name);
  }

  // ---- internals ------------------------------------------------------------------------

  /** NICs only on the networks the config declares (any when it declares none). */
  #assertNetworks(nics: readonly NicSpec[], vm: string, operation: string): void {
    const known = this.#config.networks;
    const missing = known ? nics.filter((n) => !known.includes(n.network)) : [];
    if (missing.length > 0) {
      throw new NotFoundError(`network "${missing[0]!.network}" does not exist in the simulated datacenter`, {
        context: { provider: this.name, vm, operation },
        hint: `networks: ${known!.join(', ')}; nothing was changed`,
      });
    }
  }

  /** The VM's NICs as the sim reports them: one virtio NIC on `default` for a VM made without declared NICs. */
  #nicsOf(vm: SimVm): readonly SimNic[] {
    return vm.nics ?? [{ network: 'default', model: 'virtio', mac: macOf(0, Number(vm.id.replace(/\D/g, '')) || 0) }];
  }

  /** A MAC for a NIC the sim makes (default NICs take theirs from the VM's id instead). */
  #mac(): string {
    return macOf(1, this.world.next('nic'));
  }

  /** Stage `nics` before any NIC changes (a `fail` there is a refused hot-plug), `nics-detached` between detaches and attaches. */
  async #hotplugNics(vm: SimVm, want: readonly NicSpec[], stage: (name: string) => Promise<void>): Promise<SimVm> {
    const have = this.#nicsOf(vm);
    const diff = diffNics(want, have);
    if (nicDiffIsEmpty(diff)) return vm;
    await stage('nics');
    const gone = new Set<object>([...diff.detach, ...diff.remodel.map((r) => r.from)]);
    let current = this.#update(vm, { nics: have.filter((n) => !gone.has(n)) });
    await stage('nics-detached');
    const attached: SimNic[] = [
      ...diff.remodel.map((r) => ({ network: r.to.network, model: r.to.model ?? 'virtio', mac: r.from.mac! })),
      ...diff.attach.map((n) => ({ network: n.network, model: n.model ?? 'virtio', mac: this.#mac() })),
    ];
    current = this.#update(current, { nics: [...(current.nics ?? []), ...attached] });
    return current;
  }

  /** Counts the call, waits the configured latency, fires faults at its start; returns the stage hook. */
  async #enter(operation: string, ctx: OperationContext, where: { vm?: string; host?: string }) {
    const call = this.faults.call(operation);
    const latency = this.#config.latency[operation as keyof SimProviderConfig['latency']];
    if (latency) await this.#clock.sleep(latency, ctx.signal);
    const stage = (name: string) => this.faults.check({ operation, call, stage: name, ...where }, this.#clock, ctx.signal);
    await stage('start');
    return stage;
  }

  async #finishCreate(vm: SimVm, stage: (name: string) => Promise<void>): Promise<VmRecord> {
    await stage('volume');
    const volume = `${vm.name}-root`;
    if (!this.world.get('volumes', volume)) {
      this.world.put('volumes', volume, { name: volume, vm: vm.name, host: vm.host, sizeGiB: vm.resources.diskGiB, fleet: vm.fleet });
    }
    await stage('define');
    const running = this.#update(vm, { state: 'running' });
    await stage('end');
    return this.#toRecord(running);
  }

  #remove(name: string): void {
    for (const volume of [...this.world.values('volumes')]) if (volume.vm === name) this.world.delete('volumes', volume.name);
    this.world.delete('vms', name);
  }

  #update(vm: SimVm, patch: Partial<SimVm>): SimVm {
    const next = { ...this.world.get('vms', vm.name)!, ...patch };
    this.world.put('vms', vm.name, next);
    if (this.#store && this.#store.journalLines > COMPACT_AFTER) this.#store.compact(this.world.toStored());
    return next;
  }

  #owned(ref: VmRef, operation: string): SimVm {
    const vm = this.world.get('vms', ref.name);
    if (!vm) throw new NotFoundError(`VM "${ref.name}" does not exist`, { context: { provider: this.name, vm: ref.name, operation } });
    assertOwned(vm, ref, this.name);
    this.#host(vm.host, operation);
    return vm;
  }

  #host(name: string, operation: string, anyState = false): SimHost {
    const host = this.world.get('hosts', name);
    if (!host) {
      throw new NotFoundError(`host "${name}" is not in the simulated datacenter`, { context: { provider: this.name, host: name, operation } });
    }
    if (!anyState && host.state === 'down') {
      throw new UnreachableError(`host "${name}" does not answer`, { context: { provider: this.name, host: name, operation } });
    }
    return host;
  }

  #assertRoom(host: SimHost, need: Resources, vm: string): void {
    const used = this.world.allocated(host.name);
    const cap = host.capacity;
    const short = (['cpu', 'memoryMiB', 'diskGiB', 'gpu'] as const).find((d) => {
      const factor = d === 'cpu' ? host.overcommit.cpu : d === 'memoryMiB' ? host.overcommit.memory : d === 'diskGiB' ? host.overcommit.disk : 1;
      return need[d] > 0 && used[d] + need[d] > cap[d] * factor;
    });
    if (short) {
      throw new CapacityExceededError(`host "${host.name}" has not enough ${short.replace(/MiB|GiB/, '')} for VM "${vm}"`, {
        context: { provider: this.name, host: host.name, vm, operation: 'create' },
      });
    }
  }

  #localHost(id: string): string {
    const { provider, name } = splitHostId(id);
    if (provider && provider !== this.name) {
      throw new NotFoundError(`host "${id}" belongs to provider "${provider}", not "${this.name}"`, { context: { provider: this.name, host: id } });
    }
    return name;
  }

  /** A migration whose controlling process died leaves the guest running on the source, as QEMU does. */
  #recoverMigrations(): void {
    for (const vm of [...this.world.values('vms')]) if (vm.state === 'migrating') this.#update(vm, { state: 'running' });
  }

  #syncHosts(): void {
    const overcommit = this.#config.overcommit;
    const wanted: SimHost[] = this.#config.hosts.map((h) => ({
      name: h.name,
      zone: h.zone,
      ...(h.region ? { region: h.region } : {}),
      capacity: { cpu: h.cpu, memoryMiB: h.memory, diskGiB: h.disk, gpu: h.gpu },
      labels: h.labels,
      pricePerHour: h.pricePerHour,
      overcommit: h.overcommit ?? overcommit,
      state: 'up',
    }));
    const generate = this.#config.generate;
    if (generate) {
      const width = String(generate.count).length;
      for (let i = 0; i < generate.count; i++) {
        wanted.push({
          name: `${generate.prefix}-${String(i + 1).padStart(width, '0')}`,
          zone: generate.zones[i % generate.zones.length]!,
          capacity: { cpu: generate.cpu, memoryMiB: generate.memory, diskGiB: generate.disk, gpu: 0 },
          labels: generate.labels,
          pricePerHour: generate.pricePerHour,
          overcommit,
          state: 'up',
        });
      }
    }
    for (const host of wanted) {
      const current = this.world.get('hosts', host.name);
      const next = { ...host, state: current?.state ?? host.state };
      if (!current || JSON.stringify(current) !== JSON.stringify(next)) this.world.put('hosts', host.name, next);
    }
  }

  /** A host as inventory reports it; a host that is down reports no running VMs or pool, as a KVM host out of reach would not. */
  #toHost(h: SimHost, runningVms: number): Host {
    const allocated = { ...this.world.allocated(h.name) };
    return {
      id: hostId(this.name, h.name),
      provider: this.name,
      name: h.name,
      zone: h.zone,
      ...(h.region ? { region: h.region } : {}),
      labels: h.labels,
      capacity: h.capacity,
      allocated,
      overcommit: h.overcommit,
      pricePerHour: h.pricePerHour,
      state: h.state,
      ...(h.state === 'down'
        ? {}
        : {
            // The host's disk as one pool, as a KVM host's `default` pool would be.
            storagePools: [{ name: 'default', capacityGiB: h.capacity.diskGiB, freeGiB: Math.max(0, h.capacity.diskGiB - allocated.diskGiB), active: true }],
            runningVms,
          }),
    };
  }

  #toRecord(vm: SimVm): VmRecord {
    const n = Number(vm.id.slice(4)) || 0;
    return {
      name: vm.name,
      id: vm.id,
      provider: this.name,
      fleet: vm.fleet,
      group: vm.group,
      index: vm.index,
      specHash: vm.specHash,
      host: hostId(this.name, vm.host),
      zone: this.world.get('hosts', vm.host)?.zone ?? 'unknown',
      state: vm.state,
      resources: vm.resources,
      image: vm.image,
      labels: vm.labels,
      addresses: [{ address: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`, source: 'api' }],
      createdAt: vm.createdAt,
      nics: this.#nicsOf(vm).map((n) => ({ network: n.network, mac: n.mac, model: n.model })),
      ...(vm.instanceType ? { instanceType: vm.instanceType } : {}),
    };
  }
}

/** A MAC in QEMU's 52:54 range: `space` keeps default NICs (0) apart from made ones (1). */
function macOf(space: number, n: number): string {
  const hex = (n % 0x1000000).toString(16).padStart(6, '0');
  return `52:54:0${space}:${hex.slice(0, 2)}:${hex.slice(2, 4)}:${hex.slice(4, 6)}`;
}
