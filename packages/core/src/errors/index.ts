export * from './NovaCronError.js';
export * from './errors.js';
