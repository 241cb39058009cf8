import type { NovaCronError } from '../errors/NovaCronError.js';
import type { OperationProgress, SnapshotRecord, SnapshotVerification } from '../provider/Provider.js';
import type { DueSnapshot } from './due.js';
import type { PruneRemoval } from './prune.js';

/** What the snapshot engine reports while it works, for progress lines, logs and audit trails. */
export type SnapshotEvent =
  | { readonly type: 'tick.start'; readonly fleet: string; readonly due: number; readonly at: number }
  | { readonly type: 'snapshot.start'; readonly due: DueSnapshot; readonly at: number }
  | { readonly type: 'snapshot.progress'; readonly vm: string; readonly progress: OperationProgress; readonly at: number }
  | { readonly type: 'snapshot.done'; readonly record: SnapshotRecord; readonly durationMs: number; readonly at: number }
  | { readonly type: 'snapshot.failed'; readonly vm: string; readonly snapshotId?: string; readonly error: NovaCronError; readonly at: number }
  | { readonly type: 'prune.blocked'; readonly vm: string; readonly reason: string; readonly at: number }
  | { readonly type: 'prune.removed'; readonly removal: PruneRemoval; readonly at: number }
  | { readonly type: 'prune.failed'; readonly removal: PruneRemoval; readonly error: NovaCronError; readonly at: number }
  | { readonly type: 'verify.start'; readonly snapshot: SnapshotRecord; readonly at: number }
  | { readonly type: 'verify.done'; readonly snapshot: SnapshotRecord; readonly verification: SnapshotVerification; readonly at: number }
  | { readonly type: 'verify.failed'; readonly snapshot: SnapshotRecord; readonly error: NovaCronError; readonly at: number }
  | { readonly type: 'tick.done'; readonly ok: boolean; readonly taken: number; readonly failed: number; readonly pruned: number; readonly durationMs: number; readonly at: number };

export type SnapshotListener = (event: SnapshotEvent) => void;
