export * from './clock.js';
export * from './hash.js';
