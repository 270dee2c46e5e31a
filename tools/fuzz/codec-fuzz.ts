/**
 * Long fuzz run of the page codec's decoder (npm run fuzz:codec [-- SECONDS [SEED]]), default 60 s.
 * The same properties as test/codec/codec-fuzz.test.ts, under a time budget; prints the seed so a
 * finding can be replayed. Exit status: 0 when nothing was found, 1 on a finding.
 */
import fc from 'fast-check';
import { codecFuzzProperties } from './codec-arbitraries.js';

const seconds = Number(process.argv[2] ?? 60);
const seed = process.argv[3] === undefined ? Date.now() ^ (Math.random() * 2 ** 31) : Number(process.argv[3]);
if (!Number.isFinite(seconds) || seconds <= 0 || !Number.isInteger(seed)) {
  console.error('usage: codec-fuzz [SECONDS=60] [SEED]');
  process.exit(2);
}
const properties = Object.entries(codecFuzzProperties());
console.log(`codec fuzz: ${seconds} s over ${properties.length} properties, seed ${seed}`);
let ok = true;
for (const [name, property] of properties) {
  const started = Date.now();
  const details = fc.check(property as fc.IProperty<unknown[]>, {
    seed,
    numRuns: Number.MAX_SAFE_INTEGER,
    interruptAfterTimeLimit: (seconds * 1000) / properties.length,
    markInterruptAsFailure: false,
  });
  if (details.failed) {
    ok = false;
    console.error(`FAIL ${name} after ${details.numRuns} runs: ${String(details.errorInstance)}`);
    console.error(
      `  counterexample: ${fc.stringify(details.counterexample)}; replay: seed ${details.seed}, path ${details.counterexamplePath}`,
    );
  } else {
    console.log(`ok   ${name}: ${details.numRuns} runs in ${Date.now() - started} ms`);
  }
}
process.exit(ok ? 0 : 1);
