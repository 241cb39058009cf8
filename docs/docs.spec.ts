import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
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
