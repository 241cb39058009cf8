import {
  DisksClient,
  GlobalOperationsClient,
  ImagesClient,
  InstancesClient,
  MachineTypesClient,
  SnapshotsClient,
  ZoneOperationsClient,
  ZonesClient,
} from '@google-cloud/compute';
import { Storage } from '@google-cloud/storage';
import type { AuthClient } from 'google-auth-library';
import type { GcpProviderConfig } from '@novacron/core';

/** The Compute Engine and Cloud Storage clients one provider uses. */
export interface GcpClients {
  readonly instances: InstancesClient;
  readonly zoneOperations: ZoneOperationsClient;
  readonly globalOperations: GlobalOperationsClient;
  readonly zones: ZonesClient;
  readonly machineTypes: MachineTypesClient;
  readonly disks: DisksClient;
  readonly snapshots: SnapshotsClient;
  readonly images: ImagesClient;
  readonly storage: Storage;
  close(): Promise<void>;
}

export interface GcpClientOptions {
  /**
   * Credentials to use instead of application default credentials (tests pass an
   * OAuth2Client holding a dummy token).
   */
  readonly authClient?: AuthClient;
}

/** Where the clients send requests: Google's endpoints, or any Compute Engine-compatible API. */
export interface Endpoint {
  readonly apiEndpoint: string;
  readonly port?: number;
  readonly protocol?: 'http' | 'https';
}

/**
 * `https://compute.example.com`, `http://127.0.0.1:8080` or a bare host. The client library
 * ignores a port written into `apiEndpoint` (it then goes to 443), so it is split out.
 */
export function parseEndpoint(endpoint: string): Endpoint {
  if (!/^[a-z]+:\/\//i.test(endpoint)) return { apiEndpoint: endpoint };
  const url = new URL(endpoint);
  const protocol = url.protocol === 'http:' ? 'http' : 'https';
  return { apiEndpoint: url.hostname, protocol, ...(url.port ? { port: Number(url.port) } : {}) };
}

/**
 * Builds the clients. Credentials are application default credentials (the
 * GOOGLE_APPLICATION_CREDENTIALS key file, gcloud's ADC file, or the metadata server of the
 * VM or pod), found by google-auth-library at the first request, never at import time.
 */
export function createGcpClients(config: GcpProviderConfig, options: GcpClientOptions = {}): GcpClients {
  const endpoint = config.endpoint ? parseEndpoint(config.endpoint) : undefined;
  // google-gax and @google-cloud/storage each bundle their own copy of google-auth-library,
  // so the same client object has three nominal types; at run time they take any of them.
  type ComputeAuth = NonNullable<NonNullable<ConstructorParameters<typeof InstancesClient>[0]>['authClient']>;
  type StorageAuth = NonNullable<NonNullable<ConstructorParameters<typeof Storage>[0]>['authClient']>;
  const common = {
    projectId: config.project,
    ...(endpoint ?? {}),
    ...(options.authClient ? { authClient: options.authClient as unknown as ComputeAuth } : {}),
  };
  const storageEndpoint = endpoint ? `${endpoint.protocol ?? 'https'}://${endpoint.apiEndpoint}${endpoint.port ? `:${endpoint.port}` : ''}` : undefined;
  const clients = {
    instances: new InstancesClient(common),
    zoneOperations: new ZoneOperationsClient(common),
    globalOperations: new GlobalOperationsClient(common),
    zones: new ZonesClient(common),
    machineTypes: new MachineTypesClient(common),
    disks: new DisksClient(common),
    snapshots: new SnapshotsClient(common),
    images: new ImagesClient(common),
    storage: new Storage({
      projectId: config.project,
      ...(storageEndpoint ? { apiEndpoint: storageEndpoint, useAuthWithCustomEndpoint: true } : {}),
      ...(options.authClient ? { authClient: options.authClient as unknown as StorageAuth } : {}),
    }),
  };
  return {
    ...clients,
    async close() {
      await Promise.allSettled([
        clients.instances.close(),
        clients.zoneOperations.close(),
        clients.globalOperations.close(),
        clients.zones.close(),
        clients.machineTypes.close(),
        clients.disks.close(),
        clients.snapshots.close(),
        clients.images.close(),
      ]);
    },
  };
}
