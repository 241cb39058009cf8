export * from './model.js';
export * from './driver.js';
export * from './policy.js';
export * from './orchestrator.js';
export * from './simulatedDriver.js';
export * from './crossProvider.js';
export * from './predict.js';
