import type { FleetSpec, PlacementRules, PlacementWeights } from '../model/fleet.js';
import type { Host, Resources, VmRecord } from '../model/records.js';
import { cheapestFit } from '../placement/capacity.js';
import { place } from '../placement/place.js';
import { rebalance, type RebalanceTarget } from '../placement/rebalance.js';
import { validatePlacement, type PlacementViolation } from '../placement/validate.js';
import type { PlacedVm, PlacementVm, UnplacedVm } from '../placement/types.js';
import type { CreateVmRequest, VmRef } from '../provider/Provider.js';
import { NO_CAPABILITIES } from '../provider/Provider.js';
import { classifyChanges, describeChanges, type VmChange } from './changes.js';
import { expandFleet, fleetGroupRules, type DesiredVm } from './desired.js';
import type { CreateStep, DeleteStep, MigrateStep, Observed, Plan, PlanStep, ReplaceStep, RuleViolation, StartStep, UpdateStep, StepKind } from './types.js';
import { emptySummary } from './types.js';

export interface PlanOptions {
  readonly weights?: PlacementWeights;
  readonly seed?: number;
  /** Plan the removal of every VM the fleet owns. */
  readonly destroy?: boolean;
  /**
   * Also move running VMs to reach a target (drain hosts, cut active hosts, even out load),
   * with the fewest and lightest migrations; they become migrate steps.
   */
  readonly rebalance?: RebalanceTarget;
}

/**
 * Compares what the fleet asks for with what the providers report and returns the steps
 * that close the gap, each with its reason. Pure: no provider is called.
 */
export function plan(fleet: FleetSpec, observed: Observed, options: PlanOptions = {}): Plan {
  const desired = options.destroy ? [] : expandFleet(fleet);
  const hostsById = new Map(observed.hosts.map((h) => [h.id, h]));
  const freed = new Map<string, Resources>(); // host id → resources this plan frees on it
  const freeing = new Map<string, string[]>(); // host id → ids of steps that free it

  const deletes: DeleteStep[] = [];
  const replaces: ReplaceStep[] = [];
  const updates: UpdateStep[] = [];
  const starts: StartStep[] = [];
  const toPlace: DesiredVm[] = [];
  const kept: PlacedVm[] = [];
  const current = new Map<string, VmRecord>();
  const replacing = new Map<string, VmChange>();
  const replaced = new Map<string, VmRecord>(); // desired name → the VM its replacement removes
  const moving = new Map<string, { vm: VmRecord; providers: string[]; change: VmChange }>();
  const migrates: MigrateStep[] = [];

  // A VM fills the slot its ownership names (group and index), whatever its name: VMs made by
  // NovaCron are named after their slot, adopted ones keep the name they had.
  const desiredBySlot = new Map(desired.map((d) => [slotKey(d.group, d.index), d]));
  const bySlot = new Map<string, VmRecord>(); // desired name → the VM in that slot
  for (const vm of [...observed.vms].sort(byName)) {
    const want = desiredBySlot.get(slotKey(vm.group, vm.index));
    const holder = want ? bySlot.get(want.name) : undefined;
    const duplicate = holder !== undefined || current.has(vm.name);
    if (!want || want.group !== vm.group || duplicate) {
      const reason = options.destroy
        ? `fleet "${fleet.name}" is being destroyed`
        : duplicate
        ? `duplicate of ${holder?.name ?? vm.name} on ${(holder ?? current.get(vm.name))!.host}`
        : !(vm.group in fleet.groups)
          ? `group "${vm.group}" is no longer in the fleet`
          : `group "${vm.group}" has count ${fleet.groups[vm.group]!.count}`;
      const step: DeleteStep = { ...base('delete', vm, reason), host: vm.host, ref: refOf(vm, fleet.name), resources: vm.resources };
      deletes.push(step);
      free(vm.host, vm.resources, step.id);
      continue;
    }
    current.set(vm.name, vm);
    bySlot.set(want.name, vm);
  }

  for (const want of desired) {
    const vm = bySlot.get(want.name);
    if (!vm) {
      toPlace.push(want);
      continue;
    }
    const change = classifyChanges(want, vm, observed.capabilities[vm.provider] ?? NO_CAPABILITIES);
    const movable = change.class === 'replace' ? crossProviderTargets(want, vm, change, observed) : [];
    if (movable.length > 0) {
      // Only the provider changes and both ends can move disks: move the VM, do not rebuild it.
      moving.set(want.name, { vm, providers: movable, change });
      toPlace.push(want);
      continue;
    }
    if (change.class === 'replace') {
      // The name is fixed, so the old VM goes first; its replacement waits for it.
      const step: DeleteStep = { ...base('delete', vm, `to be replaced: ${describeChanges(change.changes.filter((c) => c.class === 'replace'))}`), host: vm.host, ref: refOf(vm, fleet.name), resources: vm.resources, replaced: true };
      deletes.push(step);
      free(vm.host, vm.resources, step.id);
      toPlace.push(want);
      replacing.set(want.name, change);
      replaced.set(want.name, vm);
      continue;
    }
    kept.push({ id: vm.name, group: vm.group, host: vm.host });
    if (change.class !== 'none') {
      const rules = want.spec.changes;
      const reboot = change.changes.some((c) => c.field === 'cloudInit' && c.class === 'reboot');
      updates.push({
        ...base('update', vm, describeChanges(change.changes)),
        host: vm.host,
        ref: refOf(vm, fleet.name),
        from: vm.resources,
        to: want.resources,
        specHash: want.specHash,
        changeClass: change.class,
        changes: change.changes,
        labels: want.spec.labels,
        ...(want.spec.cloudInit ? { cloudInit: want.spec.cloudInit } : {}),
        ...(reboot ? { reboot } : {}),
        allowReboot: rules.allowReboot,
        ...(change.class === 'reboot' && !rules.allowReboot ? { held: `needs a reboot and groups.${want.group}.changes.allowReboot is false` } : {}),
        ...(rules.fallbackToReplace ? { fallback: createRequest(fleet, want, vm.host, vm.instanceType) } : {}),
        ...instanceTypeFor(hostsById.get(vm.host), want.resources, vm.instanceType),
        ...(want.spec.nics && change.changes.some((c) => c.field === 'nics') ? { nics: want.spec.nics } : {}),
      });
    } else if (vm.state === 'stopped' || vm.state === 'creating' || vm.state === 'error') {
      starts.push({ ...base('start', vm, vm.state === 'stopped' ? 'VM is stopped' : `VM is in state "${vm.state}"; finishing it`), host: vm.host, ref: refOf(vm, fleet.name) });
    }
  }

  let hosts = observed.hosts.map((h) => withFreed(h, freed.get(h.id)));
  // Every group's rules, so rules of groups with nothing to place (avoidGroups both ways) hold too.
  const groupRules = fleetGroupRules(fleet);
  const weights = { ...fleet.placement.weights, ...options.weights };
  const seed = options.seed ?? fleet.placement.seed;
  let existing = kept;
  const stuck: UnplacedVm[] = [];
  const rebalanced = new Map<string, string>(); // VM → host it migrates to
  const leaving = new Map<string, string[]>(); // host → migrate steps leaving it, in order
  // A VM moved by hand, a drain or an HA event is not drift: where it runs is never compared
  // with where placement would put it. It moves only when it breaks a hard rule there (or
  // when a rebalance is asked for, below).
  const violations = options.destroy ? [] : repairRules();
  if (options.rebalance) {
    // Moves first, on the allocation left after deletes; new VMs are then placed around them.
    const busy = new Set([...updates, ...starts].map((s) => s.vm));
    const result = rebalance({
      hosts,
      vms: kept.map((k) => {
        const vm = current.get(k.id)!;
        const moved = rebalanced.get(vm.name);
        return { id: vm.name, group: vm.group, host: moved ?? vm.host, resources: vm.resources, labels: vm.labels, movable: !moved && !busy.has(vm.name) && migrationMode(vm) !== undefined };
      }),
      target: options.rebalance,
      groupRules,
      weights,
      seed,
    });
    stuck.push(...result.stuck);
    for (const m of result.migrations) {
      const vm = current.get(m.vm)!;
      const mode = migrationMode(vm)!;
      const id = `migrate:${vm.name}`;
      migrates.push({
        ...base('migrate', vm, m.reason),
        // A migration waits for what frees its destination: deletes there, and moves off it listed before it.
        dependsOn: [...new Set([...(freeing.get(m.to) ?? []), ...(leaving.get(m.to) ?? [])])],
        ref: refOf(vm, fleet.name),
        from: m.from,
        to: m.to,
        mode,
        policy: { ...fleet.groups[vm.group]!.migration, mode },
        memoryMiB: m.memoryMiB,
      });
      leaving.set(m.from, [...(leaving.get(m.from) ?? []), id]);
      rebalanced.set(vm.name, m.to);
      hosts = hosts.map((h) => (h.id === m.from ? withFreed(h, vm.resources) : h.id === m.to ? withFreed(h, negate(vm.resources)) : h));
    }
  }
  // New VMs on a host being emptied wait for the moves off it.
  for (const [host, ids] of leaving) freeing.set(host, [...(freeing.get(host) ?? []), ...ids]);
  if (rebalanced.size > 0) existing = kept.map((k) => (rebalanced.has(k.id) ? { ...k, host: rebalanced.get(k.id)! } : k));
  const placement = place({
    hosts,
    vms: toPlace.map((want) => {
      const move = moving.get(want.name);
      const vm = placementVm(want);
      return move ? { ...vm, rules: { ...vm.rules, providers: move.providers } } : vm;
    }),
    existing,
    groupRules,
    seed,
    weights,
    // Trade-offs are for `novacron place`; a plan needs the chosen placement only.
    alternatives: false,
  });

  const creates: CreateStep[] = [];
  for (const want of toPlace) {
    const host = placement.assignments[want.name];
    if (!host) continue;
    const hostRecord = hostsById.get(host)!;
    const request = createRequest(fleet, want, host, placement.instanceTypes[want.name]);
    const move = moving.get(want.name);
    if (move) {
      migrates.push({
        ...base('migrate', move.vm, `${describeChanges(move.change.changes)}; moved with its disk`),
        ref: refOf(move.vm, fleet.name),
        from: move.vm.host,
        to: host,
        mode: 'cold',
        policy: { ...want.spec.migration, mode: 'cold' },
        memoryMiB: move.vm.resources.memoryMiB,
        create: request,
      });
      continue;
    }
    const old = replaced.get(want.name);
    if (old) {
      const changes = replacing.get(want.name)?.changes ?? [];
      replaces.push({
        ...base('replace', old, describeChanges(changes), hostRecord.provider),
        changes,
        dependsOn: [...new Set([`delete:${old.name}`, ...(freeing.get(host) ?? [])])],
        fromProvider: old.provider,
        fromHost: old.host,
        ref: refOf(old, fleet.name),
        host,
        request,
      });
    } else {
      creates.push({
        id: `create:${want.name}`,
        kind: 'create',
        vm: want.name,
        group: want.group,
        provider: hostRecord.provider,
        host,
        reason: `new VM ${want.index + 1} of ${want.spec.count} in group "${want.group}"`,
        dependsOn: freeing.get(host) ?? [],
        request,
      });
    }
  }

  const steps: PlanStep[] = [...deletes, ...replaces, ...updates, ...migrates, ...starts, ...creates.sort(byVm)];
  const summary = emptySummary();
  for (const step of steps) if (!(step.kind === 'delete' && step.replaced)) summary[step.kind]++;
  return {
    fleet: fleet.name,
    steps,
    unplaced: [...placement.unplaced, ...stuck],
    placement,
    summary: { ...summary, unchanged: kept.length - updates.length - starts.length - rebalanced.size },
    ...(violations.length > 0 ? { violations } : {}),
    costPerHour: fleetCost(fleet.name, rebalanced.size ? { ...observed, vms: observed.vms.map((vm) => (rebalanced.has(vm.name) ? { ...vm, host: rebalanced.get(vm.name)! } : vm)) } : observed, steps, placement.instanceTypes, hostsById),
  };

  /**
   * Finds the kept VMs that break a hard rule where they run now and plans a move for each
   * that can move, one at a time (the last by name first, so `web-0` stays put), each checked
   * against the moves before it, until no rule is broken or nothing more can be moved.
   */
  function repairRules(): RuleViolation[] {
    const out: RuleViolation[] = [];
    const at = new Map(kept.map((k) => [k.id, k.host]));
    const given = new Set<string>(); // VMs already moved or found unmovable
    const pending = new Map([...updates, ...starts].map((s) => [s.vm, s.id]));
    for (let round = 0; round < kept.length; round++) {
      const broken = brokenRules(hosts, kept.map((k) => current.get(k.id)!), at, groupRules).filter((v) => v.vm && !given.has(v.vm));
      if (broken.length === 0) break;
      const pick = broken.map((v) => v.vm!).sort(naturalCompare).at(-1)!;
      const violation = broken.find((v) => v.vm === pick)!;
      const vm = current.get(pick)!;
      // One VM answers for the others that break the same rule with it (two anti-affine VMs on one host: one moves).
      for (const v of broken) if (v.rule === violation.rule && v.host === violation.host && v.group === violation.group) given.add(v.vm!);
      given.add(pick);
      const where = { vm: vm.name, group: vm.group, host: at.get(pick)!, rule: violation.rule, message: violation.message };
      const mode = migrationMode(vm);
      if (!mode) {
        out.push({ ...where, action: 'none', reason: `provider "${vm.provider}" cannot migrate this VM (no ${vm.state === 'running' ? 'live or cold' : 'cold'} migration); move it by hand, or replace it` });
        continue;
      }
      const from = at.get(pick)!;
      const candidates = hosts.map((h) => (h.id === from ? withFreed(h, vm.resources) : h));
      const result = place({
        hosts: candidates.filter((h) => h.provider === vm.provider && !h.instanceTypes),
        vms: [{ id: vm.name, group: vm.group, resources: vm.resources, labels: vm.labels, rules: { ...fleet.groups[vm.group]!.placement, providers: [vm.provider] } }],
        existing: kept.filter((k) => k.id !== pick).map((k) => ({ ...k, host: at.get(k.id)! })),
        groupRules,
        seed,
        weights,
        // One VM, the rest fixed: the greedy pass finds its host; no search, no alternatives.
        alternatives: false,
        effort: 0,
      });
      const to = result.assignments[vm.name];
      if (!to || to === from) {
        out.push({ ...where, action: 'none', reason: `no host of provider "${vm.provider}" satisfies the rules: ${result.unplaced[0]?.message ?? 'it would stay where it is'}` });
        continue;
      }
      const id = `migrate:${vm.name}`;
      migrates.push({
        ...base('migrate', vm, `rule ${violation.rule} broken: ${violation.message}; moved to ${to}, where it holds`),
        dependsOn: [...new Set([...(pending.has(vm.name) ? [pending.get(vm.name)!] : []), ...(freeing.get(to) ?? []), ...(leaving.get(to) ?? [])])],
        ref: refOf(vm, fleet.name),
        from,
        to,
        mode,
        policy: { ...fleet.groups[vm.group]!.migration, mode },
        memoryMiB: vm.resources.memoryMiB,
      });
      leaving.set(from, [...(leaving.get(from) ?? []), id]);
      at.set(pick, to);
      rebalanced.set(vm.name, to);
      hosts = hosts.map((h) => (h.id === from ? withFreed(h, vm.resources) : h.id === to ? withFreed(h, negate(vm.resources)) : h));
      out.push({ ...where, action: 'migrate' });
    }
    return out;
  }

  /** How a VM would move: its group's mode, live only when it runs and the provider can; undefined when the provider cannot move it. */
  function migrationMode(vm: VmRecord): 'live' | 'cold' | undefined {
    const caps = observed.capabilities[vm.provider] ?? NO_CAPABILITIES;
    const wanted = fleet.groups[vm.group]?.migration.mode ?? 'auto';
    if (wanted !== 'cold' && caps.liveMigration && vm.state === 'running') return 'live';
    if (wanted !== 'live' && caps.coldMigration) return 'cold';
    return undefined;
  }

  function free(host: string, resources: Resources, stepId: string): void {
    const sum = freed.get(host) ?? { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 };
    freed.set(host, add(sum, resources, 1));
    freeing.set(host, [...(freeing.get(host) ?? []), stepId]);
  }
}

/** On a cloud zone, the cheapest type the new size fits, when it is not the current one. */
function instanceTypeFor(host: Host | undefined, resources: Resources, current: string | undefined): { instanceType?: string } {
  const type = host?.instanceTypes ? cheapestFit(host.instanceTypes, resources) : undefined;
  return type && type.name !== current ? { instanceType: type.name } : {};
}

/** Providers the VM may move to with its disk, when the provider is all that changes. */
function crossProviderTargets(want: DesiredVm, vm: VmRecord, change: VmChange, observed: Observed): string[] {
  const replaceFields = change.changes.filter((c) => c.class === 'replace').map((c) => c.field);
  if (replaceFields.length !== 1 || replaceFields[0] !== 'provider') return [];
  if (!observed.capabilities[vm.provider]?.imageExport) return [];
  return (want.spec.placement.providers ?? []).filter((p) => observed.capabilities[p]?.imageImport);
}

/** The hourly cost of the fleet once the steps are applied: fixed hosts it keeps active, plus its cloud instances. */
export function fleetCost(fleet: string, observed: Observed, steps: readonly PlanStep[], types: Readonly<Record<string, string>>, hosts: ReadonlyMap<string, Host>): number {
  // Keyed by provider id: a duplicate's delete removes that copy only.
  const after = new Map<string, { host: string; type: string | undefined }>();
  const idOf = new Map<string, string>();
  for (const vm of observed.vms) {
    if (vm.fleet !== fleet) continue;
    after.set(vm.id, { host: vm.host, type: vm.instanceType });
    if (!idOf.has(vm.name)) idOf.set(vm.name, vm.id);
  }
  const key = (vm: string) => idOf.get(vm) ?? `new:${vm}`;
  for (const step of steps) {
    if (step.kind === 'delete') after.delete(step.ref.id ?? key(step.vm));
    else if (step.kind === 'create' || step.kind === 'replace') after.set(`new:${step.vm}`, { host: step.host, type: types[step.vm] });
    else if (step.kind === 'migrate') after.set(key(step.vm), { host: step.to, type: step.create?.instanceType ?? after.get(key(step.vm))?.type });
    else if (step.kind === 'update' && step.instanceType) after.set(key(step.vm), { host: step.host, type: step.instanceType });
  }
  let cost = 0;
  const activeFixed = new Set<string>();
  for (const p of after.values()) {
    const host = hosts.get(p.host);
    if (!host) continue;
    if (host.instanceTypes) cost += host.instanceTypes.find((t) => t.name === p.type)?.pricePerHour ?? 0;
    else activeFixed.add(host.id);
  }
  for (const id of activeFixed) cost += hosts.get(id)!.pricePerHour;
  return Math.round(cost * 10_000) / 10_000;
}

/** Rules the placement validator checks that a VM's current host can break (capacity and host state are not "rules broken by a move"). */
const MOVABLE_RULES = new Set(['anti-affinity', 'max-per-host', 'zone', 'region', 'labels', 'with-groups', 'avoid-groups', 'spread']);

/** Hard rules broken by the kept VMs at the hosts `at` gives them, as the placement validator sees them. */
function brokenRules(hosts: readonly Host[], all: readonly VmRecord[], at: ReadonlyMap<string, string>, groupRules: Readonly<Record<string, PlacementRules>>): PlacementViolation[] {
  // Only groups with a rule a host can break, and the groups those rules name, are looked at.
  const ruled = Object.entries(groupRules).filter(([, r]) => r.antiAffinity || r.maxPerHost !== undefined || r.zones || r.regions || Object.keys(r.hostLabels ?? {}).length > 0 || r.withGroups?.length || r.avoidGroups?.length || r.spread);
  if (ruled.length === 0) return [];
  const relevant = new Set(ruled.flatMap(([g, r]) => [g, ...(r.withGroups ?? []).map((x) => x.group), ...(r.avoidGroups ?? []).map((x) => x.group)]));
  const vms = all.filter((vm) => relevant.has(vm.group));
  // The validator adds the VMs it checks to their hosts' allocation: take them out first.
  const own = new Map<string, Resources>();
  for (const vm of vms) own.set(vm.host, add(own.get(vm.host) ?? { cpu: 0, memoryMiB: 0, diskGiB: 0, gpu: 0 }, vm.resources, 1));
  const request = {
    hosts: hosts.map((h) => withFreed(h, own.get(h.id))),
    vms: vms.map((vm) => ({ id: vm.name, group: vm.group, resources: vm.resources, labels: vm.labels, ...(groupRules[vm.group] ? { rules: groupRules[vm.group] } : {}) })),
    groupRules,
  };
  return validatePlacement(request, { assignments: Object.fromEntries(vms.map((vm) => [vm.name, at.get(vm.name) ?? vm.host])), unplaced: [] }).filter((v) => MOVABLE_RULES.has(v.rule));
}

function slotKey(group: string, index: number): string {
  return `${group}\u0000${index}`;
}

function base<K extends StepKind>(kind: K, vm: VmRecord, reason: string, provider = vm.provider) {
  return { id: `${kind}:${vm.name}`, kind, vm: vm.name, group: vm.group, provider, reason, dependsOn: [] as string[] };
}

function refOf(vm: VmRecord, fleet: string): VmRef {
  return { name: vm.name, fleet, id: vm.id, host: vm.host };
}

function createRequest(fleet: FleetSpec, want: DesiredVm, host: string, instanceType: string | undefined): CreateVmRequest {
  const workload = want.spec.workload;
  return {
    name: want.name,
    ownership: { fleet: fleet.name, group: want.group, index: want.index, specHash: want.specHash },
    host,
    resources: want.resources,
    image: want.image,
    labels: want.spec.labels,
    ...(instanceType ? { instanceType } : {}),
    ...(want.spec.cloudInit ? { cloudInit: want.spec.cloudInit } : {}),
    ...(want.spec.nics ? { nics: want.spec.nics } : {}),
    ...(workload
      ? {
          workload: {
            ...(workload.workingSet !== undefined ? { workingSetMiB: workload.workingSet } : {}),
            ...(workload.dirtyRateMiBps !== undefined ? { dirtyRateMiBps: workload.dirtyRateMiBps } : {}),
          },
        }
      : {}),
  };
}

function placementVm(want: DesiredVm): PlacementVm {
  return { id: want.name, group: want.group, resources: want.resources, labels: want.spec.labels, rules: want.spec.placement };
}

function negate(r: Resources): Resources {
  return { cpu: -r.cpu, memoryMiB: -r.memoryMiB, diskGiB: -r.diskGiB, gpu: -r.gpu };
}

function withFreed(host: Host, freed: Resources | undefined): Host {
  return freed ? { ...host, allocated: add(host.allocated, freed, -1) } : host;
}

function add(a: Resources, b: Resources, sign: 1 | -1): Resources {
  return {
    cpu: Math.max(0, a.cpu + sign * b.cpu),
    memoryMiB: Math.max(0, a.memoryMiB + sign * b.memoryMiB),
    diskGiB: Math.max(0, a.diskGiB + sign * b.diskGiB),
    gpu: Math.max(0, a.gpu + sign * b.gpu),
  };
}

const byName = (a: { name: string }, b: { name: string }) => naturalCompare(a.name, b.name);
const byVm = (a: { vm: string }, b: { vm: string }) => naturalCompare(a.vm, b.vm);

/** `web-2` before `web-10`. */
export function naturalCompare(a: string, b: string): number {
  return collator.compare(a, b);
}
const collator = new Intl.Collator('en', { numeric: true });
