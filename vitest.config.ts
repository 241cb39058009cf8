import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources (the "source" export condition),
// so tests never run against a stale build.
export default defineConfig({
  resolve: { conditions: ['source', 'import', 'default'] },
  ssr: { resolve: { conditions: ['source', 'import', 'default'], externalConditions: ['source'] } },
  test: {
    include: ['packages/*/src/**/*.spec.ts', 'test/**/*.spec.ts', 'examples/**/*.spec.ts', 'docs/**/*.spec.ts'],
    reporters: ['default', './test/support/summaryReporter.ts'],
    setupFiles: ['./test/support/setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
});
