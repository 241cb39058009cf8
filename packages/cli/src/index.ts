export { main } from './main.js';
export type { Io, GlobalOptions } from './context.js';
export { EXIT } from './exit.js';
