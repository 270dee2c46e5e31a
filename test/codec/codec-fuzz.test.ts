/** Budgeted fuzz of the codec decoder in CI; `npm run fuzz:codec` runs the same properties for longer. */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { codecFuzzProperties } from '../../tools/fuzz/codec-arbitraries.js';

const runs = Number(process.env.FUZZ_RUNS ?? 500);

describe('codec fuzz: hostile chunks give pages or a typed error', () => {
  const p = codecFuzzProperties();
  it('mutated valid chunks', () => fc.assert(p.mutatedChunks, { numRuns: runs }));
  it('random bytes and header fields', () => fc.assert(p.randomChunks, { numRuns: runs }));
});
