import { fleetJsonSchema } from '@novacron/core';
import { writeJson, type Io } from '../context.js';
import { EXIT } from '../exit.js';

/** `novacron schema`: the JSON Schema of fleet files, for editors and CI linters. */
export async function schemaCommand(io: Io): Promise<number> {
  writeJson(io, fleetJsonSchema());
  return EXIT.ok;
}
