import { describe, expect, it } from 'vitest';
import { kvmProviderConfig, NO_CAPABILITIES, ProviderRegistry, type KvmProviderConfig, type Provider, type ProviderEnvironment } from '@novacron/core';
import { createVmProvider } from '../provider/vmProvider.js';
import { createVmHandlers } from './handlers.js';
import { credentialVariables, ProviderSessions, type ConfigSource } from './sessions.js';

/** A KVM provider module that records the environment it was opened with. */
function recordingRegistry(seen: ProviderEnvironment[]): ProviderRegistry {
  return new ProviderRegistry().register<KvmProviderConfig>({
    kind: 'kvm',
    async create(name, _config, environment) {
      seen.push(environment);
      const provider: Provider = {
        name,
        kind: 'kvm',
        capabilities: NO_CAPABILITIES,
        inventory: async () => [],
        list: async () => [],
        create: async () => {
          throw new Error('not here');
        },
        start: async () => {
          throw new Error('not here');
        },
        stop: async () => {
          throw new Error('not here');
        },
        delete: async () => undefined,
      };
      return provider;
    },
  });
}

const kvm = kvmProviderConfig.parse({
  type: 'kvm',
  ssh: { user: 'root' },
  hosts: [
    { name: 'hv1', address: '10.0.0.11', ssh: { passwordEnv: 'NOVACRON_SSH_PASSWORD_HV1' } },
    { name: 'hv2', address: '10.0.0.12', ssh: { passwordEnv: 'NOVACRON_SSH_PASSWORD_HV2' } },
  ],
});

describe('credentials reach a provider only when it is opened', () => {
  it('names the variables a provider config reads credentials from', () => {
    expect(credentialVariables(kvm)).toEqual(['NOVACRON_SSH_PASSWORD_HV1', 'NOVACRON_SSH_PASSWORD_HV2']);
  });

  it('lays the stack config (novacron:<VARIABLE>) and then the VM credentials over the environment', async () => {
    const seen: ProviderEnvironment[] = [];
    const config: ConfigSource = { get: (key) => ({ 'novacron:NOVACRON_SSH_PASSWORD_HV1': 'from-config', 'novacron:NOVACRON_SSH_PASSWORD_HV2': 'from-config' })[key] };
    const sessions = new ProviderSessions({ registry: recordingRegistry(seen), env: { HOME: '/root', NOVACRON_SSH_PASSWORD_HV2: 'from-env' }, config: () => config, resilience: { tracing: false } });
    await sessions.use({ name: 'lab', config: kvm, credentials: { NOVACRON_SSH_PASSWORD_HV2: 'from-credentials' } }, async () => undefined);
    expect(seen[0]!.env).toMatchObject({ HOME: '/root', NOVACRON_SSH_PASSWORD_HV1: 'from-config', NOVACRON_SSH_PASSWORD_HV2: 'from-credentials' });
  });

  it('takes the config through the provider’s configure, as the Pulumi host calls it', async () => {
    const seen: ProviderEnvironment[] = [];
    const holder: { config?: ConfigSource } = {};
    const handlers = createVmHandlers({ sessions: new ProviderSessions({ registry: recordingRegistry(seen), env: {}, config: () => holder.config, resilience: { tracing: false } }), configHolder: holder });
    const provider = createVmProvider(async () => handlers);
    await provider.configure!({ config: { get: (key) => (key === 'novacron:NOVACRON_SSH_PASSWORD_HV1' ? 'configured' : undefined), require: () => '' } });
    await provider.delete!('shop-web-0', { fleet: 'shop', group: 'web', index: 0, vmName: 'shop-web-0', providerName: 'lab', providerConfig: kvm, host: 'lab/hv1', resources: { cpu: 1, memoryMiB: 512, diskGiB: 10, gpu: 0 }, image: 'x', labels: {}, specHash: 'h', migration: {} });
    expect(seen[0]!.env['NOVACRON_SSH_PASSWORD_HV1']).toBe('configured');
  });
});
