import fc from 'fast-check';

/**
 * Property tests run with a fixed seed so a CI run is reproducible; `FC_SEED=random` (or a
 * number) explores other cases locally. A failure prints its seed and path to replay it.
 */
const seed = process.env['FC_SEED'];
if (seed !== 'random') fc.configureGlobal({ seed: seed ? Number(seed) : 20_261_127 });
