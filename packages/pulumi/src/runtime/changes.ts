import {
  NO_CAPABILITIES,
  CHANGE_CLASSES as CORE_CHANGE_CLASSES,
  classifyChanges,
  describeChanges,
  groupSpec,
  stableStringify,
  type Capabilities,
  type ChangeClass as CoreChangeClass,
  type DesiredVm,
  type FieldChange,
  type VmRecord,
} from '@novacron/core';
import { isUnknown, type VmInputs, type VmOutputs } from './vmInputs.js';

/**
 * How disruptive a change to a VM is, cheapest first: the core's classes (in place, hot-plug,
 * reboot, migrate, replace), with `none` before them. Field changes (cpu, memory, disk, gpu,
 * image, labels, cloud-init, NICs against those the provider last reported) are classified
 * by the core's own rules, exactly as `novacron plan` classifies them; the rules here add what
 * only a Pulumi resource has (its identity, its provider, its host, what it merely records)
 * and map each class to Pulumi's terms.
 */
export const CHANGE_CLASSES = ['none', ...CORE_CHANGE_CLASSES] as const;
export type ChangeClass = 'none' | CoreChangeClass;

/** What an update does, in this order. */
export type VmAction = 'migrate' | 'update' | 'start';
const ACTION_ORDER: readonly VmAction[] = ['migrate', 'update', 'start'];

export interface VmChange {
  readonly class: ChangeClass;
  /** One line per rule that fired: what changes and why it takes its class. */
  readonly reasons: readonly string[];
  /** Input properties whose change forces a replacement (Pulumi's `replaces`). */
  readonly replaces: readonly string[];
  readonly actions: readonly VmAction[];
  /** The field changes as the core classified them. */
  readonly fields: readonly FieldChange[];
  /** For a migration: live or cold. */
  readonly migrationMode?: 'live' | 'cold';
  /** Why the change is not made: a reboot the group's `changes.allowReboot` does not allow. */
  readonly held?: string;
}

type Olds = Partial<VmOutputs>;
type News = Partial<VmInputs>;

interface RuleOutcome {
  readonly class: CoreChangeClass;
  readonly reason: string;
  readonly replaces?: readonly (keyof VmInputs)[];
  readonly action?: VmAction;
  readonly migrationMode?: 'live' | 'cold';
  readonly fields?: readonly FieldChange[];
}

/** A named rule: what a change to some inputs means. */
interface ChangeRule {
  readonly name: string;
  evaluate(olds: Olds, news: News, capabilities: Partial<Capabilities>): RuleOutcome | undefined;
}

const same = (a: unknown, b: unknown) => stableStringify(a ?? null) === stableStringify(b ?? null);
const changed = (olds: Olds, news: News, key: keyof VmInputs) => isUnknown(news[key]) || !same(olds[key], news[key]);
const show = (value: unknown) => (isUnknown(value) ? '(known after apply)' : String(value));
const FIELD_INPUT: Record<FieldChange['field'], keyof VmInputs> = {
  cpu: 'resources',
  memory: 'resources',
  disk: 'resources',
  gpu: 'resources',
  image: 'image',
  labels: 'labels',
  cloudInit: 'cloudInit',
  nics: 'nics',
  provider: 'providerName',
};

/** The rules, in the order their reasons are listed. Special cases live here, not in `if`s elsewhere. */
export const CHANGE_RULES: readonly ChangeRule[] = [
  {
    name: 'identity',
    evaluate: (olds, news) => {
      const keys = (['fleet', 'group', 'index', 'vmName'] as const).filter((k) => changed(olds, news, k));
      return keys.length ? { class: 'replace', reason: `the VM's name changes (${show(olds.vmName)} → ${show(news.vmName)}): a new VM`, replaces: keys } : undefined;
    },
  },
  {
    name: 'provider',
    evaluate: (olds, news) =>
      changed(olds, news, 'providerName')
        ? { class: 'replace', reason: `moves from provider "${show(olds.providerName)}" to "${show(news.providerName)}": a Pulumi VM changes provider by replacement`, replaces: ['providerName'] }
        : undefined,
  },
  {
    name: 'fields',
    evaluate: (olds, news, caps) => {
      const unknown = (['image', 'resources', 'labels', 'cloudInit', 'nics'] as const).filter((k) => isUnknown(news[k]));
      if (unknown.length > 0) {
        const replace = unknown.includes('image') || unknown.includes('cloudInit');
        return { class: replace ? 'replace' : 'reboot', reason: `${unknown.join(', ')} not known yet`, ...(replace ? { replaces: unknown } : { action: 'update' as const }) };
      }
      const want = desiredOf(news);
      const current = recordOf(olds);
      if (!want || !current) return undefined;
      const { class: cls, changes } = classifyChanges(want, current, { ...NO_CAPABILITIES, ...caps });
      if (cls === 'none') return undefined;
      return {
        class: cls,
        reason: describeChanges(changes),
        fields: changes,
        ...(cls === 'replace' ? { replaces: [...new Set(changes.filter((c) => c.class === 'replace').map((c) => FIELD_INPUT[c.field]))] } : { action: 'update' as const }),
      };
    },
  },
  {
    name: 'instance-type',
    evaluate: (olds, news) => {
      if (olds.instanceType === undefined || news.instanceType === undefined || !changed(olds, news, 'instanceType')) return undefined;
      return { class: 'reboot', reason: `instance type ${olds.instanceType} → ${show(news.instanceType)} (a stop and start)`, action: 'update' };
    },
  },
  {
    name: 'host',
    evaluate: (olds, news, caps) => {
      if (!changed(olds, news, 'host') || changed(olds, news, 'providerName')) return undefined;
      const mode = news.migration?.mode ?? 'auto';
      const move = `moves from ${show(olds.host)} to ${show(news.host)}`;
      if ((mode === 'auto' || mode === 'live') && caps.liveMigration) return { class: 'migrate', reason: `${move} (live migration)`, action: 'migrate', migrationMode: 'live' };
      if ((mode === 'auto' || mode === 'cold') && caps.coldMigration) return { class: 'migrate', reason: `${move} (cold migration)`, action: 'migrate', migrationMode: 'cold' };
      const cannot = mode === 'auto' ? 'the provider cannot migrate' : `the group's migration policy asks for ${mode} migration, which the provider cannot do`;
      return { class: 'replace', reason: `${move}: ${cannot}`, replaces: ['host'] };
    },
  },
  {
    name: 'stopped',
    evaluate: (olds) => {
      if (olds.state === undefined || olds.state === 'running' || olds.state === 'migrating') return undefined;
      return { class: 'in-place', reason: `the VM is ${olds.state}; it is started`, action: 'start' };
    },
  },
  {
    name: 'recorded',
    evaluate: (olds, news) => {
      const keys = (['migration', 'snapshots', 'changes', 'providerConfig', 'workload', 'capabilities', 'credentials'] as const).filter((k) => changed(olds, news, k));
      if (keys.length === 0) return undefined;
      return { class: 'in-place', reason: `${keys.join(', ')} change${keys.length === 1 ? 's' : ''}: recorded; the running VM is not touched` };
    },
  },
];


/** True when the change may depend on what the provider can do. */
export function needsCapabilities(olds: Olds, news: News): boolean {
  return changed(olds, news, 'resources') || changed(olds, news, 'host') || changed(olds, news, 'nics');
}

/** Classifies the change from a VM's recorded outputs to its new inputs. Pure. */
export function classifyVmChange(olds: Olds, news: News, capabilities: Partial<Capabilities> = {}): VmChange {
  let worst: ChangeClass = 'none';
  const reasons: string[] = [];
  const replaces = new Set<string>();
  const actions = new Set<VmAction>();
  const fields: FieldChange[] = [];
  let migrationMode: 'live' | 'cold' | undefined;
  for (const rule of CHANGE_RULES) {
    const outcome = rule.evaluate(olds, news, capabilities);
    if (!outcome) continue;
    reasons.push(outcome.reason);
    if (CHANGE_CLASSES.indexOf(outcome.class) > CHANGE_CLASSES.indexOf(worst)) worst = outcome.class;
    for (const p of outcome.replaces ?? []) replaces.add(p);
    if (outcome.action) actions.add(outcome.action);
    if (outcome.migrationMode) migrationMode = outcome.migrationMode;
    fields.push(...(outcome.fields ?? []));
  }
  const allowReboot = news.changes?.allowReboot ?? true;
  const needsReboot = fields.some((f) => f.class === 'reboot') || reasons.some((r) => r.includes('(a stop and start)'));
  const held = worst !== 'replace' && needsReboot && !allowReboot ? `needs a reboot and groups.${news.group ?? olds.group}.changes.allowReboot is false` : undefined;
  return {
    class: worst,
    reasons,
    replaces: worst === 'replace' ? [...replaces] : [],
    actions: worst === 'replace' ? [] : ACTION_ORDER.filter((a) => actions.has(a)),
    fields,
    ...(migrationMode && worst !== 'replace' ? { migrationMode } : {}),
    ...(held ? { held } : {}),
  };
}

/** The VM the inputs ask for, as the core's classifier takes it. */
export function desiredOf(news: News): DesiredVm | undefined {
  if (!news.resources || news.image === undefined || news.group === undefined || news.vmName === undefined) return undefined;
  const r = news.resources;
  const spec = groupSpec.safeParse({
    count: 1,
    cpu: r.cpu,
    memory: r.memoryMiB,
    disk: r.diskGiB,
    gpu: r.gpu,
    image: news.image,
    labels: news.labels ?? {},
    ...(news.migration ? { migration: news.migration } : {}),
    ...(news.snapshots ? { snapshots: news.snapshots } : {}),
    ...(news.cloudInit ? { cloudInit: news.cloudInit } : {}),
    ...(news.nics ? { nics: news.nics } : {}),
    ...(news.changes ? { changes: news.changes } : {}),
  });
  if (!spec.success) return undefined;
  return { name: news.vmName, group: news.group, index: news.index ?? 0, resources: r, image: news.image, specHash: news.specHash ?? '', spec: spec.data };
}

/** The VM as last read (the outputs), as the core's classifier takes it. */
function recordOf(olds: Olds): VmRecord | undefined {
  if (!olds.resources || olds.image === undefined || olds.vmName === undefined) return undefined;
  return {
    name: olds.vmName,
    id: olds.vmId ?? '',
    provider: olds.providerName ?? '',
    host: olds.host ?? '',
    zone: olds.zone ?? '',
    state: (olds.state ?? 'unknown') as VmRecord['state'],
    resources: olds.resources,
    image: olds.image,
    labels: olds.labels ?? {},
    addresses: [],
    fleet: olds.fleet ?? '',
    group: olds.group ?? '',
    index: olds.index ?? 0,
    specHash: olds.specHash ?? '',
    ...(olds.instanceType ? { instanceType: olds.instanceType } : {}),
    // What the provider last reported; a state written before NICs were read has the declared ones.
    ...(olds.observedNics ? { nics: olds.observedNics } : olds.nics ? { nics: olds.nics } : {}),
  };
}
