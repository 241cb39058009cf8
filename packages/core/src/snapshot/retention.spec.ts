import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyRetention, type RetentionCounts, type RetentionItem, type RetentionSemantics } from './retention.js';

const NONE: RetentionCounts = { keepLast: 0, hourly: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 };
const rules = (r: Partial<RetentionCounts>): RetentionCounts => ({ ...NONE, ...r });
const at = (iso: string): RetentionItem => ({ id: iso, time: Date.parse(iso) });
const kept = (items: readonly RetentionItem[], counts: Partial<RetentionCounts>, semantics: RetentionSemantics = 'restic', timeZone = 'UTC') =>
  applyRetention(items, rules(counts), { semantics, timeZone }).keep.map((i) => i.id);

/** One snapshot a day at `hour` UTC, from `from` to `to` inclusive (dates as YYYY-MM-DD). */
function daily(from: string, to: string, hour = 12): RetentionItem[] {
  const out: RetentionItem[] = [];
  for (let t = Date.parse(`${from}T${String(hour).padStart(2, '0')}:00:00Z`); t <= Date.parse(`${to}T23:59:59Z`); t += 86_400_000) {
    out.push({ id: new Date(t).toISOString().slice(0, 10), time: t });
  }
  return out;
}

describe('retention: the documented examples', () => {
  // restic docs, "Removing backup snapshots": one backup every Sunday for 12 weeks.
  const sundays = ['2019-09-01', '2019-09-08', '2019-09-15', '2019-09-22', '2019-09-29', '2019-10-06', '2019-10-13', '2019-10-20', '2019-10-27', '2019-11-03', '2019-11-10', '2019-11-17'].map((d) => at(`${d}T11:00:00Z`));

  it('restic: forget --keep-daily 4 keeps the last four Sundays', () => {
    expect(kept(sundays, { daily: 4 })).toEqual(['2019-11-17T11:00:00Z', '2019-11-10T11:00:00Z', '2019-11-03T11:00:00Z', '2019-10-27T11:00:00Z']);
    const out = applyRetention(sundays, rules({ daily: 4 }));
    expect(out.remove).toHaveLength(8);
    expect(out.reasons.get('2019-11-17T11:00:00Z')).toEqual([{ rule: 'daily', period: '2019-11-17' }]);
  });

  it('restic: forget --keep-last 1 keeps the newer of two snapshots a minute apart', () => {
    const out = applyRetention([at('2017-02-21T10:48:33Z'), at('2017-02-21T10:49:18Z')], rules({ keepLast: 1 }));
    expect(out.keep.map((s) => s.id)).toEqual(['2017-02-21T10:49:18Z']);
    expect(out.remove.map((s) => s.id)).toEqual(['2017-02-21T10:48:33Z']);
  });

  it('restic: a backup a day for 100 years, --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 75', () => {
    // "keeps the most recent 7 daily snapshots and 4 last-day-of-the-week ones (since the 7
    // dailies already include 1 weekly). Additionally, 12 or 11 last-day-of-the-month
    // snapshots … And finally 75 or 74 last-day-of-the-year snapshots". Ending on Sunday
    // 31 December 2023, the dailies are one ISO week, the newest is also that month's and
    // year's last day: 7 + 4 + 11 + 74.
    const items = daily('1924-01-01', '2023-12-31');
    expect(items).toHaveLength(36_525);
    const out = applyRetention(items, rules({ daily: 7, weekly: 5, monthly: 12, yearly: 75 }));
    const only = (rule: string) => out.keep.filter((s) => out.reasons.get(s.id)!.every((r) => r.rule === rule)).map((s) => s.id);
    expect(out.keep).toHaveLength(7 + 4 + 11 + 74);
    expect(out.keep.slice(0, 7).map((s) => s.id)).toEqual(['2023-12-31', '2023-12-30', '2023-12-29', '2023-12-28', '2023-12-27', '2023-12-26', '2023-12-25']);
    expect(only('weekly')).toEqual(['2023-12-24', '2023-12-17', '2023-12-10', '2023-12-03']);
    expect(only('monthly')).toEqual(['2023-11-30', '2023-10-31', '2023-09-30', '2023-08-31', '2023-07-31', '2023-06-30', '2023-05-31', '2023-04-30', '2023-03-31', '2023-02-28', '2023-01-31']);
    expect(only('yearly')).toHaveLength(74);
    expect(only('yearly').at(-1)).toBe('1949-12-31');
    expect(out.reasons.get('2023-12-31')!.map((r) => r.rule)).toEqual(['daily', 'weekly', 'monthly', 'yearly']);
  });

  it('Proxmox: the "Retention Settings Example" (daily backups, keep-last=3, keep-daily=13, keep-weekly=8, keep-monthly=11, keep-yearly=9)', () => {
    const items = daily('2012-01-01', '2023-06-14');
    const counts = { keepLast: 3, daily: 13, weekly: 8, monthly: 11, yearly: 9 };
    const out = applyRetention(items, rules(counts), { semantics: 'proxmox' });
    const ids = out.keep.map((s) => s.id);
    // Each backup counts for one rule only, so the numbers add up.
    expect(ids).toHaveLength(3 + 13 + 8 + 11 + 9);
    // "together with keep-last … this ensures that you have at least two weeks of backups"
    expect(ids.slice(0, 16)).toEqual(daily('2023-05-30', '2023-06-14').map((s) => s.id).reverse());
    // "at least two full months of weekly backups": eight older weeks, one each
    const weekly = out.keep.filter((s) => out.reasons.get(s.id)![0]!.rule === 'weekly').map((s) => s.id);
    expect(weekly).toHaveLength(8);
    expect(Date.parse('2023-05-30') - Date.parse(weekly.at(-1)!)).toBeGreaterThanOrEqual(7 * 7 * 86_400_000);
    // "at least a year of monthly backups" and "a total of at least 10 years of coverage"
    const monthly = out.keep.filter((s) => out.reasons.get(s.id)![0]!.rule === 'monthly').map((s) => s.id.slice(0, 7));
    expect(new Set([...ids.map((id) => id.slice(0, 7))]).size).toBeGreaterThanOrEqual(12);
    expect(monthly).toHaveLength(11);
    // The monthlies reach into 2022, so the nine yearlies are 2021 back to 2013: eleven years in all.
    const years = new Set(ids.map((id) => id.slice(0, 4)));
    expect(years.size).toBe(11);
    expect(ids.at(-1)).toBe('2013-12-31');

    // restic, same numbers: rules share snapshots, so it keeps fewer and reaches less far back.
    const restic = applyRetention(items, rules(counts), { semantics: 'restic' });
    expect(restic.keep.length).toBeLessThan(out.keep.length);
    expect(restic.keep.at(-1)!.id).toBe('2015-12-31');
  });

  it('Proxmox prune simulator: a week kept by keep-weekly is not looked at again by keep-monthly, even where it reaches into an earlier month', () => {
    // Daily backups; the week of Mon 29 April – Sun 5 May 2024 straddles April and May.
    const items = daily('2024-04-20', '2024-05-02');
    expect(kept(items, { weekly: 1, monthly: 2 }, 'proxmox')).toEqual(['2024-05-02', '2024-04-28']);
    // restic looks at every snapshot for every rule: 30 April is April's newest.
    expect(kept(items, { weekly: 1, monthly: 2 }, 'restic')).toEqual(['2024-05-02', '2024-04-30']);
  });

  it('both: only the latest backup of a period is kept, and periods without backups do not count', () => {
    const items = [at('2024-01-10T08:00:00Z'), at('2024-01-10T20:00:00Z'), at('2024-01-07T09:00:00Z'), at('2024-01-01T09:00:00Z')];
    for (const semantics of ['restic', 'proxmox'] as const) {
      expect(kept(items, { daily: 3 }, semantics)).toEqual(['2024-01-10T20:00:00Z', '2024-01-07T09:00:00Z', '2024-01-01T09:00:00Z']);
    }
  });

  it('restic (≥ 0.17): a rule with counts left keeps the oldest snapshot too; Proxmox does not', () => {
    const items = [at('2024-01-03T10:00:00Z'), at('2024-01-02T10:00:00Z'), at('2024-01-01T18:00:00Z'), at('2024-01-01T06:00:00Z')];
    const out = applyRetention(items, rules({ daily: 5 }));
    expect(out.keep.map((s) => s.id)).toEqual(['2024-01-03T10:00:00Z', '2024-01-02T10:00:00Z', '2024-01-01T18:00:00Z', '2024-01-01T06:00:00Z']);
    expect(out.reasons.get('2024-01-01T06:00:00Z')).toEqual([{ rule: 'daily', period: '2024-01-01', oldest: true }]);
    expect(kept(items, { daily: 5 }, 'proxmox')).toEqual(['2024-01-03T10:00:00Z', '2024-01-02T10:00:00Z', '2024-01-01T18:00:00Z']);
  });
});

describe('retention: calendars', () => {
  it('takes periods in the policy time zone', () => {
    // 21:30Z is 23:30 on 1 June in Berlin, 22:30Z is 00:30 on 2 June.
    const items = [at('2024-06-01T22:30:00Z'), at('2024-06-01T21:30:00Z'), at('2024-05-30T10:00:00Z')];
    expect(kept(items, { daily: 2 }, 'proxmox', 'UTC')).toEqual(['2024-06-01T22:30:00Z', '2024-05-30T10:00:00Z']);
    expect(kept(items, { daily: 2 }, 'proxmox', 'Europe/Berlin')).toEqual(['2024-06-01T22:30:00Z', '2024-06-01T21:30:00Z']);
  });

  it('uses ISO weeks across the turn of the year', () => {
    // 28 Dec 2020 and Sun 3 Jan 2021 are both in 2020-W53; Mon 4 Jan 2021 starts 2021-W01.
    const items = [at('2021-01-04T12:00:00Z'), at('2021-01-03T12:00:00Z'), at('2020-12-28T12:00:00Z')];
    const out = applyRetention(items, rules({ weekly: 2 }), { semantics: 'proxmox' });
    expect(out.keep.map((s) => s.id)).toEqual(['2021-01-04T12:00:00Z', '2021-01-03T12:00:00Z']);
    expect(out.reasons.get('2021-01-03T12:00:00Z')).toEqual([{ rule: 'weekly', period: '2020-W53' }]);
  });

  it('counts the hour that repeats when clocks go back as one hour', () => {
    // 00:30Z and 01:30Z on 27 Oct 2024 are both 02:30 in Berlin (CEST, then CET).
    const items = [at('2024-10-27T01:30:00Z'), at('2024-10-27T00:30:00Z')];
    expect(kept(items, { hourly: 5 }, 'proxmox', 'Europe/Berlin')).toEqual(['2024-10-27T01:30:00Z']);
    expect(kept(items, { hourly: 5 }, 'proxmox', 'UTC')).toHaveLength(2);
  });

  it('keeps everything when no rule is set', () => {
    const items = daily('2024-01-01', '2024-01-05');
    expect(applyRetention(items, NONE).remove).toEqual([]);
  });
});

// ---- properties ------------------------------------------------------------------------

/**
 * Independent reference implementations, written from the tools' documentation as set
 * operations rather than as the single pass the implementation uses.
 */
const PERIODS = [
  ['keepLast', undefined],
  ['hourly', 13],
  ['daily', 10],
  ['weekly', 'week'],
  ['monthly', 7],
  ['yearly', 4],
] as const;

function periodKey(time: number, period: (typeof PERIODS)[number][1], timeZone: string, id: string): string {
  if (period === undefined) return id;
  const parts = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', hourCycle: 'h23' }).formatToParts(time);
  const get = (type: string) => parts.find((p) => p.type === type)!.value;
  const local = `${get('year')}-${get('month')}-${get('day')}T${get('hour')}`;
  if (period !== 'week') return local.slice(0, period);
  // ISO week by the Thursday rule, computed the long way round.
  const date = new Date(`${local.slice(0, 10)}T00:00:00Z`);
  const day = date.getUTCDay() || 7;
  date.setUTCDate(date.getUTCDate() + 4 - day);
  const yearStart = Date.UTC(date.getUTCFullYear(), 0, 1);
  return `${date.getUTCFullYear()}-W${Math.ceil(((date.getTime() - yearStart) / 86_400_000 + 1) / 7)}`;
}

function byNewest(items: readonly RetentionItem[]): RetentionItem[] {
  return [...items].sort((a, b) => b.time - a.time || (a.id < b.id ? 1 : -1));
}

/** restic: per rule, the newest of each of the N newest periods, plus the oldest when there are fewer than N periods. */
function resticReference(items: readonly RetentionItem[], counts: RetentionCounts, timeZone: string): Set<string> {
  const sorted = byNewest(items);
  const keep = new Set<string>();
  if (PERIODS.every(([k]) => counts[k] === 0)) return new Set(items.map((i) => i.id));
  for (const [name, period] of PERIODS) {
    const n = counts[name];
    if (n === 0) continue;
    const newestOf = new Map<string, RetentionItem>();
    for (const item of sorted) {
      const key = periodKey(item.time, period, timeZone, item.id);
      if (!newestOf.has(key)) newestOf.set(key, item);
    }
    [...newestOf.values()].slice(0, n).forEach((i) => keep.add(i.id));
    if (newestOf.size < n && sorted.length > 0) keep.add(sorted.at(-1)!.id);
  }
  return keep;
}

/** Proxmox: rules in order; each takes the N newest periods not yet covered among backups no earlier rule claimed. */
function proxmoxReference(items: readonly RetentionItem[], counts: RetentionCounts, timeZone: string): Set<string> {
  const sorted = byNewest(items);
  const keep = new Set<string>();
  const claimed = new Set<string>();
  if (PERIODS.every(([k]) => counts[k] === 0)) return new Set(items.map((i) => i.id));
  for (const [name, period] of PERIODS) {
    const n = counts[name];
    if (n === 0) continue;
    const key = (i: RetentionItem) => periodKey(i.time, period, timeZone, i.id);
    const covered = new Set(sorted.filter((i) => keep.has(i.id)).map(key));
    const open = sorted.filter((i) => !keep.has(i.id) && !claimed.has(i.id) && !covered.has(key(i)));
    const chosen = [...new Set(open.map(key))].slice(0, n);
    for (const p of chosen) {
      const members = open.filter((i) => key(i) === p);
      keep.add(members[0]!.id);
      members.slice(1).forEach((i) => claimed.add(i.id));
    }
  }
  return keep;
}

const HOUR = 3_600_000;
const arbItems = fc
  .uniqueArray(
    fc.oneof(
      fc.integer({ min: 0, max: 3 * 366 * 24 }).map((h) => Date.UTC(2022, 0, 1) + h * HOUR), // three years, hourly grain
      fc.integer({ min: 0, max: 72 }).map((h) => Date.UTC(2024, 9, 25) + h * HOUR), // dense around a DST change
      fc.integer({ min: 0, max: 600 }).map((m) => Date.UTC(2023, 11, 28) + m * 17 * 60_000), // across a year boundary
    ),
    { maxLength: 40 },
  )
  .map((times) => times.map((time, i) => ({ id: `s${String(i).padStart(2, '0')}`, time })));
const arbCounts = fc
  .record({
    keepLast: fc.integer({ min: 0, max: 4 }),
    hourly: fc.integer({ min: 0, max: 4 }),
    daily: fc.integer({ min: 0, max: 4 }),
    weekly: fc.integer({ min: 0, max: 4 }),
    monthly: fc.integer({ min: 0, max: 4 }),
    yearly: fc.integer({ min: 0, max: 3 }),
  })
  .filter((c) => Object.values(c).some((n) => n > 0));
const arbZone = fc.constantFrom('UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Kolkata', 'Australia/Lord_Howe');
const arbSemantics = fc.constantFrom<RetentionSemantics>('restic', 'proxmox');

describe('retention: properties', () => {
  it('never removes the newest snapshot', () => {
    fc.assert(
      fc.property(arbItems, arbCounts, arbZone, arbSemantics, (items, counts, timeZone, semantics) => {
        fc.pre(items.length > 0);
        const out = applyRetention(items, counts, { semantics, timeZone });
        expect(out.keep[0]).toEqual(byNewest(items)[0]);
      }),
    );
  });

  it('keeps exactly the set the rules name (against an independent reference)', () => {
    fc.assert(
      fc.property(arbItems, arbCounts, arbZone, arbSemantics, (items, counts, timeZone, semantics) => {
        const out = applyRetention(items, counts, { semantics, timeZone });
        const reference = semantics === 'restic' ? resticReference(items, counts, timeZone) : proxmoxReference(items, counts, timeZone);
        expect(new Set(out.keep.map((i) => i.id))).toEqual(reference);
      }),
      { numRuns: 300 },
    );
  });

  it('is idempotent: applied to what it kept, it keeps all of it', () => {
    fc.assert(
      fc.property(arbItems, arbCounts, arbZone, arbSemantics, (items, counts, timeZone, semantics) => {
        const once = applyRetention(items, counts, { semantics, timeZone });
        const twice = applyRetention(once.keep, counts, { semantics, timeZone });
        expect(twice.remove).toEqual([]);
        expect(twice.keep).toEqual(once.keep);
      }),
      { numRuns: 300 },
    );
  });

  it('partitions its input and does not depend on its order', () => {
    fc.assert(
      fc.property(arbItems, arbCounts, arbSemantics, fc.integer(), (items, counts, semantics, seed) => {
        const out = applyRetention(items, counts, { semantics });
        expect(out.keep.length + out.remove.length).toBe(items.length);
        expect(new Set([...out.keep, ...out.remove].map((i) => i.id)).size).toBe(items.length);
        const shuffled = [...items].sort((a, b) => ((a.time * 31 + seed) % 97) - ((b.time * 31 + seed) % 97));
        expect(applyRetention(shuffled, counts, { semantics }).keep).toEqual(out.keep);
      }),
    );
  });
});
