import { toNovaCronError, type NovaCronError } from '../errors/NovaCronError.js';
import { UnsupportedError } from '../errors/errors.js';
import type { FleetSpec, GroupSpec } from '../model/fleet.js';
import type { Resources, VmRecord } from '../model/records.js';
import type { OperationContext, Provider, UnownedVm } from '../provider/Provider.js';
import { supports } from '../provider/Provider.js';
import type { ProviderSet } from '../provider/registry.js';
import { groupResources, groupSpecHash, vmName } from './desired.js';
import { naturalCompare } from './plan.js';

/**
 * Adoption: VMs made outside NovaCron (by hand, by another tool) taken into a fleet by
 * recording the fleet's ownership on them, without restarting them. Matching is pure and
 * explained: every VM is either matched to a group slot, with the reason, or skipped, with
 * the reason. A VM is adopted only when the group describes it exactly (size and image), so
 * that the next plan has nothing to change on it.
 */

export interface AdoptionOptions {
  /** Only into this group. */
  readonly group?: string;
  /** Only VMs whose name matches this glob (`*` and `?`). */
  readonly names?: string;
}

export interface Adoption {
  readonly vm: UnownedVm;
  readonly group: string;
  readonly index: number;
  /** The fleet's name for the VM's image, recorded on it. */
  readonly image: string;
  readonly reason: string;
}

export interface AdoptionPlan {
  readonly fleet: string;
  readonly adoptions: readonly Adoption[];
  readonly skipped: readonly { readonly vm: UnownedVm; readonly reason: string }[];
}

/** Matches unowned VMs to the fleet's groups: by name (`<fleet>-<group>-<n>`), size and image. */
export function planAdoption(fleet: FleetSpec, owned: readonly VmRecord[], unowned: readonly UnownedVm[], options: AdoptionOptions = {}): AdoptionPlan {
  const adoptions: Adoption[] = [];
  const skipped: { vm: UnownedVm; reason: string }[] = [];
  const taken = new Set(owned.filter((vm) => vm.fleet === fleet.name).map((vm) => `${vm.group}#${vm.index}`));
  const pattern = options.names ? globToRegExp(options.names) : undefined;
  const groups = Object.entries(fleet.groups).filter(([name]) => !options.group || name === options.group);
  for (const vm of [...unowned].sort((a, b) => naturalCompare(a.name, b.name))) {
    if (!(vm.provider in fleet.providers)) continue;
    if (pattern && !pattern.test(vm.name)) continue;
    const named = slotFromName(fleet, vm.name);
    const candidates = named ? groups.filter(([g]) => g === named.group) : groups;
    if (candidates.length === 0) {
      skipped.push({ vm, reason: named ? `its name is a slot of group "${named.group}", not of ${options.group ? `"${options.group}"` : 'a group of the fleet'}` : 'the fleet has no groups' });
      continue;
    }
    const verdicts = candidates.map(([group, spec]) => ({ group, spec, why: mismatch(vm, group, spec, named !== undefined || options.group !== undefined) }));
    const fits = verdicts.filter((v) => v.why === undefined);
    if (fits.length === 0) {
      skipped.push({ vm, reason: verdicts.map((v) => `group "${v.group}": ${v.why}`).join('; ') });
      continue;
    }
    if (fits.length > 1) {
      skipped.push({ vm, reason: `it fits groups ${fits.map((f) => `"${f.group}"`).join(', ')} alike: choose one with --group` });
      continue;
    }
    const { group, spec } = fits[0]!;
    const index = named && !taken.has(`${group}#${named.index}`) ? named.index : firstFree(taken, group, spec.count);
    if (index === undefined || index >= spec.count) {
      skipped.push({ vm, reason: `group "${group}" is full (count ${spec.count}${named ? `; slot ${named.index} is taken` : ''}): raise its count to adopt it` });
      continue;
    }
    taken.add(`${group}#${index}`);
    const how = vm.image === spec.image ? `image ${spec.image}` : `image not known to the provider, taken as ${spec.image}`;
    adoptions.push({
      vm,
      group,
      index,
      image: spec.image,
      reason: `${named ? `named as slot ${named.index} of group "${group}"` : `matches group "${group}"`}: ${describe(vm.resources)}, ${how}`,
    });
  }
  return { fleet: fleet.name, adoptions, skipped };
}

/** Why a VM is not a VM of this group, or undefined when it is. */
function mismatch(vm: UnownedVm, group: string, spec: GroupSpec, chosen: boolean): string | undefined {
  if (spec.placement.providers && !spec.placement.providers.includes(vm.provider)) return `provider "${vm.provider}" is not among ${spec.placement.providers.join(', ')}`;
  const want = groupResources(spec);
  const differ = (['cpu', 'memoryMiB', 'diskGiB', 'gpu'] as const).filter((k) => want[k] !== vm.resources[k]);
  if (differ.length > 0) return `size differs (${differ.map((k) => `${k} ${vm.resources[k]} ≠ ${want[k]}`).join(', ')})`;
  if (vm.image !== undefined && vm.image !== spec.image) return `image ${vm.image} ≠ ${spec.image}`;
  if (vm.image === undefined && !chosen) return `its image cannot be told (${vm.imageSource ?? 'unknown origin'}); name the group "${group}" with --group to adopt it as ${spec.image}`;
  return undefined;
}

function slotFromName(fleet: FleetSpec, name: string): { group: string; index: number } | undefined {
  for (const group of Object.keys(fleet.groups)) {
    const prefix = `${fleet.name}-${group}-`;
    if (name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length))) {
      const index = Number(name.slice(prefix.length));
      if (vmName(fleet.name, group, index) === name) return { group, index };
    }
  }
  return undefined;
}

function firstFree(taken: ReadonlySet<string>, group: string, count: number): number | undefined {
  for (let i = 0; i < count; i++) if (!taken.has(`${group}#${i}`)) return i;
  return undefined;
}

function describe(r: Resources): string {
  return `${r.cpu} vCPU, ${r.memoryMiB} MiB, ${r.diskGiB} GiB`;
}

function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
}

export interface AdoptionOutcome {
  readonly adoption: Adoption;
  readonly status: 'done' | 'failed';
  readonly vm?: VmRecord;
  readonly error?: NovaCronError;
}

/** Records ownership on every matched VM through its provider's `adopt`; one failure does not stop the others. */
export async function applyAdoption(fleet: FleetSpec, adoption: AdoptionPlan, providers: ProviderSet, ctx: OperationContext = {}): Promise<AdoptionOutcome[]> {
  return Promise.all(
    adoption.adoptions.map(async (a): Promise<AdoptionOutcome> => {
      const provider: Provider = providers.get(a.vm.provider);
      try {
        if (!supports(provider, 'adopt')) throw new UnsupportedError(`provider "${provider.name}" cannot adopt VMs`, { context: { provider: provider.name, vm: a.vm.name, operation: 'adopt' } });
        const spec = fleet.groups[a.group]!;
        const vm = await provider.adopt(
          { name: a.vm.name, fleet: fleet.name, id: a.vm.id, host: a.vm.host },
          { ownership: { fleet: fleet.name, group: a.group, index: a.index, specHash: groupSpecHash(spec) }, image: a.image, labels: spec.labels },
          ctx,
        );
        return { adoption: a, status: 'done', vm };
      } catch (thrown) {
        return { adoption: a, status: 'failed', error: toNovaCronError(thrown, { provider: provider.name, vm: a.vm.name, operation: 'adopt' }) };
      }
    }),
  );
}

/** Every provider of the fleet that can list unowned VMs, asked in parallel. */
export async function observeUnowned(fleet: FleetSpec, providers: ProviderSet, ctx: OperationContext = {}): Promise<UnownedVm[]> {
  const lists = await Promise.all(
    Object.keys(fleet.providers).map(async (name) => {
      const provider = providers.get(name);
      return supports(provider, 'adopt') ? provider.listUnowned(ctx) : [];
    }),
  );
  return lists.flat();
}

/**
 * A fleet for VMs no fleet owns: one group per distinct size and image (named after the
 * VMs' common name prefix), counts as found, the providers as given. The result is plain
 * fleet-file data (sizes written with units), ready to be written as YAML and parsed.
 */
export function fleetForUnowned(name: string, providers: Readonly<Record<string, unknown>>, unowned: readonly UnownedVm[]): { spec: Record<string, unknown>; members: Record<string, string[]> } {
  const byShape = new Map<string, UnownedVm[]>();
  for (const vm of [...unowned].sort((a, b) => naturalCompare(a.name, b.name))) {
    const image = vm.image ?? vm.imageSuggestion?.name ?? 'unknown';
    const key = `${vm.provider}|${vm.resources.cpu}|${vm.resources.memoryMiB}|${vm.resources.diskGiB}|${vm.resources.gpu}|${image}`;
    byShape.set(key, [...(byShape.get(key) ?? []), vm]);
  }
  const groups: Record<string, Record<string, unknown>> = {};
  const members: Record<string, string[]> = {};
  const outProviders = structuredClone(providers) as Record<string, Record<string, unknown>>;
  for (const vms of byShape.values()) {
    const first = vms[0]!;
    const base = groupName(vms.map((v) => v.name));
    let group = base;
    for (let n = 2; group in groups; n++) group = `${base}-${n}`;
    const image = first.image ?? first.imageSuggestion?.name ?? 'unknown';
    const r = first.resources;
    groups[group] = {
      count: vms.length,
      cpu: r.cpu,
      memory: `${r.memoryMiB}MiB`,
      disk: `${r.diskGiB}GiB`,
      ...(r.gpu ? { gpu: r.gpu } : {}),
      image,
      ...(Object.keys(outProviders).length > 1 ? { placement: { providers: [first.provider] } } : {}),
    };
    members[group] = vms.map((v) => v.name);
    const config = outProviders[first.provider];
    if (!first.image && first.imageSuggestion && config && (config['images'] === undefined || (typeof config['images'] === 'object' && !Array.isArray(config['images'])))) {
      const images = (config['images'] ?? {}) as Record<string, unknown>;
      images[first.imageSuggestion.name] ??= first.imageSuggestion.config;
      config['images'] = images;
    }
  }
  return { spec: { name, providers: outProviders, groups }, members };
}

/** A group name from VM names: their common prefix without trailing digits and dashes, else `vms`. */
function groupName(names: readonly string[]): string {
  let prefix = names[0] ?? '';
  for (const n of names) while (!n.startsWith(prefix)) prefix = prefix.slice(0, -1);
  const cleaned = prefix.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/[-\d]+$/, '').replace(/^-+/, '').slice(0, 30);
  return /^[a-z]/.test(cleaned) ? cleaned : 'vms';
}
