import type { NovaCronError } from '../errors/NovaCronError.js';
import type { ApplyEvent } from '../events/events.js';
import type { FleetSpec } from '../model/fleet.js';
import { splitHostId } from '../model/records.js';
import { CapacityMemory } from '../placement/capacityFallback.js';
import type { UnplacedVm } from '../placement/types.js';
import { defaultMiddlewareStack } from '../provider/defaultStack.js';
import type { OperationContext } from '../provider/Provider.js';
import type { ProviderSet } from '../provider/registry.js';
import { systemClock } from '../util/clock.js';
import { apply, type ApplyOptions, type ApplyResult, type StepOutcome } from './apply.js';
import { observe } from './observe.js';
import { plan, type PlanOptions } from './plan.js';
import type { Observed, Plan, PlanStep } from './types.js';
import { emptySummary } from './types.js';

export interface ReconcileOptions extends ApplyOptions {
  /** How every round plans (weights, seed, destroy, rebalance). */
  readonly plan?: PlanOptions;
  /** The first round's plan, when the caller made (and showed) it already; otherwise observed and planned here. */
  readonly initialPlan?: Plan;
  /**
   * Rounds in all, the first included. After a round in which creates failed for want of
   * capacity, the providers are observed again, the fleet planned again around the short
   * hosts, zones and types, and those VMs' new steps applied. @default 3
   */
  readonly maxRounds?: number;
  /**
   * Where shortages are remembered (host id and type, or host id and `*` for a host of fixed
   * capacity). Pass one to keep avoiding them across reconciles. @default a new one, 15 min
   */
  readonly capacity?: CapacityMemory;
}

/** A create or replace that a host, zone or type refused for want of capacity. */
export interface CapacityShortage {
  readonly vm: string;
  readonly step: PlanStep;
  /** Host id: `provider/name` (on a cloud, the name is the zone). */
  readonly host: string;
  readonly instanceType?: string;
  readonly error: NovaCronError;
}

export interface ReconcileRound {
  /** What this round applied: the whole plan in the first round, the re-placed VMs' steps after. */
  readonly plan: Plan;
  readonly result: ApplyResult;
  readonly shortages: readonly CapacityShortage[];
}

export interface ReconcileResult extends ApplyResult {
  /** The first round's plan. */
  readonly plan: Plan;
  readonly rounds: readonly ReconcileRound[];
  /**
   * VMs that ran short of capacity and that no round could place elsewhere, each with the
   * hosts, zones and types that refused it. `ok` is false when there are any.
   */
  readonly unplaced: readonly UnplacedVm[];
}

/** The type recorded for a host of fixed capacity that refused a VM: the whole host is avoided. */
export const ANY_TYPE = '*';
const DEFAULT_ROUNDS = 3;
const COOLDOWN_MS = 15 * 60_000;

/**
 * Observes, plans and applies; then, while creates fail for want of capacity (a cloud zone
 * out of an instance type, a host fuller than it reported), remembers the refusing host,
 * zone or type, observes and plans again and applies the new steps of those VMs, up to
 * `maxRounds` rounds in all. Placing again, rather than letting a provider jump zones on its
 * own, keeps every placement rule (zones, spread, anti-affinity, maxPerHost).
 *
 * Only capacity shortages start another round: any other failure is reported as apply reports
 * it, for the next reconcile to retry. A plan with VMs that fit nowhere changes nothing (as
 * `apply`); an aborted signal stops between rounds as it stops apply between steps.
 */
export async function reconcile(fleet: FleetSpec, providers: ProviderSet, options: ReconcileOptions = {}): Promise<ReconcileResult> {
  const clock = options.clock ?? systemClock;
  // One stack for every round: pacing and circuit breakers carry over from one round to the next.
  const middleware = options.middleware ?? defaultMiddlewareStack({ retry: { clock }, breaker: { clock } });
  const memory = options.capacity ?? new CapacityMemory(clock, COOLDOWN_MS);
  const maxRounds = Math.max(1, Math.floor(options.maxRounds ?? DEFAULT_ROUNDS));
  const emit = (event: ApplyEvent) => options.onEvent?.(event);
  const ctx: OperationContext = options.signal ? { signal: options.signal } : {};
  const observeAvoiding = async () => avoidShortages(await observe(fleet, providers, ctx, { middleware }), memory);
  const started = clock.now();

  const first = options.initialPlan ?? plan(fleet, await observeAvoiding(), options.plan);
  const rounds: ReconcileRound[] = [];
  const outcomes = new Map<string, StepOutcome>(); // step id → its latest outcome
  const unplaced: UnplacedVm[] = [];
  const refused = new Map<string, CapacityShortage[]>(); // VM → every shortage it met, in order
  let current = first;
  let aborted: boolean;

  for (let round = 1; ; round++) {
    const result = await apply(current, providers, { ...options, clock, middleware, ...(round > 1 ? { allowUnplaced: true } : {}) });
    for (const o of result.outcomes) outcomes.set(o.step.id, o);
    const shortages = result.outcomes.flatMap((o) => shortageOf(o) ?? []);
    rounds.push({ plan: current, result, shortages });
    for (const s of shortages) {
      memory.markExhausted(s.host, s.instanceType ?? ANY_TYPE);
      refused.set(s.vm, [...(refused.get(s.vm) ?? []), s]);
    }
    aborted = result.aborted || (options.signal?.aborted ?? false);
    if (shortages.length === 0 || aborted) break;
    if (round >= maxRounds) {
      for (const s of shortages) giveUp(s.vm, round, `no capacity left to try within ${maxRounds} round(s)`);
      break;
    }

    let next: Plan;
    try {
      next = plan(fleet, await observeAvoiding(), options.plan);
    } catch {
      // Observing again failed (or was aborted): the shortages stay reported as failed steps.
      aborted = options.signal?.aborted ?? false;
      break;
    }
    const again = new Set(shortages.map((s) => s.vm));
    const steps = withDependencies(next.steps, (s) => again.has(s.vm));
    for (const u of next.unplaced) if (again.has(u.id)) giveUp(u.id, round + 1, `nowhere else fits: ${u.message}`, u.reasons);
    for (const s of shortages) {
      if (unplaced.some((u) => u.id === s.vm)) continue;
      // The VM gets a new chance (or, with no step left for it, turns out to be there after
      // all): its refused step no longer counts against the apply; `rounds` keeps it.
      outcomes.delete(s.step.id);
      const placed = steps.find((step) => step.vm === s.vm && step.kind !== 'delete');
      if (!placed) continue;
      const to = placed.kind === 'migrate' ? placed.to : placed.host;
      const type = 'request' in placed ? placed.request.instanceType : undefined;
      emit({
        type: 'capacity.replan',
        step: s.step,
        host: s.host,
        ...(s.instanceType ? { instanceType: s.instanceType } : {}),
        to,
        round: round + 1,
        maxRounds,
        message: `${shortageText(s)}: placing ${s.instanceType ? s.vm : 'it'} again (${splitHostId(to).name}${type ? `, ${type}` : ''})`,
        at: clock.now(),
      });
    }
    if (steps.length === 0) break;
    const summary = emptySummary();
    for (const step of steps) if (!(step.kind === 'delete' && step.replaced)) summary[step.kind]++;
    current = { ...next, steps, unplaced: next.unplaced.filter((u) => again.has(u.id)), summary: { ...summary, unchanged: next.summary.unchanged } };
  }

  const list = [...outcomes.values()];
  const failed = list.some((o) => o.status !== 'done');
  return {
    ok: !failed && unplaced.length === 0 && !aborted,
    aborted,
    outcomes: list,
    durationMs: clock.now() - started,
    plan: first,
    rounds,
    unplaced,
  };

  function giveUp(vm: string, round: number, why: string, reasons: Readonly<Record<string, number>> = {}): void {
    if (unplaced.some((u) => u.id === vm)) return;
    const tried = refused.get(vm) ?? [];
    const message = `${vm}: no capacity (${tried.map(shortageText).join('; ')}); ${why}`;
    unplaced.push({ id: vm, reasons: { ...reasons, capacity: tried.length }, message });
    emit({ type: 'capacity.unplaced', vm, round, message, at: clock.now() });
  }
}

/**
 * The observed hosts less what ran short of capacity and is still remembered: the refused
 * instance types leave a cloud zone's offer, and a host of fixed capacity that refused a VM
 * takes no new one (it is treated as draining: the VMs on it stay where they are).
 */
export function avoidShortages(observed: Observed, memory: CapacityMemory): Observed {
  let changed = false;
  const hosts = observed.hosts.map((h) => {
    if (h.instanceTypes) {
      const types = h.instanceTypes.filter((t) => !memory.isExhausted(h.id, t.name));
      if (types.length === h.instanceTypes.length) return h;
      changed = true;
      return { ...h, instanceTypes: types };
    }
    if (h.state !== 'up' || !memory.isExhausted(h.id, ANY_TYPE)) return h;
    changed = true;
    return { ...h, state: 'draining' as const };
  });
  return changed ? { ...observed, hosts } : observed;
}

/**
 * A failed create or replace whose error is a capacity shortage. An account or project quota
 * is not one: it holds in every zone, and another zone would only fail the same way.
 */
function shortageOf(outcome: StepOutcome): CapacityShortage | undefined {
  const { step, error } = outcome;
  if (outcome.status !== 'failed' || !error || error.code !== 'CapacityExceeded') return undefined;
  if (step.kind !== 'create' && step.kind !== 'replace') return undefined;
  if (/quota/i.test(`${error.message} ${error.hint ?? ''}`)) return undefined;
  return { vm: step.vm, step, host: step.host, ...(step.request.instanceType ? { instanceType: step.request.instanceType } : {}), error };
}

/** `us-east-1a has no capacity for c6i.large`, or `rack1-a has no room for shop-db-1`. */
function shortageText(s: CapacityShortage): string {
  const where = splitHostId(s.host).name;
  return s.instanceType ? `${where} has no capacity for ${s.instanceType}` : `${where} has no room for ${s.vm}`;
}

/** The steps `pick` selects, with every step they wait for (deletes and moves that free their host). */
function withDependencies(steps: readonly PlanStep[], pick: (step: PlanStep) => boolean): PlanStep[] {
  const byId = new Map(steps.map((s) => [s.id, s]));
  const keep = new Set<string>();
  const visit = (step: PlanStep) => {
    if (keep.has(step.id)) return;
    keep.add(step.id);
    for (const dep of step.dependsOn) {
      const d = byId.get(dep);
      if (d) visit(d);
    }
  };
  for (const step of steps) if (pick(step)) visit(step);
  return steps.filter((s) => keep.has(s.id));
}
