/**
 * Planner speed targets (npm run bench):
 *
 *   trace    reading and planning a 1 000 000-line write trace (CSV) — target < 2 s
 *   sweep    a 100-point epoch sweep for 100 guests (4 measured windows each) — target < 1 s
 *
 * These machines are shared and noisy, so every figure is the median of several runs and is also
 * given as a ratio to a baseline measured in the same run: sorting 1 000 000 random doubles
 * (a fixed amount of CPU and memory traffic). `--json` prints machine-readable results.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadInput } from '../../src/measure/inputs.js';
import { resolvePolicy } from '../../src/measure/resolve.js';
import { DEFAULT_LINK } from '../../src/planner/defaults.js';
import { plan } from '../../src/planner/plan.js';
import type { GuestSpec, LinkSpec } from '../../src/planner/types.js';
import { generateTrace, prng, traceCsv } from '../gen-trace.js';

const RUNS = 5;
const json = process.argv.includes('--json');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function time(fn: () => unknown | Promise<unknown>, runs = RUNS): Promise<number> {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return median(out);
}

function baseline(): number {
  const rand = prng(99);
  const a = new Float64Array(1_000_000);
  for (let i = 0; i < a.length; i++) a[i] = rand();
  return a.sort()[0] ?? 0;
}

const link: LinkSpec = {
  ...DEFAULT_LINK,
  bandwidthBps: 1e9 / 8,
  rttS: 0.02,
  rttSource: 'given',
  loss: 1e-4,
  channels: 4,
};
const base = (name: string): GuestSpec => ({
  name,
  pageSize: 4096,
  measurements: [],
  traces: [],
  diskWriteBps: 1e6,
  deviceStateBytes: 65536,
  memoryCompression: 0.4,
  diskCompression: 0.6,
  compressionSource: 'given',
  processingPerPageS: 0,
  processingSource: 'none',
  model: 'auto',
});

async function main(): Promise<void> {
  const log = (s: string) => {
    if (!json) process.stdout.write(`${s}\n`);
  };
  log('planner benchmark (median of 5 runs; ratio = time / baseline, baseline = sorting 1e6 doubles)');
  const baseMs = await time(baseline);
  log(`  baseline                      ${baseMs.toFixed(1)} ms`);

  // 1. a 1 000 000-line trace: 256 MiB guest, 200 000 writes/s (5 s), Zipf 1.1
  const dir = mkdtempSync(join(tmpdir(), 'remus-plan-bench-'));
  try {
    const file = join(dir, 'trace.csv');
    writeFileSync(
      file,
      traceCsv(generateTrace({ writes: 1_000_000, pages: 65536, rate: 200_000, zipf: 1.1, seed: 7 })),
    );
    const policy = resolvePolicy({});
    let pages = 0;
    const traceMs = await time(async () => {
      const [g] = await loadInput(file, 4096);
      const result = plan([{ ...base('trace'), traces: g?.traces ?? [] }], link, policy);
      pages = result.guests[0]?.plans[0]?.dirtyPages ?? 0;
    });
    log(
      `  trace: read + plan 1e6 lines  ${traceMs.toFixed(1)} ms  (${(traceMs / baseMs).toFixed(2)}× baseline; target < 2000 ms)`,
    );

    // 2. 100 guests × 100-point sweep
    const rand = prng(3);
    const guests = Array.from({ length: 100 }, (_, i) => {
      const r100 = 2000 + rand() * 20_000; // pages in 100 ms
      const alpha = 0.4 + rand() * 0.5;
      return {
        ...base(`g${i}`),
        measurements: [0.1, 0.5, 1, 5].map((w) => ({
          windowS: w,
          pages: [r100 * (w / 0.1) ** alpha],
          source: 'bench',
          mode: 'given' as const,
        })),
      };
    });
    const sweep = resolvePolicy({ epoch: '10ms..2s:100', latencyBudget: '500ms' });
    let feasible = 0;
    const sweepMs = await time(() => {
      const result = plan(guests, link, sweep);
      feasible = result.guests.filter((g) => g.recommended).length;
    });
    log(
      `  sweep: 100 guests × 100 epochs ${sweepMs.toFixed(1)} ms  (${(sweepMs / baseMs).toFixed(2)}× baseline; target < 1000 ms)`,
    );
    log(`  (checks: first trace plan ${pages} pages; ${feasible} of 100 guests protectable)`);
    const ok = traceMs < 2000 && sweepMs < 1000;
    log(ok ? 'targets met' : 'TARGETS MISSED');
    if (json) {
      process.stdout.write(
        `${JSON.stringify({ baselineMs: baseMs, traceMs, traceRatio: traceMs / baseMs, sweepMs, sweepRatio: sweepMs / baseMs, targetsMet: ok })}\n`,
      );
    }
    process.exitCode = ok ? 0 : 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
