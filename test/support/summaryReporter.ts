import type { Reporter, TestModule } from 'vitest/node';

/**
 * Ends every run with one line, `N passed, N failed[, N skipped]`, the line CI reads. A
 * test file that fails to load (a missing testbed, a syntax error) counts as a failure:
 * a missing part is a failure, never a silent skip.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    let passed = 0;
    let failed = unhandledErrors.length;
    let skipped = 0;
    for (const module of modules) {
      let tests = 0;
      for (const test of module.children.allTests()) {
        tests++;
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else skipped++;
      }
      if (module.state() === 'failed' && (tests === 0 || module.errors().length > 0)) failed++;
    }
    process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  }
}
