import { createInterface } from 'node:readline/promises';
import { observe } from '@novacron/core';
import { loadFleet, withProviders, type Io } from '../context.js';
import { EXIT } from '../exit.js';
import { applyCommand, type ApplyOptions } from './apply.js';

export interface DestroyOptions extends ApplyOptions {
  readonly yes: boolean;
}

/** `novacron destroy`: removes every VM the fleet owns, after a confirmation unless `--yes`. */
export async function destroyCommand(io: Io, options: DestroyOptions): Promise<number> {
  if (!options.yes) {
    const fleet = await loadFleet(io, options);
    const owned = await withProviders(io, options, fleet, async (providers) => (await observe(fleet, providers)).vms.length);
    if (owned === 0) {
      io.stdout.write(`Fleet ${fleet.name} owns no VMs; nothing to destroy.\n`);
      return EXIT.ok;
    }
    const rl = createInterface({ input: io.stdin, output: io.stderr, terminal: false });
    io.stderr.write(`This deletes ${owned} VM(s) of fleet "${fleet.name}" and their disks. Type the fleet name to confirm: `);
    const answer = await Promise.race([rl.question(''), new Promise<null>((resolve) => io.stdin.once('end', () => resolve(null)))]);
    rl.close();
    if (answer?.trim() !== fleet.name) {
      io.stderr.write('\nNot confirmed; nothing was destroyed.\n');
      return EXIT.failed;
    }
  }
  return applyCommand(io, options, true);
}
