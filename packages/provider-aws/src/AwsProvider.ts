import {
  CreateSnapshotsCommand,
  CreateReplaceRootVolumeTaskCommand,
  CreateTagsCommand,
  DeleteSnapshotCommand,
  DeregisterImageCommand,
  DescribeAvailabilityZonesCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeInstanceStatusCommand,
  DescribeInstanceTypeOfferingsCommand,
  DescribeReplaceRootVolumeTasksCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  ModifyInstanceAttributeCommand,
  ModifyVolumeCommand,
  RegisterImageCommand,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  type _InstanceType,
  type ArchitectureValues,
  type BootModeValues,
  type EC2Client,
  type Filter,
  type Image,
  type Instance,
  type InstanceStatusSummary,
  type Snapshot,
  type VolumeType,
} from '@aws-sdk/client-ec2';
import type { S3Client } from '@aws-sdk/client-s3';
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
  TimeoutError,
  UnsupportedError,
  type AdoptRequest,
  type AwsProviderConfig,
  type BootCheckOptions,
  type BootCheckResult,
  type Capabilities,
  type Clock,
  type CreateVmRequest,
  type ErrorContext,
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
import { fleetImagesOf, rootVolumeId, unownedVm, volumeIds } from './adopt.js';
import { instanceTypesFor } from './catalog/catalog.js';
import { EC2_CATALOG } from './catalog/generated/ec2Catalog.js';
import type { Ec2Catalog } from './catalog/types.js';
import { defaultClientFactory, type AwsClientFactory } from './clients.js';
import { chunks, Coalescer } from './coalesce.js';
import { awsErrorCode, isCapacityShortage, isPerResourceError, mapAwsError } from './errors.js';
import { AwsImages } from './images.js';
import { attachInterfaces, detachInterfaces, EC2_SUBNET, interfaceTags, nicPlanIsEmpty, planNicChanges, type NicOps } from './nics.js';
import { formatResources, isRestored, isUnowned, ownershipTags, restoredTags, TAG, tagMap, toVmRecord } from './tags.js';
import { clientToken, derivedToken } from './tokens.js';
import { ec2UserData } from './userData.js';
import { InstanceWatcher, type WaitVerdict } from './watcher.js';

export interface AwsProviderOptions {
  /** The provider's name in the fleet spec. */
  readonly name: string;
  readonly config: AwsProviderConfig;
  readonly clock?: Clock;
  /** How SDK clients are built. @default real clients with the default credential chain */
  readonly clients?: AwsClientFactory;
  readonly log?: (message: string) => void;
  /** Interval of the shared instance poll. @default 2000 */
  readonly pollMs?: number;
  /** Longest interval the poll backs off to when throttled. @default 30000 */
  readonly maxPollMs?: number;
  /** How long a lookup or terminate waits for others to share its call. @default 10 */
  readonly batchWindowMs?: number;
  /** How long a zone/type that reported no capacity stays out of the inventory. @default 900000 */
  readonly capacityCooldownMs?: number;
  /** @default the catalog shipped with the package */
  readonly catalog?: Ec2Catalog;
}

/** Elastic capacity: a zone takes what the account's quotas allow; placement does not count it. */
const ELASTIC: Resources = Object.freeze({ cpu: 1_000_000, memoryMiB: 1_000_000_000, diskGiB: 1_000_000_000, gpu: 100_000 });
const LIVE_STATES = ['pending', 'running', 'stopping', 'stopped'];
/** DescribeInstances filter values per filter. */
const FILTER_VALUES = 200;
const PAGE = 1000;
/** Token generations followed before giving up (each is an earlier attempt that was cleaned up). */
const MAX_TOKEN_GENERATIONS = 5;

/**
 * NovaCron's AWS EC2 provider: the availability zones of one region as elastic hosts, each
 * offering the catalog's instance types at their on-demand prices; VMs as instances whose
 * tags record the fleet that owns them.
 */
export class AwsProvider implements Provider {
  readonly kind = 'aws';
  readonly capabilities: Capabilities = Object.freeze({
    resize: true,
    hotplugCpu: false,
    hotplugMemory: false,
    liveMigration: false,
    coldMigration: false,
    snapshots: true,
    incrementalSnapshots: false,
    imageExport: true,
    imageImport: true,
    // Ownership is tags: adopting an instance is CreateTags, no stop or start.
    adopt: true,
    // EC2's status checks: the instance is reachable and its OS answered.
    awaitReady: true,
    // Secondary ENIs are attached and detached on the running instance (nics.ts); device 0
    // is the instance's own and cannot be detached, so a change to it replaces the VM.
    hotplugNics: true,
    fixedPrimaryNic: true,
  });
  readonly name: string;
  readonly #config: AwsProviderConfig;
  readonly #clock: Clock;
  readonly #clients: AwsClientFactory;
  readonly #log: (message: string) => void;
  readonly #capacity: CapacityMemory;
  readonly #catalog: Ec2Catalog;
  readonly #windowMs: number;
  readonly #watcher: InstanceWatcher;
  readonly #terminator: Coalescer<string, true>;
  /** Concurrent lookups by instance id share one DescribeInstances call. */
  readonly #byIds: Coalescer<string, Instance | undefined>;
  readonly #lookups = new Map<string, Coalescer<string, readonly Instance[]>>();
  readonly #images = new Map<string, { image: Image; until: number }>();
  /** `zone/type` → until when it stays out of the inventory after a capacity refusal. */
  /** Types offered per zone, as of the last inventory: create's fallbacks stay within them. */
  #offered = new Map<string, ReadonlySet<string>>();
  #ec2Client: EC2Client | undefined;
  #s3: S3Client | undefined;
  #imageOps: AwsImages | undefined;
  #warnedPrices = false;

  constructor(options: AwsProviderOptions) {
    this.name = options.name;
    this.#config = options.config;
    this.#clock = options.clock ?? systemClock;
    this.#clients = options.clients ?? defaultClientFactory;
    this.#log = options.log ?? (() => {});
    this.#capacity = new CapacityMemory(this.#clock, options.capacityCooldownMs ?? 15 * 60_000);
    this.#catalog = options.catalog ?? EC2_CATALOG;
    this.#windowMs = options.batchWindowMs ?? 10;
    this.#watcher = new InstanceWatcher({
      describe: (ids) => this.#describeByIds(ids),
      clock: this.#clock,
      pollMs: options.pollMs ?? 2000,
      maxPollMs: options.maxPollMs ?? 30_000,
      mapError: (error) => mapAwsError(error, { provider: this.name, operation: 'wait' }),
    });
    this.#terminator = new Coalescer((ids) => this.#terminateBatch(ids), { maxBatch: 100, windowMs: this.#windowMs });
    this.#byIds = new Coalescer(async (ids) => {
      const found = new Map((await this.#describeByIds(ids)).map((i) => [i.InstanceId!, i]));
      return new Map(ids.map((id) => [id, found.get(id)]));
    }, { maxBatch: FILTER_VALUES, windowMs: this.#windowMs });
  }

  /** DescribeInstances polls made by waiters so far (benchmarks report it). */
  get waiterPolls(): number {
    return this.#watcher.polls;
  }

  // ---- inventory and list ---------------------------------------------------------------

  async inventory(ctx: OperationContext = {}): Promise<readonly Host[]> {
    const where = this.#where('inventory');
    const region = this.#config.region;
    const catalog = instanceTypesFor(region, this.#config.instanceTypes, this.#catalog);
    if (catalog.borrowedFrom && !this.#warnedPrices) {
      this.#warnedPrices = true;
      this.#log(`aws provider "${this.name}": the shipped catalog has no prices for ${region}; using ${catalog.borrowedFrom} prices as an estimate (refresh the catalog: docs/aws.md)`);
    }
    const zones = await this.#call(where, (ec2) =>
      ec2.send(
        new DescribeAvailabilityZonesCommand({
          Filters: [
            { Name: 'region-name', Values: [region] },
            { Name: 'zone-type', Values: ['availability-zone'] },
          ],
          ...(this.#config.zones ? { ZoneNames: [...this.#config.zones] } : {}),
        }),
        { abortSignal: ctx.signal },
      ),
    );
    const zoneList = (zones.AvailabilityZones ?? []).filter((z) => z.ZoneName);
    const missing = (this.#config.zones ?? []).filter((z) => !zoneList.some((found) => found.ZoneName === z));
    if (missing.length > 0) {
      throw new InvalidInputError(`zone(s) ${missing.join(', ')} are not availability zones of ${region}`, {
        context: { ...where, path: `providers.${this.name}.zones` },
        hint: `list them with: aws ec2 describe-availability-zones --region ${region}`,
      });
    }
    const zoneNames = zoneList.map((z) => z.ZoneName!);
    const offered = new Map<string, Set<string>>(zoneNames.map((z) => [z, new Set<string>()]));
    for (const names of chunks(catalog.types.map((t) => t.name), FILTER_VALUES)) {
      let token: string | undefined;
      do {
        const page = await this.#call(where, (ec2) =>
          ec2.send(
            new DescribeInstanceTypeOfferingsCommand({
              LocationType: 'availability-zone',
              Filters: [
                { Name: 'location', Values: zoneNames },
                { Name: 'instance-type', Values: names },
              ],
              MaxResults: PAGE,
              ...(token ? { NextToken: token } : {}),
            }),
            { abortSignal: ctx.signal },
          ),
        );
        for (const o of page.InstanceTypeOfferings ?? []) {
          if (o.Location && o.InstanceType) offered.get(o.Location)?.add(o.InstanceType);
        }
        token = page.NextToken;
      } while (token);
    }
    this.#offered = offered;
    return zoneList.map((z) => {
      const zone = z.ZoneName!;
      const types = catalog.types.filter((t) => offered.get(zone)?.has(t.name) && !this.#capacity.isExhausted(zone, t.name));
      return {
        id: hostId(this.name, zone),
        provider: this.name,
        name: zone,
        zone,
        region,
        labels: this.#config.labels,
        capacity: ELASTIC,
        allocated: { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 },
        overcommit: { cpu: 1, memory: 1, disk: 1 },
        pricePerHour: 0,
        state: z.State === 'available' ? 'up' : 'down',
        instanceTypes: types,
      } satisfies Host;
    });
  }

  async list(fleet: string, ctx: OperationContext = {}): Promise<readonly VmRecord[]> {
    const instances = await this.#describe(
      [
        { Name: `tag:${TAG.fleet}`, Values: [fleet] },
        { Name: 'instance-state-name', Values: LIVE_STATES },
      ],
      this.#where('list'),
      ctx.signal,
    );
    // A VM restored as a new one carries its source's fleet tag but no slot: not a fleet VM.
    return instances.filter((i) => !isRestored(i)).map((i) => this.#record(i));
  }

  // ---- create ------------------------------------------------------------------------------

  /**
   * Creates the VM, or returns it if it exists already: first by name (any instance of this
   * fleet tagged with it), then by client token, so neither a retry nor a re-run after a
   * crash makes a second one. When the zone has no capacity for the type, the next
   * candidates are tried (the request's alternatives, else the next cheapest types in the
   * zone that fit, up to `capacityFallbacks`). Transactional: an instance that fails to come
   * up is terminated before the error is thrown.
   */
  async create(request: CreateVmRequest, ctx: OperationContext = {}): Promise<VmRecord> {
    const where: ErrorContext = { provider: this.name, vm: request.name, host: request.host, operation: 'create' };
    throwIfAborted(ctx.signal, where);
    const zone = this.#zoneOf(request.host, where);
    const notSubnet = request.nics?.find((n) => !EC2_SUBNET.test(n.network));
    if (notSubnet) {
      throw new InvalidInputError(`NIC network "${notSubnet.network}" is not an EC2 subnet id; nothing was made`, {
        context: where,
        hint: `on EC2 each of groups.<group>.nics names a subnet (subnet-0123abcd…) in the zone the VM is placed in (${zone})`,
      });
    }
    const userData = ec2UserData(request.cloudInit, request.ownership.specHash, request.name, this.name);
    // A VM moved from another provider boots from the image imported for it; it still records the fleet's image name.
    const image = await this.#image(request.fromImage ?? request.image, where, ctx.signal, request.fromImage !== undefined);

    const existing = await this.#findOwned({ name: request.name, fleet: request.ownership.fleet }, where, ctx.signal);
    if (existing) return this.#settle(existing, where, ctx);

    const candidates = this.#capacity.candidates({ request, zone, typesIn: (z) => this.#typesIn(z), zoneOf: (h) => this.#zoneOf(h, where), fallbacks: this.#config.capacityFallbacks, where, typeWord: 'instance', typesKey: 'instanceTypes' });
    const refused: string[] = [];
    let lastRefusal: NovaCronError | undefined;
    for (const [i, candidate] of candidates.entries()) {
      throwIfAborted(ctx.signal, where);
      const at: ErrorContext = { ...where, host: hostId(this.name, candidate.zone) };
      const isLast = i === candidates.length - 1;
      if (!isLast && this.#capacity.isExhausted(candidate.zone, candidate.type)) {
        refused.push(`${candidate.type} in ${candidate.zone} (refused in the last ${Math.round(this.#capacity.cooldownMs / 60_000)} min)`);
        continue;
      }
      let instance: Instance;
      try {
        instance = await this.#runInstance(request, candidate, image, userData, at, ctx.signal);
      } catch (error) {
        const code = awsErrorCode(error);
        if (!isCapacityShortage(code) && code !== 'Unsupported') throw mapAwsError(error, at);
        lastRefusal = mapAwsError(error, at);
        this.#capacity.markExhausted(candidate.zone, candidate.type);
        refused.push(`${candidate.type} in ${candidate.zone}: ${code}`);
        ctx.onProgress?.({ operation: 'create', phase: 'capacity-fallback', message: `${candidate.type} in ${candidate.zone}: ${code}` });
        continue;
      }
      ctx.onProgress?.({ operation: 'create', phase: 'waiting', message: `${instance.InstanceId} (${candidate.type} in ${candidate.zone}) is ${instance.State?.Name ?? 'pending'}` });
      try {
        const running = await this.#waitFor(instance.InstanceId!, 'running', at, ctx.signal);
        return this.#record(running);
      } catch (error) {
        // EC2 may accept the launch and then give up for want of capacity: the instance
        // goes to terminated with a Server.InsufficientInstanceCapacity reason.
        if (NovaCronError.isInstance(error) && error.code === 'CapacityExceeded') {
          this.#capacity.markExhausted(candidate.zone, candidate.type);
          refused.push(`${candidate.type} in ${candidate.zone}: terminated for want of capacity`);
          lastRefusal = error;
          continue;
        }
        await this.#cleanUp(instance.InstanceId!, at);
        throw error;
      }
    }
    throw new CapacityExceededError(`no capacity for VM "${request.name}": ${refused.join('; ')}`, {
      context: where,
      cause: lastRefusal,
      hint: `the refusing zone/type pairs stay out of this provider's inventory for ${Math.round(this.#capacity.cooldownMs / 60_000)} min, so a new plan places the VM elsewhere; or allow more zones or instance types`,
    });
  }


  /** RunInstances, following the client-token chain past attempts that were cleaned up. */
  async #runInstance(request: CreateVmRequest, at: ElasticPlacement, image: Image, userData: string | undefined, where: ErrorContext, signal: AbortSignal | undefined): Promise<Instance> {
    const identity = { fleet: request.ownership.fleet, name: request.name, specHash: request.ownership.specHash, zone: at.zone, instanceType: at.type };
    const tags = ownershipTags(request.name, request.ownership, request.image, request.resources, request.labels);
    const subnet = this.#config.subnetIds?.[at.zone];
    const groups = this.#config.securityGroupIds ? { SecurityGroupIds: [...this.#config.securityGroupIds] } : {};
    // Declared NICs: one interface per subnet, in order (device 0 is the primary), in the
    // zone placement chose, so EC2 refuses a subnet of another zone before making anything.
    const network = request.nics
      ? {
          Placement: { AvailabilityZone: at.zone },
          NetworkInterfaces: request.nics.map((n, i) => ({ DeviceIndex: i, SubnetId: n.network, DeleteOnTermination: true, ...(groups.SecurityGroupIds ? { Groups: groups.SecurityGroupIds } : {}) })),
        }
      : { ...(subnet ? { SubnetId: subnet } : { Placement: { AvailabilityZone: at.zone } }), ...groups };
    const input = {
      ImageId: image.ImageId!,
      InstanceType: at.type as _InstanceType,
      MinCount: 1,
      MaxCount: 1,
      ...network,
      ...(this.#config.keyName ? { KeyName: this.#config.keyName } : {}),
      ...(userData ? { UserData: userData } : {}),
      BlockDeviceMappings: [
        {
          DeviceName: image.RootDeviceName ?? '/dev/xvda',
          Ebs: { VolumeSize: request.resources.diskGiB, VolumeType: this.#config.diskType as VolumeType, DeleteOnTermination: true },
        },
      ],
      // IMDSv2 only: the instance metadata service is not reachable by a plain GET (SSRF).
      MetadataOptions: { HttpTokens: 'required' as const, HttpEndpoint: 'enabled' as const },
      TagSpecifications: [
        { ResourceType: 'instance' as const, Tags: tags },
        { ResourceType: 'volume' as const, Tags: tags.filter((t) => t.Key!.startsWith('novacron:') || t.Key === TAG.name) },
        // The declared NICs' ENIs carry the VM, so a later NIC change knows them for NovaCron's.
        ...(request.nics ? [{ ResourceType: 'network-interface' as const, Tags: interfaceTags(request.ownership.fleet, request.name) }] : []),
      ],
    };
    // EC2 refuses a token reused with other parameters (a new AMI, subnet or key), so the
    // parameters are part of the token: same request, same token; changed request, new token.
    const digest = stableHash(input, 32);
    let after: string | undefined;
    for (let generation = 0; generation < MAX_TOKEN_GENERATIONS; generation++) {
      const out = await this.#ec2().send(new RunInstancesCommand({ ClientToken: clientToken(identity, digest, after), ...input }), { abortSignal: signal });
      const instance = out?.Instances?.[0];
      if (!instance?.InstanceId) {
        throw new NovaCronError('Provider', 'server', 'EC2 RunInstances answered without an instance', { context: where });
      }
      const state = instance.State?.Name;
      if (state !== 'shutting-down' && state !== 'terminated') return instance;
      // This token already made an instance that has since been terminated (an earlier
      // attempt that failed and was cleaned up, or a VM someone deleted): EC2 would keep
      // returning it for a day. The next token in the chain is derived from it, so every
      // retrier arrives at the same one.
      after = instance.InstanceId;
    }
    throw new NovaCronError('Provider', 'server', `EC2 keeps returning terminated instances for VM "${request.name}"`, {
      context: where,
      hint: 'its recent instances were all terminated; find out why in the EC2 console (state reason) before retrying',
    });
  }

  /** A VM found by name: wait out `pending`, else report it as it is. */
  async #settle(instance: Instance, where: ErrorContext, ctx: OperationContext): Promise<VmRecord> {
    if (instance.State?.Name !== 'pending') return this.#record(instance);
    ctx.onProgress?.({ operation: where.operation ?? 'create', phase: 'waiting', message: `${instance.InstanceId} is pending` });
    return this.#record(await this.#waitFor(instance.InstanceId!, 'running', where, ctx.signal));
  }

  /** Best effort: the error that brought us here is the one to report. */
  async #cleanUp(instanceId: string, where: ErrorContext): Promise<void> {
    try {
      await this.#terminator.load(instanceId);
    } catch (error) {
      this.#log(`aws provider "${this.name}": could not terminate ${instanceId} after a failed create (${mapAwsError(error, where).message}); the next plan deletes it`);
    }
  }

  // ---- lifecycle -------------------------------------------------------------------------

  async start(ref: VmRef, ctx: OperationContext = {}): Promise<VmRecord> {
    const where = this.#where('start', ref);
    const instance = await this.#owned(ref, where, ctx.signal);
    const state = instance.State?.Name;
    if (state === 'running') return this.#record(instance);
    if (state === 'pending') return this.#record(await this.#waitFor(instance.InstanceId!, 'running', where, ctx.signal));
    if (state === 'stopping') await this.#waitFor(instance.InstanceId!, 'stopped', where, ctx.signal);
    await this.#call(where, (ec2) => ec2.send(new StartInstancesCommand({ InstanceIds: [instance.InstanceId!] }), { abortSignal: ctx.signal }));
    return this.#record(await this.#waitFor(instance.InstanceId!, 'running', where, ctx.signal));
  }

  async stop(ref: VmRef, options: StopOptions = {}, ctx: OperationContext = {}): Promise<VmRecord> {
    const where = this.#where('stop', ref);
    const instance = await this.#owned(ref, where, ctx.signal);
    const state = instance.State?.Name;
    if (state === 'stopped') return this.#record(instance);
    if (state === 'pending') await this.#waitFor(instance.InstanceId!, 'running', where, ctx.signal);
    const id = instance.InstanceId!;
    if (state !== 'stopping') {
      await this.#call(where, (ec2) => ec2.send(new StopInstancesCommand({ InstanceIds: [id], Force: options.force ?? false }), { abortSignal: ctx.signal }));
    }
    if (options.gracefulTimeoutMs !== undefined && !options.force) {
      try {
        return this.#record(await this.#waitFor(id, 'stopped', where, ctx.signal, options.gracefulTimeoutMs));
      } catch (error) {
        if (!(NovaCronError.isInstance(error) && error.code === 'Timeout')) throw error;
        // The guest did not shut down in time: force it (EC2 skips the OS shutdown).
        await this.#call(where, (ec2) => ec2.send(new StopInstancesCommand({ InstanceIds: [id], Force: true }), { abortSignal: ctx.signal }));
      }
    }
    return this.#record(await this.#waitFor(id, 'stopped', where, ctx.signal));
  }

  /** Terminates every instance of this fleet with the VM's name (duplicates included) and waits until they are gone. */
  async delete(ref: VmRef, ctx: OperationContext = {}): Promise<void> {
    const where = this.#where('delete', ref);
    const found = await this.#findAll(ref, where, ctx.signal);
    for (const instance of found) assertOwned(this.#record(instance), ref, this.name);
    await Promise.all(
      found.map(async (instance) => {
        const id = instance.InstanceId!;
        if (instance.State?.Name !== 'shutting-down') {
          try {
            await this.#terminator.load(id, ctx.signal);
          } catch (error) {
            if (awsErrorCode(error) !== 'InvalidInstanceID.NotFound') throw mapAwsError(error, where);
          }
        }
        await this.#waitFor(id, 'terminated', where, ctx.signal);
      }),
    );
  }

  /**
   * Brings a VM to its group's spec without replacing it: the instance type (stop, modify,
   * start: EC2 cannot change it on a running instance), the root volume (grown online), the
   * labels (tags, in place) and the cloud-init data (EC2 takes new user data only while
   * stopped, so it is written when the VM stops anyway or a reboot is asked for). If the new
   * type has no capacity when starting, the old type is put back and started before the
   * error is reported. Declared NICs (`request.nics`) are hot-plugged, no stop or start:
   * secondary ENIs no longer declared are detached and deleted before a type change, new
   * ones created and attached after it (nics.ts); everything is checked before anything
   * changes, and a re-run does only what is left.
   */
  async resize(ref: VmRef, request: ResizeRequest, ctx: OperationContext = {}): Promise<VmRecord> {
    const where = this.#where('resize', ref);
    let instance = await this.#owned(ref, where, ctx.signal);
    const id = instance.InstanceId!;
    const zone = instance.Placement?.AvailabilityZone ?? '';
    const current = this.#record(instance);
    const oldType = instance.InstanceType!;
    const newType = request.instanceType ?? cheapestFit(this.#typesIn(zone), request.resources)?.name;
    if (!newType) {
      throw new CapacityExceededError(`no instance type in the catalog fits the new size of VM "${ref.name}"`, { context: where });
    }
    const userData = request.cloudInit ? ec2UserData(request.cloudInit, request.specHash, ref.name, this.name) : undefined;
    const wasRunning = instance.State?.Name === 'running' || instance.State?.Name === 'pending';
    const needsStop = newType !== oldType || request.reboot === true;
    if (needsStop && wasRunning && !request.allowReboot) {
      throw new UnsupportedError(`changing VM "${ref.name}" ${newType !== oldType ? `from ${oldType} to ${newType}` : 'with a reboot'} needs a stop and start`, {
        context: where,
        hint: `allow reboots for the group (changes.allowReboot)`,
      });
    }
    const nicPlan = request.nics ? await planNicChanges(this.#nicOps(), instance, request.nics, ref, where, ctx.signal) : undefined;
    const nicChanges = nicPlan !== undefined && !nicPlanIsEmpty(nicPlan);
    if (nicChanges) {
      // ENIs attach and detach on a running or stopped instance, not one on its way between.
      if (instance.State?.Name === 'pending') instance = await this.#waitFor(id, 'running', where, ctx.signal);
      else if (instance.State?.Name === 'stopping') instance = await this.#waitFor(id, 'stopped', where, ctx.signal);
      await detachInterfaces(this.#nicOps(), nicPlan, where, ctx);
    }
    if (needsStop && instance.State?.Name !== 'stopped') {
      ctx.onProgress?.({ operation: 'resize', phase: 'stopping', message: newType !== oldType ? `${id} stops to change type ${oldType} → ${newType}` : `${id} stops to take new cloud-init data` });
      if (instance.State?.Name === 'pending') await this.#waitFor(id, 'running', where, ctx.signal);
      if (instance.State?.Name !== 'stopping') {
        await this.#call(where, (ec2) => ec2.send(new StopInstancesCommand({ InstanceIds: [id] }), { abortSignal: ctx.signal }));
      }
      await this.#waitFor(id, 'stopped', where, ctx.signal);
    }
    const stopped = needsStop || instance.State?.Name === 'stopped';
    if (newType !== oldType) {
      await this.#call(where, (ec2) => ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, InstanceType: { Value: newType } }), { abortSignal: ctx.signal }));
    }
    if (userData !== undefined && stopped) {
      await this.#call(where, (ec2) =>
        ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, UserData: { Value: Uint8Array.from(Buffer.from(userData, 'base64')) } }), { abortSignal: ctx.signal }),
      );
    }
    if (request.resources.diskGiB > current.resources.diskGiB) {
      const root = instance.BlockDeviceMappings?.find((m) => m.DeviceName === instance.RootDeviceName)?.Ebs?.VolumeId;
      if (root) {
        // Online: the guest grows its file system at the next boot (cloud-init growpart).
        await this.#call(where, (ec2) => ec2.send(new ModifyVolumeCommand({ VolumeId: root, Size: request.resources.diskGiB }), { abortSignal: ctx.signal }));
      }
    }
    await this.#call(where, (ec2) =>
      ec2.send(
        new CreateTagsCommand({
          Resources: [id],
          Tags: [
            ...Object.entries(request.labels ?? {}).map(([Key, Value]) => ({ Key, Value })),
            { Key: TAG.resources, Value: formatResources(request.resources) },
            { Key: TAG.specHash, Value: request.specHash },
          ],
        }),
        { abortSignal: ctx.signal },
      ),
    );
    if (needsStop && wasRunning) {
      ctx.onProgress?.({ operation: 'resize', phase: 'starting', message: `${id} starts as ${newType}` });
      try {
        await this.#call(where, (ec2) => ec2.send(new StartInstancesCommand({ InstanceIds: [id] }), { abortSignal: ctx.signal }));
      } catch (error) {
        if (!(NovaCronError.isInstance(error) && error.code === 'CapacityExceeded') || newType === oldType) throw error;
        this.#capacity.markExhausted(zone, newType);
        await this.#revertType(id, oldType, current, where);
        throw error;
      }
      instance = await this.#waitFor(id, 'running', where, ctx.signal);
    }
    if (nicChanges) await attachInterfaces(this.#nicOps(), nicPlan, where, ctx);
    if (!(needsStop && wasRunning) || nicChanges) {
      instance = (await this.#call(where, () => this.#describeByIds([id])))[0] ?? instance;
    }
    return this.#record(instance);
  }

  #nicOps(): NicOps {
    return {
      call: (where, fn) => this.#call(where, fn),
      poll: (where, ctx, check) => this.#poll(where, ctx, check),
      log: (message) => this.#log(`aws provider "${this.name}": ${message}`),
      securityGroupIds: this.#config.securityGroupIds,
    };
  }

  async #revertType(id: string, oldType: string, before: VmRecord, where: ErrorContext): Promise<void> {
    try {
      await this.#call(where, (ec2) => ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, InstanceType: { Value: oldType } })));
      await this.#call(where, (ec2) =>
        ec2.send(new CreateTagsCommand({ Resources: [id], Tags: [{ Key: TAG.resources, Value: formatResources(before.resources) }, { Key: TAG.specHash, Value: before.specHash }] })),
      );
      await this.#call(where, (ec2) => ec2.send(new StartInstancesCommand({ InstanceIds: [id] })));
    } catch (error) {
      this.#log(`aws provider "${this.name}": could not put ${id} back to ${oldType} after a failed resize (${mapAwsError(error, where).message})`);
    }
  }

  /**
   * Waits until both EC2 status checks of a running instance pass (DescribeInstanceStatus:
   * the system check, AWS's hardware and network, and the instance check, whose reachability
   * test fails when the OS did not boot). A check that is `impaired`, an instance that leaves
   * `running`, or checks still not `ok` after `timeoutMs` (default: `waitTimeout`) is
   * `ok: false` with what EC2 said. EC2 runs the checks about once a minute, so a new
   * instance usually takes a few minutes.
   */
  async awaitReady(ref: VmRef, options: BootCheckOptions = {}, ctx: OperationContext = {}): Promise<BootCheckResult> {
    const where = this.#where('awaitReady', ref);
    const started = this.#clock.now();
    const id = (await this.#owned(ref, where, ctx.signal)).InstanceId!;
    const timeoutMs = options.timeoutMs ?? this.#config.waitTimeout;
    const result = (ok: boolean, detail: string): BootCheckResult => ({ ok, detail, durationMs: this.#clock.now() - started });
    let last = 'no status reported yet';
    let delay = 2000;
    for (;;) {
      throwIfAborted(ctx.signal, where);
      try {
        const out = await this.#ec2().send(new DescribeInstanceStatusCommand({ InstanceIds: [id], IncludeAllInstances: true }), { abortSignal: ctx.signal });
        const status = out.InstanceStatuses?.find((s) => s.InstanceId === id);
        const state = status?.InstanceState?.Name;
        const system = describeCheck(status?.SystemStatus);
        const instance = describeCheck(status?.InstanceStatus);
        if (state && state !== 'pending' && state !== 'running') return result(false, `instance ${id} is ${state}, not running`);
        if (status?.SystemStatus?.Status === 'ok' && status.InstanceStatus?.Status === 'ok') {
          return result(true, `instance ${id} passed both EC2 status checks after ${((this.#clock.now() - started) / 1000).toFixed(1)} s`);
        }
        if (status?.SystemStatus?.Status === 'impaired' || status?.InstanceStatus?.Status === 'impaired') {
          return result(false, `EC2 status checks of instance ${id} failed: system ${system}, instance ${instance}`);
        }
        if (status) last = `system ${system}, instance ${instance}`;
      } catch (error) {
        const mapped = mapAwsError(error, where);
        if (mapped.code !== 'Throttled') throw mapped;
        delay = Math.min(30_000, delay * 2);
      }
      const left = started + timeoutMs - this.#clock.now();
      if (left <= 0) return result(false, `EC2 status checks of instance ${id} not ok within ${Math.round(timeoutMs / 1000)} s (last: ${last})`);
      ctx.onProgress?.({ operation: 'awaitReady', phase: 'status checks', message: `${id}: ${last}` });
      await this.#clock.sleep(Math.min(delay, left), ctx.signal);
      delay = Math.min(15_000, Math.round(delay * 1.5));
    }
  }

  // ---- adoption -----------------------------------------------------------------------------

  /**
   * Live instances in the region (the configured zones only, when `zones` is set) that no
   * fleet owns: no `novacron:fleet` tag, and not restored by NovaCron. Their size is the
   * instance type's (catalog) with the root volume's size; their image the fleet image their
   * AMI is in `images` (or was imported as), else the AMI as `imageSource`.
   */
  async listUnowned(ctx: OperationContext = {}): Promise<readonly UnownedVm[]> {
    const where = this.#where('listUnowned');
    const instances = (
      await this.#describe(
        [{ Name: 'instance-state-name', Values: LIVE_STATES }, ...(this.#config.zones ? [{ Name: 'availability-zone', Values: [...this.#config.zones] }] : [])],
        where,
        ctx.signal,
      )
    ).filter(isUnowned);
    if (instances.length === 0) return [];
    const sizes = await this.#volumeSizes(instances.map(rootVolumeId).filter((id): id is string => id !== undefined), where, ctx.signal);
    const amis = await this.#amis([...new Set(instances.map((i) => i.ImageId).filter((id): id is string => id !== undefined))], where, ctx.signal);
    return instances.map((i) => {
      const ami = amis.get(i.ImageId ?? '');
      return unownedVm(this.#record(i), i, this.#observedSize(i, sizes), ami, fleetImagesOf(i.ImageId ?? '', ami, this.#config.images));
    });
  }

  /**
   * Tags an instance no fleet owns as the fleet's, as `create` would have (fleet, group,
   * index, spec hash, image, size, name, labels), its volumes first, then the instance
   * (the tag that makes it the fleet's goes last, so a failure leaves it unowned). Only
   * CreateTags: it is never stopped or started. The same fleet and slot again returns it as
   * it is; an instance another fleet (or another slot) owns, or one NovaCron restored, is a
   * Conflict.
   */
  async adopt(ref: VmRef, request: AdoptRequest, ctx: OperationContext = {}): Promise<VmRecord> {
    const where = this.#where('adopt', ref);
    throwIfAborted(ctx.signal, where);
    const { ownership } = request;
    const instance = await this.#adoptable(ref, where, ctx.signal);
    const id = instance.InstanceId!;
    const sameSlot = (i: Instance): boolean => {
      const t = tagMap(i.Tags);
      return !isRestored(i) && t.get(TAG.fleet) === ownership.fleet && t.get(TAG.group) === ownership.group && t.get(TAG.index) === String(ownership.index);
    };
    const refuse = (i: Instance): ConflictError => {
      const t = tagMap(i.Tags);
      return new ConflictError(
        isRestored(i)
          ? `instance ${id} ("${ref.name}") was restored by NovaCron from snapshot ${t.get(TAG.restoredFrom) ?? '?'}: it is not adopted`
          : `instance ${id} ("${ref.name}") is already owned (fleet "${t.get(TAG.fleet)}", group "${t.get(TAG.group) ?? ''}", index ${t.get(TAG.index) ?? '?'})`,
        { context: where, hint: 'a VM belongs to one fleet: remove it from the other fleet first' },
      );
    };
    if (!isUnowned(instance)) {
      if (sameSlot(instance)) return this.#record(instance);
      throw refuse(instance);
    }
    const sizes = await this.#volumeSizes([rootVolumeId(instance)].filter((v): v is string => v !== undefined), where, ctx.signal);
    const tags = ownershipTags(ref.name, ownership, request.image, this.#observedSize(instance, sizes), request.labels);
    const volumes = volumeIds(instance);
    ctx.onProgress?.({ operation: 'adopt', phase: 'tags', message: `${id}: ${volumes.length} volume(s), then the instance` });
    if (volumes.length > 0) {
      // The volumes get NovaCron's tags only: their own names and tags stay as they are.
      const own = tags.filter((t) => t.Key!.startsWith('novacron:'));
      await this.#call(where, (ec2) => ec2.send(new CreateTagsCommand({ Resources: volumes, Tags: own }), { abortSignal: ctx.signal }));
    }
    await this.#call(where, (ec2) => ec2.send(new CreateTagsCommand({ Resources: [id], Tags: tags }), { abortSignal: ctx.signal }));
    const after = (await this.#call(where, () => this.#describeByIds([id])))[0] ?? { ...instance, Tags: [...(instance.Tags ?? []), ...tags] };
    // Another fleet adopting it at the same moment: the last CreateTags won; only one of us may say so.
    if (!sameSlot(after)) throw refuse(after);
    return this.#record(after);
  }

  /** The live instance a ref names for adoption: by id (as `listUnowned` reported it), else by its name. */
  async #adoptable(ref: VmRef, where: ErrorContext, signal: AbortSignal | undefined): Promise<Instance> {
    let found: Instance[];
    if (ref.id?.startsWith('i-')) {
      const byId = await this.#call(where, () => this.#byIds.load(ref.id!, signal));
      found = byId ? [byId] : [];
    } else {
      found = await this.#describe([{ Name: ref.name.startsWith('i-') ? 'instance-id' : `tag:${TAG.name}`, Values: [ref.name] }, { Name: 'instance-state-name', Values: LIVE_STATES }], where, signal);
    }
    found = found.filter((i) => LIVE_STATES.includes(i.State?.Name ?? '') && (tagMap(i.Tags).get(TAG.name) ?? i.InstanceId) === ref.name);
    if (found.length > 1) {
      throw new ConflictError(`${found.length} instances are named "${ref.name}" (${found.map((i) => i.InstanceId).join(', ')})`, { context: where, hint: 'adopt one by its instance id' });
    }
    const instance = found[0];
    const zone = instance?.Placement?.AvailabilityZone ?? '';
    if (!instance || (this.#config.zones && !this.#config.zones.includes(zone))) {
      throw new NotFoundError(`VM "${ref.name}"${ref.id ? ` (${ref.id})` : ''} is no live instance in ${this.#config.zones ? `zones ${this.#config.zones.join(', ')}` : this.#config.region}`, {
        context: where,
        hint: 'run `novacron adopt --dry-run` again: it may have been terminated',
      });
    }
    return instance;
  }

  /** An instance's size: its type's cpu, memory and GPUs (catalog), its root volume's size. */
  #observedSize(instance: Instance, volumeSizes: ReadonlyMap<string, number>): Resources {
    const type = this.#catalog.types.find((c) => c.name === instance.InstanceType);
    const root = rootVolumeId(instance);
    return { cpu: type?.cpu ?? 0, memoryMiB: type?.memoryMiB ?? 0, diskGiB: (root && volumeSizes.get(root)) || 0, gpu: type?.gpu ?? 0 };
  }

  /** Volume sizes (GiB) by id: DescribeVolumes, every page. */
  async #volumeSizes(ids: readonly string[], where: ErrorContext, signal: AbortSignal | undefined): Promise<Map<string, number>> {
    const sizes = new Map<string, number>();
    for (const part of chunks(ids, FILTER_VALUES)) {
      let token: string | undefined;
      do {
        const page = await this.#call(where, (ec2) =>
          ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'volume-id', Values: [...part] }], MaxResults: 500, ...(token ? { NextToken: token } : {}) }), { abortSignal: signal }),
        );
        for (const v of page.Volumes ?? []) if (v.VolumeId && v.Size !== undefined) sizes.set(v.VolumeId, v.Size);
        token = page.NextToken;
      } while (token);
    }
    return sizes;
  }

  /** AMIs by id (a filter, so a deregistered one is just missing), for telling which fleet image an instance runs. */
  async #amis(ids: readonly string[], where: ErrorContext, signal: AbortSignal | undefined): Promise<Map<string, Image>> {
    const out = new Map<string, Image>();
    for (const part of chunks(ids, FILTER_VALUES)) {
      const page = await this.#call(where, (ec2) => ec2.send(new DescribeImagesCommand({ Filters: [{ Name: 'image-id', Values: [...part] }], IncludeDeprecated: true }), { abortSignal: signal }));
      for (const image of page.Images ?? []) if (image.ImageId) out.set(image.ImageId, image);
    }
    return out;
  }

  // ---- snapshots ---------------------------------------------------------------------------

  /**
   * Crash-consistent snapshots of all the VM's EBS volumes at one point in time
   * (CreateSnapshots), tagged with the fleet, group, VM, the NovaCron snapshot id and what a
   * restore into a new VM needs. EBS snapshots are incremental on AWS's side, yet each
   * restores alone, so every request is taken as a `disk` snapshot. Idempotent on
   * `request.id`: an existing set is waited on, an `error` one is deleted and taken again.
   * EC2 has no guest agent to freeze file systems through, so `quiesce` is ignored.
   */
  async snapshot(ref: VmRef, request: SnapshotRequest, ctx: OperationContext = {}): Promise<SnapshotRecord> {
    const where = this.#where('snapshot', ref);
    const id = request.id ?? `${ref.name}-${compactTime(this.#clock.now())}`;
    let set = await this.#snapshotSet(id, where, ctx.signal);
    if (set.some((s) => s.State === 'error')) {
      await this.deleteSnapshot(id, ctx);
      set = [];
    }
    if (set.length === 0) {
      const instance = await this.#owned(ref, where, ctx.signal);
      const tags = tagMap(instance.Tags);
      const snapshotTags = [
        { Key: TAG.name, Value: id },
        { Key: TAG.snapshot, Value: id },
        { Key: TAG.vm, Value: ref.name },
        { Key: TAG.fleet, Value: tags.get(TAG.fleet) ?? ref.fleet },
        { Key: TAG.group, Value: tags.get(TAG.group) ?? '' },
        { Key: TAG.restore, Value: [instance.InstanceType, instance.Placement?.AvailabilityZone, instance.Architecture ?? 'x86_64', instance.RootDeviceName, instance.BootMode ?? ''].join('|') },
        ...(request.scheduledFor ? [{ Key: TAG.scheduledFor, Value: request.scheduledFor }] : []),
      ];
      const out = await this.#call(where, (ec2) =>
        ec2.send(
          new CreateSnapshotsCommand({
            InstanceSpecification: { InstanceId: instance.InstanceId!, ExcludeBootVolume: false },
            Description: `NovaCron snapshot ${id} of ${ref.name}`,
            TagSpecifications: [{ ResourceType: 'snapshot', Tags: snapshotTags }],
          }),
          { abortSignal: ctx.signal },
        ),
      );
      const devices = new Map((instance.BlockDeviceMappings ?? []).map((m) => [m.Ebs?.VolumeId, m.DeviceName]));
      // Which snapshot holds which device, so a restore knows which one is the root.
      for (const s of out.Snapshots ?? []) {
        const device = devices.get(s.VolumeId);
        if (s.SnapshotId && device) {
          await this.#call(where, (ec2) => ec2.send(new CreateTagsCommand({ Resources: [s.SnapshotId!], Tags: [{ Key: TAG.device, Value: device }] }), { abortSignal: ctx.signal }));
        }
      }
    }
    // The point in time is fixed already; restores need `completed`, so wait for it.
    let done: Snapshot[] = [];
    await this.#poll(where, ctx, async () => {
      done = await this.#snapshotSet(id, where, ctx.signal);
      const failed = done.find((s) => s.State === 'error');
      if (failed) throw new NovaCronError('Provider', 'server', `EBS snapshot ${failed.SnapshotId} of "${ref.name}" failed: ${failed.StateMessage ?? 'no reason given'}`, { context: where });
      const progress = done.map((s) => Number.parseInt(s.Progress ?? '0', 10) || 0);
      ctx.onProgress?.({ operation: 'snapshot', phase: 'copying', fraction: progress.reduce((a, b) => a + b, 0) / Math.max(1, progress.length) / 100 });
      return done.length > 0 && done.every((s) => s.State === 'completed');
    });
    return this.#snapshotRecord(id, done);
  }

  async listSnapshots(fleet: string, ctx: OperationContext = {}): Promise<readonly SnapshotRecord[]> {
    const all = await this.#snapshotsWhere([{ Name: `tag:${TAG.fleet}`, Values: [fleet] }], this.#where('listSnapshots'), ctx.signal);
    const sets = new Map<string, Snapshot[]>();
    for (const s of all) {
      const id = tagMap(s.Tags).get(TAG.snapshot);
      if (id) sets.set(id, [...(sets.get(id) ?? []), s]);
    }
    return [...sets].map(([id, set]) => this.#snapshotRecord(id, set)).sort((a, b) => (a.takenAt < b.takenAt ? -1 : a.takenAt > b.takenAt ? 1 : 0));
  }

  async deleteSnapshot(snapshotId: string, ctx: OperationContext = {}): Promise<void> {
    const where = { provider: this.name, operation: 'deleteSnapshot' };
    for (const s of await this.#snapshotSet(snapshotId, where, ctx.signal)) {
      try {
        await this.#ec2().send(new DeleteSnapshotCommand({ SnapshotId: s.SnapshotId! }), { abortSignal: ctx.signal });
      } catch (error) {
        if (awsErrorCode(error) !== 'InvalidSnapshot.NotFound') throw mapAwsError(error, where);
      }
    }
  }

  async recordVerification(snapshotId: string, verification: SnapshotVerification, ctx: OperationContext = {}): Promise<SnapshotRecord> {
    const where = { provider: this.name, operation: 'recordVerification' };
    const set = await this.#snapshotSet(snapshotId, where, ctx.signal);
    if (set.length === 0) throw new NotFoundError(`snapshot "${snapshotId}" does not exist`, { context: where });
    const value = encodeVerification(verification);
    await this.#call(where, (ec2) =>
      ec2.send(new CreateTagsCommand({ Resources: set.map((s) => s.SnapshotId!), Tags: [{ Key: TAG.verified, Value: value }] }), { abortSignal: ctx.signal }),
    );
    return this.#snapshotRecord(snapshotId, set.map((s) => ({ ...s, Tags: [...(s.Tags ?? []).filter((t) => t.Key !== TAG.verified), { Key: TAG.verified, Value: value }] })));
  }

  /**
   * In place: the root volume is swapped for one made from the snapshot
   * (CreateReplaceRootVolumeTask: the instance reboots and keeps its id, addresses and other
   * volumes). As a new VM (`asName`): an AMI is registered from the root snapshot and an
   * instance of the original type launched from it in the original zone, tagged with where
   * it came from (`novacron:restored-from`, and `novacron:scratch` for a restore test's VM)
   * and with the source VM's `novacron:fleet`, so that the documented IAM policy, which lets
   * NovaCron launch and terminate only instances carrying that tag, covers it. It has no
   * group or index: `list` leaves restored VMs out and operations by name skip them, so
   * reconcile never takes one for a fleet VM; `delete` reaches one by its id, or a scratch VM
   * by its name (the snapshot engine's clean-up after a restore test).
   */
  async restore(ref: VmRef, request: RestoreRequest, ctx: OperationContext = {}): Promise<RestoreResult> {
    const where = this.#where('restore', ref);
    const set = await this.#snapshotSet(request.snapshot, where, ctx.signal);
    if (set.length === 0) throw new NotFoundError(`snapshot "${request.snapshot}" does not exist`, { context: where });
    const record = this.#snapshotRecord(request.snapshot, set);
    if (record.state !== 'complete') throw new ConflictError(`snapshot "${request.snapshot}" is not complete yet`, { context: where, retryable: true });
    if (record.vm !== ref.name) throw new InvalidInputError(`snapshot "${request.snapshot}" was taken of VM "${record.vm}", not "${ref.name}"`, { context: where });
    const [type, zone, arch, rootDevice, bootMode] = (tagMap(set[0]!.Tags).get(TAG.restore) ?? '').split('|');
    const root = set.find((s) => tagMap(s.Tags).get(TAG.device) === rootDevice) ?? (set.length === 1 ? set[0] : undefined);
    if (!root?.SnapshotId) throw new NotFoundError(`snapshot "${request.snapshot}" holds no copy of the root volume`, { context: where });
    if (request.asName) {
      const fleet = record.fleet || ref.fleet;
      const vm = await this.#restoreAsNew(request.asName, fleet, request.scratch === true, root, { type, zone, arch, rootDevice, bootMode }, request.snapshot, where, ctx);
      return { vm, bytesWritten: record.diskBytes };
    }
    const instance = await this.#owned(ref, where, ctx.signal);
    const task = await this.#call(where, (ec2) =>
      ec2.send(
        new CreateReplaceRootVolumeTaskCommand({
          InstanceId: instance.InstanceId!,
          SnapshotId: root.SnapshotId!,
          ClientToken: derivedToken('restore', instance.InstanceId!, root.SnapshotId!, String(this.#clock.now())),
          DeleteReplacedRootVolume: true,
        }),
        { abortSignal: ctx.signal },
      ),
    );
    const taskId = task.ReplaceRootVolumeTask?.ReplaceRootVolumeTaskId;
    if (!taskId) throw new NovaCronError('Provider', 'server', 'EC2 did not return a replace-root-volume task', { context: where });
    await this.#poll(where, ctx, async () => {
      const out = await this.#call(where, (ec2) => ec2.send(new DescribeReplaceRootVolumeTasksCommand({ ReplaceRootVolumeTaskIds: [taskId] }), { abortSignal: ctx.signal }));
      const state = out.ReplaceRootVolumeTasks?.[0]?.TaskState;
      if (state === 'succeeded') return true;
      if (state === 'failed' || state === 'failed-detached') {
        throw new NovaCronError('Provider', 'server', `restoring VM "${ref.name}" from "${request.snapshot}" failed (task ${taskId} ${state})`, { context: where });
      }
      return false;
    });
    const vm = this.#record(await this.#waitFor(instance.InstanceId!, 'running', where, ctx.signal));
    return { vm, bytesWritten: (root.VolumeSize ?? 0) * 1024 ** 3 };
  }

  async #restoreAsNew(
    name: string,
    fleet: string,
    scratch: boolean,
    root: Snapshot,
    origin: { type?: string | undefined; zone?: string | undefined; arch?: string | undefined; rootDevice?: string | undefined; bootMode?: string | undefined },
    snapshotId: string,
    where: ErrorContext,
    ctx: OperationContext,
  ): Promise<VmRecord> {
    const taken = await this.#describe([{ Name: `tag:${TAG.name}`, Values: [name] }, { Name: 'instance-state-name', Values: LIVE_STATES }], where, ctx.signal);
    for (const other of taken) {
      const tags = tagMap(other.Tags);
      if (!scratch || tags.get(TAG.scratch) !== 'true') {
        throw new ConflictError(`a VM named "${name}" exists already`, { context: where, hint: 'choose another name for the restored VM' });
      }
      await this.#terminator.load(other.InstanceId!, ctx.signal);
      await this.#waitFor(other.InstanceId!, 'terminated', where, ctx.signal);
    }
    const rootDevice = origin.rootDevice || '/dev/xvda';
    const registered = await this.#call(where, (ec2) =>
      ec2.send(
        new RegisterImageCommand({
          Name: `novacron-restore-${name}-${root.SnapshotId}`.slice(0, 128),
          Architecture: (origin.arch || 'x86_64') as ArchitectureValues,
          VirtualizationType: 'hvm',
          EnaSupport: true,
          RootDeviceName: rootDevice,
          ...(origin.bootMode ? { BootMode: origin.bootMode as BootModeValues } : {}),
          BlockDeviceMappings: [{ DeviceName: rootDevice, Ebs: { SnapshotId: root.SnapshotId!, DeleteOnTermination: true, VolumeType: this.#config.diskType as VolumeType } }],
        }),
        { abortSignal: ctx.signal },
      ),
    );
    const imageId = registered.ImageId!;
    try {
      const zone = origin.zone && origin.zone.startsWith(this.#config.region) ? origin.zone : undefined;
      const subnet = zone ? this.#config.subnetIds?.[zone] : undefined;
      const tags = restoredTags(name, fleet, snapshotId, scratch);
      const run = await this.#call(where, (ec2) =>
        ec2.send(
          new RunInstancesCommand({
            ClientToken: derivedToken('restore-as', name, snapshotId, imageId),
            ImageId: imageId,
            InstanceType: (origin.type || 'm6i.large') as _InstanceType,
            MinCount: 1,
            MaxCount: 1,
            ...(subnet ? { SubnetId: subnet } : zone ? { Placement: { AvailabilityZone: zone } } : {}),
            ...(this.#config.securityGroupIds ? { SecurityGroupIds: [...this.#config.securityGroupIds] } : {}),
            MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled' },
            // The volume is tagged too: the policy's Launch statement asks both for novacron:fleet.
            TagSpecifications: [
              { ResourceType: 'instance', Tags: tags },
              { ResourceType: 'volume', Tags: tags },
            ],
          }),
          { abortSignal: ctx.signal },
        ),
      );
      const id = run.Instances?.[0]?.InstanceId;
      if (!id) throw new NovaCronError('Provider', 'server', 'EC2 RunInstances answered without an instance', { context: where });
      try {
        return this.#record(await this.#waitFor(id, 'running', where, ctx.signal));
      } catch (error) {
        await this.#cleanUp(id, where);
        throw error;
      }
    } finally {
      // The AMI was only the vehicle; the snapshot stays.
      await this.#ec2().send(new DeregisterImageCommand({ ImageId: imageId })).catch(() => undefined);
    }
  }

  // ---- images ------------------------------------------------------------------------------

  /** Exports the VM's disks as a raw image file (CreateImage, ExportImage to S3, download). See docs/aws.md. */
  async exportImage(ref: VmRef, ctx: OperationContext = {}): Promise<ImageArtifact> {
    const where = this.#where('exportImage', ref);
    const instance = await this.#owned(ref, where, ctx.signal);
    return this.#imagesOps().exportInstance(instance.InstanceId!, ref.name, where, ctx);
  }

  /** Imports a raw or VMDK disk image as an AMI (S3 upload, ImportSnapshot, RegisterImage); returns the AMI id. */
  async importImage(artifact: ImageArtifact, imageName: string, ctx: OperationContext = {}): Promise<string> {
    const where = { provider: this.name, operation: 'importImage' };
    const imageId = await this.#imagesOps().importArtifact(artifact, imageName, where, ctx);
    this.#images.delete(imageName);
    return imageId;
  }

  async close(): Promise<void> {
    this.#ec2Client?.destroy();
    this.#s3?.destroy();
    this.#ec2Client = undefined;
    this.#s3 = undefined;
  }

  // ---- internals ---------------------------------------------------------------------------

  /** The EC2 client, built at first use (credentials are resolved by the SDK per request, never at import). */
  #ec2(): EC2Client {
    return (this.#ec2Client ??= this.#clients.ec2(this.#config));
  }

  #imagesOps(): AwsImages {
    return (this.#imageOps ??= new AwsImages({
      provider: this.name,
      config: this.#config,
      clock: this.#clock,
      ec2: () => this.#ec2(),
      s3: () => (this.#s3 ??= this.#clients.s3(this.#config)),
      poll: (where, ctx, check) => this.#poll(where, ctx, check),
    }));
  }

  async #call<T>(where: ErrorContext, fn: (ec2: EC2Client) => Promise<T>): Promise<T> {
    try {
      return await fn(this.#ec2());
    } catch (error) {
      throw mapAwsError(error, where);
    }
  }

  #where(operation: string, ref?: VmRef): ErrorContext {
    return { provider: this.name, operation, ...(ref ? { vm: ref.name } : {}), ...(ref?.host ? { host: ref.host } : {}) };
  }

  #record(instance: Instance): VmRecord {
    return toVmRecord(this.name, instance, (type) => {
      const t = this.#catalog.types.find((c) => c.name === type);
      return t ? { cpu: t.cpu, memoryMiB: t.memoryMiB, diskGiB: 0, gpu: t.gpu ?? 0 } : undefined;
    });
  }

  #zoneOf(host: string, where: ErrorContext): string {
    const { provider, name } = splitHostId(host);
    if ((provider && provider !== this.name) || !name.startsWith(this.#config.region)) {
      throw new InvalidInputError(`host "${host}" is not a zone of provider "${this.name}" (${this.#config.region})`, { context: where });
    }
    return name;
  }

  /** Catalog types in a zone: those the last inventory saw offered there, else all of the region's. */
  #typesIn(zone: string): readonly InstanceType[] {
    const all = instanceTypesFor(this.#config.region, this.#config.instanceTypes, this.#catalog).types;
    const offered = this.#offered.get(zone);
    return offered ? all.filter((t) => offered.has(t.name)) : all;
  }


  /** Resolves a fleet image name: the provider's `images` map (AMI id, or `owner/name-pattern`), else an AMI imported under that name. */
  async #image(name: string, where: ErrorContext, signal: AbortSignal | undefined, imported = false): Promise<Image> {
    const cached = this.#images.get(name);
    if (cached && cached.until > this.#clock.now()) return cached.image;
    const ref = imported && name.startsWith('ami-') ? name : this.#config.images[name];
    let input: ConstructorParameters<typeof DescribeImagesCommand>[0];
    if (ref?.startsWith('ami-')) input = { ImageIds: [ref] };
    else if (ref && ref.includes('/')) {
      const slash = ref.indexOf('/');
      input = { Owners: [ref.slice(0, slash)], Filters: [{ Name: 'name', Values: [ref.slice(slash + 1)] }, { Name: 'state', Values: ['available'] }] };
    } else if (ref) {
      throw new InvalidInputError(`image "${name}" maps to "${ref}", which is neither an AMI id (ami-…) nor owner/name-pattern`, {
        context: { ...where, path: `providers.${this.name}.images.${name}` },
        hint: 'e.g. ami-0abcdef1234567890, or 099720109477/ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*',
      });
    } else {
      input = { Owners: ['self'], Filters: [{ Name: `tag:${TAG.image}`, Values: [name] }, { Name: 'state', Values: ['available'] }] };
    }
    const out = await this.#call({ ...where, operation: `${where.operation} (image lookup)` }, (ec2) => ec2.send(new DescribeImagesCommand(input), { abortSignal: signal }));
    const newest = [...(out.Images ?? [])].sort((a, b) => ((a.CreationDate ?? '') < (b.CreationDate ?? '') ? 1 : -1))[0];
    if (!newest?.ImageId) {
      throw new NotFoundError(`image "${name}" was not found in ${this.#config.region}${ref ? ` (${ref})` : ''}`, {
        context: where,
        hint: ref ? 'check the AMI id or name pattern for this region' : `map it in providers.${this.name}.images, or import it first`,
      });
    }
    this.#images.set(name, { image: newest, until: this.#clock.now() + 60 * 60_000 });
    return newest;
  }

  /** DescribeInstances with filters, every page. */
  async #describe(filters: Filter[], where: ErrorContext, signal: AbortSignal | undefined): Promise<Instance[]> {
    const out: Instance[] = [];
    let token: string | undefined;
    do {
      const page = await this.#call(where, (ec2) =>
        ec2.send(new DescribeInstancesCommand({ Filters: filters, MaxResults: PAGE, ...(token ? { NextToken: token } : {}) }), { abortSignal: signal }),
      );
      for (const r of page.Reservations ?? []) out.push(...(r.Instances ?? []));
      token = page.NextToken;
    } while (token);
    return out;
  }

  /**
   * Instances by id, in any state. A filter rather than InstanceIds: EC2 fails the whole call
   * for one id it does not know yet (new instances appear after a moment), a filter just
   * leaves it out. Errors are raw: the watcher tells throttling apart itself.
   */
  async #describeByIds(ids: readonly string[]): Promise<Instance[]> {
    const out: Instance[] = [];
    for (const part of chunks(ids, FILTER_VALUES)) {
      let token: string | undefined;
      do {
        const page = await this.#ec2().send(
          new DescribeInstancesCommand({ Filters: [{ Name: 'instance-id', Values: part }], MaxResults: PAGE, ...(token ? { NextToken: token } : {}) }),
        );
        for (const r of page.Reservations ?? []) out.push(...(r.Instances ?? []));
        token = page.NextToken;
      } while (token);
    }
    return out;
  }

  /** This fleet's live instances with a name, looked up together with other concurrent lookups. */
  #byName(fleet: string, name: string, signal: AbortSignal | undefined): Promise<readonly Instance[]> {
    let coalescer = this.#lookups.get(fleet);
    if (!coalescer) {
      coalescer = new Coalescer(async (names) => {
        const found = await this.#describe(
          [
            { Name: `tag:${TAG.fleet}`, Values: [fleet] },
            { Name: `tag:${TAG.name}`, Values: [...names] },
            { Name: 'instance-state-name', Values: LIVE_STATES },
          ],
          { provider: this.name, operation: 'lookup' },
          undefined,
        );
        const byName = new Map<string, Instance[]>(names.map((n) => [n, []]));
        for (const i of found) byName.get(tagMap(i.Tags).get(TAG.name) ?? '')?.push(i);
        return byName;
      }, { maxBatch: FILTER_VALUES, windowMs: this.#windowMs });
      this.#lookups.set(fleet, coalescer);
    }
    return coalescer.load(name, signal);
  }

  /**
   * Every live instance the ref names: by id (if given and alive) and by name. By name, a VM
   * restored as a new one counts only if it is a restore test's scratch VM and no fleet VM has
   * that name (the snapshot engine deletes its scratch VM by name): a fleet VM's delete never
   * takes a restored namesake with it, and a VM a user restored is deleted only by its id
   * (which then takes no fleet VM of the same name with it).
   */
  async #findAll(ref: VmRef, where: ErrorContext, signal: AbortSignal | undefined): Promise<Instance[]> {
    const found = new Map<string, Instance>();
    const byId = await this.#lookupId(ref, where, signal);
    if (byId && (LIVE_STATES.includes(byId.State?.Name ?? '') || byId.State?.Name === 'shutting-down')) found.set(byId.InstanceId!, byId);
    const named = await this.#byName(ref.fleet, ref.name, signal);
    const fleetVms = named.filter((i) => !isRestored(i));
    const scratchVms = named.filter((i) => isRestored(i) && tagMap(i.Tags).get(TAG.scratch) === 'true');
    const restoredById = byId !== undefined && isRestored(byId);
    if (!restoredById) for (const i of fleetVms.length > 0 || byId ? fleetVms : scratchVms) found.set(i.InstanceId!, i);
    return [...found.values()];
  }

  /** The instance a ref's id names, if the ref has one and it carries the ref's name. */
  async #lookupId(ref: VmRef, where: ErrorContext, signal: AbortSignal | undefined): Promise<Instance | undefined> {
    if (!ref.id?.startsWith('i-')) return undefined;
    try {
      const instance = await this.#byIds.load(ref.id, signal);
      return instance && tagMap(instance.Tags).get(TAG.name) === ref.name ? instance : undefined;
    } catch (error) {
      throw mapAwsError(error, where);
    }
  }

  /**
   * The live instance a ref names, if any, checked to belong to the fleet: by id when the
   * ref has one (one call), else by name.
   */
  async #findOwned(ref: VmRef, where: ErrorContext, signal: AbortSignal | undefined): Promise<Instance | undefined> {
    const byId = await this.#lookupId(ref, where, signal);
    let found: Instance[] = byId && LIVE_STATES.includes(byId.State?.Name ?? '') ? [byId] : [];
    // By name, restored VMs are not the fleet VM of that name (they fill no slot).
    if (found.length === 0) found = (await this.#byName(ref.fleet, ref.name, signal)).filter((i) => !isRestored(i));
    for (const i of found) assertOwned(this.#record(i), ref, this.name);
    // Duplicates (two tools racing) are the plan's to delete; operate on the oldest.
    return found.sort((a, b) => String(a.LaunchTime ?? '').localeCompare(String(b.LaunchTime ?? '')))[0];
  }

  async #owned(ref: VmRef, where: ErrorContext, signal: AbortSignal | undefined): Promise<Instance> {
    const instance = await this.#findOwned(ref, where, signal);
    if (!instance) throw new NotFoundError(`VM "${ref.name}" does not exist`, { context: where });
    return instance;
  }

  #waitFor(id: string, target: 'running' | 'stopped' | 'terminated', where: ErrorContext, signal: AbortSignal | undefined, timeoutMs?: number): Promise<Instance> {
    const verdict = (instance: Instance | undefined): WaitVerdict => {
      const state = instance?.State?.Name;
      if (target === 'terminated') return !instance || state === 'terminated' ? 'done' : 'wait';
      if (state === target) return 'done';
      if (state === 'terminated' || state === 'shutting-down') {
        const reason = instance?.StateReason;
        const why = `${reason?.Message ?? reason?.Code ?? 'no reason given'}`;
        if (reason?.Code && isCapacityShortage(reason.Code)) {
          return new CapacityExceededError(`instance ${id} was terminated before it ran: ${why}`, { context: where });
        }
        return new NovaCronError('Provider', 'server', `instance ${id} was terminated while waiting for it to be ${target}: ${why}`, { context: where });
      }
      return 'wait';
    };
    return this.#watcher
      .wait({ id, verdict, what: `to be ${target}`, timeoutMs: timeoutMs ?? this.#config.waitTimeout, context: where, signal })
      .then((i) => i ?? ({ InstanceId: id, State: { Name: 'terminated' } } as Instance));
  }

  async #terminateBatch(ids: readonly string[]): Promise<ReadonlyMap<string, true | Error>> {
    const where = { provider: this.name, operation: 'delete' };
    const results = new Map<string, true | Error>();
    try {
      await this.#ec2().send(new TerminateInstancesCommand({ InstanceIds: [...ids] }));
      for (const id of ids) results.set(id, true);
    } catch (error) {
      // One bad id fails the whole call: split it so the others go ahead and the error
      // lands on the VM it belongs to. Other errors (throttling) are everyone's.
      if (ids.length === 1 || !isPerResourceError(awsErrorCode(error))) {
        for (const id of ids) results.set(id, error instanceof Error ? error : mapAwsError(error, where));
        return results;
      }
      for (const id of ids) {
        try {
          await this.#ec2().send(new TerminateInstancesCommand({ InstanceIds: [id] }));
          results.set(id, true);
        } catch (one) {
          results.set(id, one instanceof Error ? one : mapAwsError(one, where));
        }
      }
    }
    return results;
  }

  async #snapshotsWhere(filters: Filter[], where: ErrorContext, signal: AbortSignal | undefined): Promise<Snapshot[]> {
    const out: Snapshot[] = [];
    let token: string | undefined;
    do {
      const page = await this.#call(where, (ec2) =>
        ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ['self'], Filters: filters, MaxResults: PAGE, ...(token ? { NextToken: token } : {}) }), { abortSignal: signal }),
      );
      out.push(...(page.Snapshots ?? []));
      token = page.NextToken;
    } while (token);
    return out;
  }

  async #snapshotSet(id: string, where: ErrorContext, signal: AbortSignal | undefined): Promise<Snapshot[]> {
    return this.#snapshotsWhere([{ Name: `tag:${TAG.snapshot}`, Values: [id] }], where, signal);
  }

  #snapshotRecord(id: string, set: readonly Snapshot[]): SnapshotRecord {
    const tags = tagMap(set[0]?.Tags);
    const started = set.map((s) => (s.StartTime ? new Date(s.StartTime).getTime() : this.#clock.now()));
    const diskBytes = set.reduce((sum, s) => sum + (s.VolumeSize ?? 0) * 1024 ** 3, 0);
    const failed = set.find((s) => s.State === 'error');
    const verified = decodeVerification(tags.get(TAG.verified));
    const scheduledFor = tags.get(TAG.scheduledFor);
    return {
      id,
      provider: this.name,
      vm: tags.get(TAG.vm) ?? '',
      fleet: tags.get(TAG.fleet) ?? '',
      group: tags.get(TAG.group) ?? '',
      takenAt: new Date(Math.min(...started)).toISOString(),
      kind: 'disk',
      consistency: 'crash',
      state: set.length > 0 && set.every((s) => s.State === 'completed') ? 'complete' : 'incomplete',
      // What EBS stores for the snapshot when it says; else the volume size, an upper bound.
      sizeBytes: set.reduce((sum, s) => sum + (s.FullSnapshotSizeInBytes ?? (s.VolumeSize ?? 0) * 1024 ** 3), 0),
      diskBytes,
      location: `ec2:${this.#config.region}:${set.map((s) => s.SnapshotId).join(',')}`,
      ...(scheduledFor ? { scheduledFor } : {}),
      ...(failed ? { error: failed.StateMessage ?? 'the EBS snapshot failed' } : {}),
      ...(verified ? { verified } : {}),
    };
  }

  /** Polls `check` until it says done, with the clock (so tests run instantly) and the context's signal. */
  async #poll(where: ErrorContext, ctx: OperationContext, check: () => Promise<boolean>): Promise<void> {
    const deadline = this.#clock.now() + this.#config.waitTimeout;
    let delay = 2000;
    for (;;) {
      throwIfAborted(ctx.signal, where);
      try {
        if (await check()) return;
      } catch (error) {
        if (!(NovaCronError.isInstance(error) && error.code === 'Throttled')) throw error;
        delay = Math.min(30_000, delay * 2);
      }
      if (this.#clock.now() >= deadline) {
        throw new TimeoutError(`${where.operation} did not finish within ${Math.round(this.#config.waitTimeout / 1000)}s`, { context: where });
      }
      await this.#clock.sleep(delay, ctx.signal);
      delay = Math.min(15_000, Math.round(delay * 1.5));
    }
  }
}

/** One status check as EC2 reports it: `impaired (reachability failed)`, `initializing`. */
function describeCheck(check: InstanceStatusSummary | undefined): string {
  const failed = (check?.Details ?? []).filter((d) => d.Status === 'failed').map((d) => `${d.Name ?? 'check'} failed`);
  return `${check?.Status ?? 'unknown'}${failed.length > 0 ? ` (${failed.join(', ')})` : ''}`;
}

/** A verification as one tag value (256 characters at most): `at|ok|method|detail`. */
function encodeVerification(v: SnapshotVerification): string {
  return [v.at, v.ok ? 'ok' : 'failed', v.method, (v.detail ?? '').replace(/\|/g, '/')].join('|').slice(0, 256);
}

function decodeVerification(value: string | undefined): SnapshotVerification | undefined {
  if (!value) return undefined;
  const [at, ok, method, detail] = value.split('|');
  if (!at || (method !== 'checksum' && method !== 'boot')) return undefined;
  return { at, ok: ok === 'ok', method, ...(detail ? { detail } : {}) };
}

function compactTime(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'z').toLowerCase();
}
