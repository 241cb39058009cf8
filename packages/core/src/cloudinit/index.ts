export * from './userData.js';
