import {
  NovaCronError,
  toNovaCronError,
  UnsupportedError,
  type Capabilities,
  type CreateVmRequest,
  type OperationContext,
  type Provider,
  type VmRecord,
  type VmRef,
} from '@novacron/core';
import { classifyVmChange, needsCapabilities, type VmChange } from './changes.js';
import type { ConfigSource, ProviderSessions, ProviderTarget } from './sessions.js';
import { checkVmInputs, parseVmInputs, type CheckFailure, type VmInputs, type VmLastChange, type VmOutputs } from './vmInputs.js';

type Props = Record<string, unknown>;

export interface CheckResult {
  readonly inputs: Props;
  readonly failures: readonly CheckFailure[];
}

export interface DiffResult {
  readonly changes: boolean;
  readonly replaces: string[];
  readonly stables: string[];
  readonly deleteBeforeReplace: boolean;
}

/**
 * The dynamic provider's methods, as plain functions of their inputs. The serialized
 * provider loads this module and forwards every call here; tests call these directly.
 *
 * Promises, as Pulumi's provider interface states them:
 * - `create` is transactional and idempotent on the VM's name: a provider that fails
 *   leaves nothing behind, and creating a VM that exists returns it.
 * - `read` reports the VM as its provider sees it now; a VM that is gone reads as gone.
 * - `update` converges: it reads the VM first and does only what is still needed.
 * - `delete` succeeds when the VM is already gone.
 */
export interface VmHandlers {
  /** Takes the stack's configuration (Pulumi calls this once per provider process). */
  configure(config: ConfigSource): Promise<void>;
  check(olds: Props, news: Props): Promise<CheckResult>;
  diff(id: string, olds: Props, news: Props): Promise<DiffResult>;
  create(inputs: Props): Promise<{ id: string; outs: VmOutputs }>;
  read(id: string, props: Props): Promise<{ id?: string; props?: VmOutputs }>;
  update(id: string, olds: Props, news: Props): Promise<{ outs: VmOutputs }>;
  delete(id: string, props: Props): Promise<void>;
}

export interface HandlerOptions {
  readonly sessions: ProviderSessions;
  /** Where `configure` keeps the stack's configuration for the sessions to read. */
  readonly configHolder?: { config?: ConfigSource };
  /** Clock for the `lastChange.at` stamp. */
  readonly now?: () => Date;
  readonly ctx?: OperationContext;
}

const IDENTITY = ['fleet', 'group', 'index', 'vmName'];

export function createVmHandlers(options: HandlerOptions): VmHandlers {
  const { sessions } = options;
  const now = options.now ?? (() => new Date());
  const ctx = options.ctx ?? {};

  const target = (vm: Pick<VmInputs, 'providerName' | 'providerConfig' | 'credentials'>): ProviderTarget => ({
    name: vm.providerName,
    config: vm.providerConfig,
    ...(vm.credentials ? { credentials: vm.credentials } : {}),
  });

  const find = async (provider: Provider, vm: Pick<VmInputs, 'fleet' | 'vmName'>): Promise<VmRecord | undefined> =>
    (await provider.list(vm.fleet, ctx)).find((r) => r.name === vm.vmName);

  const stamp = (change: { readonly class: VmChange['class'] | 'create'; readonly reasons: readonly string[] }): VmLastChange => ({ class: change.class, reasons: change.reasons, at: now().toISOString() });

  const capabilitiesFor = async (olds: Partial<VmOutputs>, news: VmInputs): Promise<Partial<Capabilities>> =>
    news.capabilities ?? olds.capabilities ?? (await sessions.use(target(news), async (p) => p.capabilities));

  const createVm = async (provider: Provider, vm: VmInputs): Promise<VmRecord> => provider.create(createRequest(vm), ctx);

  return {
    async configure(config) {
      if (options.configHolder) options.configHolder.config = config;
    },

    async check(_olds, news) {
      return checkVmInputs(news);
    },

    async diff(_id, olds, news) {
      const o = olds as Partial<VmOutputs>;
      const n = parsedOrRaw(news);
      const capabilities = needsCapabilities(o, n) && isComplete(n) ? await capabilitiesFor(o, n) : (n.capabilities ?? o.capabilities ?? {});
      const change = classifyVmChange(o, n, capabilities);
      const stables = IDENTITY.filter((key) => !change.replaces.includes(key));
      return { changes: change.class !== 'none', replaces: [...change.replaces], stables, deleteBeforeReplace: true };
    },

    async create(inputs) {
      const vm = parseVmInputs(inputs);
      return sessions.use(target(vm), async (provider) => {
        const record = await createVm(provider, vm);
        return { id: vm.vmName, outs: outputsOf(vm, record, stamp({ class: 'create', reasons: [`created on ${record.host}`] })) };
      });
    },

    async read(id, props) {
      const vm = parseVmInputs(props);
      const last = (props as Partial<VmOutputs>).lastChange;
      return sessions.use(target(vm), async (provider) => {
        const record = await find(provider, vm);
        if (!record) return {};
        return { id, props: outputsOf(vm, record, last) };
      });
    },

    async update(_id, olds, news) {
      const o = olds as Partial<VmOutputs>;
      const vm = parseVmInputs(news);
      const capabilities = await capabilitiesFor(o, vm);
      const change = classifyVmChange(o, vm, capabilities);
      if (change.class === 'replace') {
        throw new NovaCronError('Conflict', 'client', `VM "${vm.vmName}" needs a replacement, not an update: ${change.reasons.join('; ')}`, {
          context: { provider: vm.providerName, vm: vm.vmName, operation: 'update' },
          hint: 'run `pulumi up` again so the engine replaces it',
        });
      }
      if (change.held) {
        throw new NovaCronError('Conflict', 'client', `VM "${vm.vmName}" was not changed: ${change.held} (${change.reasons.join('; ')})`, {
          context: { provider: vm.providerName, vm: vm.vmName, operation: 'update' },
          hint: `set groups.${vm.group}.changes.allowReboot: true, or make the change at a time a reboot is fine`,
        });
      }
      return sessions.use(target(vm), async (provider) => {
        const current = await find(provider, vm);
        if (!current) {
          // Gone since the last refresh: make it again where placement now puts it.
          const record = await createVm(provider, vm);
          return { outs: outputsOf(vm, record, stamp({ class: 'replace', reasons: [`the VM was gone; created again on ${record.host}`] })) };
        }
        let record = current;
        const ref = (): VmRef => ({ name: vm.vmName, fleet: vm.fleet, id: record.id, host: record.host });
        for (const action of change.actions) record = await perform(action, provider, vm, record, ref(), change);
        return { outs: outputsOf(vm, record, stamp(change)) };
      });
    },

    async delete(_id, props) {
      const vm = parseVmInputs(props);
      const outs = props as Partial<VmOutputs>;
      await sessions.use(target(vm), (provider) =>
        provider.delete({ name: vm.vmName, fleet: vm.fleet, ...(outs.vmId ? { id: outs.vmId } : {}), host: vm.host }, ctx),
      );
    },
  };

  async function perform(action: VmChange['actions'][number], provider: Provider, vm: VmInputs, record: VmRecord, ref: VmRef, change: VmChange): Promise<VmRecord> {
    switch (action) {
      case 'migrate': {
        if (record.host === vm.host) return record;
        if (!provider.migrate) throw new UnsupportedError(`provider "${provider.name}" cannot migrate`, { context: { provider: provider.name, vm: vm.vmName } });
        const mode = change.migrationMode ?? 'live';
        return (await provider.migrate(ref, { toHost: vm.host, mode, policy: { ...vm.migration, mode } }, ctx)).vm;
      }
      case 'update':
        return updateOrFallBack(provider, vm, record, ref, change);
      case 'start':
        return record.state === 'running' ? record : provider.start(ref, ctx);
    }
  }

  /**
   * The cheap path (in place, hot-plug, reboot) through the provider's `resize`, as the core's
   * apply makes an update step; when it fails, the VM is replaced only if the group allows it.
   */
  async function updateOrFallBack(provider: Provider, vm: VmInputs, record: VmRecord, ref: VmRef, change: VmChange): Promise<VmRecord> {
    const fields = new Set(change.fields.map((f) => f.field));
    const cloudInitReboot = change.fields.some((f) => f.field === 'cloudInit' && f.class === 'reboot');
    try {
      if (!provider.resize) throw new UnsupportedError(`provider "${provider.name}" cannot change a VM in place`, { context: { provider: provider.name, vm: vm.vmName } });
      return await provider.resize(
        ref,
        {
          resources: vm.resources,
          specHash: vm.specHash,
          allowReboot: vm.changes?.allowReboot ?? true,
          ...(fields.has('labels') ? { labels: vm.labels } : {}),
          ...(fields.has('cloudInit') && vm.cloudInit ? { cloudInit: vm.cloudInit } : {}),
          ...(cloudInitReboot ? { reboot: true } : {}),
          ...(vm.instanceType ? { instanceType: vm.instanceType } : {}),
          ...(fields.has('nics') && vm.nics ? { nics: vm.nics } : {}),
        },
        ctx,
      );
    } catch (thrown) {
      const error = toNovaCronError(thrown, { provider: vm.providerName, vm: vm.vmName, operation: change.class });
      if (error.code === 'Aborted' || error.retryable) throw error;
      if (!vm.changes?.fallbackToReplace) {
        throw new NovaCronError(error.code, error.fault, `${change.class} change failed (${error.message}); the VM was not replaced`, {
          context: error.context,
          hint: `set groups.${vm.group}.changes.fallbackToReplace: true to replace the VM when this happens`,
          cause: error,
        });
      }
      await provider.delete({ ...ref, host: record.host }, ctx);
      return createVm(provider, vm);
    }
  }
}

/** Inputs as `diff` sees them: parsed when they are complete, raw (with unknowns) in a preview. */
function parsedOrRaw(news: Props): VmInputs {
  try {
    return parseVmInputs(news);
  } catch {
    const { __provider: _p, ...rest } = news;
    return rest as unknown as VmInputs;
  }
}

function isComplete(vm: VmInputs): boolean {
  return typeof vm.providerName === 'string' && typeof vm.providerConfig === 'object' && vm.providerConfig !== null;
}

function createRequest(vm: VmInputs): CreateVmRequest {
  return {
    name: vm.vmName,
    ownership: { fleet: vm.fleet, group: vm.group, index: vm.index, specHash: vm.specHash },
    host: vm.host,
    resources: vm.resources,
    image: vm.image,
    labels: vm.labels,
    ...(vm.instanceType ? { instanceType: vm.instanceType } : {}),
    ...(vm.cloudInit ? { cloudInit: vm.cloudInit } : {}),
    ...(vm.nics ? { nics: vm.nics } : {}),
    ...(vm.workload ? { workload: vm.workload } : {}),
  };
}

/** The outputs: the inputs, with what the provider reports laid over them. */
function outputsOf(vm: VmInputs, record: VmRecord, lastChange: VmLastChange | undefined): VmOutputs {
  return {
    ...vm,
    host: record.host,
    resources: record.resources,
    image: record.image,
    labels: record.labels,
    specHash: record.specHash,
    ...(record.instanceType ? { instanceType: record.instanceType } : {}),
    vmId: record.id,
    zone: record.zone,
    addresses: record.addresses.map((a) => a.address),
    state: record.state,
    ...(record.nics ? { observedNics: record.nics } : {}),
    ...(lastChange ? { lastChange } : {}),
  };
}

