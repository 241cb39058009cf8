import type { Resources, VmRecord } from '../model/records.js';
import type { Capabilities } from '../provider/Provider.js';
import { specHashOf, type DesiredVm } from './desired.js';
import { describeNicDiff, diffNics, nicDiffIsEmpty, showNic } from './nics.js';

/**
 * How a change to a running VM can be made, cheapest first: in place (metadata only),
 * hot-plugged into the running guest, at a reboot, by moving the VM, or only by replacing
 * it. A VM's change takes the most expensive class among its fields.
 */
export type ChangeClass = 'in-place' | 'hot-plug' | 'reboot' | 'migrate' | 'replace';
export const CHANGE_CLASSES: readonly ChangeClass[] = ['in-place', 'hot-plug', 'reboot', 'migrate', 'replace'];

/** Field changes are made in place, hot-plugged, at a reboot or by replacing; moves are the plan's own steps. */
export type FieldChangeClass = Exclude<ChangeClass, 'migrate'>;

export interface FieldChange {
  readonly field: 'cpu' | 'memory' | 'disk' | 'gpu' | 'image' | 'labels' | 'cloudInit' | 'provider' | 'nics';
  readonly from: string;
  readonly to: string;
  readonly class: FieldChangeClass;
  readonly reason: string;
}

export interface VmChange {
  /** `none` when the VM matches every field the user declared. */
  readonly class: FieldChangeClass | 'none';
  readonly changes: readonly FieldChange[];
}

type Rule = (want: DesiredVm, vm: VmRecord, can: Capabilities) => FieldChange | undefined;
const RANK: readonly FieldChangeClass[] = ['in-place', 'hot-plug', 'reboot', 'replace'];

const resourceRule =
  (field: 'cpu' | 'memory' | 'disk' | 'gpu', key: keyof Resources, unit: string, hotplug: (can: Capabilities) => boolean, shrinkClass: (can: Capabilities) => FieldChangeClass): Rule =>
  (want, vm, can) => {
    const from = vm.resources[key];
    const to = want.resources[key];
    if (from === to) return undefined;
    const show = (n: number) => `${n}${unit}`;
    const grow = to > from;
    if (!can.resize) return { field, from: show(from), to: show(to), class: 'replace', reason: `the provider cannot resize a VM` };
    if (grow && hotplug(can)) return { field, from: show(from), to: show(to), class: 'hot-plug', reason: `${field} is added to the running guest` };
    const cls = grow ? 'reboot' : shrinkClass(can);
    return {
      field, from: show(from), to: show(to), class: cls,
      reason: cls === 'replace' ? `${field} cannot shrink in place` : grow ? `${field} is not hot-pluggable here; it takes effect at a reboot` : `${field} is removed at a reboot`,
    };
  };

/**
 * NICs, when the group declares them and the provider reports them. Attaching, detaching and
 * changing a NIC's model (a detach and an attach again with the same MAC: the guest sees that
 * device go and come back) are hot-plugged where the provider can (`hotplugNics`); elsewhere
 * NICs are set only when a VM is made, so the VM is replaced. Where the primary NIC belongs
 * to the instance (`fixedPrimaryNic`, EC2), a change to it replaces the VM too.
 */
const nicRule: Rule = (want, vm, can) => {
  const wanted = want.spec.nics;
  if (!wanted || !vm.nics) return undefined;
  const diff = diffNics(wanted, vm.nics);
  if (nicDiffIsEmpty(diff)) return undefined;
  const change = { field: 'nics' as const, from: vm.nics.map(showNic).join(',') || 'none', to: wanted.map(showNic).join(',') };
  const what = describeNicDiff(diff);
  if (!can.hotplugNics) return { ...change, class: 'replace', reason: `${what}: the provider sets a VM's NICs only when it creates it` };
  const primary = vm.nics[0];
  if (can.fixedPrimaryNic && primary && (diff.detach.includes(primary) || diff.remodel.some((r) => r.from === primary))) {
    return { ...change, class: 'replace', reason: `${what}: the primary NIC (${showNic(primary)}) cannot be detached from the VM` };
  }
  const remodel = diff.remodel.length > 0 ? '; a NIC whose model changes is detached and attached again, so the guest sees it go and come back' : '';
  return { ...change, class: 'hot-plug', reason: `${what}: hot-plugged into the running guest${remodel}` };
};

/** The named rules, one per field the user declares. Fields the user does not declare are never compared. */
const RULES: readonly Rule[] = [
  (want, vm) =>
    want.spec.placement.providers && !want.spec.placement.providers.includes(vm.provider)
      ? { field: 'provider', from: vm.provider, to: want.spec.placement.providers.join('|'), class: 'replace', reason: `provider "${vm.provider}" is no longer allowed for group "${want.group}"` }
      : undefined,
  (want, vm) => (vm.image !== want.image ? { field: 'image', from: vm.image, to: want.image, class: 'replace', reason: 'a new image means a new root disk' } : undefined),
  resourceRule('cpu', 'cpu', '', (c) => c.hotplugCpu, () => 'reboot'),
  resourceRule('memory', 'memoryMiB', 'MiB', (c) => c.hotplugMemory, () => 'reboot'),
  resourceRule('disk', 'diskGiB', 'GiB', () => true, () => 'replace'),
  resourceRule('gpu', 'gpu', '', () => false, () => 'reboot'),
  (want, vm) => {
    const differ = Object.entries(want.spec.labels).filter(([k, v]) => vm.labels[k] !== v);
    if (differ.length === 0) return undefined;
    return { field: 'labels', from: differ.map(([k]) => `${k}=${vm.labels[k] ?? '∅'}`).join(','), to: differ.map(([k, v]) => `${k}=${v}`).join(','), class: 'in-place', reason: 'labels are metadata' };
  },
  nicRule,
];

/**
 * Classifies every declared field of a VM that differs from its group's spec.
 *
 * Cloud-init data is not on the VM record; the spec hash recorded on the VM covers it with
 * the resources and the image. The VM's data is the group's when its hash is the group's, or
 * is the hash of the group's data over the VM's own resources and image (only the size or
 * image changed, or the VM was resized outside NovaCron). Any other hash differs in its
 * cloud-init data, whatever else changes with it, and the group's policy applies:
 * `replace` replaces the VM (one replacement makes every other change too), `reboot` makes
 * the update a reboot that writes the new seed (the resize is made in that same update;
 * held like any reboot when `changes.allowReboot` is false), `ignore` does nothing.
 */
export function classifyChanges(want: DesiredVm, vm: VmRecord, can: Capabilities): VmChange {
  const changes = RULES.map((rule) => rule(want, vm, can)).filter((c): c is FieldChange => c !== undefined);
  const policy = want.spec.cloudInit?.onChange ?? 'ignore';
  if (policy !== 'ignore' && cloudInitChanged(want, vm)) {
    changes.push({
      field: 'cloudInit', from: vm.specHash, to: want.specHash, class: policy === 'replace' ? 'replace' : 'reboot',
      reason: policy === 'replace' ? 'cloud-init data changed; the group replaces on change' : 'cloud-init data changed; the VM reboots with the new seed',
    });
  }
  if (changes.length === 0) return { class: 'none', changes };
  const rank = Math.max(...changes.map((c) => RANK.indexOf(c.class)));
  return { class: RANK[rank]!, changes };
}

function cloudInitChanged(want: DesiredVm, vm: VmRecord): boolean {
  return vm.specHash !== want.specHash && vm.specHash !== specHashOf(vm.resources, vm.image, want.spec.cloudInit);
}

export function describeChanges(changes: readonly FieldChange[]): string {
  return changes.map((c) => `${c.field} ${c.from} → ${c.to} [${c.class}: ${c.reason}]`).join('; ');
}
