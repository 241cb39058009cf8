import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  EC2ServiceException,
  type BlockDeviceMapping,
  type Filter,
  type Image,
  type Instance,
  type InstanceStateName,
  type NetworkInterface,
  type Snapshot,
  type Tag,
  type TagSpecification,
} from '@aws-sdk/client-ec2';
import { S3ServiceException } from '@aws-sdk/client-s3';
import { EC2_CATALOG } from '../catalog/generated/ec2Catalog.js';

/**
 * A stateful stand-in for the parts of EC2 (and S3) the provider uses, for tests and
 * benchmarks. It answers the SDK's command objects the way the service does: instances move
 * through pending/running/stopping/stopped/shutting-down/terminated over time, client tokens
 * are idempotent (and mismatched parameters refused), filters and pagination behave, a
 * zone/type can be short of capacity, and a request-rate token bucket throttles with
 * RequestLimitExceeded as EC2's does. Wire it to a client with aws-sdk-client-mock:
 *
 *     mockClient(ec2Client).send.callsFake(fake.send);
 *
 * Not a complete EC2: only what NovaCron calls, with the fields it reads.
 */
export interface FakeEc2Options {
  readonly region?: string;
  readonly zones?: readonly string[];
  /** Milliseconds since an epoch; a test can move it. @default Date.now */
  readonly now?: () => number;
  /** How long an instance stays pending, stopping, shutting-down. @default 0 (the next describe sees the new state) */
  readonly transitionMs?: number;
  /** How long a snapshot, image, import or export task takes. @default 0 */
  readonly taskMs?: number;
  /** How long a running instance's status checks stay `initializing` (EC2: a few minutes). @default 0 */
  readonly statusCheckMs?: number;
  /** Types offered per zone. @default every catalog type in every zone */
  readonly offerings?: Readonly<Record<string, readonly string[]>>;
  /** Largest page DescribeInstances & co. return, whatever MaxResults asks. @default 1000 */
  readonly pageSize?: number;
  /** Request-rate limits, as EC2 applies them per account: a bucket per kind of call. */
  readonly throttle?: { readonly mutating?: Bucket; readonly describe?: Bucket };
  readonly images?: readonly Image[];
  /** Subnets by id → their zone: what DescribeSubnets knows and CreateNetworkInterface takes. @default none */
  readonly subnets?: Readonly<Record<string, string>>;
  /** Network interfaces an instance takes at most (EC2: 2 to 15 by type); one more is AttachmentLimitExceeded. @default 8 */
  readonly maxNetworkInterfaces?: number;
}

export interface Bucket {
  readonly capacity: number;
  readonly refillPerSec: number;
}

type Handler = (input: Record<string, unknown>) => unknown;

interface FakeInstance {
  id: string;
  clientToken: string | undefined;
  state: InstanceStateName;
  /** When the current transition ends. */
  until: number;
  /** When it last came to `running` (its status checks start then). */
  runningSince: number | undefined;
  /** The state the transition ends in. */
  next: InstanceStateName | undefined;
  reason: { Code: string; Message: string } | undefined;
  type: string;
  zone: string;
  imageId: string;
  tags: Map<string, string>;
  launched: Date;
  rootDevice: string;
  volumes: { device: string; volumeId: string; sizeGiB: number; tags: Map<string, string> }[];
  userData: string | undefined;
  ip: string;
}

/** An ENI: made by RunInstances (one per interface) or CreateNetworkInterface; attached to at most one instance. */
export interface FakeNetworkInterface {
  readonly id: string;
  readonly subnet: string;
  readonly zone: string;
  readonly mac: string;
  readonly groups: readonly string[];
  readonly tags: Map<string, string>;
  attachment:
    | { readonly id: string; readonly instanceId: string; readonly deviceIndex: number; deleteOnTermination: boolean; state: 'attaching' | 'attached' | 'detaching'; until: number }
    | undefined;
}

interface FakeSnapshot {
  id: string;
  volumeId: string;
  sizeGiB: number;
  started: Date;
  readyAt: number;
  tags: Map<string, string>;
  failed: boolean;
}

interface FakeTask {
  readyAt: number;
  result: string;
  tags: Map<string, string>;
}

const MUTATING = new Set([
  'RunInstances', 'StartInstances', 'StopInstances', 'TerminateInstances', 'ModifyInstanceAttribute', 'ModifyVolume',
  'CreateTags', 'CreateSnapshots', 'DeleteSnapshot', 'CreateImage', 'RegisterImage', 'DeregisterImage', 'ImportSnapshot',
  'ExportImage', 'CreateReplaceRootVolumeTask', 'CreateNetworkInterface', 'AttachNetworkInterface', 'DetachNetworkInterface',
  'DeleteNetworkInterface', 'ModifyNetworkInterfaceAttribute',
]);
const STATE_CODE: Record<InstanceStateName, number> = { pending: 0, running: 16, 'shutting-down': 32, terminated: 48, stopping: 64, stopped: 80 };

export function ec2Error(code: string, message: string, status = 400): EC2ServiceException {
  return new EC2ServiceException({
    name: code,
    $fault: status >= 500 || code === 'RequestLimitExceeded' ? 'server' : 'client',
    $metadata: { httpStatusCode: status, requestId: createHash('md5').update(`${code}${message}`).digest('hex').slice(0, 8) },
    message,
  });
}

export class FakeEc2 {
  readonly region: string;
  readonly zones: readonly string[];
  readonly instances = new Map<string, FakeInstance>();
  readonly snapshots = new Map<string, FakeSnapshot>();
  readonly images = new Map<string, Image & { tags: Map<string, string>; readyAt: number }>();
  readonly imports = new Map<string, FakeTask>();
  readonly exports = new Map<string, FakeTask & { imageId: string; prefix: string; bucket: string }>();
  readonly rootTasks = new Map<string, FakeTask & { instanceId: string }>();
  readonly networkInterfaces = new Map<string, FakeNetworkInterface>();
  /** Subnet id → zone. */
  readonly subnets: Map<string, string>;
  /** Calls answered (throttled ones included), by API name. */
  readonly calls = new Map<string, number>();
  /** Calls refused with RequestLimitExceeded. */
  throttled = 0;
  /** `zone/type` pairs with no capacity: RunInstances fails with InsufficientInstanceCapacity. */
  readonly noCapacity = new Set<string>();
  /** `zone/type` pairs where launches are accepted and then terminated for want of capacity. */
  readonly lateNoCapacity = new Set<string>();
  /** Errors to throw on the next calls of an API, in order. */
  readonly faults = new Map<string, Error[]>();
  /** AMIs whose instances fail their instance status check (a disk that does not boot on EC2). */
  readonly unbootableImages = new Set<string>();
  readonly s3 = new FakeS3();

  readonly #now: () => number;
  readonly #transitionMs: number;
  readonly #taskMs: number;
  readonly #statusCheckMs: number;
  readonly #offerings: Readonly<Record<string, readonly string[]>>;
  readonly #pageSize: number;
  readonly #maxEnis: number;
  readonly #buckets = new Map<'mutating' | 'describe', { bucket: Bucket; tokens: number; at: number }>();
  readonly #tokens = new Map<string, { instanceId: string; params: string }>();
  #seq = 0;
  #eniSeq = 0;
  /** Instance id → the ENIs whose attachment names it (an index: instance views stay cheap with many ENIs). */
  readonly #attachedTo = new Map<string, Set<FakeNetworkInterface>>();

  constructor(options: FakeEc2Options = {}) {
    this.region = options.region ?? 'us-east-1';
    this.zones = options.zones ?? [`${this.region}a`, `${this.region}b`, `${this.region}c`];
    this.#now = options.now ?? Date.now;
    this.#transitionMs = options.transitionMs ?? 0;
    this.#taskMs = options.taskMs ?? 0;
    this.#statusCheckMs = options.statusCheckMs ?? 0;
    this.#pageSize = options.pageSize ?? 1000;
    this.#maxEnis = options.maxNetworkInterfaces ?? 8;
    this.subnets = new Map(Object.entries(options.subnets ?? {}));
    const all = EC2_CATALOG.types.map((t) => t.name);
    this.#offerings = options.offerings ?? Object.fromEntries(this.zones.map((z) => [z, all]));
    for (const kind of ['mutating', 'describe'] as const) {
      const bucket = options.throttle?.[kind];
      if (bucket) this.#buckets.set(kind, { bucket, tokens: bucket.capacity, at: this.#now() });
    }
    for (const image of options.images ?? [{ ImageId: 'ami-0123456789abcdef0', Name: 'debian-12-amd64', RootDeviceName: '/dev/xvda', State: 'available', OwnerId: '136693071363', CreationDate: '2026-01-01T00:00:00.000Z' }]) {
      this.images.set(image.ImageId!, { ...image, tags: new Map(), readyAt: 0 });
    }
  }

  /** Queues errors for the next calls of an API (`RunInstances`). */
  fail(api: string, ...errors: Error[]): this {
    this.faults.set(api, [...(this.faults.get(api) ?? []), ...errors]);
    return this;
  }

  count(api: string): number {
    return this.calls.get(api) ?? 0;
  }

  get totalCalls(): number {
    return [...this.calls.values()].reduce((a, b) => a + b, 0);
  }

  /** `handle`, typed to stand in for any mocked client's `send` (the caller reads the answer as the command's output). */
  readonly send = (command: object): Promise<never> => this.handle(command as Parameters<FakeEc2['handle']>[0]) as Promise<never>;

  /** Answers one SDK command (`new RunInstancesCommand(…)`) as EC2 or S3 would. */
  async handle(command: { readonly input: object; readonly constructor: { readonly name: string } }): Promise<unknown> {
    const api = command.constructor.name.replace(/Command$/, '');
    this.calls.set(api, (this.calls.get(api) ?? 0) + 1);
    const queued = this.faults.get(api);
    if (queued && queued.length > 0) throw queued.shift()!;
    const s3 = this.s3.handlers[api];
    if (s3) return s3(command.input as Record<string, unknown>);
    this.#throttle(api);
    const handler = this.#handlers[api];
    if (!handler) throw ec2Error('InvalidAction', `The action ${api} is not valid for this web service (fake)`);
    return handler(command.input as Record<string, unknown>);
  }

  /**
   * An instance made outside NovaCron (by hand, by another tool), running at once: what
   * `listUnowned` finds. Tags as given (none: no `Name` either), one root volume.
   */
  addInstance(options: { readonly type: string; readonly zone?: string; readonly imageId?: string; readonly diskGiB?: number; readonly tags?: Readonly<Record<string, string>>; readonly volumeTags?: Readonly<Record<string, string>>; readonly state?: InstanceStateName }): string {
    const id = `i-${(++this.#seq).toString(16).padStart(17, '0')}`;
    const imageId = options.imageId ?? this.images.keys().next().value!;
    const state = options.state ?? 'running';
    this.instances.set(id, {
      id, clientToken: undefined, state, until: this.#now(), runningSince: state === 'running' ? this.#now() : undefined, next: undefined, reason: undefined,
      type: options.type, zone: options.zone ?? this.zones[0]!, imageId, tags: new Map(Object.entries(options.tags ?? {})), launched: new Date(this.#now()),
      rootDevice: '/dev/xvda', volumes: [{ device: '/dev/xvda', volumeId: `vol-${(this.#seq).toString(16).padStart(17, '0')}`, sizeGiB: options.diskGiB ?? 8, tags: new Map(Object.entries(options.volumeTags ?? {})) }],
      userData: undefined, ip: `10.0.${(this.#seq >> 8) & 255}.${this.#seq & 255}`,
    });
    this.#makeEni({ subnet: `subnet-default-${options.zone ?? this.zones[0]!}`, zone: options.zone ?? this.zones[0]!, groups: [], tags: new Map() }, { instanceId: id, deviceIndex: 0, deleteOnTermination: true });
    return id;
  }

  /** Instances as DescribeInstances would show them now. */
  describe(): Instance[] {
    return [...this.instances.values()].map((i) => this.#view(i));
  }

  // ---- the API -----------------------------------------------------------------------------

  readonly #handlers: Record<string, Handler> = {
    DescribeAvailabilityZones: (input) => {
      const names = input['ZoneNames'] as string[] | undefined;
      const zones = this.zones.filter((z) => !names || names.includes(z));
      return { AvailabilityZones: zones.map((z) => ({ ZoneName: z, State: 'available', RegionName: this.region, ZoneType: 'availability-zone', ZoneId: `use1-az${z.slice(-1)}` })) };
    },
    DescribeInstanceTypeOfferings: (input) => {
      const filters = (input['Filters'] as Filter[] | undefined) ?? [];
      const rows = Object.entries(this.#offerings).flatMap(([zone, types]) => types.map((t) => ({ InstanceType: t, Location: zone, LocationType: 'availability-zone' })));
      const matching = rows.filter((r) => filters.every((f) => !f.Values || f.Values.includes(f.Name === 'location' ? r.Location : f.Name === 'instance-type' ? r.InstanceType : '')));
      const { page, next } = this.#page(matching, input);
      return { InstanceTypeOfferings: page, ...(next ? { NextToken: next } : {}) };
    },
    DescribeInstances: (input) => {
      const ids = input['InstanceIds'] as string[] | undefined;
      if (ids) {
        const missing = ids.filter((id) => !this.instances.has(id));
        if (missing.length > 0) throw ec2Error('InvalidInstanceID.NotFound', `The instance IDs '${missing.join(', ')}' do not exist`);
      }
      const filters = (input['Filters'] as Filter[] | undefined) ?? [];
      const matching = this.describe().filter((i) => (!ids || ids.includes(i.InstanceId!)) && filters.every((f) => matchInstance(i, f)));
      const { page, next } = this.#page(matching, input);
      return { Reservations: page.map((i) => ({ ReservationId: `r-${i.InstanceId!.slice(2)}`, Instances: [i] })), ...(next ? { NextToken: next } : {}) };
    },
    DescribeInstanceStatus: (input) => {
      const ids = input['InstanceIds'] as string[] | undefined;
      if (ids) {
        const missing = ids.filter((id) => !this.instances.has(id));
        if (missing.length > 0) throw ec2Error('InvalidInstanceID.NotFound', `The instance IDs '${missing.join(', ')}' do not exist`);
      }
      const all = input['IncludeAllInstances'] === true;
      const statuses = [...this.instances.values()].filter((i) => !ids || ids.includes(i.id)).map((i) => this.#statusView(i));
      const { page, next } = this.#page(statuses.filter((st) => all || st.InstanceState.Name === 'running'), input);
      return { InstanceStatuses: page, ...(next ? { NextToken: next } : {}) };
    },
    DescribeVolumes: (input) => {
      const filters = (input['Filters'] as Filter[] | undefined) ?? [];
      const volumes = [...this.instances.values()]
        .filter((i) => i.state !== 'terminated')
        .flatMap((i) => i.volumes.map((v) => ({
          VolumeId: v.volumeId, Size: v.sizeGiB, AvailabilityZone: i.zone, State: 'in-use', VolumeType: 'gp3',
          Attachments: [{ InstanceId: i.id, Device: v.device, State: 'attached', VolumeId: v.volumeId, DeleteOnTermination: true }],
          Tags: [...v.tags].map(([Key, Value]) => ({ Key, Value })),
        })))
        .filter((v) => filters.every((f) => matchTagged(v.Tags, f, { 'volume-id': v.VolumeId, 'attachment.instance-id': v.Attachments[0]!.InstanceId })));
      const { page, next } = this.#page(volumes, input);
      return { Volumes: page, ...(next ? { NextToken: next } : {}) };
    },
    DescribeImages: (input) => {
      const ids = input['ImageIds'] as string[] | undefined;
      const owners = input['Owners'] as string[] | undefined;
      const filters = (input['Filters'] as Filter[] | undefined) ?? [];
      if (ids) {
        const missing = ids.filter((id) => !this.images.has(id));
        if (missing.length > 0) throw ec2Error('InvalidAMIID.NotFound', `The image id '[${missing.join(', ')}]' does not exist`);
      }
      const images = [...this.images.values()]
        .map((i) => this.#imageView(i))
        .filter((i) => (!ids || ids.includes(i.ImageId!)) && (!owners || owners.includes(i.OwnerId!) || (owners.includes('self') && i.OwnerId === '111122223333')))
        .filter((i) => filters.every((f) => matchTagged(i.Tags, f, { name: i.Name, state: i.State, 'image-id': i.ImageId })));
      return { Images: images };
    },
    RunInstances: (input) => {
      const type = input['InstanceType'] as string;
      const subnet = input['SubnetId'] as string | undefined;
      const zone = (input['Placement'] as { AvailabilityZone?: string } | undefined)?.AvailabilityZone ?? (subnet ? `${this.region}${subnet.slice(-1)}` : this.zones[0]!);
      const token = input['ClientToken'] as string | undefined;
      const params = JSON.stringify({ ...input, ClientToken: undefined });
      if (token) {
        const seen = this.#tokens.get(token);
        if (seen) {
          if (seen.params !== params) throw ec2Error('IdempotentParameterMismatch', 'Arguments on this idempotent request are inconsistent with arguments used in previous request(s).');
          return { Instances: [this.#view(this.instances.get(seen.instanceId)!)], ReservationId: `r-${seen.instanceId.slice(2)}` };
        }
      }
      const image = this.images.get(input['ImageId'] as string);
      if (!image) throw ec2Error('InvalidAMIID.NotFound', `The image id '[${String(input['ImageId'])}]' does not exist`);
      if (!this.#offerings[zone]?.includes(type)) {
        throw ec2Error('Unsupported', `Your requested instance type (${type}) is not supported in your requested Availability Zone (${zone}). Please retry your request by not specifying an Availability Zone or choosing ${this.zones.filter((z) => z !== zone).join(', ')}.`);
      }
      if (this.noCapacity.has(`${zone}/${type}`)) {
        const others = this.zones.filter((z) => z !== zone && !this.noCapacity.has(`${z}/${type}`));
        throw ec2Error('InsufficientInstanceCapacity', `We currently do not have sufficient ${type} capacity in the Availability Zone you requested (${zone}). Our system will be working on provisioning additional capacity. You can currently get ${type} capacity by not specifying an Availability Zone in your request or choosing ${others.join(', ')}.`, 500);
      }
      const id = `i-${(++this.#seq).toString(16).padStart(17, '0')}`;
      const tags = new Map<string, string>();
      const volumeTags = new Map<string, string>();
      const eniTags = new Map<string, string>();
      for (const spec of (input['TagSpecifications'] as TagSpecification[] | undefined) ?? []) {
        for (const t of spec.Tags ?? []) (spec.ResourceType === 'volume' ? volumeTags : spec.ResourceType === 'network-interface' ? eniTags : tags).set(t.Key!, t.Value ?? '');
      }
      type InterfaceSpec = { SubnetId?: string; DeviceIndex?: number; Groups?: string[]; DeleteOnTermination?: boolean };
      const interfaces = ((input['NetworkInterfaces'] as InterfaceSpec[] | undefined) ?? [{ SubnetId: subnet ?? `subnet-default-${zone}`, DeviceIndex: 0, Groups: (input['SecurityGroupIds'] as string[] | undefined) ?? [] }])
        .slice()
        .sort((a, b) => (a.DeviceIndex ?? 0) - (b.DeviceIndex ?? 0));
      for (const n of interfaces) {
        const known = n.SubnetId ? this.subnets.get(n.SubnetId) : undefined;
        if (known && known !== zone) throw ec2Error('InvalidParameterValue', `Subnet '${n.SubnetId}' is in ${known}, not in the requested Availability Zone ${zone}.`);
      }
      const mapping = ((input['BlockDeviceMappings'] as BlockDeviceMapping[] | undefined) ?? [])[0];
      const late = this.lateNoCapacity.has(`${zone}/${type}`);
      const instance: FakeInstance = {
        id,
        clientToken: token,
        state: 'pending',
        until: this.#now() + this.#transitionMs,
        runningSince: undefined,
        next: late ? 'terminated' : 'running',
        reason: late ? { Code: 'Server.InsufficientInstanceCapacity', Message: 'Server.InsufficientInstanceCapacity: Insufficient capacity.' } : undefined,
        type,
        zone,
        imageId: image.ImageId!,
        tags,
        launched: new Date(this.#now()),
        rootDevice: image.RootDeviceName ?? '/dev/xvda',
        volumes: [{ device: mapping?.DeviceName ?? image.RootDeviceName ?? '/dev/xvda', volumeId: `vol-${(this.#seq).toString(16).padStart(17, '0')}`, sizeGiB: mapping?.Ebs?.VolumeSize ?? 8, tags: volumeTags }],
        userData: input['UserData'] as string | undefined,
        ip: `10.0.${(this.#seq >> 8) & 255}.${this.#seq & 255}`,
      };
      this.instances.set(id, instance);
      for (const [k, n] of interfaces.entries()) {
        this.#makeEni({ subnet: n.SubnetId ?? `subnet-default-${zone}`, zone, groups: n.Groups ?? [], tags: new Map(eniTags) }, { instanceId: id, deviceIndex: n.DeviceIndex ?? k, deleteOnTermination: n.DeleteOnTermination ?? true });
      }
      if (token) this.#tokens.set(token, { instanceId: id, params });
      return { Instances: [this.#view(instance)], ReservationId: `r-${id.slice(2)}` };
    },
    StartInstances: (input) => this.#transition(input, (i) => {
      if (i.state === 'running' || i.state === 'pending') return;
      if (i.state !== 'stopped') throw ec2Error('IncorrectInstanceState', `The instance '${i.id}' is not in a state from which it can be started.`);
      if (this.noCapacity.has(`${i.zone}/${i.type}`)) throw ec2Error('InsufficientInstanceCapacity', `We currently do not have sufficient ${i.type} capacity in the Availability Zone you requested (${i.zone}).`, 500);
      this.#move(i, 'pending', 'running');
    }),
    StopInstances: (input) => this.#transition(input, (i) => {
      if (i.state === 'stopped' || i.state === 'stopping') return;
      if (i.state !== 'running') throw ec2Error('IncorrectInstanceState', `This instance '${i.id}' is not in a state from which it can be stopped.`);
      this.#move(i, 'stopping', 'stopped');
    }),
    TerminateInstances: (input) => this.#transition(input, (i) => {
      if (i.state === 'terminated' || i.state === 'shutting-down') return;
      this.#move(i, 'shutting-down', 'terminated');
      i.reason = { Code: 'Client.UserInitiatedShutdown', Message: 'Client.UserInitiatedShutdown: User initiated shutdown' };
    }),
    ModifyInstanceAttribute: (input) => {
      const i = this.#instance(input['InstanceId'] as string);
      this.#settle(i);
      const type = (input['InstanceType'] as { Value?: string } | undefined)?.Value;
      const userData = (input['UserData'] as { Value?: Uint8Array } | undefined)?.Value;
      if ((type || userData) && i.state !== 'stopped') {
        throw ec2Error('IncorrectInstanceState', `The instance '${i.id}' is not in the 'stopped' state.`);
      }
      if (type) i.type = type;
      if (userData) i.userData = Buffer.from(userData).toString('base64');
      return {};
    },
    ModifyVolume: (input) => {
      for (const i of this.instances.values()) {
        const v = i.volumes.find((vol) => vol.volumeId === input['VolumeId']);
        if (v) {
          v.sizeGiB = input['Size'] as number;
          return { VolumeModification: { VolumeId: v.volumeId, ModificationState: 'modifying', TargetSize: v.sizeGiB } };
        }
      }
      throw ec2Error('InvalidVolume.NotFound', `The volume '${String(input['VolumeId'])}' does not exist.`);
    },
    CreateTags: (input) => {
      for (const id of input['Resources'] as string[]) {
        const target = this.instances.get(id)?.tags ?? this.snapshots.get(id)?.tags ?? this.images.get(id)?.tags ?? this.#volume(id)?.volume.tags ?? this.networkInterfaces.get(id)?.tags;
        if (!target) throw ec2Error(id.startsWith('vol-') ? 'InvalidVolume.NotFound' : `Invalid${id.startsWith('snap-') ? 'Snapshot' : 'Instance'}ID.NotFound`, `The ID '${id}' does not exist`);
        for (const t of input['Tags'] as Tag[]) target.set(t.Key!, t.Value ?? '');
      }
      return {};
    },
    CreateSnapshots: (input) => {
      const spec = input['InstanceSpecification'] as { InstanceId: string };
      const i = this.#instance(spec.InstanceId);
      const tags = new Map<string, string>();
      for (const s of (input['TagSpecifications'] as TagSpecification[] | undefined) ?? []) for (const t of s.Tags ?? []) tags.set(t.Key!, t.Value ?? '');
      const out = i.volumes.map((v) => {
        const id = `snap-${(++this.#seq).toString(16).padStart(17, '0')}`;
        const snap: FakeSnapshot = { id, volumeId: v.volumeId, sizeGiB: v.sizeGiB, started: new Date(this.#now()), readyAt: this.#now() + this.#taskMs, tags: new Map(tags), failed: false };
        this.snapshots.set(id, snap);
        return { SnapshotId: id, VolumeId: v.volumeId, VolumeSize: v.sizeGiB, StartTime: snap.started, State: 'pending', Progress: '0%', Tags: [...tags].map(([Key, Value]) => ({ Key, Value })) };
      });
      return { Snapshots: out };
    },
    DescribeSnapshots: (input) => {
      const filters = (input['Filters'] as Filter[] | undefined) ?? [];
      const matching = [...this.snapshots.values()].map((s) => this.#snapshotView(s)).filter((s) => filters.every((f) => matchTagged(s.Tags, f, {})));
      const { page, next } = this.#page(matching, input);
      return { Snapshots: page, ...(next ? { NextToken: next } : {}) };
    },
    DeleteSnapshot: (input) => {
      if (!this.snapshots.delete(input['SnapshotId'] as string)) throw ec2Error('InvalidSnapshot.NotFound', `The snapshot '${String(input['SnapshotId'])}' does not exist.`);
      return {};
    },
    DescribeSubnets: (input) => {
      const ids = input['SubnetIds'] as string[] | undefined;
      if (ids) {
        const missing = ids.filter((id) => !this.subnets.has(id));
        if (missing.length > 0) throw ec2Error('InvalidSubnetID.NotFound', `The subnet ID '${missing.join(', ')}' does not exist`);
      }
      const filters = (input['Filters'] as Filter[] | undefined) ?? [];
      const subnets = [...this.subnets]
        .map(([SubnetId, AvailabilityZone]) => ({ SubnetId, AvailabilityZone, VpcId: 'vpc-0123456789abcdef0', State: 'available' as const }))
        .filter((n) => (!ids || ids.includes(n.SubnetId)) && filters.every((f) => matchTagged([], f, { 'subnet-id': n.SubnetId, 'availability-zone': n.AvailabilityZone })));
      const { page, next } = this.#page(subnets, input);
      return { Subnets: page, ...(next ? { NextToken: next } : {}) };
    },
    DescribeNetworkInterfaces: (input) => {
      const ids = input['NetworkInterfaceIds'] as string[] | undefined;
      if (ids) {
        const missing = ids.filter((id) => !this.networkInterfaces.has(id));
        if (missing.length > 0) throw ec2Error('InvalidNetworkInterfaceID.NotFound', `The networkInterface ID '${missing.join(', ')}' does not exist`);
      }
      const filters = (input['Filters'] as Filter[] | undefined) ?? [];
      const matching = [...this.networkInterfaces.values()]
        .filter((e) => !ids || ids.includes(e.id))
        .map((e) => this.#eniView(e))
        .filter((e) => filters.every((f) => matchTagged(e.TagSet, f, {
          'network-interface-id': e.NetworkInterfaceId, 'subnet-id': e.SubnetId, 'availability-zone': e.AvailabilityZone, status: e.Status,
          'attachment.instance-id': e.Attachment?.InstanceId, 'attachment.attachment-id': e.Attachment?.AttachmentId,
        })));
      const { page, next } = this.#page(matching, input);
      return { NetworkInterfaces: page, ...(next ? { NextToken: next } : {}) };
    },
    CreateNetworkInterface: (input) => {
      const subnet = input['SubnetId'] as string;
      const zone = this.subnets.get(subnet);
      if (!zone) throw ec2Error('InvalidSubnetID.NotFound', `The subnet ID '${subnet}' does not exist`);
      const eni = this.#makeEni({ subnet, zone, groups: (input['Groups'] as string[] | undefined) ?? [], tags: tagsOf(input) });
      return { NetworkInterface: this.#eniView(eni) };
    },
    AttachNetworkInterface: (input) => {
      const eni = this.#eni(input['NetworkInterfaceId'] as string);
      const i = this.#instance(input['InstanceId'] as string);
      this.#settle(i);
      const index = input['DeviceIndex'] as number;
      if (i.state !== 'running' && i.state !== 'stopped') throw ec2Error('IncorrectInstanceState', `The instance '${i.id}' is not in a state from which a network interface can be attached.`);
      if (eni.attachment) throw ec2Error('InvalidNetworkInterface.InUse', `Interface: '${eni.id}' in use.`);
      if (eni.zone !== i.zone) throw ec2Error('InvalidParameterCombination', `You may not attach a network interface to an instance if they are not in the same availability zone`);
      const attached = this.#enisOf(i.id);
      if (attached.some((e) => e.attachment!.deviceIndex === index)) throw ec2Error('InvalidParameterValue', `Instance '${i.id}' already has an interface attached at device index '${index}'.`);
      if (attached.length >= this.#maxEnis) throw ec2Error('AttachmentLimitExceeded', `Interface count ${attached.length + 1} exceeds the limit for ${i.type}`);
      eni.attachment = { id: `eni-attach-${eni.id.slice(4)}-${++this.#eniSeq}`, instanceId: i.id, deviceIndex: index, deleteOnTermination: false, state: 'attaching', until: this.#now() + this.#transitionMs };
      this.#index(eni);
      return { AttachmentId: eni.attachment.id, NetworkCardIndex: 0 };
    },
    DetachNetworkInterface: (input) => {
      const eni = this.#byAttachment(input['AttachmentId'] as string);
      if (eni.attachment!.deviceIndex === 0) throw ec2Error('OperationNotPermitted', `The network interface at device index 0 cannot be detached.`);
      if (eni.attachment!.state !== 'detaching') {
        eni.attachment!.state = 'detaching';
        eni.attachment!.until = this.#now() + this.#transitionMs;
      }
      return {};
    },
    ModifyNetworkInterfaceAttribute: (input) => {
      const eni = this.#eni(input['NetworkInterfaceId'] as string);
      const change = input['Attachment'] as { AttachmentId?: string; DeleteOnTermination?: boolean } | undefined;
      if (change) {
        if (!eni.attachment || eni.attachment.id !== change.AttachmentId) throw ec2Error('InvalidAttachmentID.NotFound', `The attachment ID '${String(change.AttachmentId)}' does not exist for '${eni.id}'`);
        if (change.DeleteOnTermination !== undefined) eni.attachment.deleteOnTermination = change.DeleteOnTermination;
      }
      return {};
    },
    DeleteNetworkInterface: (input) => {
      const eni = this.#eni(input['NetworkInterfaceId'] as string);
      if (eni.attachment) throw ec2Error('InvalidNetworkInterface.InUse', `The network interface '${eni.id}' is currently in use.`);
      this.networkInterfaces.delete(eni.id);
      return {};
    },
    CreateReplaceRootVolumeTask: (input) => {
      const i = this.#instance(input['InstanceId'] as string);
      const snap = this.snapshots.get(input['SnapshotId'] as string);
      if (!snap) throw ec2Error('InvalidSnapshot.NotFound', `The snapshot '${String(input['SnapshotId'])}' does not exist.`);
      const id = `replacevol-${(++this.#seq).toString(16).padStart(17, '0')}`;
      this.rootTasks.set(id, { readyAt: this.#now() + this.#taskMs, result: 'succeeded', tags: new Map(), instanceId: i.id });
      return { ReplaceRootVolumeTask: { ReplaceRootVolumeTaskId: id, InstanceId: i.id, TaskState: 'pending' } };
    },
    DescribeReplaceRootVolumeTasks: (input) => ({
      ReplaceRootVolumeTasks: ((input['ReplaceRootVolumeTaskIds'] as string[] | undefined) ?? []).map((id) => {
        const t = this.rootTasks.get(id);
        return { ReplaceRootVolumeTaskId: id, InstanceId: t?.instanceId, TaskState: t && this.#now() >= t.readyAt ? t.result : 'in-progress' };
      }),
    }),
    CreateImage: (input) => {
      const i = this.#instance(input['InstanceId'] as string);
      const id = `ami-${(++this.#seq).toString(16).padStart(17, '0')}`;
      const snap = `snap-${(++this.#seq).toString(16).padStart(17, '0')}`;
      this.snapshots.set(snap, { id: snap, volumeId: i.volumes[0]!.volumeId, sizeGiB: i.volumes[0]!.sizeGiB, started: new Date(this.#now()), readyAt: this.#now(), tags: new Map(), failed: false });
      this.images.set(id, {
        ImageId: id, Name: input['Name'] as string, OwnerId: '111122223333', RootDeviceName: i.rootDevice, State: 'pending', CreationDate: new Date(this.#now()).toISOString(),
        BlockDeviceMappings: [{ DeviceName: i.rootDevice, Ebs: { SnapshotId: snap, VolumeSize: i.volumes[0]!.sizeGiB } }],
        tags: tagsOf(input), readyAt: this.#now() + this.#taskMs,
      });
      return { ImageId: id };
    },
    RegisterImage: (input) => {
      const name = input['Name'] as string;
      if ([...this.images.values()].some((i) => i.Name === name && i.OwnerId === '111122223333')) throw ec2Error('InvalidAMIName.Duplicate', `AMI name ${name} is already in use by AMI`);
      const id = `ami-${(++this.#seq).toString(16).padStart(17, '0')}`;
      this.images.set(id, {
        ImageId: id, Name: name, OwnerId: '111122223333', RootDeviceName: input['RootDeviceName'] as string, State: 'available', CreationDate: new Date(this.#now()).toISOString(),
        BlockDeviceMappings: input['BlockDeviceMappings'] as BlockDeviceMapping[], tags: tagsOf(input), readyAt: 0,
      });
      return { ImageId: id };
    },
    DeregisterImage: (input) => {
      this.images.delete(input['ImageId'] as string);
      return {};
    },
    ImportSnapshot: (input) => {
      const token = input['ClientToken'] as string | undefined;
      const known = [...this.imports].find(([, t]) => t.tags.get('client-token') === token);
      if (known) return { ImportTaskId: known[0] };
      const bucket = (input['DiskContainer'] as { UserBucket?: { S3Bucket?: string; S3Key?: string } }).UserBucket;
      if (!bucket?.S3Bucket || !this.s3.objects.has(`${bucket.S3Bucket}/${bucket.S3Key}`)) throw ec2Error('InvalidParameter', 'The service role vmimport cannot access the S3 object (fake: no such object)');
      const id = `import-snap-${(++this.#seq).toString(16).padStart(17, '0')}`;
      const snap = `snap-${(++this.#seq).toString(16).padStart(17, '0')}`;
      this.snapshots.set(snap, { id: snap, volumeId: 'vol-ffffffff', sizeGiB: Math.max(1, Math.ceil((this.s3.objects.get(`${bucket.S3Bucket}/${bucket.S3Key}`)!.length) / 1024 ** 3)), started: new Date(this.#now()), readyAt: this.#now(), tags: new Map(), failed: false });
      this.imports.set(id, { readyAt: this.#now() + this.#taskMs, result: snap, tags: new Map([['client-token', token ?? '']]) });
      return { ImportTaskId: id };
    },
    DescribeImportSnapshotTasks: (input) => ({
      ImportSnapshotTasks: ((input['ImportTaskIds'] as string[] | undefined) ?? []).map((id) => {
        const t = this.imports.get(id);
        const done = t !== undefined && this.#now() >= t.readyAt;
        return { ImportTaskId: id, SnapshotTaskDetail: done ? { Status: 'completed', SnapshotId: t.result, Progress: '100' } : { Status: 'active', Progress: '42', StatusMessage: 'converting' } };
      }),
    }),
    ExportImage: (input) => {
      const image = this.images.get(input['ImageId'] as string);
      if (!image) throw ec2Error('InvalidAMIID.NotFound', `The image id '[${String(input['ImageId'])}]' does not exist`);
      const location = input['S3ExportLocation'] as { S3Bucket: string; S3Prefix: string };
      const id = `export-ami-${(++this.#seq).toString(16).padStart(17, '0')}`;
      this.exports.set(id, { readyAt: this.#now() + this.#taskMs, result: 'completed', tags: new Map(), imageId: image.ImageId!, bucket: location.S3Bucket, prefix: location.S3Prefix });
      return { ExportImageTaskId: id, Status: 'active' };
    },
    DescribeExportImageTasks: (input) => ({
      ExportImageTasks: ((input['ExportImageTaskIds'] as string[] | undefined) ?? []).map((id) => {
        const t = this.exports.get(id);
        const done = t !== undefined && this.#now() >= t.readyAt;
        if (done && !this.s3.objects.has(`${t.bucket}/${t.prefix}${id}.raw`)) {
          // The exported disk: deterministic bytes standing in for the image.
          this.s3.objects.set(`${t.bucket}/${t.prefix}${id}.raw`, Buffer.alloc(3 * 1024 * 1024 + 17, id));
        }
        return { ExportImageTaskId: id, Status: done ? 'completed' : 'active', Progress: done ? '100' : '30' };
      }),
    }),
  };

  // ---- internals -----------------------------------------------------------------------------

  #throttle(api: string): void {
    const kind = MUTATING.has(api) ? 'mutating' : 'describe';
    const b = this.#buckets.get(kind);
    if (!b) return;
    const now = this.#now();
    b.tokens = Math.min(b.bucket.capacity, b.tokens + ((now - b.at) / 1000) * b.bucket.refillPerSec);
    b.at = now;
    if (b.tokens < 1) {
      this.throttled++;
      throw ec2Error('RequestLimitExceeded', 'Request limit exceeded.', 503);
    }
    b.tokens -= 1;
  }

  #page<T>(items: readonly T[], input: Record<string, unknown>): { page: T[]; next: string | undefined } {
    const start = Number(input['NextToken'] ?? 0);
    const size = Math.min(this.#pageSize, (input['MaxResults'] as number | undefined) ?? 1000);
    const page = items.slice(start, start + size);
    return { page, next: start + size < items.length ? String(start + size) : undefined };
  }

  #makeEni(
    base: { subnet: string; zone: string; groups: readonly string[]; tags: Map<string, string> },
    attach?: { instanceId: string; deviceIndex: number; deleteOnTermination: boolean },
  ): FakeNetworkInterface {
    const n = ++this.#eniSeq;
    const id = `eni-${n.toString(16).padStart(17, '0')}`;
    const eni: FakeNetworkInterface = {
      id, subnet: base.subnet, zone: base.zone, groups: [...base.groups], tags: base.tags,
      mac: `0a:00:00:${((n >> 16) & 255).toString(16).padStart(2, '0')}:${((n >> 8) & 255).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`,
      attachment: attach ? { id: `eni-attach-${id.slice(4)}-0`, ...attach, state: 'attached', until: this.#now() } : undefined,
    };
    this.networkInterfaces.set(id, eni);
    this.#index(eni);
    return eni;
  }

  #index(eni: FakeNetworkInterface): void {
    if (!eni.attachment) return;
    const set = this.#attachedTo.get(eni.attachment.instanceId) ?? new Set();
    set.add(eni);
    this.#attachedTo.set(eni.attachment.instanceId, set);
  }

  #unindex(eni: FakeNetworkInterface): void {
    if (eni.attachment) this.#attachedTo.get(eni.attachment.instanceId)?.delete(eni);
  }

  #eni(id: string): FakeNetworkInterface {
    const eni = this.networkInterfaces.get(id);
    if (!eni) throw ec2Error('InvalidNetworkInterfaceID.NotFound', `The networkInterface ID '${id}' does not exist`);
    this.#settleEni(eni);
    return eni;
  }

  #byAttachment(attachmentId: string): FakeNetworkInterface {
    for (const eni of this.networkInterfaces.values()) {
      this.#settleEni(eni);
      if (eni.attachment?.id === attachmentId) return eni;
    }
    throw ec2Error('InvalidAttachmentID.NotFound', `The attachment ID '${attachmentId}' does not exist`);
  }

  /** An attachment settles: attaching → attached; detaching → gone (the ENI is available again). */
  #settleEni(eni: FakeNetworkInterface): void {
    const a = eni.attachment;
    if (!a || this.#now() < a.until) return;
    if (a.state === 'attaching') a.state = 'attached';
    else if (a.state === 'detaching') {
      this.#unindex(eni);
      eni.attachment = undefined;
    }
  }

  /** The ENIs attached (or attaching, or detaching) to an instance, by device index. */
  #enisOf(instanceId: string): FakeNetworkInterface[] {
    return [...(this.#attachedTo.get(instanceId) ?? [])]
      .filter((e) => (this.#settleEni(e), e.attachment?.instanceId === instanceId))
      .sort((a, b) => a.attachment!.deviceIndex - b.attachment!.deviceIndex);
  }

  #eniView(e: FakeNetworkInterface): NetworkInterface {
    this.#settleEni(e);
    const a = e.attachment;
    return {
      NetworkInterfaceId: e.id, SubnetId: e.subnet, AvailabilityZone: e.zone, VpcId: 'vpc-0123456789abcdef0', MacAddress: e.mac, InterfaceType: 'interface',
      Status: !a ? 'available' : a.state === 'attaching' ? 'attaching' : a.state === 'detaching' ? 'detaching' : 'in-use',
      Groups: e.groups.map((GroupId) => ({ GroupId })),
      TagSet: [...e.tags].map(([Key, Value]) => ({ Key, Value })),
      ...(a ? { Attachment: { AttachmentId: a.id, InstanceId: a.instanceId, DeviceIndex: a.deviceIndex, NetworkCardIndex: 0, Status: a.state, DeleteOnTermination: a.deleteOnTermination } } : {}),
    };
  }

  #volume(id: string): { instance: FakeInstance; volume: FakeInstance['volumes'][number] } | undefined {
    for (const instance of this.instances.values()) {
      const volume = instance.volumes.find((v) => v.volumeId === id);
      if (volume) return { instance, volume };
    }
    return undefined;
  }

  #instance(id: string): FakeInstance {
    const i = this.instances.get(id);
    if (!i) throw ec2Error('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);
    return i;
  }

  #transition(input: Record<string, unknown>, change: (i: FakeInstance) => void) {
    const ids = input['InstanceIds'] as string[];
    const missing = ids.filter((id) => !this.instances.has(id));
    if (missing.length > 0) throw ec2Error('InvalidInstanceID.NotFound', `The instance IDs '${missing.join(', ')}' do not exist`);
    const out = ids.map((id) => {
      const i = this.instances.get(id)!;
      this.#settle(i);
      const previous = i.state;
      change(i);
      return { InstanceId: id, PreviousState: { Name: previous, Code: STATE_CODE[previous] }, CurrentState: { Name: i.state, Code: STATE_CODE[i.state] } };
    });
    return { StartingInstances: out, StoppingInstances: out, TerminatingInstances: out };
  }

  #move(i: FakeInstance, now: InstanceStateName, next: InstanceStateName): void {
    i.state = now;
    i.next = next;
    i.until = this.#now() + this.#transitionMs;
    if (next !== 'terminated') i.reason = undefined;
  }

  #settle(i: FakeInstance): void {
    if (i.next && this.#now() >= i.until) {
      i.state = i.next;
      i.next = undefined;
      i.runningSince = i.state === 'running' ? i.until : undefined;
    }
    if (i.state === 'terminated') {
      // Its ENIs go with it where DeleteOnTermination says so; the others are detached.
      for (const eni of this.#enisOf(i.id)) {
        this.#unindex(eni);
        if (eni.attachment!.deleteOnTermination) this.networkInterfaces.delete(eni.id);
        else eni.attachment = undefined;
      }
    }
  }

  /** DescribeInstanceStatus's view: both checks `initializing` for `statusCheckMs` after it runs, then `ok` (or the instance check `impaired`). */
  #statusView(i: FakeInstance) {
    this.#settle(i);
    const check = (status: string, detail: string) => ({ Status: status, Details: [{ Name: 'reachability', Status: detail }] });
    const base = { InstanceId: i.id, AvailabilityZone: i.zone, InstanceState: { Name: i.state, Code: STATE_CODE[i.state] } };
    if (i.state !== 'running' || i.runningSince === undefined) return { ...base, SystemStatus: { Status: 'not-applicable' }, InstanceStatus: { Status: 'not-applicable' } };
    if (this.#now() < i.runningSince + this.#statusCheckMs) return { ...base, SystemStatus: check('initializing', 'initializing'), InstanceStatus: check('initializing', 'initializing') };
    const failing = this.unbootableImages.has(i.imageId);
    return { ...base, SystemStatus: check('ok', 'passed'), InstanceStatus: failing ? { Status: 'impaired', Details: [{ Name: 'reachability', Status: 'failed', ImpairedSince: new Date(i.runningSince + this.#statusCheckMs) }] } : check('ok', 'passed') };
  }

  #view(i: FakeInstance): Instance {
    this.#settle(i);
    return {
      InstanceId: i.id,
      ImageId: i.imageId,
      InstanceType: i.type as Instance['InstanceType'],
      State: { Name: i.state, Code: STATE_CODE[i.state] },
      ...(i.reason && (i.state === 'terminated' || i.state === 'shutting-down') ? { StateReason: i.reason } : {}),
      Placement: { AvailabilityZone: i.zone },
      Tags: [...i.tags].map(([Key, Value]) => ({ Key, Value })),
      LaunchTime: i.launched,
      ...(i.state === 'terminated' ? {} : { PrivateIpAddress: i.ip }),
      ClientToken: i.clientToken ?? '',
      RootDeviceName: i.rootDevice,
      Architecture: 'x86_64',
      BlockDeviceMappings: i.state === 'terminated' ? [] : i.volumes.map((v) => ({ DeviceName: v.device, Ebs: { VolumeId: v.volumeId, Status: 'attached', DeleteOnTermination: true } })),
      ...(i.state === 'terminated' ? {} : { SecurityGroups: (this.#enisOf(i.id)[0]?.groups ?? []).map((GroupId) => ({ GroupId, GroupName: GroupId })) }),
      NetworkInterfaces: i.state === 'terminated' ? [] : this.#enisOf(i.id).map((e) => {
        const a = e.attachment!;
        return {
          NetworkInterfaceId: e.id, SubnetId: e.subnet, MacAddress: e.mac, Status: this.#eniView(e).Status, Groups: e.groups.map((GroupId) => ({ GroupId, GroupName: GroupId })),
          Attachment: { AttachmentId: a.id, DeviceIndex: a.deviceIndex, NetworkCardIndex: 0, Status: a.state, DeleteOnTermination: a.deleteOnTermination },
        };
      }),
    };
  }

  #snapshotView(s: FakeSnapshot): Snapshot {
    const done = this.#now() >= s.readyAt;
    return {
      SnapshotId: s.id,
      VolumeId: s.volumeId,
      VolumeSize: s.sizeGiB,
      StartTime: s.started,
      State: s.failed ? 'error' : done ? 'completed' : 'pending',
      Progress: done ? '100%' : '50%',
      OwnerId: '111122223333',
      Tags: [...s.tags].map(([Key, Value]) => ({ Key, Value })),
    };
  }

  #imageView(i: Image & { tags: Map<string, string>; readyAt: number }): Image {
    const { tags, readyAt, ...image } = i;
    return { ...image, State: image.State === 'pending' && this.#now() >= readyAt ? 'available' : image.State, Tags: [...tags].map(([Key, Value]) => ({ Key, Value })) };
  }
}

/** In-memory S3 for the calls image import and export make. */
export class FakeS3 {
  readonly objects = new Map<string, Buffer>();
  readonly #uploads = new Map<string, Map<number, Buffer>>();
  #seq = 0;

  readonly handlers: Record<string, Handler> = {
    HeadObject: (input) => {
      const body = this.objects.get(`${String(input['Bucket'])}/${String(input['Key'])}`);
      if (!body) throw s3Error('NotFound', 'Not Found', 404);
      return { ContentLength: body.length, ETag: `"${md5(body)}"` };
    },
    CreateMultipartUpload: () => {
      const id = `upload-${++this.#seq}`;
      this.#uploads.set(id, new Map());
      return { UploadId: id };
    },
    UploadPart: (input) => {
      const parts = this.#uploads.get(input['UploadId'] as string);
      if (!parts) throw s3Error('NoSuchUpload', 'The specified upload does not exist.', 404);
      const body = Buffer.from(input['Body'] as Uint8Array);
      parts.set(input['PartNumber'] as number, body);
      return { ETag: `"${md5(body)}"` };
    },
    CompleteMultipartUpload: (input) => {
      const parts = this.#uploads.get(input['UploadId'] as string);
      if (!parts) throw s3Error('NoSuchUpload', 'The specified upload does not exist.', 404);
      const listed = (input['MultipartUpload'] as { Parts: { PartNumber: number }[] }).Parts;
      this.objects.set(`${String(input['Bucket'])}/${String(input['Key'])}`, Buffer.concat(listed.map((p) => parts.get(p.PartNumber)!)));
      this.#uploads.delete(input['UploadId'] as string);
      return {};
    },
    AbortMultipartUpload: (input) => {
      this.#uploads.delete(input['UploadId'] as string);
      return {};
    },
    GetObject: (input) => {
      const body = this.objects.get(`${String(input['Bucket'])}/${String(input['Key'])}`);
      if (!body) throw s3Error('NoSuchKey', 'The specified key does not exist.', 404);
      return { ContentLength: body.length, Body: Readable.from([body]) };
    },
    DeleteObject: (input) => {
      this.objects.delete(`${String(input['Bucket'])}/${String(input['Key'])}`);
      return {};
    },
  };

  get openUploads(): number {
    return this.#uploads.size;
  }
}

function s3Error(code: string, message: string, status: number): S3ServiceException {
  return new S3ServiceException({ name: code, $fault: 'client', $metadata: { httpStatusCode: status }, message });
}

function md5(b: Buffer): string {
  return createHash('md5').update(b).digest('hex');
}

function tagsOf(input: Record<string, unknown>): Map<string, string> {
  const tags = new Map<string, string>();
  for (const spec of (input['TagSpecifications'] as TagSpecification[] | undefined) ?? []) for (const t of spec.Tags ?? []) tags.set(t.Key!, t.Value ?? '');
  return tags;
}

function matchInstance(i: Instance, f: Filter): boolean {
  return matchTagged(i.Tags, f, {
    'instance-id': i.InstanceId,
    'instance-state-name': i.State?.Name,
    'availability-zone': i.Placement?.AvailabilityZone,
    'instance-type': i.InstanceType,
    'client-token': i.ClientToken,
  });
}

/** EC2 filter semantics: `tag:Key` matches tag values, other names the given fields; `*` is a wildcard; values are OR'ed. */
function matchTagged(tags: readonly Tag[] | undefined, f: Filter, fields: Record<string, string | undefined>): boolean {
  const values = f.Values ?? [];
  const actual = f.Name?.startsWith('tag:') ? tags?.find((t) => t.Key === f.Name!.slice(4))?.Value : fields[f.Name ?? ''];
  if (actual === undefined) return false;
  return values.some((v) => (v.includes('*') ? new RegExp(`^${v.split('*').map(escape).join('.*')}$`).test(actual) : v === actual));
}

function escape(s: string): string {
  return s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
}
