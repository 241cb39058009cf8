import { describe, expect, it } from 'vitest';
import { FleetSpecError, parseFleet, parseFleetText } from '../index.js';
import { checkCron, checkTimeZone, parseSchedule } from './schedule.js';

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

describe('snapshot schedules', () => {
  it('reads five-field cron in the given time zone, summer and winter', () => {
    const s = parseSchedule('0 3 * * *', 'Europe/Berlin');
    expect(iso(s.latestAtOrBefore(Date.parse('2025-01-02T05:00:00Z')))).toBe('2025-01-02T02:00:00.000Z');
    expect(iso(s.latestAtOrBefore(Date.parse('2025-07-02T05:00:00Z')))).toBe('2025-07-02T01:00:00.000Z');
    expect(iso(s.nextAfter(Date.parse('2025-01-02T05:00:00Z')))).toBe('2025-01-03T02:00:00.000Z');
  });

  it('counts a slot at exactly now as due, and the next one strictly after', () => {
    const s = parseSchedule('*/15 * * * *');
    const t = Date.parse('2025-03-01T10:15:00Z');
    expect(s.latestAtOrBefore(t)).toBe(t);
    expect(s.latestAtOrBefore(t - 1)).toBe(t - 15 * 60_000);
    expect(s.nextAfter(t)).toBe(t + 15 * 60_000);
  });

  it('runs a time in the spring-forward gap once, right after the gap', () => {
    // 02:30 does not exist in Berlin on 30 March 2025.
    const s = parseSchedule('30 2 * * *', 'Europe/Berlin');
    expect(iso(s.nextAfter(Date.parse('2025-03-29T12:00:00Z')))).toBe('2025-03-30T01:00:00.000Z');
    expect(iso(s.nextAfter(Date.parse('2025-03-30T01:00:00Z')))).toBe('2025-03-31T00:30:00.000Z');
  });

  it.each([
    ['61 * * * *', /Invalid value for minute: 61/],
    ['*/0 * * * *', /illegal stepping/],
    ['a b c d e', /illegal characters/],
    ['0 0 31 2 *', /never fires/],
  ])('rejects %s with a clear reason', (expression, reason) => {
    expect(checkCron(expression)).toMatch(reason);
    expect(() => parseSchedule(expression, 'UTC', 'groups.db.snapshots.schedule')).toThrow(/^groups\.db\.snapshots\.schedule: /);
  });

  it('rejects unknown time zones and suggests the nearest', () => {
    expect(checkTimeZone('Europe/Berln')).toMatch(/unknown time zone "Europe\/Berln" \(did you mean "Europe\/Berlin"\?\)/);
    expect(checkTimeZone('Mars/Olympus')).toMatch(/unknown time zone/);
    expect(checkTimeZone('America/New_York')).toBeUndefined();
  });
});

describe('snapshot policies in the fleet spec', () => {
  const fleet = (snapshots: Record<string, unknown>) => ({
    name: 'f',
    providers: { lab: { type: 'sim', generate: { count: 1, cpu: 8, memory: '16GiB' } } },
    groups: { db: { count: 1, cpu: 1, memory: '1GiB', image: 'debian-12', snapshots } },
  });

  it('reports a cron that makes no sense at parse time, with its path and line', () => {
    const text = ['name: f', 'providers:', '  lab: { type: sim, generate: { count: 1, cpu: 8, memory: 16GiB } }', 'groups:', '  db:', '    count: 1', '    cpu: 1', '    memory: 1GiB', '    image: debian-12', '    snapshots:', '      schedule: "0 25 * * *"', '      timezone: Europe/Berln', '      retention: { keepLast: 2 }', ''].join('\n');
    let error: FleetSpecError | undefined;
    try {
      parseFleetText(text, 'fleet.yaml');
    } catch (thrown) {
      error = thrown as FleetSpecError;
    }
    expect(error?.problems).toEqual([
      { path: 'groups.db.snapshots.schedule', message: 'not a valid cron expression: Invalid value for hour: 25', line: 11, column: 17 },
      { path: 'groups.db.snapshots.timezone', message: expect.stringMatching(/did you mean "Europe\/Berlin"/), line: 12, column: 17 },
    ]);
  });

  it('gives a four-field cron one message, not two', () => {
    expect(() => parseFleet(fleet({ schedule: '0 3 * *', retention: { keepLast: 1 } }))).toThrow(/groups\.db\.snapshots\.schedule: a cron expression has five fields/);
    try {
      parseFleet(fleet({ schedule: '0 3 * *', retention: { keepLast: 1 } }));
    } catch (error) {
      expect((error as FleetSpecError).problems).toHaveLength(1);
    }
  });

  it('defaults: restic semantics, quiesce on, UTC', () => {
    const parsed = parseFleet(fleet({ schedule: '0 3 * * *', retention: { daily: 7 } }));
    expect(parsed.groups.db!.snapshots).toMatchObject({ timezone: 'UTC', quiesce: true, kind: 'backup', fullEvery: 7, retention: { daily: 7, semantics: 'restic' } });
  });

  it('rejects a retention that keeps nothing, and unknown semantics', () => {
    expect(() => parseFleet(fleet({ schedule: '0 3 * * *', retention: { semantics: 'proxmox' } }))).toThrow(/retention: retention keeps nothing/);
    expect(() => parseFleet(fleet({ schedule: '0 3 * * *', retention: { daily: 1, semantics: 'borg' } }))).toThrow(/groups\.db\.snapshots\.retention\.semantics/);
  });

  /** The problems parseFleet reports for a retention, as path and message. */
  const retentionProblems = (retention: Record<string, unknown>) => {
    try {
      parseFleet(fleet({ schedule: '0 3 * * *', retention }));
    } catch (error) {
      expect(FleetSpecError.isInstance(error)).toBe(true);
      return (error as FleetSpecError).problems.map(({ path, message }) => ({ path, message }));
    }
    throw new Error('expected the retention to be rejected');
  };

  it.each([
    ['a negative count', { daily: -1 }, 'groups.db.snapshots.retention.daily', 'Too small: expected number to be >=0'],
    ['a negative count beside a valid one', { keepLast: 3, weekly: -2 }, 'groups.db.snapshots.retention.weekly', 'Too small: expected number to be >=0'],
    ['a fractional count', { daily: 1.5 }, 'groups.db.snapshots.retention.daily', 'Invalid input: expected int, received number'],
    ['a count that is not a number', { daily: 'seven' }, 'groups.db.snapshots.retention.daily', 'Invalid input: expected number, received string'],
    ['a misspelled count', { dayly: 7 }, 'groups.db.snapshots.retention.dayly', 'unknown key (did you mean "daily"?)'],
  ])('reports %s in a retention at its path, without also saying it keeps nothing', (_what, retention, path, message) => {
    expect(retentionProblems(retention)).toEqual([{ path, message }]);
  });

  it('says a retention keeps nothing only when every count is valid and none keeps any', () => {
    const message = 'retention keeps nothing: set keepLast or at least one of hourly, daily, weekly, monthly, yearly';
    expect(retentionProblems({})).toEqual([{ path: 'groups.db.snapshots.retention', message }]);
    expect(retentionProblems({ keepLast: 0, daily: 0, semantics: 'proxmox' })).toEqual([{ path: 'groups.db.snapshots.retention', message }]);
    expect(parseFleet(fleet({ schedule: '0 3 * * *', retention: { yearly: 1 } })).groups.db!.snapshots?.retention).toMatchObject({ yearly: 1, daily: 0 });
  });
});
