import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { NovaCronError, type ApplyEvent, type PlanStep } from '@novacron/core';
import { progressReporter } from './progress.js';

/**
 * A stream that renders what is written as a terminal would: `\r` returns to the start of
 * the line, `\n` starts a new one, `ESC[K` clears to the end of the line, and anything else
 * overwrites the cell under the cursor.
 */
function fakeTerminal(columns = 100) {
  const lines: string[][] = [[]];
  let row = 0;
  let col = 0;
  let raw = '';
  const stream = {
    isTTY: true,
    columns,
    write(text: string) {
      raw += text;
      const chars = Array.from(text);
      for (let i = 0; i < chars.length; i++) {
        const c = chars[i]!;
        if (c === '\r') col = 0;
        else if (c === '\n') {
          row++;
          col = 0;
          lines[row] ??= [];
        } else if (c === '\x1b' && chars[i + 1] === '[' && chars[i + 2] === 'K') {
          lines[row]!.length = Math.min(lines[row]!.length, col);
          i += 2;
        } else {
          const line = lines[row]!;
          while (line.length < col) line.push(' ');
          line[col++] = c;
        }
      }
      return true;
    },
  };
  return {
    stream: stream as unknown as NodeJS.WriteStream,
    /** The screen's lines, trailing blanks trimmed. */
    screen: () => lines.map((l) => l.join('').trimEnd()),
    current: () => lines[row]!.join('').trimEnd(),
    cursor: () => ({ row, col }),
    raw: () => raw,
  };
}

/** An event before its time is filled in (Omit over each member of the union). */
type Untimed<E> = E extends unknown ? Omit<E, 'at'> : never;

const step = (vm: string): PlanStep => ({ id: `create:${vm}`, kind: 'create', vm, host: 'lab/host-1' }) as unknown as PlanStep;
const FULL = '█'.repeat(30);

describe('progressReporter on a terminal', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_000_000);
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** Reports an event after enough time that the bar's redraw throttle (50 ms) lets it draw. */
  function later(report: (event: ApplyEvent) => void, event: Untimed<ApplyEvent>) {
    vi.advanceTimersByTime(100);
    report({ ...event, at: Date.now() } as ApplyEvent);
  }

  it('draws one bar in place with done/total and the step under way', () => {
    const term = fakeTerminal();
    const report = progressReporter(term.stream, { tty: true });
    later(report, { type: 'apply.start', fleet: 'f', steps: 4 });
    expect(term.current()).toBe(`${'░'.repeat(30)} 0/4`);

    later(report, { type: 'step.start', step: step('f-web-0') });
    expect(term.current()).toBe(`${'░'.repeat(30)} 0/4 create f-web-0`);

    later(report, { type: 'step.done', step: step('f-web-0'), durationMs: 5 });
    later(report, { type: 'step.start', step: step('f-web-1') });
    expect(term.current()).toBe(`${'█'.repeat(8)}${'░'.repeat(22)} 1/4 create f-web-1`);
    expect(term.screen()).toHaveLength(1); // redrawn in place, not a line per event
  });

  it('leaves nothing of a longer earlier line behind when a shorter one is drawn', () => {
    const term = fakeTerminal();
    const report = progressReporter(term.stream, { tty: true });
    later(report, { type: 'apply.start', fleet: 'f', steps: 2 });
    later(report, { type: 'step.start', step: step('f-db-0') });
    later(report, { type: 'step.progress', step: step('f-db-0'), progress: { operation: 'create', phase: 'copying the base image to the host disk pool', fraction: 0.5 } });
    expect(term.current()).toBe(`${'░'.repeat(30)} 0/2 create f-db-0: copying the base image to the host disk pool 50%`);
    later(report, { type: 'step.done', step: step('f-db-0'), durationMs: 5 });
    later(report, { type: 'step.start', step: step('f-db-1') });
    expect(term.current()).toBe(`${'█'.repeat(15)}${'░'.repeat(15)} 1/2 create f-db-1`);
  });

  it('never draws past the terminal width, so the line does not wrap', () => {
    const term = fakeTerminal(40);
    const report = progressReporter(term.stream, { tty: true });
    later(report, { type: 'apply.start', fleet: 'f', steps: 1 });
    later(report, { type: 'step.start', step: step('a-very-long-fleet-name-web-0') });
    expect(term.current()).toBe(`${'░'.repeat(30)} 0/1 crea`); // 39 columns
    expect(term.screen()).toHaveLength(1);
  });

  it('ends with the full bar, no step left on it, and the cursor on a fresh line', () => {
    const term = fakeTerminal();
    const report = progressReporter(term.stream, { tty: true });
    later(report, { type: 'apply.start', fleet: 'f', steps: 3 });
    later(report, { type: 'step.start', step: step('quickstart-batch-0') });
    later(report, { type: 'step.done', step: step('quickstart-batch-0'), durationMs: 5 });
    later(report, { type: 'step.start', step: step('quickstart-batch-1') });
    later(report, { type: 'step.done', step: step('quickstart-batch-1'), durationMs: 5 });
    later(report, { type: 'step.start', step: step('quickstart-batch-2') });
    later(report, { type: 'step.done', step: step('quickstart-batch-2'), durationMs: 5 });
    later(report, { type: 'apply.done', ok: true, done: 3, failed: 0, skipped: 0, durationMs: 30 });
    report.finish();
    expect(term.screen()).toEqual([`${FULL} 3/3`, '']);
    expect(term.cursor()).toEqual({ row: 1, col: 0 });
    expect(term.raw().endsWith('\n')).toBe(true);
  });

  it('prints a failed step on its own line above the bar, and counts failures and skips as finished', () => {
    const term = fakeTerminal();
    const report = progressReporter(term.stream, { tty: true });
    later(report, { type: 'apply.start', fleet: 'f', steps: 2 });
    later(report, { type: 'step.start', step: step('f-web-0') });
    later(report, { type: 'step.failed', step: step('f-web-0'), error: new NovaCronError('Provider', 'server', 'boom') });
    later(report, { type: 'step.skipped', step: step('f-web-1'), reason: 'depends on create:f-web-0, which failed' });
    later(report, { type: 'apply.done', ok: false, done: 0, failed: 1, skipped: 1, durationMs: 30 });
    expect(term.screen()).toEqual(['  ✗ create f-web-0: boom', `${FULL} 2/2 (1 failed)`, '']);
  });

  it('says when a VM short of capacity is placed again, and counts the next round on the same totals', () => {
    const term = fakeTerminal();
    const report = progressReporter(term.stream, { tty: true });
    later(report, { type: 'apply.start', fleet: 'f', steps: 2 });
    later(report, { type: 'step.done', step: step('f-web-0'), durationMs: 5 });
    later(report, { type: 'step.failed', step: step('f-web-1'), error: new NovaCronError('CapacityExceeded', 'server', 'no room') });
    later(report, { type: 'apply.done', ok: false, done: 1, failed: 1, skipped: 0, durationMs: 30 });
    later(report, { type: 'capacity.replan', step: step('f-web-1'), host: 'lab/host-1', to: 'lab/host-2', round: 2, maxRounds: 3, message: 'host-1 has no room for f-web-1: placing it again (host-2)' });
    later(report, { type: 'apply.start', fleet: 'f', steps: 1 });
    expect(term.current()).toBe(`${'█'.repeat(15)}${'░'.repeat(15)} 1/2`);
    later(report, { type: 'step.done', step: step('f-web-1'), durationMs: 5 });
    later(report, { type: 'apply.done', ok: true, done: 1, failed: 0, skipped: 0, durationMs: 30 });
    expect(term.screen()).toContain('  ↪ host-1 has no room for f-web-1: placing it again (host-2) [round 2/3]');
    expect(term.screen().at(-2)).toBe(`${FULL} 2/2`);
  });
});
