/**
 * A NovaCron fleet as a Pulumi program.
 *
 *   pulumi config set target sim            # the simulated datacenter: runs anywhere
 *   pulumi config set target kvm            # or KVM hosts reached over SSH:
 *   pulumi config set --path 'hosts[0]' '{"name":"hv1","address":"10.0.0.11"}'
 *   pulumi config set --secret hostPassword …   # only for hosts that take passwords
 *   pulumi up
 *
 * `inventory` (a JSON file of hosts) places offline instead of asking the providers, for a
 * preview without reaching them.
 */
import { readFileSync } from 'node:fs';
import * as pulumi from '@pulumi/pulumi';
import { KvmHost, SnapshotPolicy, VmFleet, type FleetSpecArgs, type Host } from '@novacron/pulumi';

const config = new pulumi.Config();
const target = config.get('target') ?? 'sim';

// One policy, validated when declared, shared by the groups that use it.
const nightly = new SnapshotPolicy('nightly', {
  schedule: '0 3 * * *',
  timezone: 'Europe/Berlin',
  retention: { keepLast: 3, daily: 7, weekly: 4 },
});

// KVM hosts as resources: their connection settings go into the fleet spec, their password
// (if any) travels as a secret beside it and is read by the provider only when it runs.
const hosts = (config.getObject<{ name: string; address: string; zone?: string }[]>('hosts') ?? []).map(
  (h) =>
    new KvmHost(h.name, {
      address: h.address,
      zone: h.zone ?? 'default',
      ssh: { user: 'root', agent: true, strictHostKeyChecking: 'yes' },
      ...(config.getSecret('hostPassword') ? { password: config.requireSecret('hostPassword') } : {}),
    }),
);

const providers: FleetSpecArgs['providers'] =
  target === 'kvm'
    ? {
        lab: {
          type: 'kvm',
          hosts: hosts.map((h) => h.hostConfig),
          images: { 'debian-12': { url: 'https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2' } },
        },
      }
    : {
        lab: {
          type: 'sim',
          generate: { count: 6, zones: ['zone-a', 'zone-b', 'zone-c'], cpu: 16, memory: '64GiB', disk: '2TiB', pricePerHour: 0.45, labels: { ssd: 'true' } },
        },
      };

const inventoryFile = config.get('inventory');
const fleet = new VmFleet('shop', {
  spec: {
    name: 'shop',
    providers,
    groups: {
      web: {
        count: 3,
        cpu: 2,
        memory: '4GiB',
        disk: '20GiB',
        image: 'debian-12',
        labels: { tier: 'web' },
        placement: { antiAffinity: 'host' },
        cloudInit: { sshAuthorizedKeys: [config.get('sshKey') ?? 'ssh-ed25519 AAAAC3Nza… ops@example'] },
      },
      db: {
        count: 1,
        cpu: 8,
        memory: '32GiB',
        disk: '200GiB',
        image: 'debian-12',
        labels: { tier: 'db' },
        migration: { mode: 'live', maxDowntimeMs: 200 },
        snapshots: nightly.policy,
      },
    },
  },
  credentials: hosts.map((h) => h.credentials),
  ...(inventoryFile ? { inventory: JSON.parse(readFileSync(inventoryFile, 'utf8')) as Host[] } : {}),
});

/** Each VM: provider, host, zone, addresses, state. */
export const vms = fleet.vms;
/** Where each VM went and why. */
export const placement = fleet.placement.apply((p) => Object.fromEntries(Object.entries(p.vms).map(([vm, v]) => [vm, `${v.host}: ${v.reason}`])));
export const snapshotPolicy = nightly.summary;
