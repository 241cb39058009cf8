import { CalendarCache, formatPeriodKey, type CalendarPeriod } from './calendar.js';

/**
 * Grandfather-father-son retention, as restic's `forget` and Proxmox's prune define it. Pure:
 * the same snapshots, counts and time zone always give the same answer, so `tick` can run it
 * every time and a second run removes nothing.
 *
 * Both keep, for each rule, the newest snapshot of each of the N most recent calendar
 * periods that hold a snapshot (periods without one do not count), rules applied in the
 * order last, hourly, daily, weekly, monthly, yearly. They differ in how rules share:
 *
 * - `restic`: every rule walks all snapshots; a snapshot kept by several rules uses up one
 *   count of each, and when a rule still has counts left at the oldest snapshot, that oldest
 *   snapshot is kept too (restic ≥ 0.17).
 * - `proxmox`: a rule skips periods that an earlier rule already kept a backup in, and the
 *   other backups of a period a rule covered are removed, so later rules never pick them
 *   (a week kept by keep-weekly is not looked at again by keep-monthly, even where the
 *   week reaches into an earlier month). The same numbers therefore reach further back.
 */

export type RetentionSemantics = 'restic' | 'proxmox';
export type RetentionRuleName = 'last' | 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly';

/** How many of each to keep; 0 turns a rule off. */
export interface RetentionCounts {
  readonly keepLast: number;
  readonly hourly: number;
  readonly daily: number;
  readonly weekly: number;
  readonly monthly: number;
  readonly yearly: number;
}

export interface RetentionItem {
  readonly id: string;
  /** Epoch milliseconds. */
  readonly time: number;
}

/** Why a snapshot was kept: the rule and the period it stands for. */
export interface KeepReason {
  readonly rule: RetentionRuleName;
  /** `2024-03-31`, `2024-W13`, …; absent for keep-last. */
  readonly period?: string;
  /** restic only: kept as the oldest snapshot because the rule had counts left. */
  readonly oldest?: true;
}

export interface RetentionOutcome<T extends RetentionItem> {
  /** Newest first. */
  readonly keep: readonly T[];
  /** Newest first. */
  readonly remove: readonly T[];
  readonly reasons: ReadonlyMap<string, readonly KeepReason[]>;
}

export interface RetentionOptions {
  /** @default 'restic' */
  readonly semantics?: RetentionSemantics;
  /** Calendar periods are taken in this zone. @default 'UTC' */
  readonly timeZone?: string;
  /** Reuse formatters across calls (a fleet-wide prune). */
  readonly calendar?: CalendarCache;
}

interface Rule {
  readonly name: RetentionRuleName;
  readonly count: keyof RetentionCounts;
  readonly period?: CalendarPeriod;
}

export const RETENTION_RULES: readonly Rule[] = [
  { name: 'last', count: 'keepLast' },
  { name: 'hourly', count: 'hourly', period: 'hour' },
  { name: 'daily', count: 'daily', period: 'day' },
  { name: 'weekly', count: 'weekly', period: 'week' },
  { name: 'monthly', count: 'monthly', period: 'month' },
  { name: 'yearly', count: 'yearly', period: 'year' },
];

/** Newest first; equal times by id, so the order (and the answer) never depends on the input order. */
export function newestFirst<T extends RetentionItem>(items: readonly T[]): T[] {
  return [...items].sort((a, b) => b.time - a.time || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
}

/** Splits snapshots into those the rules keep and those they do not. Keeps everything when every count is 0. */
export function applyRetention<T extends RetentionItem>(items: readonly T[], counts: RetentionCounts, options: RetentionOptions = {}): RetentionOutcome<T> {
  const sorted = newestFirst(items);
  const timeZone = options.timeZone ?? 'UTC';
  const calendar = options.calendar ?? new CalendarCache();
  const rules = RETENTION_RULES.filter((r) => counts[r.count] > 0);
  if (rules.length === 0) return { keep: sorted, remove: [], reasons: new Map() };
  // Rule keys for every snapshot: keep-last's "period" is the snapshot itself.
  const keys = sorted.map((item, nr) => {
    const periods = calendar.keys(item.time, timeZone);
    return rules.map((r) => (r.period ? periods[r.period] : -1 - nr));
  });
  const reasons = (options.semantics ?? 'restic') === 'proxmox' ? proxmox(sorted, rules, counts, keys) : restic(sorted, rules, counts, keys);
  const keep: T[] = [];
  const remove: T[] = [];
  for (const item of sorted) (reasons.has(item.id) ? keep : remove).push(item);
  return { keep, remove, reasons };
}

function reasonOf(rule: Rule, key: number, oldest = false): KeepReason {
  return { rule: rule.name, ...(rule.period ? { period: formatPeriodKey(key, rule.period) } : {}), ...(oldest ? { oldest: true as const } : {}) };
}

/** restic's ApplyPolicy: each rule counts down on every new period it meets, walking newest to oldest. */
function restic(sorted: readonly RetentionItem[], rules: readonly Rule[], counts: RetentionCounts, keys: readonly (readonly number[])[]): Map<string, KeepReason[]> {
  const left = rules.map((r) => counts[r.count]);
  const last = rules.map(() => Number.NaN);
  const reasons = new Map<string, KeepReason[]>();
  sorted.forEach((item, nr) => {
    const isOldest = nr === sorted.length - 1;
    rules.forEach((rule, i) => {
      if (left[i]! <= 0) return;
      const key = keys[nr]![i]!;
      const newPeriod = key !== last[i];
      if (!newPeriod && !isOldest) return;
      last[i] = key;
      left[i]!--;
      const list = reasons.get(item.id) ?? [];
      list.push(reasonOf(rule, key, !newPeriod));
      reasons.set(item.id, list);
    });
  });
  return reasons;
}

/** Proxmox's compute_prune_info: rules in order, each skipping periods already covered and claiming the rest of its own. */
function proxmox(sorted: readonly RetentionItem[], rules: readonly Rule[], counts: RetentionCounts, keys: readonly (readonly number[])[]): Map<string, KeepReason[]> {
  const marks = new Map<string, 'keep' | 'remove'>();
  const reasons = new Map<string, KeepReason[]>();
  rules.forEach((rule, i) => {
    const covered = new Set<number>();
    sorted.forEach((item, nr) => {
      if (marks.get(item.id) === 'keep') covered.add(keys[nr]![i]!);
    });
    const included = new Set<number>();
    for (let nr = 0; nr < sorted.length; nr++) {
      const item = sorted[nr]!;
      if (marks.has(item.id)) continue;
      const key = keys[nr]![i]!;
      if (covered.has(key)) continue;
      if (included.has(key)) {
        marks.set(item.id, 'remove');
        continue;
      }
      if (included.size >= counts[rule.count]) break;
      included.add(key);
      marks.set(item.id, 'keep');
      reasons.set(item.id, [reasonOf(rule, key)]);
    }
  });
  return reasons;
}
