import { z } from 'zod';
import { labels, name, overcommit, pricePerHour } from './common.js';
import { duration, size } from './units.js';

/**
 * Typed configuration of each provider kind. The shapes live in the core (they are data,
 * no SDKs), so a fleet file is validated in full before any provider package is loaded,
 * and the JSON Schema for editors covers every kind.
 */

const simHost = z.strictObject({
  name: name('host', 63),
  zone: z.string().min(1).default('zone-a'),
  region: z.string().min(1).optional(),
  cpu: z.number().int().min(1).max(4096),
  memory: size('MiB', 64, 64 * 1024 ** 2),
  disk: size('GiB', 1, 1024 ** 2).default(1024),
  gpu: z.number().int().min(0).max(64).default(0),
  labels: labels.default({}),
  pricePerHour: pricePerHour.default(0),
  overcommit: overcommit.optional(),
});

const simGenerate = z.strictObject({
  count: z.number().int().min(1).max(100_000),
  zones: z.array(z.string().min(1)).min(1).default(['zone-a']),
  cpu: z.number().int().min(1).max(4096),
  memory: size('MiB', 64, 64 * 1024 ** 2),
  disk: size('GiB', 1, 1024 ** 2).default(1024),
  pricePerHour: pricePerHour.default(0),
  labels: labels.default({}),
  prefix: name('host prefix', 40).default('host'),
});

const operationLatencies = z.strictObject({
  create: duration(600_000).optional(),
  start: duration(600_000).optional(),
  stop: duration(600_000).optional(),
  delete: duration(600_000).optional(),
  resize: duration(600_000).optional(),
  list: duration(600_000).optional(),
  inventory: duration(600_000).optional(),
  snapshot: duration(600_000).optional(),
  migrate: duration(600_000).optional(),
});

export const simProviderConfig = z.strictObject({
  type: z.literal('sim'),
  /** The datacenter to build the first time the state directory is empty. */
  hosts: z.array(simHost).default([]),
  generate: simGenerate.optional(),
  overcommit: overcommit.default({ cpu: 4, memory: 1, disk: 1 }),
  latency: operationLatencies.default({}),
  /** The network between hosts, for migrations. */
  link: z
    .strictObject({
      bandwidthMbps: z.number().min(1).max(400_000).default(10_000),
      /** What one TCP stream manages (CPU-bound); multifd spreads over several. */
      perConnectionMbps: z.number().min(1).max(400_000).optional(),
    })
    .default({ bandwidthMbps: 10_000 }),
  /** Simulated milliseconds per real millisecond for long operations (migrations). */
  timeScale: z.number().min(1).max(1e9).default(1000),
  /** Defaults to NOVACRON_STATE_DIR, else `.novacron/` in the working directory. */
  stateDir: z.string().min(1).optional(),
  images: z.array(z.string().min(1)).optional(),
  /** Networks VMs' NICs may attach to; NICs on any network when absent. VMs without declared NICs get one on `default`. */
  networks: z.array(z.string().min(1)).min(1).optional(),
});

const sshAuth = z.strictObject({
  /** Login user. @default root */
  user: z.string().min(1).optional(),
  /** @default 22 */
  port: z.number().int().min(1).max(65535).optional(),
  /** Private key file (OpenSSH or PEM format, unencrypted); `~/` is the user's home. */
  identityFile: z.string().min(1).optional(),
  /** Use an SSH agent: `true` for $SSH_AUTH_SOCK, or the agent socket's path. */
  agent: z.union([z.boolean(), z.string().min(1)]).optional(),
  /** Read from this environment variable, never written in the fleet file. */
  passwordEnv: z.string().min(1).optional(),
  /** known_hosts file to verify host keys against (plain or hashed entries). @default ~/.ssh/known_hosts */
  knownHosts: z.string().min(1).optional(),
  /** `yes` refuses unknown and changed host keys; `accept-new` trusts a host the first time only. @default yes */
  strictHostKeyChecking: z.enum(['yes', 'accept-new']).optional(),
  /** @default 15s */
  keepaliveInterval: duration(3_600_000).optional(),
  /** Time to open the TCP connection and finish the SSH handshake. @default 10s */
  connectTimeout: duration(600_000).optional(),
  /** Reach the host through this one (`[user@]host[:port]`), which uses the same keys and known_hosts. */
  jumpHost: z.string().regex(/^(?:[A-Za-z0-9._-]+@)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::\d{1,5})?$/, 'write the jump host as [user@]host[:port]').optional(),
  /** Channels one connection runs at once (sshd's MaxSessions is 10); more wait their turn. @default 8 */
  maxChannels: z.number().int().min(1).max(64).optional(),
  /**
   * The OpenSSH client config to read, as `ssh` does: a host's `address` may be a `Host`
   * alias, and `HostName`, `User`, `Port`, `IdentityFile`, `IdentityAgent`, `ProxyJump`,
   * `UserKnownHostsFile`, `StrictHostKeyChecking`, `ConnectTimeout`, `ServerAliveInterval`
   * fill what the fleet does not set. `false` ignores it. @default ~/.ssh/config (when it exists)
   */
  config: z.union([z.string().min(1), z.literal(false)]).optional(),
  /**
   * Forward the agent to the hosts, so one host can copy an image to another over SSH with
   * your key (as `ssh -A`). Off unless set; the hosts' own keys are used otherwise.
   */
  forwardAgent: z.boolean().optional(),
});

const kvmHost = z.strictObject({
  name: name('host', 63),
  address: z.string().min(1),
  zone: z.string().min(1).default('default'),
  region: z.string().min(1).optional(),
  labels: labels.default({}),
  pricePerHour: pricePerHour.default(0),
  overcommit: overcommit.optional(),
  pool: z.string().min(1).optional(),
  network: z.string().min(1).optional(),
  /** Overrides the provider's `ssh` settings for this host, key by key. */
  ssh: sshAuth.optional(),
  /** Overrides the provider's `backupDir` on this host. */
  backupDir: z.string().regex(/^\/[A-Za-z0-9._+@=-]+(?:\/[A-Za-z0-9._+@=-]+)*$/, 'an absolute path of letters, digits and ._+@=-').optional(),
});

const kvmImage = z.strictObject({
  /** A volume already in the host's pool to back new disks (copy-on-write). */
  volume: z.string().min(1).optional(),
  /** Or a URL the hosts fetch it from once, checked against the checksum. */
  url: z.string().min(1).optional(),
  checksum: z.string().regex(/^sha256:[0-9a-f]{64}$/).optional(),
  format: z.enum(['qcow2', 'raw']).default('qcow2'),
  /** Direct kernel boot (tiny guests, the testbed): absolute paths on every host. */
  kernel: z.string().min(1).optional(),
  initrd: z.string().min(1).optional(),
  /** Kernel command line, as given. */
  cmdline: z.string().optional(),
  /**
   * A regular expression the guest prints on its serial console when it is up, which a
   * restore test that boots the restored VM waits for. Default: NovaCron's test guest
   * marker, a `login:` prompt, or cloud-init's "finished" line.
   */
  readyMarker: z.string().min(1).optional(),
  /** `cow`: new disks are qcow2 overlays on the cached base (instant). `full`: an independent copy made on the host. @default cow */
  clone: z.enum(['cow', 'full']).default('cow'),
});

export const kvmProviderConfig = z.strictObject({
  type: z.literal('kvm'),
  hosts: z.array(kvmHost).min(1),
  ssh: sshAuth.default({}),
  pool: z.string().min(1).default('default'),
  network: z.string().min(1).default('default'),
  /** `kvm` when the hosts offer hardware virtualisation, `qemu` for software emulation. */
  domainType: z.enum(['kvm', 'qemu']).default('kvm'),
  overcommit: overcommit.default({ cpu: 4, memory: 1, disk: 1 }),
  images: z.record(z.string().min(1), kvmImage).default({}),
  /** How long `stop` waits for the guest to power off after the ACPI power button before it forces it off. */
  stopTimeout: duration(3_600_000).default(60_000),
  /**
   * The backup folder on each host (per host: `hosts[].backupDir`): backups of a VM land in
   * `<backupDir>/<vm>/<snapshot id>/` on the host a snapshot policy's `target` names, or on the
   * VM's own host.
   */
  backupDir: z.string().regex(/^\/[A-Za-z0-9._+@=-]+(?:\/[A-Za-z0-9._+@=-]+)*$/, 'an absolute path of letters, digits and ._+@=-').default('/var/lib/novacron/backups'),
  /** How long a restore test waits for a restored VM to boot to its `readyMarker`. */
  bootTimeout: duration(3_600_000).default(300_000),
  /** Where exported disk images are written on this machine. Defaults to the system temp directory. */
  imageDir: z.string().min(1).optional(),
  /**
   * Ceilings for live resizing. VMs are defined with these maxima (at least their own size),
   * so vCPUs can be added and memory ballooned up to them without a reboot. Unset: resizing
   * cpu or memory needs a reboot.
   */
  hotplug: z
    .strictObject({
      cpu: z.number().int().min(1).max(1024).optional(),
      memory: size('MiB', 16, 16 * 1024 ** 2).optional(),
    })
    .optional(),
  /** Where VM addresses come from, each source bounded in time: no list or apply waits longer on a guest without an agent or a lease. */
  addresses: z
    .strictObject({
      /** Asked in one round trip per host; every address found is reported with its source. @default [lease, agent, arp] */
      sources: z.array(z.enum(['lease', 'agent', 'arp'])).min(1).default(['lease', 'agent', 'arp']),
      /** How long one source may take to answer (a guest agent can hang). @default 3s */
      sourceTimeout: duration(60_000).default(3_000),
      /** How long create waits for a new VM's first address; 0 does not wait (addresses show up in status later). @default 0 */
      waitOnCreate: duration(600_000).default(0),
    })
    .default({ sources: ['lease', 'agent', 'arp'], sourceTimeout: 3_000, waitOnCreate: 0 }),
  /** Work queued per host and per storage pool in this process; the hosts also lock the critical sections against other processes. */
  queues: z
    .strictObject({
      /** Creates, deletes and resizes running at once on one host. @default 4 */
      perHost: z.number().int().min(1).max(64).default(4),
      /** Disk-heavy work (image fetches and copies, full clones) running at once on one storage pool. @default 2 */
      perPool: z.number().int().min(1).max(64).default(2),
    })
    .default({ perHost: 4, perPool: 2 }),
  /**
   * The folder on each host for NovaCron's locks and name claims, shared by every process
   * that manages the host. @default /var/lib/libvirt/novacron for root, else $XDG_RUNTIME_DIR/novacron or /tmp/novacron-UID
   */
  lockDir: z.string().regex(/^\/[A-Za-z0-9._+@=-]+(?:\/[A-Za-z0-9._+@=-]+)*$/, 'an absolute path of letters, digits and ._+@=-').optional(),
});

export const awsProviderConfig = z.strictObject({
  type: z.literal('aws'),
  region: z.string().min(1),
  zones: z.array(z.string().min(1)).optional(),
  endpoint: z.string().url().optional(),
  profile: z.string().min(1).optional(),
  subnetIds: z.record(z.string(), z.string()).optional(),
  securityGroupIds: z.array(z.string().min(1)).optional(),
  keyName: z.string().min(1).optional(),
  instanceTypes: z.array(z.string().min(1)).optional(),
  images: z.record(z.string().min(1), z.string().min(1)).default({}),
  labels: labels.default({}),
  /** Root volume type. */
  diskType: z.enum(['gp3', 'gp2', 'io1', 'io2', 'st1', 'sc1', 'standard']).default('gp3'),
  /**
   * Attempts per API call inside the AWS SDK. 1 leaves every retry to the core's retry
   * middleware (backoff with jitter, abort, retry events), so retries are never multiplied.
   */
  sdkMaxAttempts: z.number().int().min(1).max(10).default(1),
  /** How long to wait for an instance, snapshot or image to reach the state an operation needs. */
  waitTimeout: duration(24 * 3_600_000).default(600_000),
  /** Other instance types tried in the same zone when one is short of capacity (0 turns the fallback off). */
  capacityFallbacks: z.number().int().min(0).max(10).default(2),
  /** S3 bucket (and key prefix) that image imports and exports pass through. */
  imageBucket: z.string().min(3).max(63).optional(),
  imagePrefix: z.string().default('novacron/images/'),
  /** The IAM service role VM Import/Export assumes to read and write the bucket. */
  importRole: z.string().min(1).default('vmimport'),
  s3Endpoint: z.string().url().optional(),
  /** Where exported images are written locally. Defaults to the system temp directory. */
  imageDir: z.string().min(1).optional(),
});

export const gcpProviderConfig = z.strictObject({
  type: z.literal('gcp'),
  project: z.string().min(1),
  region: z.string().min(1).optional(),
  zones: z.array(z.string().min(1)).min(1),
  endpoint: z.string().min(1).optional(),
  network: z.string().min(1).optional(),
  machineTypes: z.array(z.string().min(1)).optional(),
  images: z.record(z.string().min(1), z.string().min(1)).default({}),
  labels: labels.default({}),
  subnetwork: z.string().min(1).optional(),
  /** Boot disk type. */
  diskType: z.enum(['pd-balanced', 'pd-ssd', 'pd-standard', 'hyperdisk-balanced']).default('pd-balanced'),
  /** How long to wait for a zone or global operation to finish. */
  waitTimeout: duration(24 * 3_600_000).default(600_000),
  /** Other machine types tried in the same zone when one is short of capacity (0 turns the fallback off). */
  capacityFallbacks: z.number().int().min(0).max(10).default(2),
  /** Cloud Storage bucket (and object prefix) that image imports pass through. */
  imageBucket: z.string().min(3).max(222).optional(),
  imagePrefix: z.string().default('novacron/images/'),
});

export const providerConfig = z.discriminatedUnion('type', [
  simProviderConfig,
  kvmProviderConfig,
  awsProviderConfig,
  gcpProviderConfig,
]);

export type SimProviderConfig = z.infer<typeof simProviderConfig>;
export type KvmProviderConfig = z.infer<typeof kvmProviderConfig>;
export type AwsProviderConfig = z.infer<typeof awsProviderConfig>;
export type GcpProviderConfig = z.infer<typeof gcpProviderConfig>;
export type ProviderConfig = z.infer<typeof providerConfig>;
export type ProviderKind = ProviderConfig['type'];
export const PROVIDER_KINDS = ['sim', 'kvm', 'aws', 'gcp'] as const satisfies readonly ProviderKind[];
