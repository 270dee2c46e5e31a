/**
 * Long fuzz run of the frame decoder (npm run fuzz:protocol [-- SECONDS [SEED]]), default 60 s.
 *
 * Runs the same properties as test/protocol/decoder-fuzz.test.ts (tools/fuzz/protocol-arbitraries.ts)
 * under a time budget instead of a run count, with the default caps and with the smallest caps, and
 * prints the seed so a finding can be replayed: `npm run fuzz:protocol -- 60 <seed>`.
 * Exit status: 0 when nothing was found, 1 on a finding.
 */
import fc from 'fast-check';
import { DEFAULT_LIMITS, MIN_CHUNK_CAP, type ProtocolLimits } from '../../src/protocol/frames.js';
import { fuzzProperties } from './protocol-arbitraries.js';

const seconds = Number(process.argv[2] ?? 60);
const seed = process.argv[3] === undefined ? Date.now() ^ (Math.random() * 2 ** 31) : Number(process.argv[3]);
if (!Number.isFinite(seconds) || seconds <= 0 || !Number.isInteger(seed)) {
  console.error('usage: protocol-fuzz [SECONDS=60] [SEED]');
  process.exit(2);
}

const limitSets: [string, ProtocolLimits][] = [
  ['default caps', DEFAULT_LIMITS],
  ['smallest caps', { maxChunkData: MIN_CHUNK_CAP, maxRawLength: MIN_CHUNK_CAP }],
];
const PROPERTIES = 3;
const slice = (seconds * 1000) / (limitSets.length * PROPERTIES);

/** Runs one property for its share of the time budget; true when it held. */
function run<Ts extends unknown[]>(name: string, property: fc.IProperty<Ts>): boolean {
  const started = Date.now();
  const details = fc.check(property, {
    seed,
    numRuns: Number.MAX_SAFE_INTEGER,
    interruptAfterTimeLimit: slice,
    markInterruptAsFailure: false,
  });
  const ms = Date.now() - started;
  if (!details.failed) {
    console.log(`ok   ${name}: ${details.numRuns} runs in ${ms} ms`);
    return true;
  }
  console.error(`FAIL ${name} after ${details.numRuns} runs (${ms} ms)`);
  console.error(`  counterexample: ${fc.stringify(details.counterexample)}`);
  console.error(`  error: ${String(details.errorInstance)}`);
  console.error(`  replay: seed ${details.seed}, path ${details.counterexamplePath}`);
  return false;
}

console.log(`protocol fuzz: ${seconds} s over ${limitSets.length * PROPERTIES} properties, seed ${seed}`);
let ok = true;
for (const [caps, limits] of limitSets) {
  const p = fuzzProperties(limits);
  ok = run(`random bytes (${caps})`, p.randomBytes) && ok;
  ok = run(`mutated streams (${caps})`, p.mutatedStreams) && ok;
  ok = run(`valid streams (${caps})`, p.validStreams) && ok;
}
process.exit(ok ? 0 : 1);
