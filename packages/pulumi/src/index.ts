export { VmFleet, type VmFleetArgs, type VmSummary } from './VmFleet.js';
export { Vm, VM_TYPE, type VmArgs } from './Vm.js';
export { KvmHost, libvirtUri, passwordEnvFor, type KvmHostArgs, type KvmHostConfig } from './KvmHost.js';
export { SnapshotPolicy, describeSnapshotPolicy, type SnapshotPolicyArgs } from './SnapshotPolicy.js';
export { layoutFleet, observeProviders, staticObserved, type FleetLayout, type VmPlacement } from './layout.js';
export { skeletonOf, isPlain, type FleetSpecArgs, type GroupSpecArgs, type DeepInput, type FleetSkeleton } from './spec.js';
export { createVmProvider, vmProvider, type LoadHandlers } from './provider/vmProvider.js';
export { classifyVmChange, CHANGE_CLASSES, type ChangeClass, type VmChange, type VmAction } from './runtime/changes.js';
export type { VmInputs, VmOutputs, VmLastChange } from './runtime/vmInputs.js';
