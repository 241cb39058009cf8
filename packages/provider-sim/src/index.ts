import { resolve } from 'node:path';
import type { ProviderModule, SimProviderConfig } from '@novacron/core';
import { FaultInjector } from './faults.js';
import { SimProvider } from './SimProvider.js';

export { SimProvider, type SimProviderOptions } from './SimProvider.js';
export { FaultInjector, SimulatedCrash, faultRule, type FaultRule } from './faults.js';
export { World, type SimHost, type SimVm, type SimVolume } from './world.js';
export { WorldStore } from './store.js';
export { SimDisks, DISK_WRITE_FRACTION, MANIFEST_BYTES, MANIFEST_BYTES_PER_BLOCK } from './snapshots.js';
export { BLOCK_BYTES, type Run, type Runs } from './blocks.js';
export type { SimDisk, SimSnapshot } from './world.js';

/** The state directory: the config's, else NOVACRON_STATE_DIR, else `.novacron/` in the working directory. */
export function simStateDir(config: SimProviderConfig, cwd: string, env: Readonly<Record<string, string | undefined>>): string {
  return resolve(cwd, config.stateDir ?? env['NOVACRON_STATE_DIR'] ?? '.novacron');
}

export const providerModule: ProviderModule<SimProviderConfig> = {
  kind: 'sim',
  async create(name, config, environment) {
    return SimProvider.open({
      name,
      config,
      stateDir: simStateDir(config, environment.cwd, environment.env),
      clock: environment.clock,
      faults: FaultInjector.fromEnv(environment.env['NOVACRON_SIM_FAULTS']),
    });
  },
};
