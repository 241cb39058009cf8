import { stableStringify, type Capabilities, type Resources } from '@novacron/core';
import { isUnknown, type VmInputs, type VmOutputs } from './vmInputs.js';

/**
 * How disruptive a change to a VM is, from least to most. `diff` reports the worst class
 * any rule gives; `update` carries out the actions of every rule that fired.
 *
 * - `in-place`: only what NovaCron records changes (labels, policies, provider settings), or
 *   a stopped VM is started; the running guest is not touched.
 * - `hot-plug`: resized while it runs (cpu or memory added, disk grown).
 * - `migrate`: moved to another host of the same provider, live or cold per the group's policy.
 * - `reboot`: changed with a restart (a shrink, a gpu change, a new instance type, cloud-init
 *   data of a group that reboots on change).
 * - `replace`: deleted, then created anew under the same name (image, provider, identity, a
 *   disk that would shrink, or a change the provider cannot make in place).
 */
export const CHANGE_CLASSES = ['none', 'in-place', 'hot-plug', 'migrate', 'reboot', 'replace'] as const;
export type ChangeClass = (typeof CHANGE_CLASSES)[number];

/** What an update does, in this order. */
export type VmAction = 'migrate' | 'resize-live' | 'resize-reboot' | 'restart' | 'start';
const ACTION_ORDER: readonly VmAction[] = ['migrate', 'resize-live', 'resize-reboot', 'restart', 'start'];

export interface VmChange {
  readonly class: ChangeClass;
  /** One line per rule that fired: what changes and why it takes its class. */
  readonly reasons: readonly string[];
  /** Input properties whose change forces a replacement (Pulumi's `replaces`). */
  readonly replaces: readonly string[];
  readonly actions: readonly VmAction[];
  /** For a migration: live or cold. */
  readonly migrationMode?: 'live' | 'cold';
}

type Olds = Partial<VmOutputs>;
type News = Partial<VmInputs>;

interface RuleOutcome {
  readonly class: Exclude<ChangeClass, 'none'>;
  readonly reason: string;
  readonly action?: VmAction;
  readonly migrationMode?: 'live' | 'cold';
}

/** A named rule: the properties it looks at and what their change means. */
interface ChangeRule {
  readonly name: string;
  readonly properties: readonly (keyof VmInputs | 'state')[];
  /** Capabilities are those the provider declares; undefined only when no rule that needs them fires. */
  evaluate(olds: Olds, news: News, capabilities: Partial<Capabilities>): RuleOutcome | undefined;
}

const same = (a: unknown, b: unknown) => stableStringify(a ?? null) === stableStringify(b ?? null);
const changed = (olds: Olds, news: News, key: keyof VmInputs) => isUnknown(news[key]) || !same(olds[key], news[key]);

const replaceWhenChanged = (name: string, properties: (keyof VmInputs)[], why: (olds: Olds, news: News) => string): ChangeRule => ({
  name,
  properties,
  evaluate: (olds, news) => (properties.some((p) => changed(olds, news, p)) ? { class: 'replace', reason: why(olds, news) } : undefined),
});

const show = (value: unknown) => (isUnknown(value) ? '(known after apply)' : String(value));

/** The rules, in the order their reasons are listed. Special cases live here, not in `if`s elsewhere. */
export const CHANGE_RULES: readonly ChangeRule[] = [
  replaceWhenChanged('identity', ['fleet', 'group', 'index', 'vmName'], (o, n) => `the VM's name changes (${show(o.vmName)} → ${show(n.vmName)}): a new VM`),
  replaceWhenChanged(
    'provider',
    ['providerName'],
    (o, n) => `moves from provider "${show(o.providerName)}" to "${show(n.providerName)}": a move across providers is a replace`,
  ),
  replaceWhenChanged('image', ['image'], (o, n) => `image changes ${show(o.image)} → ${show(n.image)}: the disk is rebuilt from the new image`),
  {
    name: 'resources',
    properties: ['resources', 'instanceType'],
    evaluate(olds, news, caps) {
      // On elastic hosts (cloud zones) a provider may report the instance type's size, not the
      // one asked for: there only a new spec (its hash) means a resize. Fixed hosts report the
      // exact size, so a difference there is drift to undo.
      const resized = changed(olds, news, 'resources') && (olds.specHash !== news.specHash || olds.instanceType === undefined);
      const retyped = olds.instanceType !== undefined && changed(olds, news, 'instanceType');
      if (!resized && !retyped) return undefined;
      if (isUnknown(news.resources)) return { class: 'reboot', reason: 'resources are not known yet', action: 'resize-reboot' };
      const from = olds.resources as Resources | undefined;
      const to = news.resources as Resources;
      if (!from) return { class: 'replace', reason: 'the current size is unknown' };
      const what = describeResize(from, to, retyped ? `${olds.instanceType} → ${show(news.instanceType)}` : undefined);
      if (to.diskGiB < from.diskGiB) return { class: 'replace', reason: `${what}: disks do not shrink in place` };
      if (!caps.resize) return { class: 'replace', reason: `${what}: the provider cannot resize` };
      const cpuDown = to.cpu < from.cpu;
      const memDown = to.memoryMiB < from.memoryMiB;
      const live =
        !retyped &&
        to.gpu === from.gpu &&
        !cpuDown &&
        !memDown &&
        (to.cpu === from.cpu || caps.hotplugCpu === true) &&
        (to.memoryMiB === from.memoryMiB || caps.hotplugMemory === true);
      if (live) return { class: 'hot-plug', reason: `${what} (hot-plugged)`, action: 'resize-live' };
      const why = retyped
        ? 'a new instance type takes a stop and start'
        : to.gpu !== from.gpu
          ? 'gpus are attached at boot'
          : cpuDown || memDown
            ? 'cpu and memory are removed with a reboot'
            : `the provider cannot hot-plug ${to.cpu !== from.cpu && !caps.hotplugCpu ? 'cpu' : 'memory'}`;
      return { class: 'reboot', reason: `${what} (needs a reboot: ${why})`, action: 'resize-reboot' };
    },
  },
  {
    name: 'host',
    properties: ['host'],
    evaluate(olds, news, caps) {
      if (!changed(olds, news, 'host') || changed(olds, news, 'providerName')) return undefined;
      const mode = news.migration?.mode ?? 'auto';
      const move = `moves from ${show(olds.host)} to ${show(news.host)}`;
      if ((mode === 'auto' || mode === 'live') && caps.liveMigration) return { class: 'migrate', reason: `${move} (live migration)`, action: 'migrate', migrationMode: 'live' };
      if ((mode === 'auto' || mode === 'cold') && caps.coldMigration) return { class: 'migrate', reason: `${move} (cold migration)`, action: 'migrate', migrationMode: 'cold' };
      const cannot = mode === 'auto' ? 'the provider cannot migrate' : `the group's migration policy asks for ${mode} migration, which the provider cannot do`;
      return { class: 'replace', reason: `${move}: ${cannot}` };
    },
  },
  {
    name: 'cloud-init',
    properties: ['cloudInit'],
    evaluate(olds, news) {
      if (!changed(olds, news, 'cloudInit')) return undefined;
      const onChange = isUnknown(news.cloudInit) ? 'replace' : (news.cloudInit?.onChange ?? 'ignore');
      if (onChange === 'replace') return { class: 'replace', reason: 'cloud-init data changes and the group replaces on change' };
      if (onChange === 'reboot') return { class: 'reboot', reason: 'cloud-init data changes and the group reboots on change', action: 'restart' };
      return { class: 'in-place', reason: 'cloud-init data changes; the group ignores it for running VMs (new VMs get it)' };
    },
  },
  {
    name: 'stopped',
    properties: ['state' as const],
    evaluate(olds) {
      if (olds.state === undefined || olds.state === 'running' || olds.state === 'migrating') return undefined;
      return { class: 'in-place', reason: `the VM is ${olds.state}; it is started`, action: 'start' };
    },
  },
  {
    name: 'recorded',
    properties: ['labels', 'migration', 'snapshots', 'providerConfig', 'workload', 'capabilities', 'credentials'],
    evaluate(olds, news) {
      const keys = (['labels', 'migration', 'snapshots', 'providerConfig', 'workload', 'capabilities', 'credentials'] as const).filter((k) => changed(olds, news, k));
      if (keys.length === 0) return undefined;
      return { class: 'in-place', reason: `${keys.join(', ')} change${keys.length === 1 ? 's' : ''}: recorded; the running VM is not touched` };
    },
  },
];

/** True when a change to these inputs may depend on what the provider can do. */
export function needsCapabilities(olds: Olds, news: News): boolean {
  return changed(olds, news, 'resources') || changed(olds, news, 'host') || (olds.instanceType !== undefined && changed(olds, news, 'instanceType'));
}

/** Classifies the change from a VM's recorded outputs to its new inputs. Pure. */
export function classifyVmChange(olds: Olds, news: News, capabilities: Partial<Capabilities> = {}): VmChange {
  let worst: ChangeClass = 'none';
  const reasons: string[] = [];
  const replaces = new Set<string>();
  const actions = new Set<VmAction>();
  let migrationMode: 'live' | 'cold' | undefined;
  for (const rule of CHANGE_RULES) {
    const outcome = rule.evaluate(olds, news, capabilities);
    if (!outcome) continue;
    reasons.push(outcome.reason);
    if (CHANGE_CLASSES.indexOf(outcome.class) > CHANGE_CLASSES.indexOf(worst)) worst = outcome.class;
    if (outcome.class === 'replace') for (const p of rule.properties) if (p !== 'state' && changed(olds, news, p)) replaces.add(p);
    if (outcome.action) actions.add(outcome.action);
    if (outcome.migrationMode) migrationMode = outcome.migrationMode;
  }
  return {
    class: worst,
    reasons,
    replaces: [...replaces],
    actions: worst === 'replace' ? [] : ACTION_ORDER.filter((a) => actions.has(a)),
    ...(migrationMode && worst !== 'replace' ? { migrationMode } : {}),
  };
}

function describeResize(from: Resources, to: Resources, instanceType: string | undefined): string {
  const parts: string[] = [];
  if (from.cpu !== to.cpu) parts.push(`cpu ${from.cpu} → ${to.cpu}`);
  if (from.memoryMiB !== to.memoryMiB) parts.push(`memory ${from.memoryMiB}MiB → ${to.memoryMiB}MiB`);
  if (from.diskGiB !== to.diskGiB) parts.push(`disk ${from.diskGiB}GiB → ${to.diskGiB}GiB`);
  if (from.gpu !== to.gpu) parts.push(`gpu ${from.gpu} → ${to.gpu}`);
  if (instanceType) parts.push(`instance type ${instanceType}`);
  return `resize: ${parts.join(', ')}`;
}
