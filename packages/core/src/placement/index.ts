export * from './types.js';
export * from './capacity.js';
export * from './filters.js';
export * from './scorers.js';
export * from './place.js';
