import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { differences, GENERATED_DIR, generateBindings } from '../scripts/generate-bindings.js';

describe('generated bindings', () => {
  it('are exactly what the script makes from the checked-in schemas (never edited by hand)', async () => {
    const fresh = mkdtempSync(join(tmpdir(), 'novacron-cdktf-bindings-'));
    try {
      await generateBindings(fresh);
      expect(differences(fresh, GENERATED_DIR)).toEqual([]);
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  }, 60_000);
});
