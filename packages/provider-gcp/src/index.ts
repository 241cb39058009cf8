import { gcpProviderConfig, type GcpProviderConfig, type ProviderModule } from '@novacron/core';
import { GcpProvider } from './GcpProvider.js';

export { GcpProvider, imageResourceName, snapshotName, type GcpProviderOptions } from './GcpProvider.js';
export { createGcpClients, parseEndpoint, type Endpoint, type GcpClientOptions, type GcpClients } from './clients.js';
export { machineTypesFor, regionOfZone, FALLBACK_PRICE_REGION, type RegionCatalog } from './catalog/catalog.js';
export { GCE_CATALOG } from './catalog/generated/gceCatalog.js';
export { gceCatalog, type GceCatalog, type GceCatalogType } from './catalog/types.js';
export { mapGcpError, gcpProblem, isCapacityShortage, OperationError, type GcpProblem } from './errors.js';
export { requestId } from './requestIds.js';
export { LABEL, META, labelValue } from './labels.js';
export { rawDiskTarball, tarHeader } from './tarball.js';

/**
 * The entry point the core's registry loads for `type: gcp`. Nothing is read here: the
 * clients (and so application default credentials) are made at the provider's first call.
 */
export const providerModule: ProviderModule<GcpProviderConfig> = {
  kind: 'gcp',
  configSchema: gcpProviderConfig,
  async create(name, config, environment) {
    return new GcpProvider({ name, config, clock: environment.clock, ...(environment.log ? { log: environment.log } : {}) });
  },
};
