/**
 * A seeded generator of realistic checkpoint sequences: the memory of a guest and, epoch by epoch,
 * the pages it dirtied. Reused by the codec benchmark and by daemon tests. Documented in
 * `docs/workload.md`.
 *
 *   const w = new Workload({ pages: 16384, seed: 1, dirtyPerEpoch: 2000 });
 *   for (const { epoch, pfns, memory } of w) {
 *     for (const pfn of pfns) send(pfn, memory.subarray(pfn * 4096, (pfn + 1) * 4096));
 *   }
 *
 * The guest memory is one Buffer (`pages × pageSize`), mutated in place: a dirty page must be read
 * (or copied) before the next call to {@link Workload.nextEpoch}.
 *
 * Deterministic for a seed on every machine: the only randomness is mulberry32 (integer arithmetic, as `prng` in tools/gen-trace.ts);
 * floating point is limited to IEEE-754 basic operations plus `Math.pow`/`Math.log` in the Zipf table,
 * which V8 computes with its own portable fdlibm port. Memory words are written through a Uint32Array,
 * so the byte content assumes a little-endian host (every platform Node supports in practice; checked).
 *
 * With the native addon, the draws and mutations of each epoch run in C (native/workload.c, the same
 * bytes: test/tools/workload-native.test.ts), so that a benchmark's writer takes little of the CPU the
 * daemons it measures share with it.
 */
import { endianness } from 'node:os';
import { type WorkloadNative, workloadNative } from '../../src/codec/hot-loops.js';
import { RwanError } from '../../src/errors.js';

/** Relative weights of what happens to a dirty page in an epoch (normalised; need not sum to 1). */
export interface MutationMix {
  /** A few 8-byte words change: counters, pointers, timestamps, small integers. */
  sparse?: number;
  /** A run of text is appended at the page's cursor (a log or a socket buffer; wraps like a ring). */
  append?: number;
  /** The whole page is rewritten with new content of its kind (a buffer refilled, a page reused). */
  rewrite?: number;
  /** The page becomes all zero (freed and cleared, a balloon, a fresh anonymous page). */
  zero?: number;
  /** The page becomes a copy of another page (memcpy, fork/COW, the page cache). */
  copy?: number;
}

/** Relative weights of the kinds of content in the initial memory (normalised). */
export interface ContentMix {
  /** Log lines, JSON, HTML-ish markup, prose. */
  text?: number;
  /** Record arrays, small-integer arrays, pointer tables with common high bits. */
  structured?: number;
  /** Incompressible bytes (compressed or encrypted data). */
  random?: number;
  /** Zero pages (never touched, or freed). */
  zero?: number;
}

/** Options of {@link Workload}. Only `pages` is required. */
export interface WorkloadOptions {
  /** Guest size in pages. */
  pages: number;
  /** Bytes per page: a power of two, 64…65536. Default 4096. */
  pageSize?: number;
  /** Seed (an unsigned 32-bit integer). Default 1. */
  seed?: number;
  /** Epochs produced by iterating the workload (`nextEpoch` is not bounded). Default 100. */
  epochs?: number;
  /** Mean number of distinct dirty pages per epoch. Default: 2 % of the pages. */
  dirtyPerEpoch?: number;
  /** Mean dirty pages per epoch as a fraction of `pages` (instead of `dirtyPerEpoch`). */
  dirtyFraction?: number;
  /** Epoch-to-epoch spread of the dirty count: uniform in mean × (1 ± burst). Default 0.25. */
  burst?: number;
  /** Zipf exponent of page choice (0 = uniform). Default 1.0. */
  zipf?: number;
  /** Hot pages come in runs of this many contiguous pages (locality). Default 8. */
  cluster?: number;
  /** What happens to a dirty page. Default {@link DEFAULT_MIX}. */
  mix?: MutationMix;
  /** Initial content of the memory. Default {@link DEFAULT_CONTENT}. */
  content?: ContentMix;
}

/** One epoch of the workload. */
export interface WorkloadEpoch {
  /** 1, 2, 3, … (0 is the initial memory, never returned by `nextEpoch`). */
  epoch: number;
  /** The pages dirtied in this epoch: sorted, unique. */
  pfns: Uint32Array;
  /** Write events that hit each page of `pfns` in this epoch (≥ 1; parallel to `pfns`). */
  writes: Uint32Array;
  /** The whole guest memory after the epoch (the workload's own buffer, not a copy). */
  memory: Buffer;
}

/**
 * Default mutation mix: mostly sparse word writes (the XBZRLE observation), calibrated on a capture of
 * redis under load (docs/workload.md).
 */
export const DEFAULT_MIX: Required<MutationMix> = {
  sparse: 0.7,
  append: 0.22,
  rewrite: 0.04,
  zero: 0.03,
  copy: 0.01,
};

/** Default initial content mix, see docs/workload.md. */
export const DEFAULT_CONTENT: Required<ContentMix> = {
  text: 0.2,
  structured: 0.3,
  random: 0.1,
  zero: 0.4,
};

const ZERO = 0;
const TEXT = 1;
const STRUCT = 2;
const RANDOM = 3;

const MUT_SPARSE = 0;
const MUT_APPEND = 1;
const MUT_REWRITE = 2;
const MUT_ZERO = 3;
const MUT_COPY = 4;

/** Simulated guest clock: nanoseconds per epoch (timestamps written by sparse writes advance by this). */
const EPOCH_NS = 100_000_000;

/** Most distinct words a sparse mutation writes in one page per epoch. */
const MAX_SPARSE_WORDS = 32;

/** Options with every default applied (what `describe()` reports). */
export interface ResolvedWorkloadOptions {
  pages: number;
  pageSize: number;
  seed: number;
  epochs: number;
  dirtyPerEpoch: number;
  burst: number;
  zipf: number;
  cluster: number;
  mix: Required<MutationMix>;
  content: Required<ContentMix>;
}

function bad(message: string, details: Record<string, unknown>): never {
  throw new RwanError('RWAN_ERR_INVALID_VALUE', `workload: ${message}`, { details });
}

function weights<T extends object>(name: string, given: Partial<T> | undefined, defaults: T): T {
  if (given === undefined) return { ...defaults };
  const out = { ...defaults } as Record<string, number>;
  for (const k of Object.keys(out)) out[k] = 0;
  for (const [k, v] of Object.entries(given)) {
    if (!(k in out)) bad(`unknown ${name} key "${k}" (known: ${Object.keys(out).join(', ')})`, { [k]: v });
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
      bad(`${name}.${k} must be a finite number ≥ 0`, { [k]: v });
    }
    out[k] = v;
  }
  const sum = Object.values(out).reduce((a, b) => a + b, 0);
  if (!(sum > 0)) bad(`${name} weights must not all be zero`, { [name]: given });
  for (const k of Object.keys(out)) out[k] = (out[k] as number) / sum;
  return out as T;
}

/** Validates the options and applies the defaults. */
export function resolveWorkloadOptions(o: WorkloadOptions): ResolvedWorkloadOptions {
  const int = (name: string, v: number, min: number, max: number): number => {
    if (!Number.isInteger(v) || v < min || v > max)
      bad(`${name} must be an integer in [${min}, ${max}]`, { [name]: v });
    return v;
  };
  const num = (name: string, v: number, min: number, max: number): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
      bad(`${name} must be a number in [${min}, ${max}]`, { [name]: v });
    }
    return v;
  };
  const pageSize = o.pageSize ?? 4096;
  if (!Number.isInteger(pageSize) || pageSize < 64 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
    bad('pageSize must be a power of two in [64, 65536]', { pageSize });
  }
  const pages = int('pages', o.pages, 1, 2 ** 32 - 1);
  if (pages * pageSize > 2 ** 32) bad('the guest may not exceed 4 GiB (one Buffer)', { pages, pageSize });
  if (o.dirtyPerEpoch !== undefined && o.dirtyFraction !== undefined) {
    bad('give dirtyPerEpoch or dirtyFraction, not both', {
      dirtyPerEpoch: o.dirtyPerEpoch,
      dirtyFraction: o.dirtyFraction,
    });
  }
  let dirtyPerEpoch: number;
  if (o.dirtyPerEpoch !== undefined) dirtyPerEpoch = num('dirtyPerEpoch', o.dirtyPerEpoch, 0, pages);
  else dirtyPerEpoch = num('dirtyFraction', o.dirtyFraction ?? 0.02, 0, 1) * pages;
  return {
    pages,
    pageSize,
    seed: int('seed', o.seed ?? 1, 0, 2 ** 32 - 1),
    epochs: int('epochs', o.epochs ?? 100, 0, Number.MAX_SAFE_INTEGER),
    dirtyPerEpoch,
    burst: num('burst', o.burst ?? 0.25, 0, 1),
    zipf: num('zipf', o.zipf ?? 1.0, 0, 10),
    cluster: int('cluster', o.cluster ?? 8, 1, pages),
    mix: weights('mix', o.mix, DEFAULT_MIX),
    content: weights('content', o.content, DEFAULT_CONTENT),
  };
}

// ---------------------------------------------------------------------------------------------------
// Text pool: a few thousand realistic lines, built once per workload from the seed; text pages are
// sequences of these lines with a fresh 6-digit number patched into each (ids, sizes, durations).

const WORDS = (
  'the of and to in is that for it as was with be by on not he this are or his from at which but have ' +
  'an they you were her she there been one all we their has would when if so no will more can said ' +
  'user session request response cache server client error warning info debug worker thread queue ' +
  'index table page memory buffer socket stream packet header payload token account order invoice ' +
  'product price total status update delete insert select commit rollback timeout retry connect ' +
  'accept close open read write flush sync lock unlock alloc free mmap heap stack frame handler ' +
  'config value key name id type list item node tree hash map set array object string number true ' +
  'false null data time date host port path file line column group role admin guest login logout'
).split(' ');
const LEVELS = ['INFO', 'INFO', 'INFO', 'DEBUG', 'WARN', 'ERROR'];
const COMPONENTS = ['http', 'db', 'auth', 'sched', 'net', 'cache', 'gc', 'api'];
const TAGS = ['div', 'span', 'li', 'p', 'td', 'a'];
const POOL_LINES = 4096;
const ID = '######';

interface TextPool {
  bytes: Buffer;
  start: Uint32Array;
  len: Uint32Array;
  /** Offset in the line of its 6-digit number, or 0xffffffff. */
  numAt: Uint32Array;
}

function buildTextPool(rand: () => number): TextPool {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rand() * a.length)] as T;
  const n = (max: number): number => Math.floor(rand() * max);
  const words = (k: number): string => {
    const out: string[] = [];
    for (let i = 0; i < k; i++) out.push(pick(WORDS));
    return out.join(' ');
  };
  const lines: string[] = [];
  for (let i = 0; i < POOL_LINES; i++) {
    const p2 = (x: number): string => String(x).padStart(2, '0');
    switch (n(5)) {
      case 0:
        lines.push(
          `2024-${p2(1 + n(12))}-${p2(1 + n(28))}T${p2(n(24))}:${p2(n(60))}:${p2(n(60))}.${String(n(1000)).padStart(3, '0')}Z ` +
            `${pick(LEVELS)} [${pick(COMPONENTS)}-${n(16)}] ${words(3 + n(8))} id=${ID} dur=${n(500)}ms\n`,
        );
        break;
      case 1:
        lines.push(
          `{"id":${ID},"user":"${pick(WORDS)}${n(1000)}","action":"${pick(WORDS)}","tags":["${pick(WORDS)}",` +
            `"${pick(WORDS)}"],"count":${n(100)},"ok":${rand() < 0.9}}\n`,
        );
        break;
      case 2:
        {
          const tag = pick(TAGS);
          lines.push(
            `<${tag} class="${pick(WORDS)}-${pick(WORDS)}"><a href="/${pick(WORDS)}/${pick(WORDS)}?id=${ID}">` +
              `${words(2 + n(5))}</a></${tag}>\n`,
          );
        }
        break;
      case 3: {
        const s = words(6 + n(12));
        lines.push(`${s.charAt(0).toUpperCase()}${s.slice(1)}. `);
        break;
      }
      default:
        lines.push(`${pick(WORDS)}.${pick(WORDS)}_${pick(WORDS)} = ${ID}\n`);
    }
  }
  const start = new Uint32Array(POOL_LINES);
  const len = new Uint32Array(POOL_LINES);
  const numAt = new Uint32Array(POOL_LINES).fill(0xffffffff);
  let total = 0;
  for (let i = 0; i < POOL_LINES; i++) {
    const line = lines[i] as string;
    start[i] = total;
    len[i] = line.length;
    const at = line.indexOf(ID);
    if (at >= 0) numAt[i] = at;
    total += line.length;
  }
  const bytes = Buffer.from(lines.join('').replaceAll(ID, '000000'), 'latin1');
  return { bytes, start, len, numAt };
}

// ---------------------------------------------------------------------------------------------------

/** fmix32 of MurmurHash3: a fixed integer mixer (per-page attributes derived from the pfn). */
function mix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Calls {@link Workload.nextEpoch} makes while it writes an epoch. */
export interface EpochHooks {
  /** The epoch's pages (distinct, in the order they will be written), before the first is written. */
  picked?(pfns: Uint32Array): void;
  /** Just before page `pfn` is written (mutated). */
  beforeWrite?(pfn: number): void;
  /**
   * Without `beforeWrite`: just before each run of up to {@link EpochHooks.run} pages is written (the
   * runs start at the epoch's first page), with the run's pfns (a view, valid during the call).
   */
  beforeRun?(pfns: Uint32Array): void;
  /** Pages per {@link EpochHooks.beforeRun} run (default 16). */
  run?: number;
}

/** Options of a {@link Workload} that do not change what it produces. */
export interface WorkloadRuntime {
  /** Run the epochs in C when the native addon is loaded (default true); false: TypeScript only. */
  native?: boolean;
}

/**
 * A synthetic guest: its memory and a seeded sequence of epochs of dirty pages. Iterable (yields
 * `epochs` epochs); {@link nextEpoch} can go on past that.
 */
export class Workload implements Iterable<WorkloadEpoch> {
  /** The options with defaults applied. */
  readonly options: ResolvedWorkloadOptions;
  readonly pages: number;
  readonly pageSize: number;
  /** The guest memory (`pages × pageSize`), mutated in place by every epoch. */
  readonly memory: Buffer;
  private readonly u32: Uint32Array;
  private readonly wordsPerPage: number;
  /** mulberry32 state (the generator of tools/gen-trace.ts `prng`, inlined for speed), shared with C. */
  private readonly rng = new Uint32Array(1);
  /** The native epoch loop's handle over this generator's arrays; undefined: TypeScript. */
  private readonly native: object | undefined;
  private readonly pool: TextPool;
  /** Content class of each page (what a rewrite produces). */
  private readonly kind: Uint8Array;
  /** Append cursor of each page. */
  private readonly cursor: Uint32Array;
  /** Walker/Vose alias table of the Zipf distribution over ranks. */
  private readonly aliasProb: Float64Array;
  private readonly alias: Uint32Array;
  private readonly rankToPfn: Uint32Array;
  /** Epoch stamp of the last time each page was picked, and write events in that epoch. */
  private readonly mark: Uint32Array;
  private readonly hits: Uint32Array;
  private readonly picked: Uint32Array;
  private readonly mixCdf: Float64Array;
  private readonly contentCdf: Float64Array;
  private readonly seedHash: number;
  /** High 32 bits of the guest's pointers (heap, mmap area) and the base of its clock. */
  private readonly heapHi: number;
  private readonly mmapHi: number;
  private readonly clockBase: number;
  private current = 0;

  /**
   * @param memory where the guest memory lives (default: a new Buffer), exactly pages × pageSize
   *   bytes, e.g. a shared mapping of the image file: each epoch's mutations are then its page writes.
   *   It is zeroed, then filled with the initial memory.
   */
  constructor(options: WorkloadOptions, memory?: Uint8Array, runtime: WorkloadRuntime = {}) {
    if (endianness() !== 'LE') {
      throw new RwanError('RWAN_ERR_INTERNAL', 'workload: a little-endian host is required');
    }
    const o = resolveWorkloadOptions(options);
    this.options = o;
    this.pages = o.pages;
    this.pageSize = o.pageSize;
    this.wordsPerPage = o.pageSize >>> 2;
    if (memory !== undefined && memory.length !== o.pages * o.pageSize) {
      throw new RwanError(
        'RWAN_ERR_INVALID_VALUE',
        `workload: memory of ${memory.length} bytes, expected ${o.pages} pages × ${o.pageSize}`,
      );
    }
    this.memory =
      memory === undefined
        ? Buffer.alloc(o.pages * o.pageSize)
        : Buffer.from(memory.buffer, memory.byteOffset, memory.length).fill(0);
    this.u32 = new Uint32Array(this.memory.buffer, this.memory.byteOffset, this.memory.length >>> 2);
    this.rng[0] = (o.seed ^ 0x5eed1e55) >>> 0;
    this.seedHash = mix32(o.seed + 0x9e3779b9);
    this.heapHi = 0x5500 + (this.r32() & 0xff);
    this.mmapHi = 0x7f00 + (this.r32() & 0xff);
    this.clockBase = 1_700_000_000 * 1e9 + (this.r32() % 1e9);
    this.pool = buildTextPool(() => this.rand());
    this.kind = new Uint8Array(o.pages);
    this.cursor = new Uint32Array(o.pages);
    this.mark = new Uint32Array(o.pages);
    this.hits = new Uint32Array(o.pages);
    this.picked = new Uint32Array(o.pages);

    const m = o.mix;
    this.mixCdf = cumulative([m.sparse, m.append, m.rewrite, m.zero, m.copy]);
    const c = o.content;
    this.contentCdf = cumulative([c.zero, c.text, c.structured, c.random]);

    // Zipf over ranks. Memory is made of regions of `cluster` pages, each of one content kind; rank →
    // pfn goes through a shuffle of the regions (hot pages come in runs), with the zero (free) regions
    // placed last: free memory is the coldest.
    [this.aliasProb, this.alias] = zipfAlias(o.pages, o.zipf);
    const blocks = Math.ceil(o.pages / o.cluster);
    const blockKind = new Uint8Array(blocks);
    for (let b = 0; b < blocks; b++) blockKind[b] = pickIndex(this.contentCdf, this.rand());
    const order = new Uint32Array(blocks);
    for (let i = 0; i < blocks; i++) order[i] = i;
    for (let i = blocks - 1; i > 0; i--) {
      const j = this.r32() % (i + 1);
      const t = order[i] as number;
      order[i] = order[j] as number;
      order[j] = t;
    }
    this.rankToPfn = new Uint32Array(o.pages);
    let r = 0;
    for (const zeroPass of [false, true]) {
      for (let i = 0; i < blocks; i++) {
        const b = order[i] as number;
        if ((blockKind[b] === ZERO) !== zeroPass) continue;
        const first = b * o.cluster;
        const last = Math.min(o.pages, first + o.cluster);
        for (let p = first; p < last; p++) this.rankToPfn[r++] = p;
      }
    }

    // Initial memory.
    for (let pfn = 0; pfn < o.pages; pfn++) {
      const k = blockKind[Math.floor(pfn / o.cluster)] as number;
      this.kind[pfn] = k;
      this.cursor[pfn] = (this.r32() % this.pageSize) & ~7;
      if (k !== ZERO) this.fill(pfn, k);
    }
    this.native =
      runtime.native === false || workloadNative === undefined
        ? undefined
        : workloadNative.context(
            this.memory,
            this.rng,
            this.kind,
            this.cursor,
            this.mark,
            this.hits,
            this.picked,
            this.aliasProb,
            this.alias,
            this.rankToPfn,
            this.mixCdf,
            this.contentCdf,
            this.pool.bytes,
            this.pool.start,
            this.pool.len,
            this.pool.numAt,
            Float64Array.of(o.pageSize, this.seedHash, this.heapHi, this.mmapHi, this.clockBase),
          );
  }

  /** True when the epochs run in C (native/workload.c). */
  get isNative(): boolean {
    return this.native !== undefined;
  }

  /** The number of the last epoch produced (0 before the first `nextEpoch`). */
  get epoch(): number {
    return this.current;
  }

  /** The page `pfn` of the memory: a view, valid until the next epoch mutates it. */
  pageAt(pfn: number): Buffer {
    if (!Number.isInteger(pfn) || pfn < 0 || pfn >= this.pages) {
      throw new RwanError('RWAN_ERR_INVALID_VALUE', `workload: pfn ${pfn} outside [0, ${this.pages})`);
    }
    return this.memory.subarray(pfn * this.pageSize, (pfn + 1) * this.pageSize);
  }

  /** A copy of the whole memory as it is now. */
  snapshot(): Buffer {
    return Buffer.from(this.memory);
  }

  /** The resolved options, as plain JSON (for page-log metadata and benchmark reports). */
  describe(): Record<string, unknown> {
    return { generator: 'remus-wan workload', ...this.options };
  }

  /**
   * Advances one epoch: picks the dirty pages, mutates them in place (calling `hooks` as it goes),
   * returns them.
   */
  nextEpoch(hooks?: EpochHooks): WorkloadEpoch {
    const o = this.options;
    const epoch = ++this.current;
    const stamp = epoch >>> 0 || 1;
    const jitter = o.burst * (2 * this.rand() - 1);
    const target = Math.min(o.pages, Math.max(0, Math.round(o.dirtyPerEpoch * (1 + jitter))));
    const count =
      this.native === undefined
        ? this.pick(stamp, target)
        : (workloadNative as WorkloadNative).pick(this.native, stamp, target);
    // Mutate in draw order (deterministic), then report sorted.
    hooks?.picked?.(this.picked.subarray(0, count));
    const each = hooks?.beforeWrite;
    const beforeRun = hooks?.beforeRun;
    const run = each !== undefined ? 1 : beforeRun !== undefined ? Math.max(1, hooks?.run ?? 16) : count;
    for (let i = 0; i < count; i += run) {
      const end = Math.min(count, i + run);
      if (each !== undefined) each(this.picked[i] as number);
      else beforeRun?.(this.picked.subarray(i, end));
      if (this.native !== undefined) (workloadNative as WorkloadNative).mutate(this.native, i, end, epoch);
      else for (let k = i; k < end; k++) this.mutate(this.picked[k] as number, epoch);
    }
    const pfns = this.picked.slice(0, count).sort();
    const writes = new Uint32Array(count);
    for (let i = 0; i < count; i++) writes[i] = this.hits[pfns[i] as number] as number;
    return { epoch, pfns, writes, memory: this.memory };
  }

  /** The epoch's draws (TypeScript): picked[0 .. count) and hits; returns count. */
  private pick(stamp: number, target: number): number {
    const o = this.options;
    let count = 0;
    // Zipf draws until `target` distinct pages; a page drawn again takes one more write event.
    const maxDraws = 16 * target + 64;
    for (let d = 0; count < target && d < maxDraws; d++) {
      const pfn = this.rankToPfn[this.zipfRank()] as number;
      if (this.mark[pfn] !== stamp) {
        this.mark[pfn] = stamp;
        this.hits[pfn] = 1;
        this.picked[count++] = pfn;
      } else this.hits[pfn] = (this.hits[pfn] as number) + 1;
    }
    // The cold tail is slow to reach by sampling: the rest is one contiguous sweep (a bulk copy).
    for (let pfn = this.r32() % o.pages, n = 0; count < target && n < o.pages; n++) {
      if (this.mark[pfn] !== stamp) {
        this.mark[pfn] = stamp;
        this.hits[pfn] = 1;
        this.picked[count++] = pfn;
      }
      pfn = pfn + 1 === o.pages ? 0 : pfn + 1;
    }
    return count;
  }

  /** Yields the epochs up to `options.epochs`. */
  *[Symbol.iterator](): Iterator<WorkloadEpoch> {
    while (this.current < this.options.epochs) yield this.nextEpoch();
  }

  // -------------------------------------------------------------------------------------------------

  /** mulberry32: the next uniform unsigned 32-bit integer. */
  private r32(): number {
    const a = ((this.rng[0] as number) + 0x6d2b79f5) >>> 0;
    this.rng[0] = a;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A Zipf-distributed rank (0 = hottest). */
  private zipfRank(): number {
    const i = Math.floor(this.rand() * this.pages);
    return this.rand() < (this.aliasProb[i] as number) ? i : (this.alias[i] as number);
  }

  /** Uniform in [0, 1). */
  private rand(): number {
    return this.r32() / 4294967296;
  }

  private mutate(pfn: number, epoch: number): void {
    const hits = this.hits[pfn] as number;
    const log2Hits = 31 - Math.clz32(hits);
    switch (pickIndex(this.mixCdf, this.rand())) {
      case MUT_SPARSE: {
        // 1 + log2(writes) words, plus a geometric number more (mean 2)
        let words = 1 + log2Hits;
        while (this.rand() < 2 / 3) words++;
        this.sparse(pfn, Math.min(words, MAX_SPARSE_WORDS), epoch);
        break;
      }
      case MUT_APPEND: {
        // 1 + log2(writes) lines (of ~40…160 bytes), plus a geometric number more (mean 1)
        let lines = 1 + log2Hits;
        while (this.rand() < 0.5) lines++;
        this.append(pfn, Math.min(lines, 16));
        break;
      }
      case MUT_REWRITE: {
        let k = this.kind[pfn] as number;
        if (k === ZERO) {
          // A free page being allocated: it takes a non-zero kind, in the proportions of the content mix.
          const u = this.contentCdf[0] as number;
          k = u >= 1 ? STRUCT : pickIndex(this.contentCdf, u + this.rand() * (1 - u));
          this.kind[pfn] = k;
        }
        this.fill(pfn, k);
        break;
      }
      case MUT_ZERO:
        this.memory.fill(0, pfn * this.pageSize, (pfn + 1) * this.pageSize);
        break;
      case MUT_COPY: {
        let src = this.rankToPfn[this.zipfRank()] as number;
        if (src === pfn) src = (pfn + 1) % this.pages;
        if (src !== pfn) {
          this.memory.copyWithin(pfn * this.pageSize, src * this.pageSize, (src + 1) * this.pageSize);
          this.kind[pfn] = this.kind[src] as number;
        }
      }
    }
  }

  /** Writes `words` 8-byte words: mostly the page's own hot words (its counters and timestamps). */
  private sparse(pfn: number, words: number, epoch: number): void {
    const slots = this.pageSize >>> 3;
    const h = mix32(pfn ^ this.seedHash);
    const base = pfn * this.wordsPerPage;
    const u = this.u32;
    for (let i = 0; i < words; i++) {
      let slot: number;
      let op: number;
      if (this.rand() < 0.6) {
        // One of the page's 3 hot words; each is a counter (3/4) or a timestamp (1/4).
        const which = this.r32() % 3;
        const hw = mix32(h + which);
        slot = hw % slots;
        op = hw >>> 30 === 0 ? 1 : 0;
      } else {
        slot = this.r32() % slots;
        op = 2 + (this.r32() & 1);
      }
      const w = base + slot * 2;
      switch (op) {
        case 0: {
          // counter += small
          const lo = (u[w] as number) + 1 + (this.r32() & 3);
          u[w] = lo >>> 0;
          if (lo > 0xffffffff) u[w + 1] = ((u[w + 1] as number) + 1) >>> 0;
          break;
        }
        case 1: {
          // timestamp (ns) of the simulated clock
          const ns = this.clockBase + epoch * EPOCH_NS + (this.r32() % EPOCH_NS);
          u[w] = (ns % 4294967296) >>> 0;
          u[w + 1] = Math.floor(ns / 4294967296) >>> 0;
          break;
        }
        case 2:
          this.pointer(w);
          break;
        default:
          // a small integer (a length, an index, a state)
          u[w] = this.r32() & (this.rand() < 0.5 ? 0xff : 0xffff);
      }
    }
  }

  /** A pointer into the heap or the mmap area: common high bits, 16-byte aligned. */
  private pointer(w: number): void {
    const x = this.r32();
    this.u32[w] = (0x10000000 + (x & 0x03fffff0)) >>> 0;
    this.u32[w + 1] = x & 0x80000000 ? this.mmapHi : this.heapHi;
  }

  /** Appends `lines` text lines at the page's cursor; the page is a ring. */
  private append(pfn: number, lines: number): void {
    const ps = this.pageSize;
    const off = pfn * ps;
    let c = this.cursor[pfn] as number;
    for (let i = 0; i < lines; i++) {
      if (c >= ps - 16) c = 0;
      c += this.copyLine(off + c, off + ps);
    }
    this.cursor[pfn] = c;
  }

  /** Copies a random pool line (with a fresh number) to `at`, stopping at `end`; returns bytes copied. */
  private copyLine(at: number, end: number): number {
    const p = this.pool;
    const line = this.r32() % POOL_LINES;
    const s = p.start[line] as number;
    const n = Math.min(p.len[line] as number, end - at);
    p.bytes.copy(this.memory, at, s, s + n);
    const numAt = p.numAt[line] as number;
    if (numAt !== 0xffffffff) this.patchNumber(at, numAt, n);
    return n;
  }

  /**
   * Copies `lines` consecutive pool lines from a random one to `at` in one block, stopping at `end`,
   * then gives each copied line a fresh number; returns the position after the copy.
   */
  private copyLines(at: number, end: number, lines: number): number {
    const p = this.pool;
    const first = this.r32() % POOL_LINES;
    const lastLine = Math.min(POOL_LINES, first + lines) - 1;
    const s = p.start[first] as number;
    const n = Math.min((p.start[lastLine] as number) + (p.len[lastLine] as number) - s, end - at);
    p.bytes.copy(this.memory, at, s, s + n);
    for (let line = first; line <= lastLine; line++) {
      const numAt = p.numAt[line] as number;
      if (numAt === 0xffffffff) continue;
      const lineAt = (p.start[line] as number) - s;
      if (lineAt >= n) break;
      this.patchNumber(at + lineAt, numAt, n - lineAt);
    }
    return at + n;
  }

  /** Writes 6 fresh decimal digits at `lineStart + numAt`, skipping digits at or past `limit`. */
  private patchNumber(lineStart: number, numAt: number, limit: number): void {
    let v = this.r32() % 1_000_000;
    for (let d = numAt + 5; d >= numAt; d--) {
      if (d < limit) this.memory[lineStart + d] = 0x30 + (v % 10);
      v = Math.floor(v / 10);
    }
  }

  /** Fills the page with new content of kind `k`. */
  private fill(pfn: number, k: number): void {
    const ps = this.pageSize;
    const off = pfn * ps;
    const u = this.u32;
    const base = pfn * this.wordsPerPage;
    const nw = this.wordsPerPage;
    if (k === ZERO) {
      this.memory.fill(0, off, off + ps);
    } else if (k === RANDOM) {
      // Bulk bytes come from a per-page xorshift32 seeded by the workload's generator (fast, and just
      // as deterministic).
      let x = this.r32() | 1;
      for (let i = 0; i < nw; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        u[base + i] = x >>> 0;
      }
    } else if (k === TEXT) {
      // Runs of 4…19 consecutive pool lines from random places, each line with a fresh number.
      let at = off;
      const end = off + ps;
      while (at < end) at = this.copyLines(at, end, 4 + (this.r32() & 15));
    } else {
      this.fillStructured(base, nw);
    }
  }

  /** Structured content: a record array (2/3 of the time), a small-integer array, or a pointer table. */
  private fillStructured(base: number, nw: number): void {
    const u = this.u32;
    const variant = this.r32() % 6;
    // Per-page xorshift32 for the bulk values (see fill()).
    let g = this.r32() | 1;
    if (variant < 4) {
      // Records of 16…128 bytes; each 8-byte field has a fixed role; the tail of the slab may be unused.
      const fields = RECORD_FIELDS[this.r32() % RECORD_FIELDS.length] as number;
      const roles = new Uint8Array(fields);
      for (let f = 0; f < fields; f++) roles[f] = this.r32() % 6;
      const used = nw - 2 * fields * (this.r32() % Math.max(1, Math.floor(nw / (2 * fields) / 3)));
      let serial = this.r32() & 0xffff;
      let f = 0;
      for (let at = base, stop = base + used; at < stop; at += 2) {
        g ^= g << 13;
        g ^= g >>> 17;
        g ^= g << 5;
        const x = g >>> 0;
        let lo = 0;
        let hi = 0;
        switch (roles[f]) {
          case 0: // pointer (1 in 8 null)
            if ((x & 7) !== 0) {
              lo = (0x10000000 + (x & 0x03fffff0)) >>> 0;
              hi = x & 0x80000000 ? this.mmapHi : this.heapHi;
            }
            break;
          case 1: // two small u32s
            lo = x & 0xff;
            hi = (x >>> 8) & 0xfff;
            break;
          case 2: // record id / serial
            lo = serial;
            break;
          case 3: // flags
            lo = 1 << (x & 7);
            break;
          case 4: // a length or count
            lo = x & 0x3ff;
            break;
          default: // padding / reserved
        }
        u[at] = lo;
        u[at + 1] = hi;
        if (++f === fields) {
          f = 0;
          serial++;
        }
      }
      u.fill(0, base + used, base + nw);
    } else if (variant === 4) {
      // u32 array of small integers, sometimes sorted (an index).
      const mask = [0xf, 0xff, 0xffff][this.r32() % 3] as number;
      if (this.r32() & 1) {
        let v = this.r32() & mask;
        for (let i = 0; i < nw; i++) {
          g ^= g << 13;
          g ^= g >>> 17;
          g ^= g << 5;
          v = (v + (g & 7)) >>> 0;
          u[base + i] = v;
        }
      } else {
        for (let i = 0; i < nw; i++) {
          g ^= g << 13;
          g ^= g >>> 17;
          g ^= g << 5;
          u[base + i] = g & mask;
        }
      }
    } else {
      // pointer table (hash buckets): 8-byte pointers, ~30 % empty
      for (let w = 0; w + 1 < nw; w += 2) {
        g ^= g << 13;
        g ^= g >>> 17;
        g ^= g << 5;
        const x = g >>> 0;
        if ((x & 0x3ff) < 307) {
          u[base + w] = 0;
          u[base + w + 1] = 0;
        } else {
          u[base + w] = (0x10000000 + (x & 0x03fffff0)) >>> 0;
          u[base + w + 1] = x & 0x80000000 ? this.mmapHi : this.heapHi;
        }
      }
    }
  }
}

/** Fields (8-byte words) per record of structured pages: 16…128-byte records. */
const RECORD_FIELDS = [2, 3, 4, 6, 8, 16];

function cumulative(ws: number[]): Float64Array {
  const out = new Float64Array(ws.length);
  let s = 0;
  for (let i = 0; i < ws.length; i++) {
    s += ws[i] as number;
    out[i] = s;
  }
  // Rounding never falls off the end: the last positive weight takes everything above it.
  let last = ws.length - 1;
  while (last > 0 && !((ws[last] as number) > 0)) last--;
  for (let i = last; i < ws.length; i++) out[i] = Number.POSITIVE_INFINITY;
  return out;
}

/** Index of the first cumulative weight > u (u in [0, 1)); zero-weight entries are never picked. */
function pickIndex(cdf: Float64Array, u: number): number {
  let i = 0;
  while (u >= (cdf[i] as number)) i++;
  return i;
}

/**
 * Vose's alias table of Zipf(s) over n ranks (weight of rank k ∝ 1/(k+1)^s): O(1) sampling with two
 * uniforms (column i, then i with probability prob[i], else alias[i]).
 */
function zipfAlias(n: number, s: number): [Float64Array, Uint32Array] {
  const p = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) {
    p[k] = s === 0 ? 1 : 1 / (k + 1) ** s;
    sum += p[k] as number;
  }
  const small = new Uint32Array(n);
  const large = new Uint32Array(n);
  let ns = 0;
  let nl = 0;
  for (let k = 0; k < n; k++) {
    p[k] = ((p[k] as number) * n) / sum;
    if ((p[k] as number) < 1) small[ns++] = k;
    else large[nl++] = k;
  }
  const prob = new Float64Array(n);
  const alias = new Uint32Array(n);
  while (ns > 0 && nl > 0) {
    const l = small[--ns] as number;
    const g = large[--nl] as number;
    prob[l] = p[l] as number;
    alias[l] = g;
    p[g] = (p[g] as number) + (p[l] as number) - 1;
    if ((p[g] as number) < 1) small[ns++] = g;
    else large[nl++] = g;
  }
  while (nl > 0) prob[large[--nl] as number] = 1;
  while (ns > 0) prob[small[--ns] as number] = 1; // rounding leftovers
  return [prob, alias];
}
