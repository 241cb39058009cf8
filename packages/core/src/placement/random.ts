/**
 * Seeded randomness for the solver. Placement must be reproducible (the same input and seed
 * give the same placement in the SDK, the CLI, Pulumi and CDKTF), so nothing here reads
 * the clock or Math.random.
 */

/** mulberry32: small, fast, and good enough to shuffle search orders. Returns floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = (seed >>> 0) ^ 0x9e3779b9;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** 0..n-1 in order for seed 0 (so the default breaks ties by id), shuffled by the seed otherwise. */
export function seededPermutation(n: number, seed: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  if (seed === 0) return out;
  const random = seededRandom(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = out[i]!;
    out[i] = out[j]!;
    out[j] = t;
  }
  return out;
}
