/**
 * Calendar periods in a time zone, for retention buckets. Days run 00:00–23:59 local time,
 * weeks Monday–Sunday by ISO 8601 (the week of 31 December may belong to next year's week 1),
 * as restic and Proxmox both define them.
 */

export type CalendarPeriod = 'hour' | 'day' | 'week' | 'month' | 'year';

export interface LocalTime {
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
}

const DAY_MS = 86_400_000;

/** Reads local wall-clock fields; one formatter per zone, made by the caller's `CalendarCache`. */
export class CalendarCache {
  readonly #formatters = new Map<string, Intl.DateTimeFormat>();
  /** Zone offsets (and their changes) fall on quarter hours since the 1970s, so every instant of a quarter hour reads the same local hour. */
  readonly #quarters = new Map<string, LocalTime>();

  local(at: number, timeZone: string): LocalTime {
    const key = `${timeZone}\u0000${Math.floor(at / 900_000)}`;
    const known = this.#quarters.get(key);
    if (known) return known;
    const fields = this.#read(at, timeZone);
    if (this.#quarters.size > 100_000) this.#quarters.clear();
    this.#quarters.set(key, fields);
    return fields;
  }

  #read(at: number, timeZone: string): LocalTime {
    let format = this.#formatters.get(timeZone);
    if (!format) {
      format = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric' });
      this.#formatters.set(timeZone, format);
    }
    const fields = { year: 0, month: 0, day: 0, hour: 0 };
    for (const part of format.formatToParts(at)) {
      if (part.type === 'year' || part.type === 'month' || part.type === 'day' || part.type === 'hour') fields[part.type] = Number(part.value);
    }
    return fields;
  }

  /**
   * Sortable numbers naming the periods `at` falls in: later periods have larger keys, so a
   * key never decreases as time goes on (DST repeats an hour but never goes back a period).
   */
  keys(at: number, timeZone: string): Readonly<Record<CalendarPeriod, number>> {
    const t = this.local(at, timeZone);
    const w = isoWeek(t.year, t.month, t.day);
    const day = (t.year * 100 + t.month) * 100 + t.day;
    return { hour: day * 100 + t.hour, day, week: w.year * 100 + w.week, month: t.year * 100 + t.month, year: t.year };
  }
}

/** ISO 8601 week of a calendar date: the week (Monday first) that holds its Thursday. */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const date = Date.UTC(year, month - 1, day);
  const mondayBased = (new Date(date).getUTCDay() + 6) % 7;
  const thursday = date + (3 - mondayBased) * DAY_MS;
  const weekYear = new Date(thursday).getUTCFullYear();
  return { year: weekYear, week: 1 + Math.floor((thursday - Date.UTC(weekYear, 0, 1)) / (7 * DAY_MS)) };
}

/** A period key for people: 2024-03-31, 2024-W13, 2024-03, 2024, 2024-03-31T14h. */
export function formatPeriodKey(key: number, period: CalendarPeriod): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  switch (period) {
    case 'hour':
      return `${Math.floor(key / 1_000_000)}-${pad(Math.floor(key / 10_000) % 100)}-${pad(Math.floor(key / 100) % 100)}T${pad(key % 100)}h`;
    case 'day':
      return `${Math.floor(key / 10_000)}-${pad(Math.floor(key / 100) % 100)}-${pad(key % 100)}`;
    case 'week':
      return `${Math.floor(key / 100)}-W${pad(key % 100)}`;
    case 'month':
      return `${Math.floor(key / 100)}-${pad(key % 100)}`;
    case 'year':
      return String(key);
  }
}
