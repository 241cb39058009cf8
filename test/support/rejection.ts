/**
 * For tests only (uses vitest's expect, so it stays out of test/testbed/index.ts, which
 * the benches load with plain node).
 */
import { expect } from 'vitest';
import { NovaCronError } from '@novacron/core';

/** Awaits a promise that must reject with a NovaCronError, asserts that it did, and returns the error. */
export async function rejection(promise: Promise<unknown>): Promise<NovaCronError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(NovaCronError.isInstance(error), String(error)).toBe(true);
  return error as NovaCronError;
}
