import { z } from 'zod';
import { findAffinityCycle } from '../placement/affinityCycle.js';
import { labels, name } from './common.js';
import { migrationPolicy, snapshotPolicy } from './policies.js';
import { providerConfig } from './providers.js';
import { size } from './units.js';

export const MAX_FLEET_NAME = 30;
export const MAX_GROUP_NAME = 24;
/** NICs per VM: what every provider takes (EC2's smallest types take 2 to 4; KVM, GCE up to 8 or more). */
export const MAX_NICS = 8;

/** NIC models a KVM guest can be given; cloud providers choose their own and ignore this. */
export const NIC_MODELS = ['virtio', 'e1000e', 'e1000', 'rtl8139'] as const;
export type NicModel = (typeof NIC_MODELS)[number];

/**
 * One network interface. `network` is what the provider attaches it to: a libvirt network
 * on KVM, a subnet id on EC2 (`subnet-…`), a VPC network (`network` or `network/subnetwork`)
 * on Compute Engine, any name on the sim.
 */
export const nicSpec = z.strictObject({
  network: z
    .string()
    .min(1, 'name the network the NIC attaches to')
    .max(255)
    .refine((n) => !/\s/.test(n) && ![...n].some((c) => c.charCodeAt(0) < 0x20), 'network names have no spaces or control characters'),
  /** KVM only: the virtual NIC's device model. @default the provider's (virtio on KVM) */
  model: z.enum(NIC_MODELS).optional(),
});
export type NicSpec = z.infer<typeof nicSpec>;

export const placementRules = z.strictObject({
  /** Only these providers (by their name in `providers`) may host the group. */
  providers: z.array(z.string().min(1)).min(1).optional(),
  zones: z.array(z.string().min(1)).min(1).optional(),
  regions: z.array(z.string().min(1)).min(1).optional(),
  /** Host labels the host must carry, with these values. */
  hostLabels: labels.optional(),
  /** Host labels preferred, not required (a soft rule). */
  preferLabels: labels.optional(),
  /** Keep this group's VMs apart: no two on one host (or in one zone). */
  antiAffinity: z.enum(['host', 'zone']).optional(),
  /** Keep away from, or close to, other groups. */
  avoidGroups: z.array(z.strictObject({ group: z.string().min(1), scope: z.enum(['host', 'zone']).default('host') })).optional(),
  withGroups: z.array(z.strictObject({ group: z.string().min(1), scope: z.enum(['host', 'zone']).default('zone') })).optional(),
  /** Groups to run close to when it costs little: same host best, same zone next (a soft rule, weighted by `locality`). */
  near: z.array(z.string().min(1)).min(1).optional(),
  spread: z.strictObject({ key: z.string().min(1).default('zone'), maxSkew: z.number().int().min(1).max(10_000).default(1) }).optional(),
  maxPerHost: z.number().int().min(1).max(100_000).optional(),
});
export type PlacementRules = z.infer<typeof placementRules>;

export const cloudInit = z.strictObject({
  userData: z.string().max(64 * 1024).optional(),
  sshAuthorizedKeys: z.array(z.string().min(1)).optional(),
  /** What to do when the cloud-init data of running VMs changes. */
  onChange: z.enum(['replace', 'reboot', 'ignore']).default('ignore'),
});
export type CloudInit = z.infer<typeof cloudInit>;

/** How a simulated VM behaves, so the sim provider can model migrations faithfully. Ignored elsewhere. */
export const workload = z.strictObject({
  workingSet: size('MiB', 0, 64 * 1024 ** 2).optional(),
  dirtyRateMiBps: z.number().min(0).max(100_000).optional(),
});

export const groupSpec = z.strictObject({
  count: z.number().int().min(0).max(100_000),
  cpu: z.number().int().min(1).max(1024),
  memory: size('MiB', 16, 16 * 1024 ** 2),
  disk: size('GiB', 1, 64 * 1024).default(10),
  gpu: z.number().int().min(0).max(16).default(0),
  image: z.string().min(1),
  labels: labels.default({}),
  placement: placementRules.default({}),
  migration: migrationPolicy.default(() => migrationPolicy.parse({})),
  snapshots: snapshotPolicy.optional(),
  cloudInit: cloudInit.optional(),
  workload: workload.optional(),
  /**
   * The VM's network interfaces, in order (the first is the primary). Absent: the provider's
   * default (one NIC on the KVM host's configured network, the cloud's default subnet), and
   * NICs are never compared, so a provider's defaults never show as drift.
   */
  nics: z.array(nicSpec).min(1, 'declare at least one NIC, or leave nics out for the provider default').max(MAX_NICS, `at most ${MAX_NICS} NICs per VM`).optional(),
  /** How changes to running VMs may be made. */
  changes: z
    .strictObject({
      /** Changes that need a reboot may reboot the VM; otherwise they are held and reported. */
      allowReboot: z.boolean().default(true),
      /** When the cheap path (hot-plug, reboot) fails, replace the VM instead of stopping. */
      fallbackToReplace: z.boolean().default(false),
    })
    .default({ allowReboot: true, fallbackToReplace: false }),
});

export const placementWeights = z.strictObject({
  cost: z.number().min(0).max(1000).optional(),
  consolidation: z.number().min(0).max(1000).optional(),
  balance: z.number().min(0).max(1000).optional(),
  headroom: z.number().min(0).max(1000).optional(),
  preferLabels: z.number().min(0).max(1000).optional(),
  locality: z.number().min(0).max(1000).optional(),
});

export const fleetSpec = z
  .strictObject({
    apiVersion: z.literal('novacron/v1').default('novacron/v1'),
    name: name('fleet', MAX_FLEET_NAME),
    providers: z.record(name('provider', 40), providerConfig).refine((p) => Object.keys(p).length > 0, 'declare at least one provider'),
    placement: z
      .strictObject({ weights: placementWeights.default({}), seed: z.number().int().min(0).default(0) })
      .default({ weights: {}, seed: 0 }),
    groups: z.record(name('group', MAX_GROUP_NAME), groupSpec).refine((g) => Object.keys(g).length > 0, 'declare at least one group'),
  })
  .superRefine((fleet, ctx) => {
    const providerNames = Object.keys(fleet.providers);
    const groupNames = Object.keys(fleet.groups);
    for (const [groupName, group] of Object.entries(fleet.groups)) {
      const at = (...path: (string | number)[]) => ['groups', groupName, ...path];
      group.placement.providers?.forEach((provider, i) => {
        if (!fleet.providers[provider]) {
          ctx.addIssue({ code: 'custom', path: at('placement', 'providers', i), message: `unknown provider "${provider}"${known(providerNames)}` });
        }
      });
      for (const key of ['avoidGroups', 'withGroups'] as const) {
        group.placement[key]?.forEach((ref, i) => {
          if (!fleet.groups[ref.group]) {
            ctx.addIssue({ code: 'custom', path: at('placement', key, i, 'group'), message: `unknown group "${ref.group}"${known(groupNames)}` });
          }
        });
      }
      group.placement.near?.forEach((ref, i) => {
        if (!fleet.groups[ref]) ctx.addIssue({ code: 'custom', path: at('placement', 'near', i), message: `unknown group "${ref}"${known(groupNames)}` });
      });
      group.placement.withGroups?.forEach((ref, i) => {
        const clash = group.placement.avoidGroups?.find((a) => a.group === ref.group && (a.scope === 'zone' || ref.scope === 'host'));
        if (clash) {
          ctx.addIssue({ code: 'custom', path: at('placement', 'withGroups', i), message: `group "${ref.group}" is both required (${ref.scope}) and avoided (${clash.scope}): no placement can meet both` });
        }
      });
      const candidates = group.placement.providers ?? providerNames;
      const knowing = candidates.filter((p) => {
        const config = fleet.providers[p];
        if (!config) return false;
        const images = config.images;
        if (images === undefined) return true;
        return Array.isArray(images) ? images.includes(group.image) : group.image in images;
      });
      if (candidates.length > 0 && knowing.length === 0) {
        ctx.addIssue({
          code: 'custom',
          path: at('image'),
          message: `image "${group.image}" is not declared by any provider the group may use (${candidates.join(', ')}): add it to their "images"`,
        });
      }
    }
    const cycle = findAffinityCycle(new Map(Object.entries(fleet.groups).map(([g, spec]) => [g, (spec.placement.withGroups ?? []).map((w) => w.group)])));
    if (cycle) {
      ctx.addIssue({
        code: 'custom',
        path: ['groups', cycle[0]!, 'placement', 'withGroups'],
        message: `withGroups rules form a cycle (${cycle.join(' → ')}): keep one direction, so one group anchors the other`,
      });
    }
  });

function known(options: readonly string[]): string {
  return options.length ? ` (known: ${options.join(', ')})` : '';
}

export type FleetSpecInput = z.input<typeof fleetSpec>;
export type FleetSpec = z.output<typeof fleetSpec>;
export type GroupSpec = FleetSpec['groups'][string];
export type PlacementWeights = z.infer<typeof placementWeights>;
