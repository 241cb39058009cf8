/** Test doubles for code that uses @novacron/provider-gcp: a local Compute Engine (and Cloud Storage upload) fake on loopback. */
export { FakeCompute, apiError, type FakeComputeOptions, type RecordedRequest } from './fakeCompute.js';
