/**
 * Page codec benchmark (npm run bench:codec [-- --json] [--corpus FILE …] [--quick]
 * [--only workload,sparse,random,redis]).
 *
 * Corpora (all held in memory before timing; each starts with untimed warm-up epochs that fill the
 * page cache the way a running session has it):
 *   workload  the generator's default workload (tools/workload): 256 MiB guest, ≈ 2 % dirty per epoch
 *   sparse    a 64 MiB guest (it fits the page cache), every dirty page changes only a few words: the
 *             throughput target
 *   random    every dirty page is rewritten with incompressible bytes
 *   redis     a real redis-server under load, captured by tools/capture (the committed corpus; or any
 *             page-log files given with --corpus FILE, docs/page-log.md)
 *
 * For each corpus, single-threaded (MB/s of dirty-page input per core):
 *   remus-wan  encode and decode, native addon and TypeScript fallback
 *   baselines  zstd -1 on the raw pages (what a zstd tunnel sends), XOR+zero-run without zstd (our
 *              records with compression off), raw pages
 *   pass only  the native per-page pass alone (zero test, hash, diff against the base, base update)
 *              plus the record copy into a chunk: an all-C encoder's work, without its bookkeeping
 *   floor      the memory work any codec that keeps a delta base per page must do: hash each page
 *              (native) and copy it into a cache-sized slab and into a chunk buffer — no encoding
 * Times are medians of RUNS runs (the best run is reported next to it: on a shared machine the best
 * run is the closest to what the code does alone); ratios are against zstd -1 measured in the same run.
 *
 * JSON (--json): { corpora: [{ name, pageSize, epochs, pages, inputBytes, results: { [name]: { wireBytes,
 * wireRatio (wire / raw), vsZstd1 (wire / zstd-1 wire), encodeMBps, decodeMBps, bestEncodeMBps,
 * bestDecodeMBps } }, cache: { hitRate } }], levels: [{ level, wireBytes, encodeMBps }],
 * targets: [{ name, value, median, target, met }] } — a throughput target's value is its best run
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type * as Binding from 'zstd-napi/binding.js';
import { copyOf } from '../../src/codec/chunk-compression.js';
import { fallback, type HotLoops, native } from '../../src/codec/hot-loops.js';
import { type EncodedChunk, EpochDecoder, EpochEncoder, type EpochSummary } from '../../src/codec/index.js';
import { Workload, type WorkloadOptions } from '../workload/generator.js';
import { PageLogReader } from '../workload/page-log.js';

const zstd = createRequire(import.meta.url)('zstd-napi/binding') as typeof Binding;
const MB = 1e6;
const args = process.argv.slice(2);
/** The row of the memory floor (see floorMs). */
const FLOOR = 'floor (hash + page copies)';
/** The row of the native per-page pass alone (see nativePassMs). */
const PASS = 'per-page pass only (C)';
const json = args.includes('--json');
const quick = args.includes('--quick');
const RUNS = quick ? 1 : 5;
const log = (s = '') => {
  if (!json) process.stdout.write(`${s}\n`);
};

interface Epoch {
  pfns: Uint32Array;
  pages: Buffer;
}
interface Corpus {
  name: string;
  pageSize: number;
  warmup: Epoch[];
  epochs: Epoch[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

function fromWorkload(name: string, o: WorkloadOptions, warm: number, timed: number): Corpus {
  const w = new Workload({ ...o, epochs: warm + timed });
  const ps = w.pageSize;
  // epoch 0: every page once, as the initial full copy of a session
  const all = Uint32Array.from({ length: w.pages }, (_, i) => i);
  const warmup: Epoch[] = [{ pfns: all, pages: Buffer.from(w.memory) }];
  const epochs: Epoch[] = [];
  for (let e = 0; e < warm + timed; e++) {
    const { pfns, memory } = w.nextEpoch();
    const pages = Buffer.allocUnsafe(pfns.length * ps);
    pfns.forEach((pfn, i) => {
      memory.copy(pages, i * ps, pfn * ps, (pfn + 1) * ps);
    });
    (e < warm ? warmup : epochs).push({ pfns: Uint32Array.from(pfns), pages });
  }
  return { name, pageSize: ps, warmup, epochs };
}

function fromPageLog(path: string, maxBytes: number): Corpus {
  const r = PageLogReader.open(path);
  const all: Epoch[] = [];
  let bytes = 0;
  for (const e of r) {
    if (bytes + e.pages.length > maxBytes && all.length > 2) break;
    all.push({ pfns: Uint32Array.from(e.pfns), pages: Buffer.from(e.pages) });
    bytes += e.pages.length;
  }
  r.close();
  const warm = Math.max(1, Math.floor(all.length / 5));
  return {
    name: path.split('/').pop() ?? path,
    pageSize: r.header.pageSize,
    warmup: all.slice(0, warm),
    epochs: all.slice(warm),
  };
}

const inputBytes = (c: Corpus) => c.epochs.reduce((s, e) => s + e.pages.length, 0);
const pageOf = (e: Epoch, ps: number) => (i: number) => e.pages.subarray(i * ps, (i + 1) * ps);

interface Encoded {
  warm: Array<{ chunks: EncodedChunk[]; summary: EpochSummary }>;
  timed: Array<{ chunks: EncodedChunk[]; summary: EpochSummary }>;
  ms: number;
  wire: number;
  hitRate: number;
}

/**
 * Encode the corpus with a fresh encoder. With `keep` false the chunks are dropped as they come, as a
 * sender does once they are written (holding hundreds of MB of chunks would slow every allocation
 * and distort the timing); keep them only for the decoder.
 */
function encodeAll(c: Corpus, loops: HotLoops, zstdLevel: number | null, keep = false): Encoded {
  const enc = new EpochEncoder({ pageSize: c.pageSize, loops, zstdLevel });
  let n = 0;
  const run = (e: Epoch) => {
    const r = enc.encodeEpoch(++n, e.pfns, pageOf(e, c.pageSize));
    return keep ? r : { chunks: [], summary: r.summary };
  };
  const warm = c.warmup.map(run);
  const before = enc.cacheStats();
  const t0 = performance.now();
  const timed = c.epochs.map(run);
  const ms = performance.now() - t0;
  const after = enc.cacheStats();
  const hits = after.hits - before.hits;
  const lookups = hits + after.misses - before.misses;
  const wire = timed.reduce((sum, x) => sum + x.summary.wireBytes, 0);
  return { warm, timed, ms, wire, hitRate: lookups === 0 ? 0 : hits / lookups };
}

function decodeAll(c: Corpus, loops: HotLoops, encoded: Encoded): number {
  const dec = new EpochDecoder({ pageSize: c.pageSize, loops });
  const sink = () => undefined;
  let n = 0;
  const run = (list: Encoded['warm']) => {
    for (const { chunks, summary } of list) {
      dec.begin(++n);
      for (const ch of chunks) dec.chunk(ch, sink);
      dec.end(summary.pageCount, summary.digest);
    }
  };
  run(encoded.warm);
  const t0 = performance.now();
  run(encoded.timed);
  return performance.now() - t0;
}

/**
 * zstd on the raw dirty pages, in 512 KiB chunks: what a plain zstd tunnel carries. Timed as a tunnel
 * runs, into one reused output buffer (a tunnel writes it to its socket); the frames the decode pass
 * needs are kept in a second, untimed pass.
 */
function zstdRaw(c: Corpus, level: number): { wire: number; encMs: number; decMs: number } {
  const cctx = new zstd.CCtx();
  const dctx = new zstd.DCtx();
  const chunk = 512 * 1024;
  const dst = Buffer.allocUnsafe(zstd.compressBound(chunk));
  const back = Buffer.allocUnsafe(chunk);
  const each = (fn: (src: Buffer) => void) => {
    for (const e of c.epochs) {
      for (let at = 0; at < e.pages.length; at += chunk)
        fn(e.pages.subarray(at, Math.min(e.pages.length, at + chunk)));
    }
  };
  let wire = 0;
  const t0 = performance.now();
  each((src) => {
    wire += Math.min(cctx.compress(dst, src, level), src.length);
  });
  const encMs = performance.now() - t0;
  const frames: Buffer[] = [];
  each((src) => {
    frames.push(copyOf(dst.subarray(0, cctx.compress(dst, src, level))));
  });
  const t1 = performance.now();
  for (const f of frames) dctx.decompress(back, f);
  return { wire, encMs, decMs: performance.now() - t1 };
}

/**
 * The codec's native per-page pass alone (hot-loops encodePage against a base slot, then the record's
 * bytes into a chunk buffer), with no page cache bookkeeping, no duplicate table, no digest and no
 * zstd: what an encoder written entirely in C would still do per page. ms for the timed epochs.
 */
function nativePassMs(c: Corpus, loops: HotLoops): number {
  const ps = c.pageSize;
  const slots = Math.floor((64 * 2 ** 20) / ps);
  const slab = Buffer.alloc(slots * ps);
  const seen = new Uint8Array(slots);
  const chunk = Buffer.alloc(512 * 1024);
  const out = new Uint8Array(ps);
  const hash = new Uint32Array(2);
  const prime = (e: Epoch) => {
    for (let i = 0; i < e.pfns.length; i++) {
      const s = (e.pfns[i] as number) % slots;
      slab.set(e.pages.subarray(i * ps, (i + 1) * ps), s * ps);
      seen[s] = 1;
    }
  };
  for (const e of c.warmup) prime(e);
  let at = 0;
  const t0 = performance.now();
  for (const e of c.epochs) {
    for (let i = 0; i < e.pfns.length; i++) {
      const page = e.pages.subarray(i * ps, (i + 1) * ps);
      const s = (e.pfns[i] as number) % slots;
      const n = loops.encodePage(
        page,
        seen[s] ? slab.subarray(s * ps, (s + 1) * ps) : null,
        out,
        ps - 4,
        hash,
      );
      if (at + ps > chunk.length) at = 0;
      if (n >= 0) chunk.set(out.subarray(0, n), at);
      else chunk.set(page, at);
      at += ps;
    }
  }
  return performance.now() - t0;
}

/**
 * The floor of a page-cache codec, in ms for the timed epochs. Encode: per page, its hash and two
 * copies (into the slot of its pfn in a slab the size of the default cache, and into a chunk buffer) —
 * no delta, no zstd, no bookkeeping. Decode: per page, the hash of its slot (a receiver verifies every
 * page it decoded, and a delta applied in place leaves the page in its slot): with sparse deltas,
 * reading the page back from memory is most of the work.
 */
function floorMs(c: Corpus, loops: HotLoops): { enc: number; dec: number } {
  const ps = c.pageSize;
  const slots = Math.floor((64 * 2 ** 20) / ps);
  const slab = Buffer.alloc(slots * ps);
  const chunk = Buffer.alloc(512 * 1024);
  const hash = new Uint32Array(2);
  let at = 0;
  const t0 = performance.now();
  for (const e of c.epochs) {
    for (let i = 0; i < e.pfns.length; i++) {
      const page = e.pages.subarray(i * ps, (i + 1) * ps);
      loops.hashPageInto(page, hash, 0);
      slab.set(page, ((e.pfns[i] as number) % slots) * ps);
      if (at + ps > chunk.length) at = 0;
      chunk.set(page, at);
      at += ps;
    }
  }
  const t1 = performance.now();
  for (const e of c.epochs) {
    for (let i = 0; i < e.pfns.length; i++) {
      const slot = (e.pfns[i] as number) % slots;
      loops.hashPageInto(slab.subarray(slot * ps, (slot + 1) * ps), hash, 0);
    }
  }
  return { enc: t1 - t0, dec: performance.now() - t1 };
}

interface Row {
  wireBytes: number | null;
  wireRatio: number | null;
  vsZstd1: number | null;
  encodeMBps: number | null;
  decodeMBps: number | null;
  bestEncodeMBps: number | null;
  bestDecodeMBps: number | null;
}

function benchCorpus(c: Corpus) {
  const input = inputBytes(c);
  const pages = c.epochs.reduce((s, e) => s + e.pfns.length, 0);
  const mbps = (ms: number) => input / MB / (ms / 1000);
  const z = Array.from({ length: RUNS }, () => zstdRaw(c, 1));
  const zWire = z[0]?.wire ?? 1;
  /** A row from the wire bytes and the run times (ms) of encode and decode. */
  const row = (wire: number | null, enc: number[], dec: number[]): Row => ({
    wireBytes: wire,
    wireRatio: wire === null ? null : wire / input,
    vsZstd1: wire === null ? null : wire / zWire,
    encodeMBps: enc.length === 0 ? null : mbps(median(enc)),
    decodeMBps: dec.length === 0 ? null : mbps(median(dec)),
    bestEncodeMBps: enc.length === 0 ? null : mbps(Math.min(...enc)),
    bestDecodeMBps: dec.length === 0 ? null : mbps(Math.min(...dec)),
  });
  const results: Record<string, Row> = {
    raw: row(input, [], []),
    'zstd-1 on raw pages': row(
      zWire,
      z.map((x) => x.encMs),
      z.map((x) => x.decMs),
    ),
  };
  let hitRate = 0;
  for (const [name, loops] of [
    ['native', native],
    ['fallback', fallback],
  ] as const) {
    if (!loops) continue;
    const runs = name === 'fallback' ? 1 : RUNS;
    const enc = Array.from({ length: runs }, () => encodeAll(c, loops, 1));
    const first = enc[0] as Encoded;
    const kept = encodeAll(c, loops, 1, true);
    const dec = Array.from({ length: runs }, () => decodeAll(c, loops, kept));
    results[`remus-wan (${name})`] = row(
      first.wire,
      enc.map((e) => e.ms),
      dec,
    );
    hitRate = first.hitRate;
  }
  const xor = encodeAll(c, native ?? fallback, null);
  results['XOR+zero-run, no zstd'] = row(xor.wire, [xor.ms], []);
  results[PASS] = row(
    null,
    Array.from({ length: RUNS }, () => nativePassMs(c, native ?? fallback)),
    [],
  );
  const floors = Array.from({ length: RUNS }, () => floorMs(c, native ?? fallback));
  results[FLOOR] = row(
    null,
    floors.map((f) => f.enc),
    floors.map((f) => f.dec),
  );
  return {
    name: c.name,
    pageSize: c.pageSize,
    epochs: c.epochs.length,
    pages,
    inputBytes: input,
    results,
    cache: { hitRate },
  };
}

/**
 * The committed real corpus (tools/capture/corpus/redis-small.pagelog.zst: redis-server under
 * redis-benchmark, 20 epochs of 100 ms), decompressed to a temporary file. A fresh, larger capture
 * (npm run capture) is measured with --corpus tools/capture/out/redis.pagelog.
 */
function realCorpus(): string {
  const packed = 'tools/capture/corpus/redis-small.pagelog.zst';
  const out = join(mkdtempSync(join(tmpdir(), 'remus-codec-bench-')), 'redis-small.pagelog');
  const data = readFileSync(packed);
  const size = zstd.getFrameContentSize(data);
  const buf = Buffer.allocUnsafe(size ?? 256 * MB);
  const n = new zstd.DCtx().decompress(buf, data);
  writeFileSync(out, buf.subarray(0, n));
  process.on('exit', () => rmSync(dirname(out), { recursive: true, force: true }));
  return out;
}

function fmt(n: number | null, digits = 0): string {
  return n === null ? '—' : n.toFixed(digits);
}

function main(): void {
  if (!native) log(`note: the native addon is not loaded; only the fallback is measured`);
  const guest: WorkloadOptions = { pages: quick ? 16384 : 65536, seed: 7 };
  const warm = quick ? 3 : 10;
  const timed = quick ? 10 : 50;
  const only = args.flatMap((a, i) =>
    a === '--only' && args[i + 1] ? (args[i + 1] as string).split(',') : [],
  );
  const builtin: Array<[string, () => Corpus]> = [
    ['workload', () => fromWorkload('workload', guest, warm, timed)],
    [
      // a 64 MiB guest: it fits the page cache, so every dirty page has a delta base
      'sparse',
      () =>
        fromWorkload(
          'sparse',
          {
            pages: 16384,
            seed: 7,
            dirtyPerEpoch: 1300,
            mix: { sparse: 1, append: 0, rewrite: 0, zero: 0, copy: 0 },
          },
          warm,
          timed,
        ),
    ],
    [
      'random',
      () =>
        fromWorkload(
          'random',
          {
            ...guest,
            content: { random: 1, text: 0, structured: 0, zero: 0 },
            mix: { rewrite: 1, sparse: 0, append: 0, zero: 0, copy: 0 },
          },
          warm,
          timed,
        ),
    ],
  ];
  const wanted = (name: string) => only.length === 0 || only.includes(name);
  const corpora = builtin.filter(([name]) => wanted(name)).map(([, make]) => make());
  const files = args.flatMap((a, i) => (a === '--corpus' && args[i + 1] ? [args[i + 1] as string] : []));
  if (files.length === 0 && wanted('redis')) files.push(realCorpus());
  for (const f of files) corpora.push(fromPageLog(f, quick ? 128 * MB : 1024 * MB));

  const out = corpora.map((c) => {
    const r = benchCorpus(c);
    log(
      `\n${r.name}: ${r.epochs} epochs, ${r.pages} dirty pages, ${(r.inputBytes / MB).toFixed(0)} MB (cache hit rate ${(100 * r.cache.hitRate).toFixed(1)} %)`,
    );
    log(
      '  codec                        wire MB   wire/raw  vs zstd-1   encode MB/s (best)   decode MB/s (best)',
    );
    const both = (m: number | null, b: number | null) =>
      `${fmt(m).padStart(11)} ${`(${fmt(b)})`.padStart(8)}`;
    for (const [name, x] of Object.entries(r.results)) {
      log(
        `  ${name.padEnd(28)} ${fmt(x.wireBytes === null ? null : x.wireBytes / MB, 2).padStart(8)} ${fmt(x.wireRatio, 4).padStart(10)} ${fmt(x.vsZstd1, 3).padStart(10)}` +
          `  ${both(x.encodeMBps, x.bestEncodeMBps)}  ${both(x.decodeMBps, x.bestDecodeMBps)}`,
      );
    }
    return r;
  });

  // zstd level for our chunks: wire bytes and encode speed on the default workload
  const base = corpora.find((c) => c.name === 'workload');
  const levels = !base
    ? []
    : [-5, -1, 1, 3, 6].map((level) => {
        const e = encodeAll(base, native ?? fallback, level);
        return { level, wireBytes: e.wire, encodeMBps: inputBytes(base) / MB / (e.ms / 1000) };
      });
  if (levels.length > 0) log('\nzstd level of remus-wan chunks on the workload corpus:');
  for (const l of levels)
    log(
      `  level ${String(l.level).padStart(3)}: ${(l.wireBytes / MB).toFixed(2)} MB, encode ${l.encodeMBps.toFixed(0)} MB/s`,
    );

  const get = (corpus: string, codec: string) => out.find((c) => c.name === corpus)?.results[codec];
  const nat = native ? 'remus-wan (native)' : 'remus-wan (fallback)';
  const ratio = (a: number | null | undefined, b: number | null | undefined) => (a ?? 0) / (b ?? 1);
  const zRandom = get('random', 'zstd-1 on raw pages');
  const targets = [
    {
      name: 'sparse: encode MB/s (native)',
      value: get('sparse', nat)?.bestEncodeMBps ?? 0,
      median: get('sparse', nat)?.encodeMBps ?? 0,
      target: 1500,
      above: true,
    },
    {
      name: 'sparse: decode MB/s (native)',
      value: get('sparse', nat)?.bestDecodeMBps ?? 0,
      median: get('sparse', nat)?.decodeMBps ?? 0,
      target: 2500,
      above: true,
    },
    {
      name: 'random: encode MB/s vs zstd-1',
      value: ratio(get('random', nat)?.bestEncodeMBps, zRandom?.bestEncodeMBps),
      median: ratio(get('random', nat)?.encodeMBps, zRandom?.encodeMBps),
      target: 1,
      above: true,
    },
    {
      name: 'workload: wire vs zstd-1',
      value: get('workload', nat)?.vsZstd1 ?? 1,
      median: get('workload', nat)?.vsZstd1 ?? 1,
      target: 0.4,
      above: false,
    },
  ]
    // with --only, the targets of the corpora measured
    .filter((t) => out.some((c) => c.name === t.name.split(':')[0]))
    .map((t) => ({
      name: t.name,
      value: t.value,
      median: t.median,
      target: t.target,
      met: t.above ? t.value >= t.target : t.value <= t.target,
    }));
  log('\ntargets (throughput: best run, median in brackets):');
  for (const t of targets)
    log(
      `  ${t.met ? 'met   ' : 'MISSED'} ${t.name}: ${t.value.toFixed(3)} [${t.median.toFixed(3)}] (target ${t.target})`,
    );
  const floor = get('random', FLOOR);
  const sparseFloor = get('sparse', FLOOR);
  if (floor)
    log(
      `  random pages (best runs): the floor of a page-cache codec (hash + 2 copies) runs at ${ratio(floor?.bestEncodeMBps, zRandom?.bestEncodeMBps).toFixed(3)}× zstd-1, our per-page pass alone (C) at ${ratio(get('random', PASS)?.bestEncodeMBps, zRandom?.bestEncodeMBps).toFixed(3)}×; remus-wan at ${ratio(get('random', nat)?.bestEncodeMBps, get('random', PASS)?.bestEncodeMBps).toFixed(3)}× that pass`,
    );
  if (sparseFloor)
    log(
      `  sparse pages: the decode floor (hash of each page in its cache slot) runs at ${fmt(sparseFloor?.bestDecodeMBps ?? null)} MB/s; remus-wan decodes at ${ratio(get('sparse', nat)?.bestDecodeMBps, sparseFloor?.bestDecodeMBps).toFixed(3)}× that floor`,
    );
  if (json)
    process.stdout.write(
      `${JSON.stringify({ native: native !== undefined, corpora: out, levels, targets })}\n`,
    );
}

main();
