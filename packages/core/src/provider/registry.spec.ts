import { describe, expect, it } from 'vitest';
import {
  NO_CAPABILITIES,
  NovaCronError,
  parseFleet,
  ProviderRegistry,
  type FleetSpecInput,
  type Provider,
  type ProviderEnvironment,
  type ProviderModule,
  type SimProviderConfig,
} from '../index.js';

const environment: ProviderEnvironment = { cwd: '/nonexistent', env: {}, clock: { now: () => 0, sleep: async () => undefined } };

/** A provider that records whether it was closed. */
function fakeProvider(name: string, kind: string, closed: string[], closeFails = false): Provider {
  return {
    name,
    kind,
    capabilities: NO_CAPABILITIES,
    inventory: async () => [],
    list: async () => [],
    create: async () => { throw new Error('unused'); },
    start: async () => { throw new Error('unused'); },
    stop: async () => { throw new Error('unused'); },
    delete: async () => undefined,
    close: async () => {
      closed.push(name);
      if (closeFails) throw new Error(`closing ${name} failed`);
    },
  };
}

/** A fake `sim` module: opens providers in order, and fails to open the ones named in `failOn`. */
function fakeSim(opened: string[], closed: string[], options: { failOn?: string[]; closeFails?: boolean } = {}): ProviderModule<SimProviderConfig> {
  return {
    kind: 'sim',
    async create(name) {
      if (options.failOn?.includes(name)) throw new Error(`cannot open ${name}`);
      opened.push(name);
      return fakeProvider(name, 'sim', closed, options.closeFails);
    },
  };
}

const group = { web: { count: 1, cpu: 1, memory: '1GiB', image: 'i' } };
const fleet = (providers: FleetSpecInput['providers']) => parseFleet({ name: 'f', providers, groups: group } as FleetSpecInput);

/** An importer that behaves as `import()` does for a package that is not installed, and records what it was asked for. */
function missingPackages(asked: string[]) {
  return async (specifier: string) => {
    asked.push(specifier);
    throw Object.assign(new Error(`Cannot find package '${specifier}'`), { code: 'ERR_MODULE_NOT_FOUND' });
  };
}

describe('ProviderRegistry', () => {
  it('refuses a second module of a kind already registered, with a ConflictError', () => {
    const registry = new ProviderRegistry().register(fakeSim([], []));
    let thrown: unknown;
    try {
      registry.register(fakeSim([], []));
    } catch (error) {
      thrown = error;
    }
    expect(NovaCronError.isInstance(thrown)).toBe(true);
    expect((thrown as NovaCronError).code).toBe('Conflict');
    expect((thrown as NovaCronError).message).toMatch(/provider kind "sim" is already registered/);
  });

  it('uses the registered module and never imports a package for its kind', async () => {
    const asked: string[] = [];
    const opened: string[] = [];
    const registry = new ProviderRegistry({ importer: missingPackages(asked) }).register(fakeSim(opened, []));
    const set = await registry.open(fleet({ lab: { type: 'sim' } }), environment);
    expect(set.get('lab').name).toBe('lab');
    expect(opened).toEqual(['lab']);
    expect(asked).toEqual([]);
  });

  it('says a provider kind with no module is not installed, naming the package to install', async () => {
    const asked: string[] = [];
    const registry = new ProviderRegistry({ importer: missingPackages(asked) });
    const error = await registry.open(fleet({ cloud: { type: 'aws', region: 'eu-west-1', images: { i: 'ami-0123456789abcdef0' } } }), environment).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(asked).toEqual(['@novacron/provider-aws']);
    expect(NovaCronError.isInstance(error)).toBe(true);
    const e = error as NovaCronError;
    expect(e.code).toBe('InvalidInput');
    expect(e.message).toBe('provider kind "aws" is not installed');
    expect(e.hint).toBe('npm install @novacron/provider-aws');
    expect(e.describe()).toMatch(/not installed.*npm install @novacron\/provider-aws/);
  });

  it('says so too through the real import() when the package does not exist', async () => {
    const error = await new ProviderRegistry().module('nosuchkind').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((error as NovaCronError).message).toBe('provider kind "nosuchkind" is not installed');
    expect((error as NovaCronError).hint).toBe('npm install @novacron/provider-nosuchkind');
  });

  it('refuses a package that does not export a providerModule of the kind asked for', async () => {
    const registry = new ProviderRegistry({ importer: async () => ({ providerModule: { kind: 'gcp', create: async () => { throw new Error('unused'); } } }) });
    await expect(registry.module('aws')).rejects.toThrow('@novacron/provider-aws does not export a providerModule of kind "aws"');
  });

  it('closes the providers it already opened when a later one has no module', async () => {
    const opened: string[] = [];
    const closed: string[] = [];
    const registry = new ProviderRegistry({ importer: missingPackages([]) }).register(fakeSim(opened, closed));
    const spec = fleet({ a: { type: 'sim' }, b: { type: 'sim' }, cloud: { type: 'aws', region: 'eu-west-1', images: { i: 'ami-0123456789abcdef0' } } });
    await expect(registry.open(spec, environment)).rejects.toThrow('provider kind "aws" is not installed');
    expect(opened).toEqual(['a', 'b']);
    expect(closed.sort()).toEqual(['a', 'b']);
  });

  it('closes the providers it already opened when a later one fails to open, and opens none after it', async () => {
    const opened: string[] = [];
    const closed: string[] = [];
    const registry = new ProviderRegistry().register(fakeSim(opened, closed, { failOn: ['b'] }));
    await expect(registry.open(fleet({ a: { type: 'sim' }, b: { type: 'sim' }, c: { type: 'sim' } }), environment)).rejects.toThrow('cannot open b');
    expect(opened).toEqual(['a']);
    expect(closed).toEqual(['a']);
  });

  it('reports why opening failed even when closing the ones already opened fails too', async () => {
    const closed: string[] = [];
    const registry = new ProviderRegistry().register(fakeSim([], closed, { failOn: ['b'], closeFails: true }));
    await expect(registry.open(fleet({ a: { type: 'sim' }, b: { type: 'sim' } }), environment)).rejects.toThrow('cannot open b');
    expect(closed).toEqual(['a']);
  });

  it('closes every provider of an opened set', async () => {
    const closed: string[] = [];
    const set = await new ProviderRegistry().register(fakeSim([], closed)).open(fleet({ a: { type: 'sim' }, b: { type: 'sim' } }), environment);
    await set.close();
    expect(closed.sort()).toEqual(['a', 'b']);
  });
});
