/**
 * A synthetic Xen stream, as `xl remus` (or `xl migrate`) would write it (format.ts), for tests and
 * benchmarks: the xl save header with a JSON config, the libxl header, LIBXC_CONTEXT, the libxc
 * headers, static records (CPUID and MSR policies, STATIC_DATA_END; PV: PV_INFO and P2M_FRAMES), a
 * full first pass over memory in PAGE_DATA batches of at most 1024 pfns, then the end-of-checkpoint
 * records (HVM: TSC_INFO, HVM_CONTEXT, HVM_PARAMS; PV: SHARED_INFO and the vCPU records), CHECKPOINT,
 * the emulator records and CHECKPOINT_END; then `checkpoints` more, each with a Zipf-distributed set
 * of dirty pages. Optional records (bit 31) appear where a receiver must skip them. A migration
 * stream (`end: 'migration'`) ends with libxc END, the emulator records and libxl END instead.
 *
 * Deterministic for a seed. Page contents mix zero pages, text-like pages and noise; a page dirtied
 * again differs from its previous content in a few words, as guests write. Pure: no I/O.
 */
import {
  DomainType,
  type Endian,
  LibxcRecord,
  LibxlRecord,
  optionalType,
  PageType,
  pageHasData,
  type XenItem,
  type XenRecord,
  XL_FLAG_JSON_CONFIG,
  XL_FLAG_STREAM_V2,
} from './format.js';
import { buildPageData } from './page-data.js';

export interface GenerateOptions {
  guest: 'hvm' | 'pv';
  /** Guest memory, in 4 KiB pages. */
  pages: number;
  /** Checkpoints after the first pass. */
  checkpoints: number;
  /** Distinct pages dirtied per checkpoint (and per live iteration). */
  dirtyPages: number;
  /**
   * Iterations of the first pass after the full one, before the first CHECKPOINT, each resending
   * the pages dirtied meanwhile (xl remus starts with a live migration): pfns then repeat within
   * the first checkpoint. Default 0.
   */
  liveIterations?: number;
  /** Zipf exponent of the dirty sets over the pages (a fixed random rank order); default 1. */
  zipf?: number;
  seed?: number;
  endian?: Endian;
  /** Optional records (bit 31) in the first pass and in each checkpoint; default true. */
  optionalRecords?: boolean;
  /** HVM: emulator records (xenstore data, device model context) at each checkpoint; default true. */
  emulator?: boolean;
  vcpus?: number;
  /** PAGE_DATA batch size, pfns (Xen's MAX_BATCH_SIZE is 1024). */
  batch?: number;
  /** `checkpoint`: the stream stops after the last CHECKPOINT_END (Remus, the primary gone);
   *  `migration`: no checkpoints, libxc END … libxl END. Default `checkpoint`. */
  end?: 'checkpoint' | 'migration';
}

const PAGE = 4096;

/** xorshift32: small, fast, deterministic. */
class Rng {
  private x: number;
  constructor(seed: number) {
    this.x = (seed | 0) === 0 ? 0x9e3779b9 : seed | 0;
  }
  u32(): number {
    this.x ^= this.x << 13;
    this.x ^= this.x >>> 17;
    this.x ^= this.x << 5;
    return this.x >>> 0;
  }
  float(): number {
    return this.u32() / 2 ** 32;
  }
}

/** A 32-bit mix of two numbers (for per-page, per-version randomness without state). */
function mix(a: number, b: number): number {
  let h = (Math.imul(a ^ 0x85ebca6b, 0xc2b2ae35) ^ Math.imul(b + 0x27d4eb2f, 0x165667b1)) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h >>> 0;
}

const WORDS = ['the ', 'page ', 'guest ', 'remus ', 'epoch ', 'dirty ', 'xen ', 'data ', 'cache ', 'log '];

/** Page `pfn` at `version`: a base content per pfn, and from version 1 on a few words rewritten. */
function pageContent(seed: number, pfn: number, version: number, out: Buffer, at: number): void {
  const h = mix(seed, pfn);
  const kind = h % 8;
  const page = out.subarray(at, at + PAGE);
  if (kind < 2 && version === 0) {
    page.fill(0); // a zero page, until written
    return;
  }
  if (kind < 5) {
    let o = 0;
    let i = h;
    while (o < PAGE) {
      const w = WORDS[i % WORDS.length] as string;
      o += page.write(w, o, 'latin1');
      i = (i * 1103515245 + 12345) >>> 0;
    }
  } else {
    const r = new Rng(h);
    for (let o = 0; o < PAGE; o += 4) page.writeUInt32LE(r.u32(), o);
  }
  if (version > 0) {
    const r = new Rng(mix(h, version));
    const words = 1 + (r.u32() % 64);
    for (let k = 0; k < words; k++) page.writeUInt32LE(r.u32(), 4 * (r.u32() % (PAGE / 4)));
  }
}

/** Draws distinct ranks from a Zipf(s) distribution over n ranks. */
class Zipf {
  private readonly cdf: Float64Array;
  constructor(
    n: number,
    s: number,
    private readonly rng: Rng,
  ) {
    this.cdf = new Float64Array(n);
    let sum = 0;
    for (let r = 0; r < n; r++) {
      sum += 1 / (r + 1) ** s;
      this.cdf[r] = sum;
    }
  }
  /** `k` distinct ranks (all of them when k ≥ n). */
  draw(k: number): number[] {
    const n = this.cdf.length;
    if (k >= n) return Array.from({ length: n }, (_, i) => i);
    const total = this.cdf[n - 1] as number;
    const got = new Set<number>();
    for (let tries = 0; got.size < k && tries < 50 * k; tries++) {
      const u = this.rng.float() * total;
      let lo = 0;
      let hi = n - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if ((this.cdf[mid] as number) < u) lo = mid + 1;
        else hi = mid;
      }
      got.add(lo);
    }
    for (let r = 0; got.size < k; r++) got.add(r); // a very skewed tail: fill with the hottest ranks
    return [...got];
  }
}

/** A body of `n` bytes: a u32 id and index header (when given), then seeded bytes. */
function blob(rng: Rng, n: number, head: number[] = []): Buffer {
  const b = Buffer.alloc(n);
  head.forEach((v, i) => {
    b.writeUInt32LE(v, 4 * i);
  });
  for (let o = 4 * head.length; o < n; o++) b[o] = o % 7 === 0 ? rng.u32() & 0xff : 0;
  return b;
}

/** The items of a synthetic stream, in order. */
export function* generateXenStream(o: GenerateOptions): Generator<XenItem> {
  const seed = o.seed ?? 1;
  const endian = o.endian ?? 'le';
  const le = endian === 'le';
  const rng = new Rng(seed);
  const hvm = o.guest === 'hvm';
  const vcpus = o.vcpus ?? 2;
  const batch = o.batch ?? 1024;
  const optional = o.optionalRecords ?? true;
  const emulator = hvm && (o.emulator ?? true);
  const end = o.end ?? 'checkpoint';
  if (end === 'migration' && o.checkpoints > 0) throw new RangeError('a migration stream has no checkpoints');
  /** Write in the stream's byte order. */
  const put32 = (b: Buffer, v: number, at: number) => {
    if (le) b.writeUInt32LE(v >>> 0, at);
    else b.writeUInt32BE(v >>> 0, at);
  };
  const put64 = (b: Buffer, v: number, at: number) => {
    if (le) b.writeBigUInt64LE(BigInt(v), at);
    else b.writeBigUInt64BE(BigInt(v), at);
  };
  const u32s = (...v: number[]) => {
    const b = Buffer.alloc(4 * v.length);
    v.forEach((x, i) => {
      put32(b, x, 4 * i);
    });
    return b;
  };
  let checkpoint = 0;
  const xc = (type: number, body: Buffer = Buffer.alloc(0)): XenRecord => ({
    kind: 'libxc-record',
    type,
    body,
    checkpoint,
  });
  const xl = (type: number, body: Buffer = Buffer.alloc(0)): XenRecord => ({
    kind: 'libxl-record',
    type,
    body,
    checkpoint,
  });

  // page types: HVM memory is NOTAB but for the legacy VGA hole (XTAB, no data); PV has page tables
  const typeOf = (pfn: number): number => {
    if (hvm) return pfn >= 0xa0 && pfn < 0xc0 ? PageType.XTAB : PageType.NOTAB;
    if (pfn === 1) return PageType.L4TAB_PINNED;
    if (pfn % 389 === 2) return PageType.L3TAB;
    if (pfn % 97 === 3) return PageType.L2TAB;
    if (pfn % 31 === 5) return PageType.L1TAB;
    if (pfn % 1009 === 7) return PageType.XALLOC;
    return PageType.NOTAB;
  };
  const version = new Uint32Array(o.pages);
  function* pageData(pfns: number[]): Generator<XenRecord> {
    for (let i = 0; i < pfns.length; i += batch) {
      const part = pfns.slice(i, i + batch);
      const types = part.map(typeOf);
      const data = Buffer.alloc(PAGE * types.filter(pageHasData).length);
      let slot = 0;
      part.forEach((pfn, j) => {
        if (pageHasData(types[j] as number))
          pageContent(seed, pfn, version[pfn] as number, data, PAGE * slot++);
      });
      yield xc(LibxcRecord.PAGE_DATA, buildPageData(part, types, data, endian));
    }
  }
  function* endOfCheckpoint(): Generator<XenRecord> {
    if (hvm) {
      yield xc(
        LibxcRecord.X86_TSC_INFO,
        Buffer.concat([u32s(0, 2_400_000), Buffer.alloc(8), u32s(checkpoint, 0)]),
      );
      yield xc(LibxcRecord.HVM_CONTEXT, blob(rng, 1024 + 512 * vcpus + (checkpoint % 3) * 8));
      const params = [2, 3, 5, 9, 10, 12, 16, 17, 18, 19, 24, 31];
      const p = Buffer.alloc(8 + 16 * params.length);
      put32(p, params.length, 0);
      params.forEach((index, i) => {
        put64(p, index, 8 + 16 * i);
        put64(p, mix(seed, index) % 0xfeff0, 16 + 16 * i);
      });
      yield xc(LibxcRecord.HVM_PARAMS, p);
    } else {
      yield xc(LibxcRecord.SHARED_INFO, blob(rng, PAGE));
      for (let v = 0; v < vcpus; v++) {
        yield xc(LibxcRecord.X86_PV_VCPU_BASIC, Buffer.concat([u32s(v, 0), blob(rng, 5168)]));
        yield xc(LibxcRecord.X86_PV_VCPU_EXTENDED, Buffer.concat([u32s(v, 0), blob(rng, 128)]));
        yield xc(LibxcRecord.X86_PV_VCPU_XSAVE, Buffer.concat([u32s(v, 0), blob(rng, 832)]));
        yield xc(LibxcRecord.X86_PV_VCPU_MSRS, Buffer.concat([u32s(v, 0), blob(rng, 32)]));
      }
    }
    if (optional) yield xc(optionalType(0x7e), blob(rng, 13 + checkpoint));
  }
  function* emulatorRecords(): Generator<XenRecord> {
    if (!emulator) return;
    const store = Buffer.from(`physmap/0/start_addr\0f0000000\0physmap/0/size\0${1000 + checkpoint}\0`);
    yield xl(LibxlRecord.EMULATOR_XENSTORE_DATA, Buffer.concat([u32s(2, 0), store]));
    yield xl(
      LibxlRecord.EMULATOR_CONTEXT,
      Buffer.concat([u32s(2, 0), blob(rng, 6000 + (checkpoint % 5) * 40)]),
    );
  }

  // -- headers ------------------------------------------------------------------------------------
  const config = Buffer.from(
    JSON.stringify({ c_info: { type: o.guest, name: `gen-${o.guest}` }, b_info: { max_memkb: o.pages * 4 } }),
  );
  yield {
    kind: 'xl-header',
    endian,
    mandatoryFlags: XL_FLAG_JSON_CONFIG | XL_FLAG_STREAM_V2,
    optionalFlags: 0,
    optionalData: Buffer.concat([u32s(config.length), config]),
  };
  yield { kind: 'libxl-header', version: 2, options: le ? 0 : 1 };
  yield xl(LibxlRecord.LIBXC_CONTEXT);
  yield {
    kind: 'libxc-header',
    version: 3,
    options: le ? 0 : 1,
    domainType: hvm ? DomainType.X86_HVM : DomainType.X86_PV,
    pageShift: 12,
    xenMajor: 4,
    xenMinor: 21,
  };

  // -- static data and the first pass -------------------------------------------------------------
  if (!hvm) yield xc(LibxcRecord.X86_PV_INFO, Buffer.from([8, 4, 0, 0, 0, 0, 0, 0]));
  yield xc(LibxcRecord.X86_CPUID_POLICY, blob(rng, 24 * 40));
  yield xc(LibxcRecord.X86_MSR_POLICY, blob(rng, 16 * 6));
  yield xc(LibxcRecord.STATIC_DATA_END);
  if (!hvm) {
    const frames = Math.ceil(o.pages / 512);
    const p2m = Buffer.alloc(8 + 8 * frames);
    put32(p2m, o.pages - 1, 4);
    for (let f = 0; f < frames; f++) put64(p2m, o.pages + f, 8 + 8 * f);
    yield xc(LibxcRecord.X86_PV_P2M_FRAMES, p2m);
  }
  if (optional) yield xc(optionalType(0x7f), blob(rng, 40));
  const dataPfns = Array.from({ length: o.pages }, (_, i) => i).filter((p) => pageHasData(typeOf(p)));
  for (let i = dataPfns.length - 1; i > 0; i--) {
    const j = rng.u32() % (i + 1);
    [dataPfns[i], dataPfns[j]] = [dataPfns[j] as number, dataPfns[i] as number];
  }
  const zipf = new Zipf(dataPfns.length, o.zipf ?? 1, rng);
  /** A Zipf set of `dirtyPages` pages, written once more each, in pfn order. */
  const dirty = () => {
    const set = zipf
      .draw(o.dirtyPages)
      .map((r) => dataPfns[r] as number)
      .sort((a, b) => a - b);
    for (const p of set) version[p] = (version[p] as number) + 1;
    return set;
  };
  yield* pageData(Array.from({ length: o.pages }, (_, i) => i));
  for (let i = 0; i < (o.liveIterations ?? 0); i++) yield* pageData(dirty());
  if (end === 'migration') {
    yield* endOfCheckpoint();
    yield xc(LibxcRecord.END);
    yield* emulatorRecords();
    yield xl(LibxlRecord.END);
    return;
  }

  // -- checkpoints ----------------------------------------------------------------------------------
  for (;;) {
    yield* endOfCheckpoint();
    yield xc(LibxcRecord.CHECKPOINT);
    yield* emulatorRecords();
    if (optional) yield xl(optionalType(0x10), blob(rng, 20));
    yield xl(LibxlRecord.CHECKPOINT_END);
    if (checkpoint === o.checkpoints) return;
    checkpoint++;
    yield* pageData(dirty());
  }
}
