import { InvalidInputError, reconcile, type FleetSpec, type Plan, type PlanOptions, type ProviderSet, type ReconcileResult } from '@novacron/core';
import { loadFleet, withProviders, writeJson, type GlobalOptions, type Io } from '../context.js';
import { EXIT } from '../exit.js';
import { progressReporter } from '../output/progress.js';
import { formatMs } from '../output/table.js';
import { planJson, renderPlan } from '../output/plan.js';
import { computePlanWithOptions, parseRebalance, weightsFlag } from './plan.js';

export interface ApplyOptions extends GlobalOptions {
  readonly concurrency: number;
  readonly rebalance?: string;
  readonly weights?: string;
}

/**
 * Plans, then applies with progress; VMs a host or zone had no capacity for are placed again
 * in the same run (a few rounds at most). SIGINT stops cleanly (running steps finish or
 * abort, none starts, no new round).
 */
export async function applyCommand(io: Io, options: ApplyOptions, destroy = false): Promise<number> {
  const fleet = await loadFleet(io, options);
  return withProviders(io, options, fleet, async (providers) => {
    const { plan, options: planOptions } = await computePlanWithOptions(fleet, providers, destroy, destroy ? undefined : parseRebalance(options.rebalance), weightsFlag(options.weights));
    if (plan.unplaced.length > 0) {
      if (!options.json) io.stderr.write(`${renderPlan(plan)}\n`);
      throw new InvalidInputError(`${plan.unplaced.length} VM(s) fit nowhere; nothing was changed`, {
        hint: 'add capacity, relax the placement rules or lower the count',
      });
    }
    if (plan.steps.length === 0) {
      if (options.json) writeJson(io, { ok: true, plan: planJson(plan), outcomes: [] });
      else io.stdout.write(`${renderPlan(plan)}\n`);
      return EXIT.ok;
    }
    if (!options.json) io.stdout.write(`${renderPlan(plan, 20)}\n`);
    const result = await runApply(io, options, fleet, providers, plan, planOptions);
    if (options.json) {
      writeJson(io, {
        ok: result.ok,
        aborted: result.aborted,
        durationMs: result.durationMs,
        rounds: result.rounds.length,
        outcomes: result.outcomes.map((o) => ({
          step: o.step.id,
          status: o.status,
          durationMs: o.durationMs,
          ...(o.error ? { error: o.error.toJSON() } : {}),
        })),
        ...(result.unplaced.length > 0 ? { unplaced: result.unplaced } : {}),
      });
    } else {
      const done = result.outcomes.filter((o) => o.status === 'done').length;
      const failed = result.outcomes.filter((o) => o.status === 'failed');
      const rounds = result.rounds.length > 1 ? ` (${result.rounds.length} rounds: VMs short of capacity were placed again)` : '';
      io.stdout.write(`${result.ok ? 'Applied' : result.aborted ? 'Aborted' : 'Apply incomplete'}: ${done}/${result.outcomes.length} steps in ${formatMs(result.durationMs)}${rounds}.\n`);
      for (const f of failed.slice(0, 20)) io.stdout.write(`  ✗ ${f.step.id}: ${f.error?.describe()}\n`);
      for (const u of result.unplaced.slice(0, 20)) io.stdout.write(`  ✗ unplaced ${u.message}\n`);
      if (!result.ok) io.stdout.write('Re-run apply to converge: every step is idempotent.\n');
    }
    return result.ok ? EXIT.ok : EXIT.failed;
  });
}

async function runApply(io: Io, options: ApplyOptions, fleet: FleetSpec, providers: ProviderSet, plan: Plan, planOptions: PlanOptions): Promise<ReconcileResult> {
  const controller = new AbortController();
  const onSignal = () => {
    io.stderr.write('\nInterrupted: finishing the steps under way, starting no more (Ctrl-C again to force).\n');
    controller.abort(new Error('interrupted'));
    process.once('SIGINT', () => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  const reporter = options.json ? undefined : progressReporter(io.stderr);
  try {
    return await reconcile(fleet, providers, {
      initialPlan: plan,
      plan: planOptions,
      concurrency: options.concurrency,
      signal: controller.signal,
      ...(reporter ? { onEvent: reporter } : {}),
    });
  } finally {
    process.off('SIGINT', onSignal);
  }
}
