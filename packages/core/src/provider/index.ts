export * from './Provider.js';
export * from './registry.js';
export * from './middleware.js';
export * from './resilience.js';
export * from './defaultStack.js';
export * from './ownership.js';
