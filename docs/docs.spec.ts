import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseFleetText } from '@novacron/core';

/** Every ```yaml fleet block in the docs is a complete fleet that validates. */
const dir = import.meta.dirname;
const blocks = readdirSync(dir)
  .filter((f) => f.endsWith('.md'))
  .flatMap((file) =>
    [...readFileSync(join(dir, file), 'utf8').matchAll(/```yaml fleet\n([\s\S]*?)```/g)].map((m, i) => ({ file, i, text: m[1]! })),
  );

describe('fleet examples in docs/', () => {
  it('has examples to check', () => expect(blocks.length).toBeGreaterThan(3));
  for (const { file, i, text } of blocks) {
    it(`${file} example ${i + 1} validates`, () => {
      expect(() => parseFleetText(text, `${file}#${i + 1}`)).not.toThrow();
    });
  }
});

/** Every ```ts run block is a complete program: it runs, and throws if what it shows is not so. */
const programs = readdirSync(dir)
  .filter((f) => f.endsWith('.md'))
  .flatMap((file) => [...readFileSync(join(dir, file), 'utf8').matchAll(/```ts run\n([\s\S]*?)```/g)].map((m, i) => ({ file, i, text: m[1]! })));

describe('code examples in docs/', () => {
  for (const { file, i, text } of programs) {
    it(`${file} program ${i + 1} runs`, async () => {
      // Written beside the docs so its imports resolve like a user's program in this repo.
      const runDir = join(dir, '.run');
      mkdirSync(runDir, { recursive: true });
      const path = join(runDir, `${file.replace(/\W/g, '-')}-${i + 1}-${process.pid}.ts`);
      writeFileSync(path, text);
      const state = mkdtempSync(join(tmpdir(), 'novacron-docs-'));
      const previous = process.env['NOVACRON_STATE_DIR'];
      process.env['NOVACRON_STATE_DIR'] = state;
      try {
        await import(pathToFileURL(path).href);
      } finally {
        if (previous === undefined) delete process.env['NOVACRON_STATE_DIR'];
        else process.env['NOVACRON_STATE_DIR'] = previous;
        rmSync(path, { force: true });
        rmSync(state, { recursive: true, force: true });
      }
    });
  }
});
