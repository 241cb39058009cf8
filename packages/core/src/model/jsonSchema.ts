import { z } from 'zod';
import { fleetSpec } from './fleet.js';

/** The JSON Schema of a fleet file, for editors (YAML language server, VS Code). */
export function fleetJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(fleetSpec, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' }),
    $id: 'https://novacron.dev/schema/fleet.json',
    title: 'NovaCron fleet',
  };
}
