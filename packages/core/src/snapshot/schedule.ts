import { Cron } from 'croner';
import { closest, distance } from 'fastest-levenshtein';
import { InvalidInputError } from '../errors/errors.js';

/**
 * A five-field cron schedule in a time zone (`0 3 * * *` in Europe/Berlin is 03:00 Berlin
 * time, summer and winter). Croner does the calendar work, DST included: a fixed time that
 * falls into a spring-forward gap runs at the first valid time after it, and one that occurs
 * twice in autumn runs once.
 */
export interface SnapshotSchedule {
  readonly expression: string;
  readonly timeZone: string;
  /** The latest slot at or before `at` (ms), or undefined when the schedule never fired before. */
  latestAtOrBefore(at: number): number | undefined;
  /** The first slot strictly after `at` (ms), or undefined when it never fires again. */
  nextAfter(at: number): number | undefined;
}

/** Why an expression is not a usable schedule, or undefined when it is. Used by the fleet model at parse time. */
export function checkCron(expression: string, timeZone = 'UTC'): string | undefined {
  let cron: Cron;
  try {
    cron = new Cron(expression, { mode: '5-part', timezone: checkTimeZone(timeZone) === undefined ? timeZone : 'UTC' });
  } catch (error) {
    return `not a valid cron expression: ${cronMessage(error)}`;
  }
  // A pattern such as "0 0 31 2 *" (31 February) parses but never fires: say so now, not at 3 a.m.
  if (cron.nextRun(new Date(Date.UTC(2000, 0, 1))) === null) return `"${expression}" never fires (no date matches it)`;
  return undefined;
}

/** Why a time zone name is not usable, or undefined when it is an IANA zone this runtime knows. */
export function checkTimeZone(timeZone: string): string | undefined {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
    return undefined;
  } catch {
    const zones = knownTimeZones();
    const best = zones.length > 0 ? closest(timeZone, zones) : undefined;
    const suggestion = best !== undefined && distance(timeZone, best) <= Math.max(2, Math.floor(timeZone.length / 4)) ? ` (did you mean "${best}"?)` : '';
    return `unknown time zone "${timeZone}"${suggestion}: use an IANA name such as Europe/Berlin or UTC`;
  }
}

/** Compiles a schedule; throws InvalidInputError naming `path` (e.g. `groups.db.snapshots.schedule`). */
export function parseSchedule(expression: string, timeZone = 'UTC', path?: string): SnapshotSchedule {
  const zoneProblem = checkTimeZone(timeZone);
  if (zoneProblem) throw new InvalidInputError(`${path ? `${path.replace(/schedule$/, 'timezone')}: ` : ''}${zoneProblem}`, path ? { context: { path } } : {});
  const problem = checkCron(expression, timeZone);
  if (problem) {
    throw new InvalidInputError(`${path ? `${path}: ` : ''}${problem}`, {
      ...(path ? { context: { path } } : {}),
      hint: 'five fields: minute hour day-of-month month day-of-week, e.g. "0 3 * * *" for 03:00 every day',
    });
  }
  const cron = new Cron(expression, { mode: '5-part', timezone: timeZone });
  return {
    expression,
    timeZone,
    latestAtOrBefore(at) {
      // previousRuns is strictly before its reference; one millisecond later makes a slot at `at` count.
      const [slot] = cron.previousRuns(1, new Date(at + 1));
      return slot?.getTime();
    },
    nextAfter(at) {
      return cron.nextRun(new Date(at))?.getTime() ?? undefined;
    },
  };
}

function cronMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/^CronPattern:\s*/, '').replace(/^CronDate:\s*/, '');
}

/** Only asked for when a name is wrong, so it is not worth caching. */
function knownTimeZones(): string[] {
  return [...Intl.supportedValuesOf('timeZone'), 'UTC'];
}
