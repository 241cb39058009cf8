/**
 * `@novacron/pulumi/runtime`: what the serialized `novacron:index:Vm` provider loads inside
 * its methods, in the process that runs them. Everything that holds a connection, a client or
 * a credential lives here, never in the serialized closure.
 */
import { createVmHandlers, type VmHandlers } from './handlers.js';
import { ProviderSessions, type ConfigSource } from './sessions.js';

export { createVmHandlers, type VmHandlers, type HandlerOptions, type CheckResult, type DiffResult } from './handlers.js';
export { ProviderSessions, createRegistry, credentialVariables, CONFIG_NAMESPACE, type ProviderTarget, type SessionOptions, type ConfigSource } from './sessions.js';
export { classifyVmChange, needsCapabilities, CHANGE_CLASSES, CHANGE_RULES, type ChangeClass, type VmChange, type VmAction } from './changes.js';
export { checkVmInputs, parseVmInputs, vmInputs, isUnknown, UNKNOWN, type VmInputs, type VmOutputs, type VmLastChange, type CheckFailure } from './vmInputs.js';

// Handlers per provider instance. The key is the empty token object the serialized provider
// carries: the Pulumi host deserializes one provider per process and passes its token on
// every call, so the calls of one process share open providers while the token itself (the
// only thing that was serialized) stays empty.
const byToken = new WeakMap<object, VmHandlers>();

export function handlersFor(token: object): VmHandlers {
  let handlers = byToken.get(token);
  if (!handlers) {
    const configHolder: { config?: ConfigSource } = {};
    handlers = createVmHandlers({ sessions: new ProviderSessions({ config: () => configHolder.config }), configHolder });
    byToken.set(token, handlers);
  }
  return handlers;
}
