export * from './types.js';
export * from './desired.js';
export * from './plan.js';
export * from './observe.js';
export * from './apply.js';
export * from './drain.js';
export * from './changes.js';
export * from './adopt.js';
