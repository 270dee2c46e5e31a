/**
 * Seeded synthetic dirty-page traces, for examples, tests and benchmarks.
 *
 *   node dist/tools/gen-trace.js --writes 1000000 --pages 262144 --rate 200000 --zipf 1.1 --seed 7 > trace.csv
 *
 * A guest of `pages` pages receives `rate` page writes per second, each write choosing its page from a
 * Zipf(s) distribution over a random permutation of the pages (a hot set rewritten often, a long cold
 * tail) — the skew that makes real D(T) sublinear. Output: CSV `t_us,pfn`, one write per line.
 */
import { writeSync } from 'node:fs';
import { parseArgs } from 'node:util';

/** mulberry32: a small, fast, seeded PRNG (uniform in [0, 1)). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Options of {@link generateTrace}. */
export interface TraceOptions {
  writes: number;
  pages: number;
  /** Page writes per second. */
  rate: number;
  /** Zipf exponent (0 = uniform). */
  zipf: number;
  seed: number;
}

/** Times (µs, integers, non-decreasing) and pfns of a synthetic trace. */
export function generateTrace(o: TraceOptions): { timesUs: Float64Array; pfns: Uint32Array } {
  const rand = prng(o.seed);
  // Zipf CDF over ranks, then a random rank → pfn permutation.
  const cdf = new Float64Array(o.pages);
  let sum = 0;
  for (let k = 0; k < o.pages; k++) {
    sum += 1 / (k + 1) ** o.zipf;
    cdf[k] = sum;
  }
  const perm = new Uint32Array(o.pages);
  for (let i = 0; i < o.pages; i++) perm[i] = i;
  for (let i = o.pages - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const tmp = perm[i] as number;
    perm[i] = perm[j] as number;
    perm[j] = tmp;
  }
  const timesUs = new Float64Array(o.writes);
  const pfns = new Uint32Array(o.writes);
  let t = 0;
  for (let i = 0; i < o.writes; i++) {
    t += (-Math.log(1 - rand()) / o.rate) * 1e6; // Poisson arrivals
    const u = rand() * sum;
    let lo = 0;
    let hi = o.pages - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cdf[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    timesUs[i] = Math.floor(t);
    pfns[i] = perm[lo] as number;
  }
  return { timesUs, pfns };
}

/** The trace as CSV text (`t_us,pfn`). */
export function traceCsv(trace: { timesUs: Float64Array; pfns: Uint32Array }): string {
  const lines: string[] = ['t_us,pfn'];
  for (let i = 0; i < trace.pfns.length; i++) lines.push(`${trace.timesUs[i]},${trace.pfns[i]}`);
  return `${lines.join('\n')}\n`;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      writes: { type: 'string', default: '100000' },
      pages: { type: 'string', default: '65536' },
      rate: { type: 'string', default: '50000' },
      zipf: { type: 'string', default: '1.1' },
      seed: { type: 'string', default: '1' },
    },
  });
  const o: TraceOptions = {
    writes: Number(values.writes),
    pages: Number(values.pages),
    rate: Number(values.rate),
    zipf: Number(values.zipf),
    seed: Number(values.seed),
  };
  if (
    Object.values(o).some((v) => !Number.isFinite(v) || v < 0) ||
    o.writes < 1 ||
    o.pages < 1 ||
    o.rate <= 0
  ) {
    process.stderr.write(
      'gen-trace: --writes, --pages, --rate must be positive numbers; --zipf, --seed ≥ 0\n',
    );
    process.exitCode = 2;
    return;
  }
  writeSync(1, traceCsv(generateTrace(o)));
}

if (process.argv[1]?.endsWith('gen-trace.js')) main();
