import { apply, InvalidInputError, type ApplyResult, type FleetSpec, type ProviderSet } from '@novacron/core';
import { loadFleet, withProviders, writeJson, type GlobalOptions, type Io } from '../context.js';
import { EXIT } from '../exit.js';
import { progressReporter } from '../output/progress.js';
import { formatMs } from '../output/table.js';
import { planJson, renderPlan } from '../output/plan.js';
import { computePlan, parseRebalance, weightsFlag } from './plan.js';

export interface ApplyOptions extends GlobalOptions {
  readonly concurrency: number;
  readonly rebalance?: string;
  readonly weights?: string;
}

/** Plans, then applies with progress; SIGINT stops cleanly (running steps finish or abort, none starts). */
export async function applyCommand(io: Io, options: ApplyOptions, destroy = false): Promise<number> {
  const fleet = await loadFleet(io, options);
  return withProviders(io, options, fleet, async (providers) => {
    const plan = await computePlan(fleet, providers, destroy, destroy ? undefined : parseRebalance(options.rebalance), weightsFlag(options.weights));
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
    const result = await runApply(io, options, fleet, providers, plan);
    if (options.json) {
      writeJson(io, {
        ok: result.ok,
        aborted: result.aborted,
        durationMs: result.durationMs,
        outcomes: result.outcomes.map((o) => ({
          step: o.step.id,
          status: o.status,
          durationMs: o.durationMs,
          ...(o.error ? { error: o.error.toJSON() } : {}),
        })),
      });
    } else {
      const done = result.outcomes.filter((o) => o.status === 'done').length;
      const failed = result.outcomes.filter((o) => o.status === 'failed');
      io.stdout.write(`${result.ok ? 'Applied' : result.aborted ? 'Aborted' : 'Apply incomplete'}: ${done}/${result.outcomes.length} steps in ${formatMs(result.durationMs)}.\n`);
      for (const f of failed.slice(0, 20)) io.stdout.write(`  ✗ ${f.step.id}: ${f.error?.describe()}\n`);
      if (!result.ok) io.stdout.write('Re-run apply to converge: every step is idempotent.\n');
    }
    return result.ok ? EXIT.ok : EXIT.failed;
  });
}

async function runApply(io: Io, options: ApplyOptions, _fleet: FleetSpec, providers: ProviderSet, plan: Awaited<ReturnType<typeof computePlan>>): Promise<ApplyResult> {
  const controller = new AbortController();
  const onSignal = () => {
    io.stderr.write('\nInterrupted: finishing the steps under way, starting no more (Ctrl-C again to force).\n');
    controller.abort(new Error('interrupted'));
    process.once('SIGINT', () => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  const reporter = options.json ? undefined : progressReporter(io.stderr);
  try {
    return await apply(plan, providers, {
      concurrency: options.concurrency,
      signal: controller.signal,
      ...(reporter ? { onEvent: reporter } : {}),
    });
  } finally {
    process.off('SIGINT', onSignal);
  }
}
