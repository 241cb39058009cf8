import { resolve } from 'node:path';
import {
  loadFleetFile,
  ProviderRegistry,
  systemClock,
  type FleetSpec,
  type ProviderSet,
} from '@novacron/core';
import { providerModule as simModule } from '@novacron/provider-sim';

/** Where the CLI reads and writes: real streams in `bin`, captured ones in tests. */
export interface Io {
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
  readonly stdin: NodeJS.ReadStream;
  readonly cwd: string;
  readonly env: Readonly<Record<string, string | undefined>>;
}

export interface GlobalOptions {
  readonly file: string;
  readonly json: boolean;
  readonly debug: boolean;
  readonly stateDir?: string;
}

/** The sim provider is built in (the embedded default); every other kind loads on demand. */
export function createRegistry(): ProviderRegistry {
  return new ProviderRegistry().register(simModule);
}

export async function loadFleet(io: Io, options: GlobalOptions): Promise<FleetSpec> {
  return loadFleetFile(resolve(io.cwd, options.file));
}

/** Opens the fleet's providers, runs `fn`, and always closes them (flushing the sim's world). */
export async function withProviders<T>(io: Io, options: GlobalOptions, fleet: FleetSpec, fn: (providers: ProviderSet) => Promise<T>): Promise<T> {
  const env = options.stateDir ? { ...io.env, NOVACRON_STATE_DIR: resolve(io.cwd, options.stateDir) } : io.env;
  const providers = await createRegistry().open(fleet, { cwd: io.cwd, env, clock: systemClock });
  try {
    return await fn(providers);
  } finally {
    await providers.close();
  }
}

export function writeJson(io: Io, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
