import { awsProviderConfig, type AwsProviderConfig, type ProviderModule } from '@novacron/core';
import { AwsProvider } from './AwsProvider.js';

export { AwsProvider, type AwsProviderOptions } from './AwsProvider.js';
export { defaultClientFactory, type AwsClientFactory } from './clients.js';
export { instanceTypesFor, FALLBACK_PRICE_REGION, type RegionCatalog } from './catalog/catalog.js';
export { EC2_CATALOG } from './catalog/generated/ec2Catalog.js';
export { ec2Catalog, type Ec2Catalog, type Ec2CatalogType } from './catalog/types.js';
export { mapAwsError, awsErrorCode, isCapacityShortage } from './errors.js';
export { clientToken, type CreateIdentity } from './tokens.js';
export { TAG } from './tags.js';
export { sha256File } from './images.js';

/**
 * The entry point the core's registry loads for `type: aws`. Nothing is read here: the SDK
 * client (and so the credential chain) is made at the provider's first call.
 */
export const providerModule: ProviderModule<AwsProviderConfig> = {
  kind: 'aws',
  configSchema: awsProviderConfig,
  async create(name, config, environment) {
    return new AwsProvider({ name, config, clock: environment.clock, ...(environment.log ? { log: environment.log } : {}) });
  },
};
