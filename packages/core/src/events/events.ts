import type { NovaCronError } from '../errors/NovaCronError.js';
import type { VmRecord } from '../model/records.js';
import type { MigrationResult, OperationProgress } from '../provider/Provider.js';
import type { PlanStep } from '../reconcile/types.js';

/** Everything an apply reports while it runs, for progress bars, logs and audit trails. */
export type ApplyEvent =
  | { readonly type: 'apply.start'; readonly fleet: string; readonly steps: number; readonly at: number }
  | { readonly type: 'step.start'; readonly step: PlanStep; readonly at: number }
  | { readonly type: 'step.progress'; readonly step: PlanStep; readonly progress: OperationProgress; readonly at: number }
  | { readonly type: 'step.retry'; readonly step: PlanStep; readonly attempt: number; readonly delayMs: number; readonly error: NovaCronError; readonly at: number }
  | { readonly type: 'step.done'; readonly step: PlanStep; readonly durationMs: number; readonly vm?: VmRecord; readonly migration?: MigrationResult; readonly at: number }
  | { readonly type: 'step.failed'; readonly step: PlanStep; readonly error: NovaCronError; readonly at: number }
  | { readonly type: 'step.skipped'; readonly step: PlanStep; readonly reason: string; readonly at: number }
  | { readonly type: 'apply.done'; readonly ok: boolean; readonly done: number; readonly failed: number; readonly skipped: number; readonly durationMs: number; readonly at: number }
  /**
   * `reconcile`: a create (or replace) failed for want of capacity on `host` (and, on a cloud
   * zone, `instanceType`); the VM is placed again, elsewhere, in round `round` of `maxRounds`.
   * `to` is where the new plan puts it. Its next steps follow as this round's `step.*` events.
   */
  | { readonly type: 'capacity.replan'; readonly step: PlanStep; readonly host: string; readonly instanceType?: string; readonly to: string; readonly round: number; readonly maxRounds: number; readonly message: string; readonly at: number }
  /** `reconcile`: a VM that ran short of capacity and that no other host, zone or type could take within the rounds allowed. */
  | { readonly type: 'capacity.unplaced'; readonly vm: string; readonly round: number; readonly message: string; readonly at: number };

export type ApplyEventType = ApplyEvent['type'];
export type ApplyListener = (event: ApplyEvent) => void;
