import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { protos } from '@google-cloud/compute';
import {
  assertOwned,
  CapacityExceededError,
  CapacityMemory,
  type ElasticPlacement,
  cheapestFit,
  ConflictError,
  hostId,
  InvalidInputError,
  NotFoundError,
  NovaCronError,
  splitHostId,
  stableHash,
  systemClock,
  throwIfAborted,
  UnsupportedError,
  type AdoptRequest,
  type Capabilities,
  type Clock,
  type CreateVmRequest,
  type ErrorContext,
  type GcpProviderConfig,
  type Host,
  type ImageArtifact,
  type InstanceType,
  type OperationContext,
  type Provider,
  type ResizeRequest,
  type Resources,
  type RestoreRequest,
  type RestoreResult,
  type SnapshotRecord,
  type SnapshotRequest,
  type SnapshotVerification,
  type StopOptions,
  type UnownedVm,
  type VmRecord,
  type VmRef,
} from '@novacron/core';
import type { AuthClient } from 'google-auth-library';
import { adoptedMetadata, bootDisk, fleetImagesOf, imagePath, isUnowned, machineTypeSize } from './adopt.js';
import { machineTypesFor, regionOfZone } from './catalog/catalog.js';
import { GCE_CATALOG } from './catalog/generated/gceCatalog.js';
import type { GceCatalog } from './catalog/types.js';
import { createGcpClients, type GcpClients } from './clients.js';
import { gcpProblem, isCapacityShortage, mapGcpError } from './errors.js';
import {
  formatResources,
  labelValue,
  lastSegment,
  LABEL,
  mergeMetadata,
  ownershipLabels,
  ownMetadata,
  toVmRecord,
  userLabels,
} from './labels.js';
import { abortable, NO_RETRY, waitOperation, type WaitOptions } from './operations.js';
import { requestId } from './requestIds.js';
import { rawDiskTarball } from './tarball.js';

type Instance = protos.google.cloud.compute.v1.IInstance;
type Operation = protos.google.cloud.compute.v1.IOperation;
type Snapshot = protos.google.cloud.compute.v1.ISnapshot;

export interface GcpProviderOptions {
  /** The provider's name in the fleet spec. */
  readonly name: string;
  readonly config: GcpProviderConfig;
  readonly clock?: Clock;
  /** Credentials instead of application default credentials (tests). */
  readonly authClient?: AuthClient;
  /** Builds the clients. @default createGcpClients */
  readonly clients?: (config: GcpProviderConfig, authClient: AuthClient | undefined) => GcpClients;
  readonly log?: (message: string) => void;
  /** Pause between operation polls that came back unfinished, and between instance polls. @default 1000 */
  readonly pollMs?: number;
  /** How long a zone/type that reported no capacity stays out of the inventory. @default 900000 */
  readonly capacityCooldownMs?: number;
  /** @default the catalog shipped with the package */
  readonly catalog?: GceCatalog;
}

/** Elastic capacity: a zone takes what the project's quotas allow; placement does not count it. */
const ELASTIC: Resources = Object.freeze({ cpu: 1_000_000, memoryMiB: 1_000_000_000, diskGiB: 1_000_000_000, gpu: 100_000 });
const PAGE = 500;
const SETTLED = new Set(['RUNNING', 'TERMINATED', 'STOPPED', 'SUSPENDED']);

/**
 * NovaCron's Compute Engine provider: the configured zones as elastic hosts, each offering
 * the catalog's machine types at their on-demand prices; VMs as instances whose labels
 * record the fleet that owns them.
 */
export class GcpProvider implements Provider {
  readonly kind = 'gcp';
  readonly capabilities: Capabilities = Object.freeze({
    resize: true,
    hotplugCpu: false,
    hotplugMemory: false,
    liveMigration: false,
    coldMigration: false,
    snapshots: true,
    incrementalSnapshots: false,
    // Compute Engine has no API that writes a disk image out; `gcloud compute images export`
    // runs a Cloud Build workflow with worker VMs. Not offered until NovaCron has that path.
    imageExport: false,
    imageImport: true,
    // Ownership is labels: adopting an instance is setMetadata and setLabels, no stop or start.
    adopt: true,
  });
  readonly name: string;
  readonly #config: GcpProviderConfig;
  readonly #clock: Clock;
  readonly #authClient: AuthClient | undefined;
  readonly #makeClients: (config: GcpProviderConfig, authClient: AuthClient | undefined) => GcpClients;
  readonly #log: (message: string) => void;
  readonly #pollMs: number;
  readonly #capacity: CapacityMemory;
  readonly #catalog: GceCatalog;
  readonly #images = new Map<string, { source: string; until: number }>();
  #offered = new Map<string, ReadonlySet<string>>();
  #clients: GcpClients | undefined;
  #warned = new Set<string>();

  constructor(options: GcpProviderOptions) {
    this.name = options.name;
    this.#config = options.config;
    this.#clock = options.clock ?? systemClock;
    this.#authClient = options.authClient;
    this.#makeClients = options.clients ?? ((config, authClient) => createGcpClients(config, authClient ? { authClient } : {}));
    this.#log = options.log ?? (() => {});
    this.#pollMs = options.pollMs ?? 1000;
    this.#capacity = new CapacityMemory(this.#clock, options.capacityCooldownMs ?? 15 * 60_000);
    this.#catalog = options.catalog ?? GCE_CATALOG;
  }

  // ---- inventory and list ---------------------------------------------------------------

  async inventory(ctx: OperationContext = {}): Promise<readonly Host[]> {
    const where = this.#where('inventory');
    const c = this.#c();
    const offered = new Map<string, Set<string>>();
    const hosts: Host[] = [];
    for (const zone of this.#config.zones) {
      let status: string;
      try {
        const [z] = await abortable(c.zones.get({ project: this.#config.project, zone }, NO_RETRY), ctx.signal, where);
        status = z.status ?? 'UP';
      } catch (error) {
        const mapped = mapGcpError(error, where);
        if (mapped.code !== 'NotFound') throw mapped;
        throw new InvalidInputError(`zone "${zone}" does not exist in Compute Engine`, {
          context: { ...where, path: `providers.${this.name}.zones` },
          hint: 'list zones with: gcloud compute zones list',
        });
      }
      const types = this.#catalogTypes(zone);
      const names = new Set<string>();
      try {
        for await (const mt of c.machineTypes.listAsync({ project: this.#config.project, zone, maxResults: PAGE }, NO_RETRY)) {
          throwIfAborted(ctx.signal, where);
          if (mt.name && !mt.deprecated?.state) names.add(mt.name);
        }
      } catch (error) {
        throw mapGcpError(error, where);
      }
      offered.set(zone, names);
      hosts.push({
        id: hostId(this.name, zone),
        provider: this.name,
        name: zone,
        zone,
        region: regionOfZone(zone),
        labels: this.#config.labels,
        capacity: ELASTIC,
        allocated: { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 },
        overcommit: { cpu: 1, memory: 1, disk: 1 },
        pricePerHour: 0,
        state: status === 'UP' ? 'up' : 'down',
        instanceTypes: types.filter((t) => names.has(t.name) && !this.#capacity.isExhausted(zone, t.name)),
      });
    }
    this.#offered = offered;
    return hosts;
  }

  async list(fleet: string, ctx: OperationContext = {}): Promise<readonly VmRecord[]> {
    const instances = await this.#find(`labels.${LABEL.fleet} = "${fleet}"`, this.#where('list'), ctx.signal);
    return instances.map((i) => this.#record(i));
  }

  // ---- create ------------------------------------------------------------------------------

  /**
   * Creates the VM, or returns it if it exists already (instance names are unique in a
   * zone, and each insert carries a request id derived from the VM, so a retry or a re-run
   * never makes a second one). When the zone has no capacity for the machine type
   * (ZONE_RESOURCE_POOL_EXHAUSTED), the next candidates are tried: the request's
   * alternatives, else the next cheapest types in the zone that fit, up to
   * `capacityFallbacks`. Transactional: an instance that fails to come up is deleted.
   */
  async create(request: CreateVmRequest, ctx: OperationContext = {}): Promise<VmRecord> {
    const where: ErrorContext = { provider: this.name, vm: request.name, host: request.host, operation: 'create' };
    throwIfAborted(ctx.signal, where);
    const notNetwork = request.nics?.find((n) => !GCE_NETWORK.test(n.network));
    if (notNetwork) {
      throw new InvalidInputError(`NIC network "${notNetwork.network}" is not a Compute Engine network name; nothing was made`, {
        context: where,
        hint: 'on Compute Engine each of groups.<group>.nics names a VPC network of the project by its name (prod-vpc), each NIC a different network',
      });
    }
    const zone = this.#zoneOf(request.host, where);
    const candidates = this.#capacity.candidates({ request, zone, typesIn: (z) => this.#typesIn(z), zoneOf: (h) => this.#zoneOf(h, where), fallbacks: this.#config.capacityFallbacks, where, typeWord: 'machine', typesKey: 'machineTypes' });
    for (const z of new Set(candidates.map((c) => c.zone))) {
      const existing = await this.#get(z, request.name, where, ctx.signal);
      if (existing) {
        assertOwned(this.#record(existing), { name: request.name, fleet: request.ownership.fleet }, this.name);
        return this.#record(await this.#settle(existing, where, ctx));
      }
    }
    // A VM moved from another provider boots from the image imported for it; it still records the fleet's image name.
    const sourceImage = request.fromImage ?? (await this.#image(request.image, where, ctx.signal));
    const refused: string[] = [];
    let lastRefusal: NovaCronError | undefined;
    for (const [i, candidate] of candidates.entries()) {
      throwIfAborted(ctx.signal, where);
      const at: ErrorContext = { ...where, host: hostId(this.name, candidate.zone) };
      if (i < candidates.length - 1 && this.#capacity.isExhausted(candidate.zone, candidate.type)) {
        refused.push(`${candidate.type} in ${candidate.zone} (refused in the last ${Math.round(this.#capacity.cooldownMs / 60_000)} min)`);
        continue;
      }
      let op: Operation;
      try {
        op = await this.#insert(request, candidate, sourceImage, at, ctx.signal);
      } catch (error) {
        const mapped = mapGcpError(error, at);
        if (mapped.code === 'Conflict' && gcpProblem(error).code === 'alreadyExists') {
          const existing = await this.#get(candidate.zone, request.name, at, ctx.signal);
          if (existing) {
            assertOwned(this.#record(existing), { name: request.name, fleet: request.ownership.fleet }, this.name);
            return this.#record(await this.#settle(existing, at, ctx));
          }
        }
        if (!isCapacityShortage(error)) throw mapped;
        this.#capacity.markExhausted(candidate.zone, candidate.type);
        refused.push(`${candidate.type} in ${candidate.zone}: ${gcpProblem(error).code}`);
        lastRefusal = mapped;
        continue;
      }
      ctx.onProgress?.({ operation: 'create', phase: 'waiting', message: `${request.name} (${candidate.type} in ${candidate.zone}): operation ${op.name}` });
      try {
        await waitOperation(op, candidate.zone, this.#waitOptions(), at, ctx);
      } catch (error) {
        if (isCapacityShortage(error)) {
          // Compute Engine removes an instance it could not place; nothing to clean up.
          this.#capacity.markExhausted(candidate.zone, candidate.type);
          refused.push(`${candidate.type} in ${candidate.zone}: ${gcpProblem(error).code}`);
          lastRefusal = mapGcpError(error, at);
          ctx.onProgress?.({ operation: 'create', phase: 'capacity-fallback', message: `${candidate.type} in ${candidate.zone}: ${gcpProblem(error).code}` });
          continue;
        }
        await this.#cleanUp(candidate.zone, request.name, at);
        throw mapGcpError(error, at);
      }
      const made = await this.#get(candidate.zone, request.name, at, ctx.signal);
      if (!made) throw new NovaCronError('Provider', 'server', `instance "${request.name}" is gone after its insert finished`, { context: at });
      return this.#record(made);
    }
    throw new CapacityExceededError(`no capacity for VM "${request.name}": ${refused.join('; ')}`, {
      context: where,
      cause: lastRefusal,
      hint: `the refusing zone/type pairs stay out of this provider's inventory for ${Math.round(this.#capacity.cooldownMs / 60_000)} min, so a new plan places the VM elsewhere; or allow more zones or machine types`,
    });
  }


  /** instances.insert with a derived request id, past an earlier attempt's replayed failure. */
  async #insert(request: CreateVmRequest, at: ElasticPlacement, sourceImage: string, where: ErrorContext, signal: AbortSignal | undefined): Promise<Operation> {
    const c = this.#c();
    const gpu = this.#catalog.types.find((t) => t.name === at.type)?.gpu ?? 0;
    const instanceResource: protos.google.cloud.compute.v1.IInstance = {
      name: request.name,
      machineType: `zones/${at.zone}/machineTypes/${at.type}`,
      labels: ownershipLabels(request.ownership, request.labels),
      metadata: { items: ownMetadata(request.image, request.resources, request.labels, request.cloudInit, request.ownership.specHash) },
      disks: [
        {
          boot: true,
          autoDelete: true,
          initializeParams: {
            sourceImage,
            diskSizeGb: request.resources.diskGiB,
            diskType: `zones/${at.zone}/diskTypes/${this.#config.diskType}`,
            labels: { [LABEL.fleet]: request.ownership.fleet, [LABEL.vm]: request.name },
          },
        },
      ],
      // Declared NICs: one per VPC network, in order (nic0 is the primary). Compute Engine
      // sets an instance's NICs at insert only: a change replaces the VM (no hotplugNics).
      networkInterfaces: request.nics
        ? request.nics.map((n) => ({ network: gceNetwork(n.network) }))
        : [
            {
              network: this.#config.network ?? 'global/networks/default',
              ...(this.#config.subnetwork ? { subnetwork: this.#config.subnetwork } : {}),
            },
          ],
      // Instances with GPUs cannot live-migrate for host maintenance.
      ...(gpu > 0 ? { scheduling: { onHostMaintenance: 'TERMINATE', automaticRestart: true } } : {}),
    };
    // The whole body is part of the id: a changed request (another image, network) is a new request.
    const parts = [request.ownership.fleet, request.name, request.ownership.specHash, at.zone, at.type, stableHash(instanceResource, 32)];
    let after: string | undefined;
    for (let generation = 0; generation < 3; generation++) {
      const [op] = await abortable(
        c.instances.insert({ project: this.#config.project, zone: at.zone, requestId: requestId(parts, after), instanceResource }, NO_RETRY),
        signal,
        where,
      );
      const operation = (op as { latestResponse?: Operation }).latestResponse ?? (op as Operation);
      // A fresh insert is never done on arrival: this is an earlier attempt's operation,
      // replayed for its request id. If it failed, the next id in the chain starts anew.
      if (operation.status === 'DONE' && (operation.error?.errors?.length ?? 0) > 0) {
        after = operation.name ?? String(generation);
        continue;
      }
      return operation;
    }
    throw new NovaCronError('Provider', 'server', `Compute Engine keeps replaying failed inserts of "${request.name}"`, { context: where });
  }

  /** Waits out PROVISIONING/STAGING (or STOPPING/SUSPENDING) by polling the instance. */
  async #settle(instance: Instance, where: ErrorContext, ctx: OperationContext): Promise<Instance> {
    let current = instance;
    const zone = lastSegment(instance.zone);
    const deadline = this.#clock.now() + this.#config.waitTimeout;
    while (!SETTLED.has(current.status ?? '')) {
      if (this.#clock.now() >= deadline) {
        throw new NovaCronError('Timeout', 'server', `instance "${instance.name}" stayed ${current.status} for ${Math.round(this.#config.waitTimeout / 1000)}s`, { context: where, retryable: true });
      }
      ctx.onProgress?.({ operation: where.operation ?? 'wait', phase: 'waiting', message: `${instance.name} is ${current.status}` });
      await this.#clock.sleep(this.#pollMs, ctx.signal);
      const next = await this.#get(zone, instance.name!, where, ctx.signal);
      if (!next) throw new NotFoundError(`instance "${instance.name}" disappeared`, { context: where });
      current = next;
    }
    return current;
  }

  async #cleanUp(zone: string, name: string, where: ErrorContext): Promise<void> {
    try {
      await this.#c().instances.delete({ project: this.#config.project, zone, instance: name, requestId: requestId(['cleanup', zone, name, String(this.#clock.now())]) }, NO_RETRY);
    } catch (error) {
      if (mapGcpError(error, where).code !== 'NotFound') this.#log(`gcp provider "${this.name}": could not delete ${name} after a failed create; the next plan deletes it`);
    }
  }

  // ---- lifecycle -------------------------------------------------------------------------

  async start(ref: VmRef, ctx: OperationContext = {}): Promise<VmRecord> {
    const where = this.#where('start', ref);
    let instance = await this.#settle(await this.#owned(ref, where, ctx.signal), where, ctx);
    if (instance.status === 'RUNNING') return this.#record(instance);
    const zone = lastSegment(instance.zone);
    const method = instance.status === 'SUSPENDED' ? 'resume' : 'start';
    await this.#operate(where, ctx, zone, (c) =>
      c.instances[method]({ project: this.#config.project, zone, instance: instance.name!, requestId: requestId([method, zone, instance.name!, String(instance.id), instance.lastStopTimestamp ?? instance.lastSuspendedTimestamp ?? '']) }, NO_RETRY),
    );
    instance = (await this.#get(zone, instance.name!, where, ctx.signal)) ?? instance;
    return this.#record(instance);
  }

  /** Compute Engine stops with an ACPI shutdown and gives the guest 90 s; `force` and `gracefulTimeoutMs` have no counterpart. */
  async stop(ref: VmRef, _options: StopOptions = {}, ctx: OperationContext = {}): Promise<VmRecord> {
    const where = this.#where('stop', ref);
    let instance = await this.#settle(await this.#owned(ref, where, ctx.signal), where, ctx);
    if (instance.status !== 'RUNNING') return this.#record(instance);
    const zone = lastSegment(instance.zone);
    await this.#operate(where, ctx, zone, (c) =>
      c.instances.stop({ project: this.#config.project, zone, instance: instance.name!, requestId: requestId(['stop', zone, instance.name!, String(instance.id), instance.lastStartTimestamp ?? '']) }, NO_RETRY),
    );
    instance = (await this.#get(zone, instance.name!, where, ctx.signal)) ?? instance;
    return this.#record(instance);
  }

  /** Deletes the instance and its boot disk (created with autoDelete). Deleting what is gone succeeds. */
  async delete(ref: VmRef, ctx: OperationContext = {}): Promise<void> {
    const where = this.#where('delete', ref);
    const found = await this.#findAll(ref, where, ctx.signal);
    for (const instance of found) assertOwned(this.#record(instance), ref, this.name);
    await Promise.all(
      found.map(async (instance) => {
        const zone = lastSegment(instance.zone);
        try {
          await this.#operate(where, ctx, zone, (c) =>
            c.instances.delete({ project: this.#config.project, zone, instance: instance.name!, requestId: requestId(['delete', zone, instance.name!, String(instance.id)]) }, NO_RETRY),
          );
        } catch (error) {
          if (!(NovaCronError.isInstance(error) && error.code === 'NotFound')) throw error;
        }
      }),
    );
  }

  /**
   * Brings a VM to its group's spec without replacing it: the machine type (only on a
   * stopped instance: stop, setMachineType, start), the boot disk (grown online), labels and
   * metadata (in place, with their fingerprints), and a stop/start when a reboot is asked
   * for. If the new type has no capacity at start, the old one is put back and started.
   */
  async resize(ref: VmRef, request: ResizeRequest, ctx: OperationContext = {}): Promise<VmRecord> {
    const where = this.#where('resize', ref);
    let instance = await this.#settle(await this.#owned(ref, where, ctx.signal), where, ctx);
    const zone = lastSegment(instance.zone);
    const name = instance.name!;
    const current = this.#record(instance);
    const oldType = lastSegment(instance.machineType);
    const newType = request.instanceType ?? cheapestFit(this.#typesIn(zone), request.resources)?.name;
    if (!newType) throw new CapacityExceededError(`no machine type in the catalog fits the new size of VM "${ref.name}"`, { context: where });
    const wasRunning = instance.status === 'RUNNING';
    const needsStop = newType !== oldType || request.reboot === true;
    if (needsStop && wasRunning && !request.allowReboot) {
      throw new UnsupportedError(`changing VM "${ref.name}" ${newType !== oldType ? `from ${oldType} to ${newType}` : 'with a reboot'} needs a stop and start`, {
        context: where,
        hint: 'allow reboots for the group (changes.allowReboot)',
      });
    }
    const project = this.#config.project;
    if (needsStop && wasRunning) {
      ctx.onProgress?.({ operation: 'resize', phase: 'stopping', message: `${name} stops${newType !== oldType ? ` to change type ${oldType} → ${newType}` : ''}` });
      await this.#operate(where, ctx, zone, (c) => c.instances.stop({ project, zone, instance: name, requestId: requestId(['resize-stop', zone, name, request.specHash]) }, NO_RETRY));
    }
    if (newType !== oldType) {
      await this.#operate(where, ctx, zone, (c) =>
        c.instances.setMachineType({ project, zone, instance: name, requestId: requestId(['set-type', zone, name, newType, request.specHash]), instancesSetMachineTypeRequestResource: { machineType: `zones/${zone}/machineTypes/${newType}` } }, NO_RETRY),
      );
    }
    const boot = (instance.disks ?? []).find((d) => d.boot);
    if (boot?.source && request.resources.diskGiB > Number(boot.diskSizeGb ?? current.resources.diskGiB)) {
      const disk = lastSegment(boot.source);
      await this.#operate(where, ctx, zone, (c) =>
        c.disks.resize({ project, zone, disk, requestId: requestId(['disk-resize', zone, disk, String(request.resources.diskGiB)]), disksResizeRequestResource: { sizeGb: request.resources.diskGiB } }, NO_RETRY),
      );
    }
    instance = (await this.#get(zone, name, where, ctx.signal)) ?? instance;
    const labels = { ...(instance.labels ?? {}), ...userLabels(request.labels ?? {}), [LABEL.specHash]: labelValue(request.specHash) };
    await this.#operate(where, ctx, zone, (c) =>
      c.instances.setLabels({ project, zone, instance: name, requestId: requestId(['labels', zone, name, JSON.stringify(labels)]), instancesSetLabelsRequestResource: { labels, labelFingerprint: instance.labelFingerprint ?? null } }, NO_RETRY),
    );
    const exactLabels = { ...current.labels, ...(request.labels ?? {}) };
    const items = mergeMetadata(instance.metadata?.items, ownMetadata(current.image, request.resources, exactLabels, request.cloudInit, request.specHash));
    if (!request.cloudInit) {
      // No new cloud-init data: keep what the VM has.
      const keep = (instance.metadata?.items ?? []).filter((i) => i.key === 'user-data' || i.key === 'startup-script' || i.key === 'ssh-keys');
      items.push(...keep.filter((k) => !items.some((i) => i.key === k.key)));
    }
    await this.#operate(where, ctx, zone, (c) =>
      c.instances.setMetadata({ project, zone, instance: name, requestId: requestId(['metadata', zone, name, JSON.stringify(items)]), metadataResource: { items, fingerprint: instance.metadata?.fingerprint ?? null } }, NO_RETRY),
    );
    if (needsStop && wasRunning) {
      ctx.onProgress?.({ operation: 'resize', phase: 'starting', message: `${name} starts as ${newType}` });
      try {
        await this.#operate(where, ctx, zone, (c) => c.instances.start({ project, zone, instance: name, requestId: requestId(['resize-start', zone, name, request.specHash]) }, NO_RETRY));
      } catch (error) {
        if (!(NovaCronError.isInstance(error) && error.code === 'CapacityExceeded') || newType === oldType) throw error;
        this.#capacity.markExhausted(zone, newType);
        await this.#revertType(zone, name, oldType, where, ctx);
        throw error;
      }
    }
    return this.#record((await this.#get(zone, name, where, ctx.signal)) ?? instance);
  }

  async #revertType(zone: string, name: string, oldType: string, where: ErrorContext, ctx: OperationContext): Promise<void> {
    const project = this.#config.project;
    try {
      await this.#operate(where, ctx, zone, (c) =>
        c.instances.setMachineType({ project, zone, instance: name, requestId: requestId(['revert-type', zone, name, oldType, String(this.#clock.now())]), instancesSetMachineTypeRequestResource: { machineType: `zones/${zone}/machineTypes/${oldType}` } }, NO_RETRY),
      );
      await this.#operate(where, ctx, zone, (c) => c.instances.start({ project, zone, instance: name, requestId: requestId(['revert-start', zone, name, String(this.#clock.now())]) }, NO_RETRY));
    } catch (error) {
      this.#log(`gcp provider "${this.name}": could not put ${name} back to ${oldType} after a failed resize (${mapGcpError(error, where).message})`);
    }
  }

  // ---- adoption -----------------------------------------------------------------------------

  /**
   * Instances in the configured zones that no fleet owns (no `novacron-fleet` label, not
   * restored by NovaCron). Their size is the machine type's (catalog, or a custom type's own)
   * with the boot disk's size; their image the `images` entry naming the boot disk's source
   * image (or its family), else the source image as `imageSource`.
   */
  async listUnowned(ctx: OperationContext = {}): Promise<readonly UnownedVm[]> {
    const where = this.#where('listUnowned');
    const instances = (await this.#find('', where, ctx.signal)).filter((i) => this.#config.zones.includes(lastSegment(i.zone)) && isUnowned(i));
    const families = new Map<string, Promise<string | undefined>>();
    return Promise.all(
      instances.map(async (i): Promise<UnownedVm> => {
        const record = this.#record(i);
        const boot = bootDisk(i);
        const source = boot.name ? await this.#sourceImage(record.zone, boot.name, where, ctx.signal) : undefined;
        let names = source ? fleetImagesOf(source, undefined, this.#config.images) : [];
        if (source && names.length === 0 && Object.values(this.#config.images).some((ref) => ref.includes('/images/family/'))) {
          if (!families.has(source)) families.set(source, this.#imageFamily(source, where, ctx.signal));
          names = fleetImagesOf(source, await families.get(source), this.#config.images);
        }
        const described = source ? `image ${imagePath(source)}` : 'a boot disk made from no image (a snapshot or another disk)';
        return {
          name: record.name,
          id: record.id,
          provider: this.name,
          host: record.host,
          zone: record.zone,
          state: record.state,
          resources: { cpu: 0, memoryMiB: 0, gpu: 0, ...machineTypeSize(lastSegment(i.machineType), this.#catalog), diskGiB: boot.sizeGiB },
          ...(names.length === 1 ? { image: names[0]! } : {}),
          imageSource: names.length > 1 ? `${described}, which images ${names.join(', ')} all name` : described,
          ...(names.length === 0 && source ? { imageSuggestion: { name: labelValue(lastSegment(source)).replace(/_/g, '-'), config: imagePath(source) } } : {}),
          labels: Object.fromEntries(Object.entries(i.labels ?? {})),
          addresses: record.addresses,
        };
      }),
    );
  }

  /**
   * Records a fleet's ownership on an instance that has none, as `create` would have:
   * metadata first (the fleet's image name, the size, the exact labels; every other key is
   * kept), the boot disk's labels, then the instance's labels (fleet, group, index, spec
   * hash, the fleet's labels; others kept) with their fingerprint, which makes it the
   * fleet's, so a failure before leaves it unowned. Never stopped or started. The same
   * fleet and slot again returns it as it is; an instance another fleet (or slot) owns, or
   * one NovaCron restored, is a Conflict.
   */
  async adopt(ref: VmRef, request: AdoptRequest, ctx: OperationContext = {}): Promise<VmRecord> {
    const where = this.#where('adopt', ref);
    throwIfAborted(ctx.signal, where);
    const { ownership } = request;
    const found = (await this.#findAll(ref, where, ctx.signal)).filter((i) => this.#config.zones.includes(lastSegment(i.zone)));
    if (found.length > 1) throw new ConflictError(`instances named "${ref.name}" are in zones ${found.map((i) => lastSegment(i.zone)).join(', ')}`, { context: where, hint: 'adopt one at a time: rename the other' });
    let instance = found[0];
    if (!instance) throw new NotFoundError(`VM "${ref.name}" is in none of the zones ${this.#config.zones.join(', ')}`, { context: where, hint: 'run `novacron adopt --dry-run` again: it may have been deleted' });
    const zone = lastSegment(instance.zone);
    const name = instance.name!;
    const sameSlot = (i: Instance): boolean => {
      const l = i.labels ?? {};
      return !(LABEL.restoredFrom in l) && !(LABEL.scratch in l) && l[LABEL.fleet] === ownership.fleet && l[LABEL.group] === ownership.group && l[LABEL.index] === String(ownership.index);
    };
    const refuse = (i: Instance): ConflictError => {
      const l = i.labels ?? {};
      return new ConflictError(
        LABEL.restoredFrom in l || LABEL.scratch in l
          ? `VM "${ref.name}" was restored by NovaCron from snapshot ${l[LABEL.restoredFrom] ?? '?'}: it is not adopted`
          : `VM "${ref.name}" is already owned (fleet "${l[LABEL.fleet]}", group "${l[LABEL.group] ?? ''}", index ${l[LABEL.index] ?? '?'})`,
        { context: { ...where, host: hostId(this.name, zone) }, hint: 'a VM belongs to one fleet: remove it from the other fleet first' },
      );
    };
    if (!isUnowned(instance)) {
      if (sameSlot(instance)) return this.#record(instance);
      throw refuse(instance);
    }
    const project = this.#config.project;
    const boot = bootDisk(instance);
    const resources = { cpu: 0, memoryMiB: 0, gpu: 0, ...machineTypeSize(lastSegment(instance.machineType), this.#catalog), diskGiB: boot.sizeGiB };
    const exactLabels = { ...this.#record(instance).labels, ...request.labels };
    const items = adoptedMetadata(instance.metadata?.items, request.image, formatResources(resources), JSON.stringify(exactLabels));
    ctx.onProgress?.({ operation: 'adopt', phase: 'metadata', message: name });
    await this.#operate(where, ctx, zone, (c) =>
      c.instances.setMetadata({ project, zone, instance: name, requestId: requestId(['adopt-metadata', zone, name, String(instance!.id), JSON.stringify(items)]), metadataResource: { items, fingerprint: instance!.metadata?.fingerprint ?? null } }, NO_RETRY),
    );
    if (boot.name) {
      const disk = await this.#disk(zone, boot.name, where, ctx.signal);
      const diskLabels = { ...(disk?.labels ?? {}), [LABEL.fleet]: ownership.fleet, [LABEL.vm]: labelValue(name) };
      if (disk) {
        await this.#operate(where, ctx, zone, (c) =>
          c.disks.setLabels({ project, zone, resource: boot.name!, requestId: requestId(['adopt-disk', zone, boot.name!, JSON.stringify(diskLabels)]), zoneSetLabelsRequestResource: { labels: diskLabels, labelFingerprint: disk.labelFingerprint ?? null } }, NO_RETRY),
        );
      }
    }
    instance = (await this.#get(zone, name, where, ctx.signal)) ?? instance;
    if (!isUnowned(instance)) throw refuse(instance);
    const labels = { ...(instance.labels ?? {}), ...ownershipLabels(ownership, request.labels) };
    ctx.onProgress?.({ operation: 'adopt', phase: 'labels', message: name });
    await this.#operate(where, ctx, zone, (c) =>
      c.instances.setLabels({ project, zone, instance: name, requestId: requestId(['adopt-labels', zone, name, String(instance!.id), JSON.stringify(labels)]), instancesSetLabelsRequestResource: { labels, labelFingerprint: instance!.labelFingerprint ?? null } }, NO_RETRY),
    );
    const after = (await this.#get(zone, name, where, ctx.signal)) ?? instance;
    if (!sameSlot(after)) throw refuse(after);
    return this.#record(after);
  }

  /** A disk's source image (a full URL), if it was made from one. */
  async #sourceImage(zone: string, disk: string, where: ErrorContext, signal: AbortSignal | undefined): Promise<string | undefined> {
    return (await this.#disk(zone, disk, where, signal))?.sourceImage ?? undefined;
  }

  async #disk(zone: string, disk: string, where: ErrorContext, signal: AbortSignal | undefined): Promise<protos.google.cloud.compute.v1.IDisk | undefined> {
    try {
      const [found] = await abortable(this.#c().disks.get({ project: this.#config.project, zone, disk }, NO_RETRY), signal, where);
      return found;
    } catch (error) {
      const mapped = mapGcpError(error, where);
      if (mapped.code === 'NotFound') return undefined;
      throw mapped;
    }
  }

  /** An image's family, best effort: images of other projects may not be readable, and then no family entry matches. */
  async #imageFamily(source: string, where: ErrorContext, signal: AbortSignal | undefined): Promise<string | undefined> {
    const m = /^projects\/([^/]+)\/global\/images\/([^/]+)$/.exec(imagePath(source));
    if (!m) return undefined;
    try {
      const [image] = await abortable(this.#c().images.get({ project: m[1]!, image: m[2]! }, NO_RETRY), signal, where);
      return image.family ?? undefined;
    } catch (error) {
      this.#log(`gcp provider "${this.name}": could not read image ${imagePath(source)} to tell its family (${mapGcpError(error, where).message})`);
      return undefined;
    }
  }

  // ---- snapshots ---------------------------------------------------------------------------

  /**
   * A snapshot of the boot disk (Compute Engine snapshots are incremental on Google's side,
   * yet each restores alone: `disk`), labelled with the fleet, group and VM and with what a
   * restore into a new VM needs. Idempotent on `request.id` (the snapshot's name); a failed
   * one is deleted and taken again. Crash-consistent: `quiesce` is not offered here.
   */
  async snapshot(ref: VmRef, request: SnapshotRequest, ctx: OperationContext = {}): Promise<SnapshotRecord> {
    const where = this.#where('snapshot', ref);
    const name = snapshotName(request.id ?? `${ref.name}-${compactTime(this.#clock.now())}`);
    let existing = await this.#getSnapshot(name, where, ctx.signal);
    if (existing?.status === 'FAILED') {
      await this.deleteSnapshot(name, ctx);
      existing = undefined;
    }
    if (!existing) {
      const instance = await this.#owned(ref, where, ctx.signal);
      const boot = (instance.disks ?? []).find((d) => d.boot);
      if (!boot?.source) throw new NotFoundError(`VM "${ref.name}" has no boot disk to snapshot`, { context: where });
      const vm = this.#record(instance);
      const op = await this.#call(where, ctx, (c) =>
        c.snapshots.insert(
          {
            project: this.#config.project,
            requestId: requestId(['snapshot', name, boot.source!]),
            snapshotResource: {
              name,
              sourceDisk: boot.source,
              description: `NovaCron snapshot of ${ref.name}`,
              labels: {
                [LABEL.fleet]: vm.fleet || ref.fleet,
                [LABEL.group]: vm.group,
                [LABEL.vm]: ref.name,
                [LABEL.restoreZone]: vm.zone,
                [LABEL.restoreType]: labelValue(vm.instanceType ?? ''),
                ...(request.scheduledFor ? { [LABEL.scheduledFor]: timeLabel(request.scheduledFor) } : {}),
              },
            },
          },
          NO_RETRY,
        ),
      );
      await waitOperation(op, undefined, this.#waitOptions(), where, ctx).catch((error: unknown) => {
        throw mapGcpError(error, where);
      });
    }
    const done = await this.#waitSnapshot(name, where, ctx);
    return this.#snapshotRecord(done);
  }

  async listSnapshots(fleet: string, ctx: OperationContext = {}): Promise<readonly SnapshotRecord[]> {
    const where = this.#where('listSnapshots');
    const out: SnapshotRecord[] = [];
    try {
      for await (const s of this.#c().snapshots.listAsync({ project: this.#config.project, filter: `labels.${LABEL.fleet} = "${fleet}"`, maxResults: PAGE }, NO_RETRY)) {
        throwIfAborted(ctx.signal, where);
        out.push(this.#snapshotRecord(s));
      }
    } catch (error) {
      throw mapGcpError(error, where);
    }
    return out.sort((a, b) => (a.takenAt < b.takenAt ? -1 : a.takenAt > b.takenAt ? 1 : 0));
  }

  async deleteSnapshot(snapshotId: string, ctx: OperationContext = {}): Promise<void> {
    const where = { provider: this.name, operation: 'deleteSnapshot' };
    try {
      const op = await this.#call(where, ctx, (c) => c.snapshots.delete({ project: this.#config.project, snapshot: snapshotName(snapshotId), requestId: requestId(['snapshot-delete', snapshotId, String(this.#clock.now())]) }, NO_RETRY));
      await waitOperation(op, undefined, this.#waitOptions(), where, ctx);
    } catch (error) {
      const mapped = mapGcpError(error, where);
      if (mapped.code !== 'NotFound') throw mapped;
    }
  }

  async recordVerification(snapshotId: string, verification: SnapshotVerification, ctx: OperationContext = {}): Promise<SnapshotRecord> {
    const where = { provider: this.name, operation: 'recordVerification' };
    const name = snapshotName(snapshotId);
    const snap = await this.#getSnapshot(name, where, ctx.signal);
    if (!snap) throw new NotFoundError(`snapshot "${snapshotId}" does not exist`, { context: where });
    const labels = {
      ...(snap.labels ?? {}),
      [LABEL.verifiedAt]: timeLabel(verification.at),
      [LABEL.verified]: verification.ok ? 'ok' : 'failed',
      [LABEL.verifiedMethod]: verification.method,
    };
    const op = await this.#call(where, ctx, (c) =>
      c.snapshots.setLabels({ project: this.#config.project, resource: name, globalSetLabelsRequestResource: { labels, labelFingerprint: snap.labelFingerprint ?? null } }, NO_RETRY),
    );
    await waitOperation(op, undefined, this.#waitOptions(), where, ctx).catch((error: unknown) => {
      throw mapGcpError(error, where);
    });
    return { ...this.#snapshotRecord({ ...snap, labels }), verified: verification };
  }

  /**
   * In place: the VM stops, a disk made from the snapshot replaces its boot disk, it starts,
   * and the old disk is deleted. As a new VM (`asName`): an instance of the original type in
   * the original zone boots from a disk made from the snapshot, labelled with where it came
   * from and with no fleet, so reconcile leaves it alone.
   */
  async restore(ref: VmRef, request: RestoreRequest, ctx: OperationContext = {}): Promise<RestoreResult> {
    const where = this.#where('restore', ref);
    const name = snapshotName(request.snapshot);
    const snap = await this.#getSnapshot(name, where, ctx.signal);
    if (!snap) throw new NotFoundError(`snapshot "${request.snapshot}" does not exist`, { context: where });
    const record = this.#snapshotRecord(snap);
    if (record.state !== 'complete') throw new ConflictError(`snapshot "${request.snapshot}" is not ready yet`, { context: where, retryable: true });
    if (record.vm !== ref.name) throw new InvalidInputError(`snapshot "${request.snapshot}" was taken of VM "${record.vm}", not "${ref.name}"`, { context: where });
    const project = this.#config.project;
    if (request.asName) {
      const zone = snap.labels?.[LABEL.restoreZone] ?? this.#config.zones[0]!;
      const type = snap.labels?.[LABEL.restoreType] || cheapestFit(this.#typesIn(zone), { cpu: 1, memoryMiB: 1024, diskGiB: 0, gpu: 0 })?.name || 'e2-standard-2';
      const taken = await this.#get(zone, request.asName, where, ctx.signal);
      if (taken) {
        if (!request.scratch || taken.labels?.[LABEL.scratch] !== 'true') throw new ConflictError(`a VM named "${request.asName}" exists already in ${zone}`, { context: where });
        await this.#operate(where, ctx, zone, (c) => c.instances.delete({ project, zone, instance: request.asName!, requestId: requestId(['scratch-delete', zone, request.asName!, String(taken.id)]) }, NO_RETRY));
      }
      await this.#operate(where, ctx, zone, (c) =>
        c.instances.insert(
          {
            project,
            zone,
            requestId: requestId(['restore-as', request.asName!, name, String(this.#clock.now())]),
            instanceResource: {
              name: request.asName!,
              machineType: `zones/${zone}/machineTypes/${type}`,
              labels: { [LABEL.restoredFrom]: labelValue(name), ...(request.scratch ? { [LABEL.scratch]: 'true' } : {}) },
              disks: [{ boot: true, autoDelete: true, initializeParams: { sourceSnapshot: `global/snapshots/${name}`, diskType: `zones/${zone}/diskTypes/${this.#config.diskType}` } }],
              networkInterfaces: [{ network: this.#config.network ?? 'global/networks/default', ...(this.#config.subnetwork ? { subnetwork: this.#config.subnetwork } : {}) }],
            },
          },
          NO_RETRY,
        ),
      );
      const made = await this.#get(zone, request.asName, where, ctx.signal);
      if (!made) throw new NovaCronError('Provider', 'server', `restored VM "${request.asName}" is missing`, { context: where });
      return { vm: this.#record(made), bytesWritten: record.diskBytes };
    }
    let instance = await this.#settle(await this.#owned(ref, where, ctx.signal), where, ctx);
    const zone = lastSegment(instance.zone);
    const vmName = instance.name!;
    const boot = (instance.disks ?? []).find((d) => d.boot);
    if (!boot?.source || !boot.deviceName) throw new NotFoundError(`VM "${ref.name}" has no boot disk`, { context: where });
    const oldDisk = lastSegment(boot.source);
    const newDisk = `${vmName}-r-${compactTime(this.#clock.now())}`.slice(0, 63);
    const wasRunning = instance.status === 'RUNNING';
    if (wasRunning) await this.#operate(where, ctx, zone, (c) => c.instances.stop({ project, zone, instance: vmName, requestId: requestId(['restore-stop', zone, vmName, newDisk]) }, NO_RETRY));
    await this.#operate(where, ctx, zone, (c) =>
      c.disks.insert({ project, zone, requestId: requestId(['restore-disk', zone, newDisk]), diskResource: { name: newDisk, sourceSnapshot: `global/snapshots/${name}`, type: `zones/${zone}/diskTypes/${this.#config.diskType}`, labels: { [LABEL.fleet]: ref.fleet, [LABEL.vm]: vmName } } }, NO_RETRY),
    );
    await this.#operate(where, ctx, zone, (c) => c.instances.detachDisk({ project, zone, instance: vmName, deviceName: boot.deviceName!, requestId: requestId(['restore-detach', zone, vmName, newDisk]) }, NO_RETRY));
    await this.#operate(where, ctx, zone, (c) =>
      c.instances.attachDisk({ project, zone, instance: vmName, requestId: requestId(['restore-attach', zone, vmName, newDisk]), attachedDiskResource: { source: `zones/${zone}/disks/${newDisk}`, boot: true, autoDelete: true, deviceName: boot.deviceName! } }, NO_RETRY),
    );
    if (wasRunning) await this.#operate(where, ctx, zone, (c) => c.instances.start({ project, zone, instance: vmName, requestId: requestId(['restore-start', zone, vmName, newDisk]) }, NO_RETRY));
    await this.#operate(where, ctx, zone, (c) => c.disks.delete({ project, zone, disk: oldDisk, requestId: requestId(['restore-old-disk', zone, oldDisk]) }, NO_RETRY)).catch((error: unknown) => {
      this.#log(`gcp provider "${this.name}": the replaced disk ${oldDisk} could not be deleted (${mapGcpError(error, where).message})`);
    });
    instance = (await this.#get(zone, vmName, where, ctx.signal)) ?? instance;
    return { vm: this.#record(instance), bytesWritten: record.diskBytes };
  }

  // ---- images ------------------------------------------------------------------------------

  /**
   * Imports a raw disk (or a ready `disk.raw` tarball) as a Compute Engine image: the raw
   * disk is packed as the gzipped GNU tar Compute Engine requires while it streams to Cloud
   * Storage, then images.insert makes the image from it. The image is labelled with its
   * name and the artifact's sha256, so importing the same disk again is a no-op. Returns the
   * image's path (`projects/P/global/images/NAME`), which `images` entries may also use.
   */
  async importImage(artifact: ImageArtifact, imageName: string, ctx: OperationContext = {}): Promise<string> {
    const where = { provider: this.name, operation: 'importImage' };
    if (artifact.format !== 'raw' && artifact.format !== 'tar.gz') {
      throw new UnsupportedError(`Compute Engine imports raw disks, not ${artifact.format}`, {
        context: where,
        hint: `convert it first: qemu-img convert -O raw ${artifact.path} disk.raw`,
      });
    }
    const bucket = this.#config.imageBucket;
    if (!bucket) {
      throw new InvalidInputError(`provider "${this.name}" has no imageBucket for image imports`, {
        context: { ...where, path: `providers.${this.name}.imageBucket` },
        hint: 'name a Cloud Storage bucket the Compute Engine service agent can read (docs/gcp.md)',
      });
    }
    const size = (await stat(artifact.path).catch(() => undefined))?.size;
    if (size === undefined || size !== artifact.sizeBytes) {
      throw new InvalidInputError(`image file ${artifact.path} ${size === undefined ? 'does not exist' : `has ${size} bytes, not ${artifact.sizeBytes}`}`, { context: where });
    }
    const name = imageResourceName(imageName, artifact.sha256);
    const path = `projects/${this.#config.project}/global/images/${name}`;
    const project = this.#config.project;
    try {
      const [found] = await abortable(this.#c().images.get({ project, image: name }, NO_RETRY), ctx.signal, where);
      if (found.status === 'READY') return path;
    } catch (error) {
      const mapped = mapGcpError(error, where);
      if (mapped.code !== 'NotFound') throw mapped;
    }
    const object = `${this.#config.imagePrefix}${labelValue(imageName)}/${artifact.sha256}.tar.gz`;
    const file = this.#c().storage.bucket(bucket).file(object);
    const [exists] = await abortable(file.exists(), ctx.signal, where).catch((error: unknown) => {
      throw mapGcpError(error, { ...where, operation: 'importImage (upload)' }, 'Cloud Storage');
    });
    if (!exists) {
      const source = artifact.format === 'raw' ? rawDiskTarball(artifact.path, size) : createReadStream(artifact.path);
      let sent = 0;
      source.on('data', (chunk: Buffer) => {
        sent += chunk.length;
        ctx.onProgress?.({ operation: 'importImage', phase: 'upload', message: `${sent} bytes sent` });
      });
      try {
        await pipeline(source, file.createWriteStream({ resumable: true, contentType: 'application/gzip', metadata: { metadata: { 'novacron-sha256': artifact.sha256 } } }), ...(ctx.signal ? [{ signal: ctx.signal }] : []));
      } catch (error) {
        throw mapGcpError(error, { ...where, operation: 'importImage (upload)' }, 'Cloud Storage');
      }
    }
    const op = await this.#call(where, ctx, (c) =>
      c.images.insert(
        {
          project,
          requestId: requestId(['image', name]),
          imageResource: {
            name,
            description: `NovaCron image ${imageName}`,
            rawDisk: { source: `https://storage.googleapis.com/${bucket}/${object}` },
            labels: { [LABEL.image]: labelValue(imageName), [LABEL.sha256]: artifact.sha256.slice(0, 63) },
            guestOsFeatures: [{ type: 'VIRTIO_SCSI_MULTIQUEUE' }],
          },
        },
        NO_RETRY,
      ),
    );
    await waitOperation(op, undefined, this.#waitOptions(), where, ctx).catch((error: unknown) => {
      throw mapGcpError(error, where);
    });
    this.#images.delete(imageName);
    return path;
  }

  async close(): Promise<void> {
    const clients = this.#clients;
    this.#clients = undefined;
    await clients?.close();
  }

  // ---- internals ---------------------------------------------------------------------------

  /** The clients, built at first use: ADC is looked for by the first request, never at import. */
  #c(): GcpClients {
    return (this.#clients ??= this.#makeClients(this.#config, this.#authClient));
  }

  #where(operation: string, ref?: VmRef): ErrorContext {
    return { provider: this.name, operation, ...(ref ? { vm: ref.name } : {}), ...(ref?.host ? { host: ref.host } : {}) };
  }

  #waitOptions(): WaitOptions {
    return { clients: this.#c(), project: this.#config.project, clock: this.#clock, timeoutMs: this.#config.waitTimeout, pollMs: this.#pollMs };
  }

  #record(instance: Instance): VmRecord {
    return toVmRecord(this.name, instance, (type) => {
      const t = this.#catalog.types.find((c) => c.name === type);
      return t ? { cpu: t.cpu, memoryMiB: t.memoryMiB, diskGiB: 0, gpu: t.gpu ?? 0 } : undefined;
    });
  }

  /** Calls one mutating method and waits for its zone operation; errors come out mapped. */
  async #operate(where: ErrorContext, ctx: OperationContext, zone: string, fn: (c: GcpClients) => Promise<readonly unknown[]>): Promise<Operation> {
    try {
      const [op] = await abortable(fn(this.#c()), ctx.signal, where);
      const operation = (op as { latestResponse?: Operation }).latestResponse ?? (op as Operation);
      return await waitOperation(operation, zone, this.#waitOptions(), where, ctx);
    } catch (error) {
      throw mapGcpError(error, where);
    }
  }

  /** Calls one method that answers with an operation (global ones: snapshots, images). */
  async #call(where: ErrorContext, ctx: OperationContext, fn: (c: GcpClients) => Promise<readonly unknown[]>): Promise<Operation> {
    try {
      const [op] = await abortable(fn(this.#c()), ctx.signal, where);
      return (op as { latestResponse?: Operation }).latestResponse ?? (op as Operation);
    } catch (error) {
      throw mapGcpError(error, where);
    }
  }

  #zoneOf(host: string, where: ErrorContext): string {
    const { provider, name } = splitHostId(host);
    if ((provider && provider !== this.name) || !this.#config.zones.includes(name)) {
      throw new InvalidInputError(`host "${host}" is not a zone of provider "${this.name}" (${this.#config.zones.join(', ')})`, { context: where });
    }
    return name;
  }

  #catalogTypes(zone: string): readonly InstanceType[] {
    const region = regionOfZone(zone);
    const catalog = machineTypesFor(region, this.#config.machineTypes, this.#catalog);
    if (catalog.borrowedFrom && !this.#warned.has(region)) {
      this.#warned.add(region);
      this.#log(`gcp provider "${this.name}": the shipped catalog has no prices for ${region}; using ${catalog.borrowedFrom} prices as an estimate (refresh the catalog: docs/gcp.md)`);
    }
    return catalog.types;
  }

  /** Catalog types in a zone: those the last inventory saw offered there, else all of its region's. */
  #typesIn(zone: string): readonly InstanceType[] {
    const all = this.#catalogTypes(zone);
    const offered = this.#offered.get(zone);
    return offered ? all.filter((t) => offered.has(t.name)) : all;
  }


  /** A fleet image name as a `sourceImage`: the provider's `images` map, else an image imported under that name. */
  async #image(name: string, where: ErrorContext, signal: AbortSignal | undefined): Promise<string> {
    const mapped = this.#config.images[name];
    if (mapped) return mapped;
    const cached = this.#images.get(name);
    if (cached && cached.until > this.#clock.now()) return cached.source;
    let newest: protos.google.cloud.compute.v1.IImage | undefined;
    try {
      for await (const image of this.#c().images.listAsync({ project: this.#config.project, filter: `labels.${LABEL.image} = "${labelValue(name)}"`, maxResults: PAGE }, NO_RETRY)) {
        throwIfAborted(signal, where);
        if (image.status === 'READY' && (!newest || (image.creationTimestamp ?? '') > (newest.creationTimestamp ?? ''))) newest = image;
      }
    } catch (error) {
      throw mapGcpError(error, { ...where, operation: `${where.operation} (image lookup)` });
    }
    if (!newest?.name) {
      throw new NotFoundError(`image "${name}" is neither in providers.${this.name}.images nor imported into ${this.#config.project}`, {
        context: where,
        hint: `map it, e.g. images: { ${name}: projects/debian-cloud/global/images/family/debian-12 }`,
      });
    }
    const source = `projects/${this.#config.project}/global/images/${newest.name}`;
    this.#images.set(name, { source, until: this.#clock.now() + 60 * 60_000 });
    return source;
  }

  async #get(zone: string, name: string, where: ErrorContext, signal: AbortSignal | undefined): Promise<Instance | undefined> {
    try {
      const [instance] = await abortable(this.#c().instances.get({ project: this.#config.project, zone, instance: name }, NO_RETRY), signal, where);
      return instance;
    } catch (error) {
      const mapped = mapGcpError(error, where);
      if (mapped.code === 'NotFound') return undefined;
      throw mapped;
    }
  }

  /** Instances across every zone of the project that match a filter, every page. */
  async #find(filter: string, where: ErrorContext, signal: AbortSignal | undefined): Promise<Instance[]> {
    const out: Instance[] = [];
    try {
      for await (const [, scoped] of this.#c().instances.aggregatedListAsync({ project: this.#config.project, filter, maxResults: PAGE, returnPartialSuccess: true }, NO_RETRY)) {
        throwIfAborted(signal, where);
        out.push(...(scoped.instances ?? []));
      }
    } catch (error) {
      throw mapGcpError(error, where);
    }
    return out;
  }

  /** Every instance the ref names: in its host's zone if known, else anywhere in the project. */
  async #findAll(ref: VmRef, where: ErrorContext, signal: AbortSignal | undefined): Promise<Instance[]> {
    const zone = ref.host ? splitHostId(ref.host).name : undefined;
    if (zone && this.#config.zones.includes(zone)) {
      const one = await this.#get(zone, ref.name, where, signal);
      if (one) return [one];
    }
    return this.#find(`name = "${ref.name}"`, where, signal);
  }

  async #owned(ref: VmRef, where: ErrorContext, signal: AbortSignal | undefined): Promise<Instance> {
    const found = await this.#findAll(ref, where, signal);
    for (const i of found) assertOwned(this.#record(i), ref, this.name);
    const instance = found[0];
    if (!instance) throw new NotFoundError(`VM "${ref.name}" does not exist`, { context: where });
    return instance;
  }

  async #getSnapshot(name: string, where: ErrorContext, signal: AbortSignal | undefined): Promise<Snapshot | undefined> {
    try {
      const [snap] = await abortable(this.#c().snapshots.get({ project: this.#config.project, snapshot: name }, NO_RETRY), signal, where);
      return snap;
    } catch (error) {
      const mapped = mapGcpError(error, where);
      if (mapped.code === 'NotFound') return undefined;
      throw mapped;
    }
  }

  async #waitSnapshot(name: string, where: ErrorContext, ctx: OperationContext): Promise<Snapshot> {
    const deadline = this.#clock.now() + this.#config.waitTimeout;
    for (;;) {
      const snap = await this.#getSnapshot(name, where, ctx.signal);
      if (!snap) throw new NotFoundError(`snapshot "${name}" disappeared`, { context: where });
      if (snap.status === 'READY') return snap;
      if (snap.status === 'FAILED') throw new NovaCronError('Provider', 'server', `snapshot "${name}" failed`, { context: where });
      if (this.#clock.now() >= deadline) throw new NovaCronError('Timeout', 'server', `snapshot "${name}" is still ${snap.status}`, { context: where, retryable: true });
      await this.#clock.sleep(this.#pollMs, ctx.signal);
    }
  }

  #snapshotRecord(s: Snapshot): SnapshotRecord {
    const labels = s.labels ?? {};
    const verifiedAt = fromTimeLabel(labels[LABEL.verifiedAt]);
    const scheduledFor = fromTimeLabel(labels[LABEL.scheduledFor]);
    const method = labels[LABEL.verifiedMethod];
    return {
      id: s.name ?? '',
      provider: this.name,
      vm: labels[LABEL.vm] ?? '',
      fleet: labels[LABEL.fleet] ?? '',
      group: labels[LABEL.group] ?? '',
      takenAt: s.creationTimestamp ? new Date(s.creationTimestamp).toISOString() : new Date(0).toISOString(),
      kind: 'disk',
      consistency: 'crash',
      state: s.status === 'READY' ? 'complete' : 'incomplete',
      sizeBytes: Number(s.storageBytes ?? 0),
      diskBytes: Number(s.diskSizeGb ?? 0) * 1024 ** 3,
      location: `gce:${this.#config.project}:${(s.storageLocations ?? []).join(',') || 'multi-region'}`,
      ...(s.status === 'FAILED' ? { error: 'the snapshot failed' } : {}),
      ...(scheduledFor ? { scheduledFor } : {}),
      ...(verifiedAt && (method === 'checksum' || method === 'boot') ? { verified: { at: verifiedAt, ok: labels[LABEL.verified] === 'ok', method } } : {}),
    };
  }
}

/** A snapshot id as a Compute Engine resource name: lowercase, `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63. */
export function snapshotName(id: string): string {
  const cleaned = id.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^[^a-z]+/, '').slice(0, 63).replace(/-+$/, '');
  return cleaned || 'snapshot';
}

/** `moved-web` + sha256 → `moved-web-1a2b3c4d5e6f`: one image per distinct disk. */
export function imageResourceName(imageName: string, sha256: string): string {
  const base = imageName.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^[^a-z]+/, '') || 'image';
  return `${base.slice(0, 49).replace(/-+$/, '')}-${sha256.slice(0, 12)}`;
}

/**
 * A time as a label value: epoch milliseconds, since label values cannot hold ISO 8601's
 * `:` or uppercase; read back as ISO 8601, which the snapshot engine parses as a date.
 */
function timeLabel(iso: string): string {
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? String(ms) : labelValue(iso);
}

function fromTimeLabel(value: string | undefined): string | undefined {
  if (!value) return undefined;
  return /^\d+$/.test(value) ? new Date(Number(value)).toISOString() : value;
}

function compactTime(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'z').toLowerCase();
}

/**
 * A VPC network of the project, by name: what the VM's record reports back, so a declared NIC
 * compares equal to the one made (a URL would not). Subnetworks: the provider's `subnetwork`
 * for a VM without declared NICs; with NICs, each network's auto subnet in the region.
 */
const GCE_NETWORK = /^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$/;

/** A NIC's network as instances.insert takes it. */
function gceNetwork(network: string): string {
  return `global/networks/${network}`;
}
