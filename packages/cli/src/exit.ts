/** Exit codes: 0 success, 1 runtime failure, 2 invalid input (nothing was changed). */
export const EXIT = { ok: 0, failed: 1, invalid: 2 } as const;
