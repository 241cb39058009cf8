export { VmFleet, type VmFleetProps } from './VmFleet.js';
export { placeFleet, type FleetPlacement, type PlacedVm } from './placement.js';
export { libvirtUri } from './uri.js';
export { renderUserData, renderMetaData } from './cloudInit.js';
export { AWS_TAG, awsTags, gceLabels, gceMetadata, libvirtMetadata, LIBVIRT_METADATA_NS } from './ownership.js';
export { validateSynth, loadSchemas, type SchemaProblem, type ProviderSchemas } from './validate/schemaValidator.js';
export type { SynthesizedVm, TargetOptions } from './targets/types.js';
export type { Host, FleetSpecInput, InstanceType } from '@novacron/core';
