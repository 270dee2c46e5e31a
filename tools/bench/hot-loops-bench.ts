/**
 * Why the native addon exists: the codec's hot loops, native vs the TypeScript fallback, in MB/s of
 * page input (4 KiB pages, 16 MiB per pass), median of several runs, and the ratio native/fallback
 * measured in the same run (these machines are noisy: trust the ratios, not one absolute number).
 *
 *   encode sparse   encodeDelta of pages with a few changed 8-byte words (the common DELTA case)
 *   encode dense    encodeDelta of pages with half their bytes changed, limit a page (gives up: RAW)
 *   encode random   encodeDelta of an unrelated random page (incompressible), the encoder's limit
 *                   (page − 4): gives up, so this is the cost of finding out a page must go RAW
 *   decode sparse   applyDelta of those sparse deltas (a few dozen bytes: mostly call overhead)
 *   decode medium   applyDelta of deltas of pages with 64 changed 8-byte words (1/8 of the page)
 *   isZero          isZeroPage of all-zero pages (the full scan)
 *   isZero+hash     isZeroPage then hashPageInto of nonzero pages (the encoder's two calls before
 *                   classifyPage)
 *   classify        classifyPage of nonzero pages (one pass: zero test and hash)
 *   classify zero   classifyPage of all-zero pages
 *   hashPage        hashPage, one call (and one result object) per page
 *   3-call page     the encoder's per-page work before encodePage: classifyPage, encodeDelta of the
 *                   sparse page against its base, then the base overwritten with the page (.set)
 *   encodePage      the same work fused into one call (each pass swaps which side is the base, so the
 *                   base never already equals the page)
 *   hashPages       hashPages over the whole buffer in one call
 *
 * Run: npm run build && node dist/tools/bench/hot-loops-bench.js [--json]
 */
import { performance } from 'node:perf_hooks';
import { fallback, type HotLoops, native, nativeLoadError } from '../../src/codec/hot-loops.js';

const PAGE = 4096;
const PAGES = 4096; // 16 MiB per pass
const RUNS = 7;
const json = process.argv.includes('--json');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

/** xorshift32 */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

const rand = prng(0x2545f491);
const olds = new Uint8Array(PAGE * PAGES);
for (let i = 0; i < olds.length; i++) olds[i] = rand() & 0xff;
const sparse = olds.slice();
const medium = olds.slice();
const dense = olds.slice();
const randoms = new Uint8Array(PAGE * PAGES);
for (let i = 0; i < randoms.length; i++) randoms[i] = rand() & 0xff;
/** Change `words` random 8-byte words of page `p` of `buf`. */
function changeWords(buf: Uint8Array, p: number, words: number): void {
  for (let k = 0; k < words; k++) {
    const at = p * PAGE + (rand() % (PAGE / 8)) * 8;
    for (let j = 0; j < 8; j++) buf[at + j] = (buf[at + j] as number) ^ (1 + (rand() % 255));
  }
}
for (let p = 0; p < PAGES; p++) {
  changeWords(sparse, p, 4);
  changeWords(medium, p, 64);
  for (let j = 0; j < PAGE; j++) if (rand() & 1) dense[p * PAGE + j] = (dense[p * PAGE + j] as number) ^ 0x5a;
}
const zeros = new Uint8Array(PAGE * PAGES);
const page = (buf: Uint8Array, p: number) => buf.subarray(p * PAGE, (p + 1) * PAGE);
const oldPages = Array.from({ length: PAGES }, (_, p) => page(olds, p));
const sparsePages = Array.from({ length: PAGES }, (_, p) => page(sparse, p));
const densePages = Array.from({ length: PAGES }, (_, p) => page(dense, p));
const randomPages = Array.from({ length: PAGES }, (_, p) => page(randoms, p));
const zeroPages = Array.from({ length: PAGES }, (_, p) => page(zeros, p));
const deltasOf = (pages: Uint8Array[]) =>
  pages.map((now, p) => {
    const out = new Uint8Array(PAGE);
    return out.slice(0, fallback.encodeDelta(oldPages[p] as Uint8Array, now, out, PAGE));
  });
const deltas = deltasOf(sparsePages);
const mediumDeltas = deltasOf(Array.from({ length: PAGES }, (_, p) => page(medium, p)));
const bases = olds.slice(); // the bases the per-page cases rewrite, pass after pass
const basePages = Array.from({ length: PAGES }, (_, p) => page(bases, p));
let flip = false; // which of old/sparse the bases hold now: each pass encodes the other one
const target = olds.slice(); // decoding a delta twice restores the page, so passes can repeat
const targetPages = Array.from({ length: PAGES }, (_, p) => page(target, p));

let sink = 0;
const cases: [string, (l: HotLoops) => void][] = [
  [
    'encode sparse',
    (l) => {
      const out = new Uint8Array(PAGE);
      for (let p = 0; p < PAGES; p++)
        sink += l.encodeDelta(oldPages[p] as Uint8Array, sparsePages[p] as Uint8Array, out, PAGE);
    },
  ],
  [
    'encode dense',
    (l) => {
      const out = new Uint8Array(PAGE);
      for (let p = 0; p < PAGES; p++)
        sink += l.encodeDelta(oldPages[p] as Uint8Array, densePages[p] as Uint8Array, out, PAGE);
    },
  ],
  [
    'encode random',
    (l) => {
      const out = new Uint8Array(PAGE);
      for (let p = 0; p < PAGES; p++)
        sink += l.encodeDelta(oldPages[p] as Uint8Array, randomPages[p] as Uint8Array, out, PAGE - 4);
    },
  ],
  [
    'decode sparse',
    (l) => {
      for (let p = 0; p < PAGES; p++)
        if (l.applyDelta(targetPages[p] as Uint8Array, deltas[p] as Uint8Array)) sink++;
    },
  ],
  [
    'decode medium',
    (l) => {
      for (let p = 0; p < PAGES; p++)
        if (l.applyDelta(targetPages[p] as Uint8Array, mediumDeltas[p] as Uint8Array)) sink++;
    },
  ],
  [
    'isZero',
    (l) => {
      for (let p = 0; p < PAGES; p++) if (l.isZeroPage(zeroPages[p] as Uint8Array)) sink++;
    },
  ],
  [
    'isZero+hash',
    (l) => {
      const out = new Uint32Array(2 * PAGES);
      for (let p = 0; p < PAGES; p++) {
        const pg = sparsePages[p] as Uint8Array;
        if (l.isZeroPage(pg)) sink++;
        else l.hashPageInto(pg, out, p);
      }
      sink ^= out[1] as number;
    },
  ],
  [
    'classify',
    (l) => {
      const out = new Uint32Array(2 * PAGES);
      for (let p = 0; p < PAGES; p++) if (l.classifyPage(sparsePages[p] as Uint8Array, out, p)) sink++;
      sink ^= out[1] as number;
    },
  ],
  [
    'classify zero',
    (l) => {
      const out = new Uint32Array(2 * PAGES);
      for (let p = 0; p < PAGES; p++) if (l.classifyPage(zeroPages[p] as Uint8Array, out, p)) sink++;
      sink ^= out[1] as number;
    },
  ],
  [
    '3-call page',
    (l) => {
      const out = new Uint8Array(PAGE);
      const h = new Uint32Array(2);
      const pages = flip ? oldPages : sparsePages;
      for (let p = 0; p < PAGES; p++) {
        const pg = pages[p] as Uint8Array;
        const base = basePages[p] as Uint8Array;
        if (!l.classifyPage(pg, h, 0)) sink += l.encodeDelta(base, pg, out, PAGE - 4);
        base.set(pg);
      }
      flip = !flip;
    },
  ],
  [
    'encodePage',
    (l) => {
      const out = new Uint8Array(PAGE);
      const h = new Uint32Array(2);
      const pages = flip ? oldPages : sparsePages;
      for (let p = 0; p < PAGES; p++)
        sink += l.encodePage(pages[p] as Uint8Array, basePages[p] as Uint8Array, out, PAGE - 4, h);
      flip = !flip;
    },
  ],
  [
    'hashPage',
    (l) => {
      for (let p = 0; p < PAGES; p++) sink ^= l.hashPage(sparsePages[p] as Uint8Array).lo;
    },
  ],
  [
    'hashPages',
    (l) => {
      const out = new Uint32Array(2 * PAGES);
      l.hashPages(sparse, PAGE, out);
      sink ^= out[0] as number;
    },
  ],
];

/** MB/s of page input: the median over RUNS of passes repeated for at least ~40 ms. */
function mbps(fn: () => void): number {
  fn(); // warm up (JIT, page faults)
  let reps = 1;
  for (let t = 0; t < 40; reps *= 2) {
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) fn();
    t = performance.now() - t0;
    if (t >= 40) break;
  }
  const rates: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) fn();
    rates.push((reps * PAGE * PAGES) / 1e6 / ((performance.now() - t0) / 1000));
  }
  return median(rates);
}

const results = cases.map(([name, fn]) => {
  const ts = mbps(() => fn(fallback));
  const c = native === undefined ? undefined : mbps(() => fn(native as HotLoops));
  return { name, fallbackMBps: ts, nativeMBps: c, ratio: c === undefined ? undefined : c / ts };
});

if (json) {
  console.log(
    JSON.stringify({ pageSize: PAGE, pages: PAGES, runs: RUNS, nativeLoadError, results, sink }, null, 2),
  );
} else {
  if (native === undefined) console.log(`native addon not loaded (${nativeLoadError}): fallback only`);
  console.log(`hot loops, ${PAGE}-byte pages, ${(PAGE * PAGES) / 2 ** 20} MiB per pass, median of ${RUNS}`);
  console.log(
    `${'op'.padEnd(16)}${'fallback MB/s'.padStart(15)}${'native MB/s'.padStart(14)}${'native/fallback'.padStart(17)}`,
  );
  for (const r of results) {
    const n = r.nativeMBps === undefined ? '-' : r.nativeMBps.toFixed(0);
    const q = r.ratio === undefined ? '-' : `${r.ratio.toFixed(1)}×`;
    console.log(
      `${r.name.padEnd(16)}${r.fallbackMBps.toFixed(0).padStart(15)}${n.padStart(14)}${q.padStart(17)}`,
    );
  }
  if (sink === 0.5) console.log(''); // keep the results observable
}
