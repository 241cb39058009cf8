import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { CRC32C } from '@google-cloud/storage';
import { OAuth2Client } from 'google-auth-library';
import { GCE_CATALOG } from '../catalog/generated/gceCatalog.js';

/**
 * A local fake of the Compute Engine REST endpoints NovaCron uses (and the two Cloud
 * Storage upload endpoints image imports use), served over HTTP on 127.0.0.1 so the real
 * `@google-cloud/compute` client sends it real requests: URLs, query strings, JSON bodies,
 * bearer tokens, pagination, request ids and operation polling are all exercised.
 *
 *     const fake = await FakeCompute.start({ project: 'p', zones: ['us-central1-a'] });
 *     new GcpProvider({ name: 'gcp', config: { …, endpoint: fake.endpoint }, authClient: fake.authClient() });
 *
 * What it models: instances move PROVISIONING → RUNNING when their insert operation is done,
 * and operations are done after `opPolls` polls (get or wait) each; a request id replays its
 * operation; names are unique per zone (409); labels must be valid GCE labels; a zone/type
 * can be out of capacity (the insert operation then finishes with ZONE_RESOURCE_POOL_EXHAUSTED
 * and the instance is gone); faults and rate limits can be queued; images are made only from
 * gzipped tarballs holding `disk.raw`.
 */
export interface FakeComputeOptions {
  readonly project?: string;
  readonly zones?: readonly string[];
  /** Machine types per zone. @default every catalog type plus a few the catalog lacks */
  readonly machineTypes?: Readonly<Record<string, readonly string[]>>;
  /** Largest page a list returns, whatever maxResults asks. @default 500 */
  readonly pageSize?: number;
  /** Polls (get or wait) before an operation is done. @default 1 */
  readonly opPolls?: number;
  /** The bearer token requests must carry. @default 'fake-token' */
  readonly token?: string;
}

type Json = Record<string, unknown>;

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly body: Json | undefined;
}

interface Fault {
  readonly method?: string;
  readonly path?: RegExp;
  readonly status: number;
  readonly body: Json;
  times: number;
}

interface FakeOperation {
  readonly op: Json;
  polls: number;
  /** Runs when the operation finishes; returns an error to finish with, if any. */
  readonly effect: () => { code: string; message: string; status: number } | undefined;
}

const LABEL_KEY = /^[a-z][a-z0-9_-]{0,62}$/;
const LABEL_VALUE = /^[a-z0-9_-]{0,63}$/;
const EXTRA_TYPES = ['c3-standard-4', 'n1-standard-1', 'f1-micro'];

export class FakeCompute {
  readonly project: string;
  readonly zones: readonly string[];
  readonly token: string;
  readonly instances = new Map<string, Json>();
  readonly disks = new Map<string, Json>();
  readonly snapshots = new Map<string, Json>();
  readonly images = new Map<string, Json>();
  readonly objects = new Map<string, { body: Buffer; metadata: Json }>();
  readonly operations = new Map<string, FakeOperation>();
  readonly requests: RecordedRequest[] = [];
  /** `zone/machineType` pairs with no capacity. */
  readonly noCapacity = new Set<string>();
  readonly #requestIds = new Map<string, string>();
  readonly #uploads = new Map<string, { bucket: string; name: string; metadata: Json }>();
  readonly #faults: Fault[] = [];
  readonly #machineTypes: Readonly<Record<string, readonly string[]>>;
  readonly #pageSize: number;
  readonly #opPolls: number;
  #server: Server | undefined;
  #port = 0;
  #seq = 1000;
  #rateLimited = 0;

  private constructor(options: FakeComputeOptions) {
    this.project = options.project ?? 'novacron-test';
    this.zones = options.zones ?? ['us-central1-a', 'us-central1-b'];
    this.token = options.token ?? 'fake-token';
    const all = [...GCE_CATALOG.types.map((t) => t.name), ...EXTRA_TYPES];
    this.#machineTypes = options.machineTypes ?? Object.fromEntries(this.zones.map((z) => [z, all]));
    this.#pageSize = options.pageSize ?? 500;
    this.#opPolls = options.opPolls ?? 1;
    this.images.set('debian-12', { name: 'debian-12', id: '1', status: 'READY', selfLink: `projects/debian-cloud/global/images/debian-12`, diskSizeGb: '10', labels: {} });
  }

  static async start(options: FakeComputeOptions = {}): Promise<FakeCompute> {
    const fake = new FakeCompute(options);
    fake.#server = createServer((req, res) => void fake.#serve(req, res));
    await new Promise<void>((resolve) => fake.#server!.listen(0, '127.0.0.1', resolve));
    fake.#port = (fake.#server.address() as AddressInfo).port;
    return fake;
  }

  get port(): number {
    return this.#port;
  }

  /** For the provider config's `endpoint`. */
  get endpoint(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** An OAuth2Client holding the token this fake accepts (no Google sign-in involved). */
  authClient(token = this.token): OAuth2Client {
    const client = new OAuth2Client();
    client.setCredentials({ access_token: token, expiry_date: Date.now() + 3_600_000 });
    return client;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
    this.#server?.closeAllConnections();
  }

  /** Queues an error answer for the next matching requests. */
  fail(match: { method?: string; path?: RegExp }, status: number, body: Json, times = 1): this {
    this.#faults.push({ ...match, status, body, times });
    return this;
  }

  /** The next `n` Compute Engine requests are refused with 429 rateLimitExceeded, as the API does. */
  rateLimit(n: number): this {
    this.#rateLimited += n;
    return this;
  }

  /** Requests matching a method and path pattern, for assertions. */
  calls(method: string, path: RegExp): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method && path.test(r.path));
  }

  /**
   * An instance made outside NovaCron (by hand, by another tool), RUNNING at once unless
   * told otherwise, with a boot disk of its own name made from `sourceImage`: what
   * `listUnowned` finds.
   */
  addInstance(zone: string, name: string, options: { readonly machineType?: string; readonly diskGb?: number; readonly sourceImage?: string; readonly labels?: Record<string, string>; readonly status?: string; readonly metadata?: readonly Json[] } = {}): Json {
    const n = ++this.#seq;
    const labels = checkLabels(options.labels ?? {});
    const disk = this.#disk(zone, name, options.diskGb ?? 10, {}, options.sourceImage);
    const items = [...(options.metadata ?? [])];
    const instance: Json = {
      kind: 'compute#instance', id: String(7_000_000_000_000 + n), creationTimestamp: new Date().toISOString(), name,
      machineType: machineType(zone, options.machineType ?? 'e2-standard-2', this.project)['selfLink'], status: options.status ?? 'RUNNING',
      zone: `https://www.googleapis.com/compute/v1/projects/${this.project}/zones/${zone}`,
      networkInterfaces: [{ name: 'nic0', network: 'global/networks/default', networkIP: `10.128.${(n >> 8) & 255}.${n & 255}` }],
      disks: [{ boot: true, autoDelete: true, deviceName: 'persistent-disk-0', index: 0, source: disk['selfLink'], diskSizeGb: String(options.diskGb ?? 10), type: 'PERSISTENT', mode: 'READ_WRITE' }],
      metadata: { kind: 'compute#metadata', items, fingerprint: fingerprint(items) },
      labels, labelFingerprint: fingerprint(labels),
      scheduling: { onHostMaintenance: 'MIGRATE', automaticRestart: true },
      selfLink: `https://www.googleapis.com/compute/v1/projects/${this.project}/zones/${zone}/instances/${name}`,
    };
    this.instances.set(`${zone}/${name}`, instance);
    return instance;
  }

  instance(zone: string, name: string): Json | undefined {
    return this.instances.get(`${zone}/${name}`);
  }

  // ---- HTTP ----------------------------------------------------------------------------------

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const query = Object.fromEntries(url.searchParams);
    const method = req.method ?? 'GET';
    let body: Json | undefined;
    if (raw.length > 0 && (req.headers['content-type'] ?? '').includes('json')) {
      try {
        body = JSON.parse(raw.toString('utf8')) as Json;
      } catch {
        return this.#send(res, 400, apiError(400, 'Invalid JSON payload received.', 'parseError', 'INVALID_ARGUMENT'));
      }
    }
    this.requests.push({ method, path: url.pathname, query, body });
    try {
      if (url.pathname.startsWith('/upload/storage/') || url.pathname.startsWith('/storage/')) return this.#storage(req, res, method, url, query, raw);
      if (req.headers.authorization !== `Bearer ${this.token}`) {
        return this.#send(res, 401, apiError(401, 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.', 'authError', 'UNAUTHENTICATED'));
      }
      if (this.#rateLimited > 0) {
        this.#rateLimited--;
        return this.#send(res, 429, apiError(429, "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'compute.googleapis.com'.", 'rateLimitExceeded', 'RESOURCE_EXHAUSTED', 'usageLimits'));
      }
      const fault = this.#faults.find((f) => f.times > 0 && (!f.method || f.method === method) && (!f.path || f.path.test(url.pathname)));
      if (fault) {
        fault.times--;
        return this.#send(res, fault.status, fault.body);
      }
      const prefix = `/compute/v1/projects/${this.project}/`;
      if (!url.pathname.startsWith(prefix)) return this.#send(res, 404, apiError(404, `The resource '${url.pathname}' was not found`, 'notFound', 'NOT_FOUND'));
      const [status, out] = this.#compute(method, url.pathname.slice(prefix.length).split('/'), query, body ?? {});
      return this.#send(res, status, out);
    } catch (error) {
      if (error instanceof HttpError) return this.#send(res, error.status, error.body);
      return this.#send(res, 500, apiError(500, String(error), 'backendError', 'INTERNAL'));
    }
  }

  #send(res: ServerResponse, status: number, body: Json): void {
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
    res.end(JSON.stringify(body));
  }

  #compute(method: string, path: string[], query: Record<string, string>, body: Json): [number, Json] {
    const [scope, a, kind, name, action] = path;
    const route = `${method} ${scope}${kind !== undefined ? `/${kind}` : ''}${name !== undefined ? '/:name' : ''}${action !== undefined ? `/${action}` : ''}`;
    if (scope === 'zones' && a === undefined && method === 'GET') return [200, this.#page('compute#zoneList', this.zones.map((z) => this.#zone(z)), query)];
    if (scope === 'zones' && kind === undefined && method === 'GET') {
      if (!this.zones.includes(a!)) throw notFound(`projects/${this.project}/zones/${a}`);
      return [200, this.#zone(a!)];
    }
    if (scope === 'aggregated' && a === 'instances') {
      const items = [...this.instances.values()].filter((i) => matches(query['filter'], i));
      const { page, next } = paginate(items, query, this.#pageSize);
      const grouped: Json = {};
      for (const z of this.zones) {
        const here = page.filter((i) => String(i['zone']).endsWith(`/${z}`));
        grouped[`zones/${z}`] = here.length > 0 ? { instances: here } : { warning: { code: 'NO_RESULTS_ON_PAGE', message: 'There are no results for scope' } };
      }
      return [200, { kind: 'compute#instanceAggregatedList', items: grouped, ...(next ? { nextPageToken: next } : {}) }];
    }
    if (scope === 'global') return this.#global(method, a!, kind, name, query, body);
    if (scope !== 'zones' || !this.zones.includes(a!)) throw notFound(`projects/${this.project}/${path.join('/')}`);
    const zone = a!;
    switch (route) {
      case 'GET zones/machineTypes': {
        const types = (this.#machineTypes[zone] ?? []).map((t) => machineType(zone, t, this.project));
        return [200, this.#page('compute#machineTypeList', types, query)];
      }
      case 'GET zones/instances':
        return [200, this.#page('compute#instanceList', [...this.instances.values()].filter((i) => String(i['zone']).endsWith(`/${zone}`) && matches(query['filter'], i)), query)];
      case 'POST zones/instances':
        return this.#idempotent(query, () => this.#insertInstance(zone, body));
      case 'GET zones/instances/:name':
        return [200, this.#instanceOr404(zone, name!)];
      case 'DELETE zones/instances/:name':
        return this.#idempotent(query, () => {
          const i = this.#instanceOr404(zone, name!);
          i['status'] = 'STOPPING';
          return this.#operation('delete', zone, `zones/${zone}/instances/${name}`, () => {
            this.instances.delete(`${zone}/${name}`);
            for (const d of (i['disks'] as Json[]) ?? []) if (d['autoDelete']) this.disks.delete(`${zone}/${last(String(d['source']))}`);
            return undefined;
          });
        });
      case 'POST zones/instances/:name/start':
      case 'POST zones/instances/:name/resume':
        return this.#idempotent(query, () => {
          const i = this.#instanceOr404(zone, name!);
          if (i['status'] === 'RUNNING') return this.#operation(action!, zone, `zones/${zone}/instances/${name}`, () => undefined);
          if (i['status'] !== 'TERMINATED' && i['status'] !== 'SUSPENDED') throw new HttpError(400, apiError(400, `The instance '${name}' is not ready: ${String(i['status'])}`, 'resourceNotReady', 'FAILED_PRECONDITION'));
          i['status'] = 'STAGING';
          return this.#operation(action!, zone, `zones/${zone}/instances/${name}`, () => {
            if (this.noCapacity.has(`${zone}/${last(String(i['machineType']))}`)) {
              i['status'] = 'TERMINATED';
              return { code: 'ZONE_RESOURCE_POOL_EXHAUSTED', message: `The zone 'projects/${this.project}/zones/${zone}' does not have enough resources available to fulfill the request.  Try a different zone, or try again later.`, status: 503 };
            }
            i['status'] = 'RUNNING';
            i['lastStartTimestamp'] = new Date().toISOString();
            return undefined;
          });
        });
      case 'POST zones/instances/:name/stop':
        return this.#idempotent(query, () => {
          const i = this.#instanceOr404(zone, name!);
          if (i['status'] === 'TERMINATED') return this.#operation('stop', zone, `zones/${zone}/instances/${name}`, () => undefined);
          i['status'] = 'STOPPING';
          return this.#operation('stop', zone, `zones/${zone}/instances/${name}`, () => {
            i['status'] = 'TERMINATED';
            i['lastStopTimestamp'] = new Date().toISOString();
            return undefined;
          });
        });
      case 'POST zones/instances/:name/setMachineType':
        return this.#idempotent(query, () => {
          const i = this.#instanceOr404(zone, name!);
          if (i['status'] !== 'TERMINATED') throw new HttpError(400, apiError(400, `The resource 'projects/${this.project}/zones/${zone}/instances/${name}' is not ready`, 'resourceNotReady', 'FAILED_PRECONDITION'));
          const type = last(String(body['machineType']));
          this.#checkType(zone, type);
          return this.#operation('setMachineType', zone, `zones/${zone}/instances/${name}`, () => {
            i['machineType'] = machineType(zone, type, this.project)['selfLink'];
            return undefined;
          });
        });
      case 'POST zones/instances/:name/setLabels':
        return this.#idempotent(query, () => {
          const i = this.#instanceOr404(zone, name!);
          if (body['labelFingerprint'] !== i['labelFingerprint']) throw new HttpError(412, apiError(412, 'Labels fingerprint either invalid or resource labels have changed', 'conditionNotMet', 'FAILED_PRECONDITION'));
          const labels = checkLabels((body['labels'] as Record<string, string>) ?? {});
          return this.#operation('setLabels', zone, `zones/${zone}/instances/${name}`, () => {
            i['labels'] = labels;
            i['labelFingerprint'] = fingerprint(labels);
            return undefined;
          });
        });
      case 'POST zones/instances/:name/setMetadata':
        return this.#idempotent(query, () => {
          const i = this.#instanceOr404(zone, name!);
          const metadata = i['metadata'] as Json;
          if (body['fingerprint'] !== metadata['fingerprint']) throw new HttpError(412, apiError(412, 'Supplied fingerprint does not match current metadata fingerprint.', 'conditionNotMet', 'FAILED_PRECONDITION'));
          return this.#operation('setMetadata', zone, `zones/${zone}/instances/${name}`, () => {
            i['metadata'] = { kind: 'compute#metadata', items: body['items'] ?? [], fingerprint: fingerprint(body['items']) };
            return undefined;
          });
        });
      case 'POST zones/instances/:name/detachDisk':
        return this.#idempotent(query, () => {
          const i = this.#instanceOr404(zone, name!);
          return this.#operation('detachDisk', zone, `zones/${zone}/instances/${name}`, () => {
            i['disks'] = ((i['disks'] as Json[]) ?? []).filter((d) => d['deviceName'] !== query['deviceName']);
            return undefined;
          });
        });
      case 'POST zones/instances/:name/attachDisk':
        return this.#idempotent(query, () => {
          const i = this.#instanceOr404(zone, name!);
          const disk = this.disks.get(`${zone}/${last(String(body['source']))}`);
          if (!disk) throw notFound(String(body['source']));
          return this.#operation('attachDisk', zone, `zones/${zone}/instances/${name}`, () => {
            (i['disks'] as Json[]).unshift({ boot: body['boot'] ?? false, autoDelete: body['autoDelete'] ?? false, deviceName: body['deviceName'], source: disk['selfLink'], diskSizeGb: disk['sizeGb'], type: 'PERSISTENT', mode: 'READ_WRITE' });
            return undefined;
          });
        });
      case 'POST zones/disks':
        return this.#idempotent(query, () => {
          const diskName = String(body['name']);
          if (this.disks.has(`${zone}/${diskName}`)) throw new HttpError(409, apiError(409, `The resource 'projects/${this.project}/zones/${zone}/disks/${diskName}' already exists`, 'alreadyExists', 'ALREADY_EXISTS'));
          const snap = body['sourceSnapshot'] ? this.snapshots.get(last(String(body['sourceSnapshot']))) : undefined;
          this.#disk(zone, diskName, Number(body['sizeGb'] ?? snap?.['diskSizeGb'] ?? 10), (body['labels'] as Json) ?? {});
          return this.#operation('insert', zone, `zones/${zone}/disks/${diskName}`, () => undefined);
        });
      case 'GET zones/disks/:name': {
        const disk = this.disks.get(`${zone}/${name}`);
        if (!disk) throw notFound(`projects/${this.project}/zones/${zone}/disks/${name}`);
        return [200, disk];
      }
      case 'POST zones/disks/:name/setLabels':
        return this.#idempotent(query, () => {
          const disk = this.disks.get(`${zone}/${name}`);
          if (!disk) throw notFound(`projects/${this.project}/zones/${zone}/disks/${name}`);
          if (body['labelFingerprint'] !== disk['labelFingerprint']) throw new HttpError(412, apiError(412, 'Labels fingerprint either invalid or resource labels have changed', 'conditionNotMet', 'FAILED_PRECONDITION'));
          const labels = checkLabels((body['labels'] as Record<string, string>) ?? {});
          return this.#operation('setLabels', zone, `zones/${zone}/disks/${name}`, () => {
            disk['labels'] = labels;
            disk['labelFingerprint'] = fingerprint(labels);
            return undefined;
          });
        });
      case 'DELETE zones/disks/:name':
        return this.#idempotent(query, () => {
          if (!this.disks.has(`${zone}/${name}`)) throw notFound(`projects/${this.project}/zones/${zone}/disks/${name}`);
          return this.#operation('delete', zone, `zones/${zone}/disks/${name}`, () => {
            this.disks.delete(`${zone}/${name}`);
            return undefined;
          });
        });
      case 'POST zones/disks/:name/resize':
        return this.#idempotent(query, () => {
          const disk = this.disks.get(`${zone}/${name}`);
          if (!disk) throw notFound(`projects/${this.project}/zones/${zone}/disks/${name}`);
          const size = Number(body['sizeGb']);
          if (size < Number(disk['sizeGb'])) throw new HttpError(400, apiError(400, `Requested disk size cannot be smaller than the current size (${String(disk['sizeGb'])} GB).`, 'invalid', 'INVALID_ARGUMENT'));
          return this.#operation('resize', zone, `zones/${zone}/disks/${name}`, () => {
            disk['sizeGb'] = String(size);
            for (const i of this.instances.values()) for (const d of (i['disks'] as Json[]) ?? []) if (d['source'] === disk['selfLink']) d['diskSizeGb'] = String(size);
            return undefined;
          });
        });
      case 'GET zones/operations/:name':
      case 'POST zones/operations/:name/wait':
        return [200, this.#poll(name!)];
      default:
        throw new HttpError(404, apiError(404, `fake: no route ${route}`, 'notFound', 'NOT_FOUND'));
    }
  }

  #global(method: string, kind: string, name: string | undefined, action: string | undefined, query: Record<string, string>, body: Json): [number, Json] {
    if (kind === 'operations' && name) return [200, this.#poll(name)];
    if (kind === 'snapshots') {
      if (method === 'GET' && !name) return [200, this.#page('compute#snapshotList', [...this.snapshots.values()].filter((s) => matches(query['filter'], s)), query)];
      if (method === 'POST' && !name) {
        return this.#idempotent(query, () => {
          const snapName = String(body['name']);
          if (this.snapshots.has(snapName)) throw new HttpError(409, apiError(409, `The resource 'projects/${this.project}/global/snapshots/${snapName}' already exists`, 'alreadyExists', 'ALREADY_EXISTS'));
          const source = last(String(body['sourceDisk']));
          const zone = String(body['sourceDisk']).split('/zones/')[1]?.split('/')[0] ?? '';
          const disk = this.disks.get(`${zone}/${source}`);
          if (!disk) throw notFound(String(body['sourceDisk']));
          const labels = checkLabels((body['labels'] as Record<string, string>) ?? {});
          const snap: Json = {
            kind: 'compute#snapshot', id: String(++this.#seq), name: snapName, status: 'CREATING', sourceDisk: disk['selfLink'], diskSizeGb: disk['sizeGb'],
            storageBytes: String(Number(disk['sizeGb']) * 1024 ** 3 / 4), labels, labelFingerprint: fingerprint(labels), creationTimestamp: new Date().toISOString(),
            storageLocations: ['us'], selfLink: `https://www.googleapis.com/compute/v1/projects/${this.project}/global/snapshots/${snapName}`,
          };
          this.snapshots.set(snapName, snap);
          return this.#operation('insert', undefined, `global/snapshots/${snapName}`, () => {
            snap['status'] = 'READY';
            return undefined;
          });
        });
      }
      const snap = name ? this.snapshots.get(name) : undefined;
      if (!snap) throw notFound(`projects/${this.project}/global/snapshots/${name}`);
      if (method === 'GET') return [200, snap];
      if (method === 'DELETE') {
        return this.#idempotent(query, () =>
          this.#operation('delete', undefined, `global/snapshots/${name}`, () => {
            this.snapshots.delete(name!);
            return undefined;
          }),
        );
      }
      if (method !== 'POST' || action !== 'setLabels') throw notFound(`projects/${this.project}/global/snapshots/${name}/${action}`);
      if (body['labelFingerprint'] !== snap['labelFingerprint']) throw new HttpError(412, apiError(412, 'Labels fingerprint either invalid or resource labels have changed', 'conditionNotMet', 'FAILED_PRECONDITION'));
      const labels = checkLabels((body['labels'] as Record<string, string>) ?? {});
      return this.#idempotent(query, () =>
        this.#operation('setLabels', undefined, `global/snapshots/${name}`, () => {
          snap['labels'] = labels;
          snap['labelFingerprint'] = fingerprint(labels);
          return undefined;
        }),
      );
    }
    if (kind === 'images') {
      if (method === 'GET' && !name) return [200, this.#page('compute#imageList', [...this.images.values()].filter((i) => matches(query['filter'], i)), query)];
      if (method === 'GET') {
        const image = this.images.get(name!);
        if (!image) throw notFound(`projects/${this.project}/global/images/${name}`);
        return [200, image];
      }
      if (method === 'POST') {
        return this.#idempotent(query, () => {
          const imageName = String(body['name']);
          if (this.images.has(imageName)) throw new HttpError(409, apiError(409, `The resource 'projects/${this.project}/global/images/${imageName}' already exists`, 'alreadyExists', 'ALREADY_EXISTS'));
          const source = String((body['rawDisk'] as Json | undefined)?.['source'] ?? '');
          const labels = checkLabels((body['labels'] as Record<string, string>) ?? {});
          const image: Json = { kind: 'compute#image', id: String(++this.#seq), name: imageName, status: 'PENDING', labels, creationTimestamp: new Date().toISOString(), selfLink: `https://www.googleapis.com/compute/v1/projects/${this.project}/global/images/${imageName}` };
          this.images.set(imageName, image);
          return this.#operation('insert', undefined, `global/images/${imageName}`, () => {
            const object = this.objects.get(source.replace('https://storage.googleapis.com/', ''));
            const problem = object ? checkDiskTarball(object.body) : 'the Cloud Storage object does not exist or cannot be read';
            if (problem) {
              this.images.delete(imageName);
              return { code: 'INVALID_IMAGE_FILE', message: `Invalid image file ${source}: ${problem}`, status: 400 };
            }
            image['status'] = 'READY';
            image['diskSizeGb'] = String(Math.max(1, Math.ceil(diskRawSize(object!.body) / 1024 ** 3)));
            return undefined;
          });
        });
      }
    }
    throw new HttpError(404, apiError(404, `fake: no route ${method} global/${kind}`, 'notFound', 'NOT_FOUND'));
  }

  #storage(req: IncomingMessage, res: ServerResponse, method: string, url: URL, query: Record<string, string>, raw: Buffer): void {
    const bucket = url.pathname.split('/b/')[1]?.split('/')[0] ?? '';
    if (method === 'POST' && query['uploadType'] === 'resumable') {
      const id = `up-${++this.#seq}`;
      let metadata: Json;
      try {
        metadata = raw.length ? (JSON.parse(raw.toString('utf8')) as Json) : {};
      } catch {
        metadata = {};
      }
      this.#uploads.set(id, { bucket, name: query['name'] ?? String(metadata['name'] ?? ''), metadata });
      res.writeHead(200, { location: `${this.endpoint}/upload/storage/v1/b/${bucket}/o?uploadType=resumable&upload_id=${id}`, 'content-type': 'application/json' });
      res.end('{}');
      return;
    }
    if (method === 'PUT' && query['upload_id']) {
      const upload = this.#uploads.get(query['upload_id']);
      if (!upload) return this.#send(res, 404, apiError(404, 'No such upload', 'notFound', 'NOT_FOUND'));
      this.#uploads.delete(query['upload_id']);
      this.objects.set(`${upload.bucket}/${upload.name}`, { body: raw, metadata: upload.metadata });
      // The client checks the upload against these checksums, as it does against Cloud Storage's.
      const crc = new CRC32C();
      crc.update(raw);
      return this.#send(res, 200, { kind: 'storage#object', bucket: upload.bucket, name: upload.name, size: String(raw.length), generation: String(++this.#seq), md5Hash: createHash('md5').update(raw).digest('base64'), crc32c: crc.toString(), metadata: upload.metadata['metadata'] ?? {} });
    }
    if (method === 'GET') {
      const name = decodeURIComponent(url.pathname.split('/o/')[1] ?? '');
      const object = this.objects.get(`${bucket}/${name}`);
      if (!object) return this.#send(res, 404, apiError(404, `No such object: ${bucket}/${name}`, 'notFound', 'NOT_FOUND'));
      return this.#send(res, 200, { kind: 'storage#object', bucket, name, size: String(object.body.length), metadata: object.metadata['metadata'] ?? {} });
    }
    if (method === 'DELETE') {
      const name = decodeURIComponent(url.pathname.split('/o/')[1] ?? '');
      if (!this.objects.delete(`${bucket}/${name}`)) return this.#send(res, 404, apiError(404, `No such object: ${bucket}/${name}`, 'notFound', 'NOT_FOUND'));
      res.writeHead(204);
      res.end();
      return;
    }
    void req;
    return this.#send(res, 404, apiError(404, `fake: no storage route ${method} ${url.pathname}`, 'notFound', 'NOT_FOUND'));
  }

  // ---- model ---------------------------------------------------------------------------------

  #zone(z: string): Json {
    return { kind: 'compute#zone', name: z, status: 'UP', region: `https://www.googleapis.com/compute/v1/projects/${this.project}/regions/${z.replace(/-[a-z]$/, '')}`, selfLink: `https://www.googleapis.com/compute/v1/projects/${this.project}/zones/${z}` };
  }

  #checkType(zone: string, type: string): void {
    if (!(this.#machineTypes[zone] ?? []).includes(type)) {
      throw new HttpError(400, apiError(400, `Invalid value for field 'resource.machineType': 'zones/${zone}/machineTypes/${type}'. Machine type with name '${type}' does not exist in zone '${zone}'.`, 'invalid', 'INVALID_ARGUMENT'));
    }
  }

  #insertInstance(zone: string, body: Json): Json {
    const name = String(body['name'] ?? '');
    if (!/^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name)) throw new HttpError(400, apiError(400, `Invalid value for field 'resource.name': '${name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'`, 'invalid', 'INVALID_ARGUMENT'));
    if (this.instances.has(`${zone}/${name}`)) throw new HttpError(409, apiError(409, `The resource 'projects/${this.project}/zones/${zone}/instances/${name}' already exists`, 'alreadyExists', 'ALREADY_EXISTS'));
    const type = last(String(body['machineType']));
    this.#checkType(zone, type);
    const labels = checkLabels((body['labels'] as Record<string, string>) ?? {});
    const bootSpec = ((body['disks'] as Json[]) ?? []).find((d) => d['boot']) ?? {};
    const init = (bootSpec['initializeParams'] as Json) ?? {};
    const sourceImage = init['sourceImage'] ? String(init['sourceImage']) : undefined;
    const sourceSnapshot = init['sourceSnapshot'] ? last(String(init['sourceSnapshot'])) : undefined;
    if (sourceImage && !sourceImage.startsWith('projects/debian-cloud/') && !sourceImage.startsWith('projects/ubuntu-os-cloud/') && !this.images.has(last(sourceImage))) {
      throw new HttpError(400, apiError(400, `Invalid value for field 'resource.disks[0].initializeParams.sourceImage': '${sourceImage}'. The referenced image resource cannot be found.`, 'invalid', 'INVALID_ARGUMENT'));
    }
    if (sourceSnapshot && !this.snapshots.has(sourceSnapshot)) throw notFound(`projects/${this.project}/global/snapshots/${sourceSnapshot}`);
    const size = Number(init['diskSizeGb'] ?? (sourceSnapshot ? this.snapshots.get(sourceSnapshot)!['diskSizeGb'] : 10));
    const disk = this.#disk(zone, name, size, (init['labels'] as Json) ?? {}, sourceImage);
    const n = ++this.#seq;
    const metadataItems = ((body['metadata'] as Json | undefined)?.['items'] as Json[] | undefined) ?? [];
    const instance: Json = {
      kind: 'compute#instance',
      id: String(7_000_000_000_000 + n),
      creationTimestamp: new Date().toISOString(),
      name,
      machineType: machineType(zone, type, this.project)['selfLink'],
      status: 'PROVISIONING',
      zone: `https://www.googleapis.com/compute/v1/projects/${this.project}/zones/${zone}`,
      networkInterfaces: ((body['networkInterfaces'] as Json[]) ?? [{}]).map((nic, i) => ({ ...nic, name: `nic${i}`, networkIP: `10.128.${(n >> 8) & 255}.${n & 255}` })),
      disks: [{ boot: true, autoDelete: bootSpec['autoDelete'] ?? true, deviceName: 'persistent-disk-0', index: 0, source: disk['selfLink'], diskSizeGb: String(size), type: 'PERSISTENT', mode: 'READ_WRITE' }],
      metadata: { kind: 'compute#metadata', items: metadataItems, fingerprint: fingerprint(metadataItems) },
      labels,
      labelFingerprint: fingerprint(labels),
      scheduling: body['scheduling'] ?? { onHostMaintenance: 'MIGRATE', automaticRestart: true },
      selfLink: `https://www.googleapis.com/compute/v1/projects/${this.project}/zones/${zone}/instances/${name}`,
    };
    this.instances.set(`${zone}/${name}`, instance);
    return this.#operation('insert', zone, `zones/${zone}/instances/${name}`, () => {
      if (this.noCapacity.has(`${zone}/${type}`)) {
        this.instances.delete(`${zone}/${name}`);
        this.disks.delete(`${zone}/${name}`);
        return { code: 'ZONE_RESOURCE_POOL_EXHAUSTED', message: `The zone 'projects/${this.project}/zones/${zone}' does not have enough resources available to fulfill the request.  Try a different zone, or try again later.`, status: 503 };
      }
      instance['status'] = 'RUNNING';
      instance['lastStartTimestamp'] = new Date().toISOString();
      return undefined;
    });
  }

  #disk(zone: string, name: string, sizeGb: number, labels: Json, sourceImage?: string): Json {
    const disk: Json = { kind: 'compute#disk', id: String(++this.#seq), name, sizeGb: String(sizeGb), status: 'READY', labels, labelFingerprint: fingerprint(labels), ...(sourceImage ? { sourceImage: `https://www.googleapis.com/compute/v1/${sourceImage.replace(/^https:\/\/www\.googleapis\.com\/compute\/v1\//, '')}` } : {}), zone: `https://www.googleapis.com/compute/v1/projects/${this.project}/zones/${zone}`, selfLink: `https://www.googleapis.com/compute/v1/projects/${this.project}/zones/${zone}/disks/${name}` };
    this.disks.set(`${zone}/${name}`, disk);
    return disk;
  }

  #instanceOr404(zone: string, name: string): Json {
    const i = this.instances.get(`${zone}/${name}`);
    if (!i) throw notFound(`projects/${this.project}/zones/${zone}/instances/${name}`);
    return i;
  }

  /** Answers a mutating call once per request id: a repeat gets the same operation, in its current state. */
  #idempotent(query: Record<string, string>, start: () => Json): [number, Json] {
    const id = query['requestId'];
    if (id) {
      if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id) || /^0{8}-/.test(id)) {
        throw new HttpError(400, apiError(400, `Invalid value for field 'requestId': '${id}'. The request id must be a valid UUID with the exception that zero UUID is not supported (00000000-0000-0000-0000-000000000000).`, 'invalid', 'INVALID_ARGUMENT'));
      }
      const known = this.#requestIds.get(id);
      if (known) return [200, this.operations.get(known)!.op];
    }
    const op = start();
    if (id) this.#requestIds.set(id, String(op['name']));
    return [200, op];
  }

  #operation(type: string, zone: string | undefined, target: string, effect: FakeOperation['effect']): Json {
    const name = `operation-${Date.now()}-${(++this.#seq).toString(16)}`;
    const op: Json = {
      kind: 'compute#operation',
      id: String(this.#seq),
      name,
      operationType: type,
      targetLink: `https://www.googleapis.com/compute/v1/projects/${this.project}/${target}`,
      status: 'RUNNING',
      progress: 0,
      insertTime: new Date().toISOString(),
      user: 'novacron-test@example.iam.gserviceaccount.com',
      ...(zone ? { zone: `https://www.googleapis.com/compute/v1/projects/${this.project}/zones/${zone}` } : {}),
      selfLink: `https://www.googleapis.com/compute/v1/projects/${this.project}/${zone ? `zones/${zone}` : 'global'}/operations/${name}`,
    };
    this.operations.set(name, { op, polls: 0, effect });
    return op;
  }

  #poll(name: string): Json {
    const entry = this.operations.get(name);
    if (!entry) throw notFound(`projects/${this.project}/operations/${name}`);
    if (entry.op['status'] !== 'DONE' && ++entry.polls >= this.#opPolls) {
      const error = entry.effect();
      entry.op['status'] = 'DONE';
      entry.op['progress'] = 100;
      entry.op['endTime'] = new Date().toISOString();
      if (error) {
        entry.op['error'] = { errors: [{ code: error.code, message: error.message }] };
        entry.op['httpErrorStatusCode'] = error.status;
        entry.op['httpErrorMessage'] = error.status === 503 ? 'SERVICE UNAVAILABLE' : 'BAD REQUEST';
      }
    } else if (entry.op['status'] !== 'DONE') {
      entry.op['progress'] = Math.min(90, 100 * (entry.polls / this.#opPolls));
    }
    return entry.op;
  }

  #page(kind: string, items: readonly Json[], query: Record<string, string>): Json {
    const { page, next } = paginate(items, query, this.#pageSize);
    return { kind, items: page, ...(next ? { nextPageToken: next } : {}) };
  }
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: Json,
  ) {
    super(String((body['error'] as Json | undefined)?.['message'] ?? status));
  }
}

/** The error body Google APIs send. */
export function apiError(code: number, message: string, reason: string, status: string, domain = 'global'): Json {
  return { error: { code, message, errors: [{ message, domain, reason }], status } };
}

function notFound(resource: string): HttpError {
  return new HttpError(404, apiError(404, `The resource '${resource}' was not found`, 'notFound', 'NOT_FOUND'));
}

function machineType(zone: string, name: string, project: string): Json {
  const t = GCE_CATALOG.types.find((c) => c.name === name);
  return {
    kind: 'compute#machineType',
    name,
    guestCpus: t ? Math.max(1, Math.ceil(t.cpu)) : 4,
    memoryMb: t?.memoryMiB ?? 16384,
    isSharedCpu: t?.sharedCore ?? false,
    zone,
    selfLink: `https://www.googleapis.com/compute/v1/projects/${project}/zones/${zone}/machineTypes/${name}`,
  };
}

function paginate<T>(items: readonly T[], query: Record<string, string>, cap: number): { page: T[]; next: string | undefined } {
  const start = Number(query['pageToken'] ?? 0);
  const size = Math.min(cap, Number(query['maxResults'] ?? 500));
  return { page: items.slice(start, start + size), next: start + size < items.length ? String(start + size) : undefined };
}

function checkLabels(labels: Record<string, string>): Record<string, string> {
  for (const [k, v] of Object.entries(labels)) {
    if (!LABEL_KEY.test(k) || !LABEL_VALUE.test(v)) {
      throw new HttpError(400, apiError(400, `Invalid value for field 'resource.labels': '${k}=${v}'. Label keys and values must conform to the pattern.`, 'invalid', 'INVALID_ARGUMENT'));
    }
  }
  return { ...labels };
}

function fingerprint(value: unknown): string {
  return createHash('sha1').update(JSON.stringify(value ?? null)).digest('base64').slice(0, 12);
}

function last(url: string): string {
  return url.split('/').at(-1) ?? '';
}

/**
 * The filter forms the provider sends: `labels.key = "value"`, `name = "x"`, terms joined
 * by AND (or juxtaposed in parentheses); `!=` negates.
 */
function matches(filter: string | undefined, resource: Json): boolean {
  if (!filter) return true;
  const terms = filter.split(/\s+AND\s+|\)\s*\(/i).map((t) => t.replace(/^[\s(]+|[\s)]+$/g, '')).filter(Boolean);
  return terms.every((term) => {
    const m = /^([\w.-]+)\s*(!=|=)\s*"?([^"]*)"?$/.exec(term);
    if (!m) throw new HttpError(400, apiError(400, `Invalid list filter expression '${filter}'.`, 'invalid', 'INVALID_ARGUMENT'));
    const [, field, op, value] = m as unknown as [string, string, string, string];
    const actual = field.startsWith('labels.') ? ((resource['labels'] as Record<string, string> | undefined) ?? {})[field.slice(7)] : resource[field];
    const equal = actual !== undefined && String(actual) === value;
    return op === '=' ? equal : !equal;
  });
}

/** Why a tarball is not an importable disk, or undefined when it is (gzip, tar, one `disk.raw`). */
function checkDiskTarball(body: Buffer): string | undefined {
  let tar: Buffer;
  try {
    tar = gunzipSync(body);
  } catch {
    return 'not a gzip file';
  }
  if (tar.length < 1024) return 'too short for a tar archive';
  const name = tar.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
  if (name !== 'disk.raw') return `the archive holds "${name}", not disk.raw`;
  const magic = tar.subarray(257, 263).toString('ascii');
  if (!magic.startsWith('ustar')) return 'not a tar archive';
  return undefined;
}

function diskRawSize(body: Buffer): number {
  const header = gunzipSync(body).subarray(0, 512);
  if (header[124]! & 0x80) {
    let size = 0n;
    for (let i = 125; i < 136; i++) size = (size << 8n) | BigInt(header[i]!);
    return Number(size);
  }
  return Number.parseInt(header.subarray(124, 136).toString('ascii').replace(/\0.*$/s, '').trim(), 8);
}
