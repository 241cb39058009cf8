export * from './errors/index.js';
export * from './model/index.js';
export * from './provider/index.js';
export * from './placement/index.js';
export * from './reconcile/index.js';
export * from './events/index.js';
export * from './util/index.js';
export * from './migration/index.js';
