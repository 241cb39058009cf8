import type * as pulumi from '@pulumi/pulumi';
import type { VmHandlers } from '../runtime/handlers.js';
import type * as Runtime from '../runtime/index.js';

/** Loads the handlers for a provider instance, identified by its token. */
export type LoadHandlers = (token: object) => Promise<VmHandlers>;

/**
 * The dynamic provider behind `novacron:index:Vm`. Pulumi serializes it into the state of
 * every VM and runs it in its own process. Its methods capture nothing but `load` and an
 * empty token: no SDK, no client, no credential. Each call loads the runtime (and through
 * it the provider SDKs) inside the method, and the runtime reads credentials there, from the
 * VM's secret inputs and the environment of the process that runs it.
 */
export function createVmProvider(load: LoadHandlers): pulumi.dynamic.ResourceProvider {
  const token = {};
  return {
    async configure(req) {
      await (await load(token)).configure(req.config);
    },
    async check(olds, news) {
      const result = await (await load(token)).check(olds, news);
      return { inputs: result.inputs, failures: [...result.failures] };
    },
    async diff(id, olds, news) {
      return (await load(token)).diff(id, olds, news);
    },
    async create(inputs) {
      return (await load(token)).create(inputs);
    },
    async read(id, props) {
      return (await load(token)).read(id, props ?? {});
    },
    async update(id, olds, news) {
      return (await load(token)).update(id, olds, news);
    },
    async delete(id, props) {
      await (await load(token)).delete(id, props);
    },
  };
}

const RUNTIME = '@novacron/pulumi/runtime';

// `import()` written inside a Function body: bundlers and test transforms leave it alone, so
// the serialized text holds a plain dynamic import, resolved in the process that runs the
// provider (from the Pulumi project's node_modules).
const nativeImport = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;

/** The provider every `Vm` uses. */
export const vmProvider: pulumi.dynamic.ResourceProvider = createVmProvider(async (token) => {
  const runtime = (await nativeImport(RUNTIME)) as typeof Runtime;
  return runtime.handlersFor(token);
});
