import { formatBytes, type ApplyEvent } from '@novacron/core';
import { formatMs } from './table.js';

export interface Reporter {
  (event: ApplyEvent): void;
  finish(): void;
}

/**
 * On a terminal, one progress bar redrawn in place; otherwise (CI logs, pipes) one line
 * per finished step, so a log says what happened and in what order.
 */
export function progressReporter(stream: NodeJS.WriteStream, options: { tty?: boolean } = {}): Reporter {
  const tty = options.tty ?? stream.isTTY === true;
  let total = 0;
  let done = 0;
  let failed = 0;
  let current = '';
  let lastDraw = 0;
  let lastLine = 0;
  const draw = (force = false) => {
    const now = Date.now();
    if (!force && now - lastDraw < 50) return;
    lastDraw = now;
    const width = 30;
    const filled = total === 0 ? width : Math.round((done / total) * width);
    const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
    const columns = stream.columns ?? 100;
    const text = `${bar} ${done}/${total}${failed ? ` (${failed} failed)` : ''} ${current}`;
    // Clear the line first: padding only hid the tail of a previous line up to 10 columns longer.
    stream.write(`\r\x1b[K${text.slice(0, columns - 1)}`);
  };
  const reporter = ((event: ApplyEvent) => {
    switch (event.type) {
      case 'apply.start':
        // A reconcile's later rounds add their steps to the same bar.
        total += event.steps;
        if (tty) draw(true);
        break;
      case 'step.start':
        current = `${event.step.kind} ${event.step.vm}`;
        if (tty) draw();
        break;
      case 'step.progress': {
        const m = event.progress.migration;
        const detail = m
          ? `round ${m.iteration}, ${formatBytes(m.dataRemainingBytes)} left, dirtying ${formatBytes(m.dirtyRateBytesPerSec)}/s at ${formatBytes(m.bandwidthBytesPerSec)}/s`
          : `${event.progress.phase}${event.progress.fraction === undefined ? '' : ` ${Math.round(event.progress.fraction * 100)}%`}`;
        current = `${event.step.kind} ${event.step.vm}: ${detail}`;
        if (tty) draw();
        else if (Date.now() - lastLine > 2000) {
          lastLine = Date.now();
          stream.write(`  … ${current}\n`);
        }
        break;
      }
      case 'step.retry':
        if (!tty) stream.write(`  ↻ ${event.step.kind} ${event.step.vm}: ${event.error.message}; retry ${event.attempt} in ${formatMs(event.delayMs)}\n`);
        break;
      case 'step.done':
        done++;
        if (tty) draw();
        else stream.write(`  ✓ ${event.step.kind} ${event.step.vm}${'host' in event.step ? ` on ${event.step.host}` : ''} (${formatMs(event.durationMs)})\n`);
        break;
      case 'step.failed':
        done++;
        failed++;
        if (tty) {
          stream.write(`\r\x1b[K  ✗ ${event.step.kind} ${event.step.vm}: ${event.error.describe()}\n`);
          draw(true);
        } else stream.write(`  ✗ ${event.step.kind} ${event.step.vm}: ${event.error.describe()}\n`);
        break;
      case 'step.skipped':
        done++;
        if (!tty) stream.write(`  - ${event.step.kind} ${event.step.vm}: skipped, ${event.reason}\n`);
        break;
      case 'capacity.replan':
        // The refused step no longer counts: the VM's new steps follow in the next round.
        total--;
        done--;
        failed--;
        if (tty) stream.write(`\r\x1b[K`);
        stream.write(`  ↪ ${event.message} [round ${event.round}/${event.maxRounds}]\n`);
        if (tty) draw(true);
        break;
      case 'capacity.unplaced':
        if (tty) stream.write(`\r\x1b[K`);
        stream.write(`  ✗ unplaced ${event.message}\n`);
        if (tty) draw(true);
        break;
      case 'apply.done':
        current = '';
        if (tty) {
          draw(true);
          stream.write('\n');
        }
        break;
      default:
        break;
    }
  }) as Reporter;
  reporter.finish = () => undefined;
  return reporter;
}
