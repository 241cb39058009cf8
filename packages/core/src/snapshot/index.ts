export * from './schedule.js';
export * from './calendar.js';
export * from './retention.js';
export * from './chain.js';
export * from './due.js';
export * from './prune.js';
export * from './events.js';
export * from './engine.js';
