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
  | { readonly type: 'apply.done'; readonly ok: boolean; readonly done: number; readonly failed: number; readonly skipped: number; readonly durationMs: number; readonly at: number };

export type ApplyEventType = ApplyEvent['type'];
export type ApplyListener = (event: ApplyEvent) => void;
