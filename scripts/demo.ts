/**
 * `npm run demo`: plan, apply and status of examples/quickstart on the simulated datacenter,
 * with the real CLI. The world persists in .novacron/ (or NOVACRON_STATE_DIR), so a second
 * run finds the fleet in place and changes nothing.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const cli = join(root, 'packages', 'cli', 'dist', 'bin.js');
const fleet = join(root, 'examples', 'quickstart', 'fleet.yaml');

for (const command of ['plan', 'apply', 'status']) {
  console.log(`\n$ novacron ${command} -f examples/quickstart/fleet.yaml`);
  const result = spawnSync(process.execPath, [cli, command, '-f', fleet], { stdio: 'inherit', cwd: root });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
