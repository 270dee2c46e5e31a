/**
 * Sender side of the page codec: the dirty pages of an epoch in, compressed chunks out. Pure apart
 * from CPU.
 *
 *   add(pfn, page) ─► kind: ZERO │ DUP (same content earlier in the epoch) │ DELTA (vs the cached copy)
 *                  │ RAW ─► record into the chunk buffer ─► chunk full? ─► zstd once ─► EncodedChunk
 *   end()          ─► last chunk + summary (page count, digest, kinds, cache statistics)
 *
 * Every page then becomes the cached copy for its pfn, exactly as the decoder does on the other side.
 */
import { RwanError } from '../errors.js';
import { ChunkCompressor, copyOf, Method, type MethodValue } from './chunk-compression.js';
import { DIGEST_BYTES, EpochDigest } from './digest.js';
import { type HotLoops, hot } from './hot-loops.js';
import { type CodecOptions, DEFAULT_CODEC_OPTIONS, type KindCounts } from './options.js';
import { PageCache, type PageCacheStats } from './page-cache.js';
import { EpochPfns, Kind, MAX_RECORD_HEADER, zigzag } from './records.js';
import { IntIndex } from './typed-maps.js';
import { writeUleb } from './xor-rle.js';

/** One chunk of an epoch, ready for a CHUNK frame. */
export interface EncodedChunk {
  epoch: number;
  /** Index of the chunk within its epoch, from 0. */
  seq: number;
  /** Records (pages) in the chunk. */
  records: number;
  /** Length of the records stream before compression, bytes. */
  rawLength: number;
  method: MethodValue;
  /** The bytes to send (owned by the caller). */
  data: Buffer;
}

/** What an epoch came to. */
export interface EpochSummary {
  epoch: number;
  pageCount: number;
  chunkCount: number;
  /** Page bytes read (pages × page size). */
  rawBytes: number;
  /** Chunk data bytes produced (before framing). */
  wireBytes: number;
  /** End-to-end digest of the epoch's pages (docs/codec.md §5). */
  digest: Buffer;
  kinds: KindCounts;
}

/** Encodes epoch after epoch for one session. */
export class EpochEncoder {
  readonly options: CodecOptions;
  private readonly loops: HotLoops;
  private readonly cache: PageCache;
  private readonly compressor: ChunkCompressor | undefined;
  private readonly digest = new EpochDigest();
  private readonly buf: Buffer;
  private readonly zero: Uint8Array;
  private readonly zeroHash: { hi: number; lo: number };
  private readonly deltaOut: Uint8Array;
  private readonly hashOut = new Uint32Array(2);
  private epoch = -1;
  private open = false;
  private pos = 0;
  private chunkRecords = 0;
  private seq = 0;
  private prevPfn = -1;
  private readonly pfns = new EpochPfns();
  private readonly byHash = new IntIndex();
  private kinds: KindCounts = { zero: 0, raw: 0, delta: 0, dup: 0 };
  private wireBytes = 0;
  /** Hits the cache counted in add()'s update() for pages that then needed no base (ZERO, DUP). */
  private uncountedHits = 0;

  /**
   * @param chunkViews chunks come out uncompressed (method RAW) with `data` a view of the encoder's
   *   own buffer, valid only until the next add(), end() or begin(): for a caller that compresses or
   *   copies each chunk at once (`zstdLevel` is then not applied here)
   */
  constructor(
    options: Partial<CodecOptions> = {},
    private readonly chunkViews = false,
  ) {
    this.options = { ...DEFAULT_CODEC_OPTIONS, ...options };
    const { pageSize, cacheBytes, chunkBytes, zstdLevel, dictionary } = this.options;
    checkPageSize(pageSize);
    this.loops = this.options.loops ?? hot;
    this.cache = new PageCache(pageSize, cacheBytes);
    this.compressor =
      zstdLevel === null || chunkViews ? undefined : new ChunkCompressor(zstdLevel, dictionary);
    this.buf = Buffer.allocUnsafe(Math.max(chunkBytes, 1) + MAX_RECORD_HEADER + pageSize);
    this.zero = new Uint8Array(pageSize);
    this.zeroHash = this.loops.hashPage(this.zero);
    this.deltaOut = new Uint8Array(pageSize);
  }

  /** Start epoch `epoch` (epochs must increase). */
  begin(epoch: number): void {
    if (this.open || !(Number.isSafeInteger(epoch) && epoch > this.epoch)) {
      throw sequence(`begin(${epoch}) after epoch ${this.epoch}${this.open ? ' still open' : ''}`);
    }
    this.epoch = epoch;
    this.open = true;
    this.cache.beginEpoch();
    this.pos = 0;
    this.chunkRecords = 0;
    this.seq = 0;
    this.prevPfn = -1;
    this.pfns.reset();
    this.byHash.clear();
    this.kinds = { zero: 0, raw: 0, delta: 0, dup: 0 };
    this.wireBytes = 0;
  }

  /**
   * Add a dirty page (its content is read now and not kept). Returns a chunk when one filled up.
   * @param pfn page frame number, a safe non-negative integer, at most once per epoch
   */
  add(pfn: number, page: Uint8Array): EncodedChunk | undefined {
    const { pageSize } = this.options;
    if (!this.open) throw sequence('add() outside begin()/end()');
    if (page.length !== pageSize) {
      throw new RwanError('RWAN_ERR_CODEC_SEQUENCE', `page of ${page.length} bytes, expected ${pageSize}`, {
        details: { pfn, length: page.length },
      });
    }
    if (!Number.isSafeInteger(pfn) || pfn < 0) throw sequence(`pfn ${pfn} is not a valid page number`);
    const index = this.pfns.length;
    if (!this.pfns.add(pfn)) throw sequence(`pfn ${pfn} is already in this epoch`);
    const loops = this.loops;
    const buf = this.buf;
    let p = this.pos;
    const kindAt = p++;
    p = writeUleb(buf, p, zigzag(pfn - (this.prevPfn + 1)));
    this.prevPfn = pfn;

    // one fused pass (hot-loops encodePage): zero test, page hash and, against the cached copy, the
    // delta — which also leaves the page in that copy's slot. update() makes that copy most recent as
    // set(pfn, page) would; the ZERO and DUP branches below then set() as before, so the cache ends
    // exactly as with get(pfn) + set(pfn, page). Counters stay as before too: a base lookup (hit or
    // miss) is counted for the pages that need a base, not for ZERO and DUP ones (see cacheStats)
    const cached = this.cache.update(pfn);
    const limit = pageSize - 4; // a delta must beat RAW: its length prefix (≤ 3 bytes) plus the delta < a page
    let n = loops.encodePage(page, cached ?? null, this.deltaOut, limit, this.hashOut);
    if (n === -2) {
      buf[kindAt] = Kind.ZERO;
      this.kinds.zero++;
      this.digest.add(pfn, this.zeroHash.hi, this.zeroHash.lo);
      this.cache.set(pfn, null); // encodePage left the slot, if any, untouched
      if (cached) this.uncountedHits++;
    } else {
      const hi = this.hashOut[0] as number;
      const lo = this.hashOut[1] as number;
      this.digest.add(pfn, hi, lo);
      // a small-integer key keeps the Map fast; collisions only cost a missed duplicate (content is compared)
      const key = (hi ^ lo) & 0x3fffffff;
      const earlier = this.byHash.get(key);
      // an earlier page of the epoch has another pfn, so its copy is not the slot encodePage just rewrote
      const copy = earlier < 0 ? undefined : this.cache.peek(this.pfns.at(earlier));
      if (earlier >= 0 && copy && Buffer.compare(copy, page) === 0) {
        buf[kindAt] = Kind.DUP;
        p = writeUleb(buf, p, earlier);
        this.kinds.dup++;
        this.cache.set(pfn, page);
        if (cached) this.uncountedHits++;
      } else {
        if (earlier < 0) this.byHash.set(key, index);
        // with a slot (cached), update() and encodePage already did what set(pfn, page) does
        if (cached === undefined) {
          const base = this.cache.get(pfn); // counts a hit on a cached zero page, else a miss
          // the base of a page cached as zero is the zero page (encodePage had none: it gave -1)
          if (base === null) n = loops.encodeDelta(this.zero, page, this.deltaOut, limit);
          this.cache.set(pfn, page);
        }
        if (n >= 0) {
          buf[kindAt] = Kind.DELTA;
          p = writeUleb(buf, p, n);
          buf.set(this.deltaOut.subarray(0, n), p);
          p += n;
          this.kinds.delta++;
        } else {
          buf[kindAt] = Kind.RAW;
          buf.set(page, p);
          p += pageSize;
          this.kinds.raw++;
        }
      }
    }
    this.pos = p;
    this.chunkRecords++;
    return this.pos >= this.options.chunkBytes ? this.flush() : undefined;
  }

  /** Close the epoch: the last (partial) chunk, if any, and the summary. */
  end(): { chunk: EncodedChunk | undefined; summary: EpochSummary } {
    if (!this.open) throw sequence('end() without begin()');
    const chunk = this.chunkRecords > 0 ? this.flush() : undefined;
    this.open = false;
    const summary: EpochSummary = {
      epoch: this.epoch,
      pageCount: this.pfns.length,
      chunkCount: this.seq,
      rawBytes: this.pfns.length * this.options.pageSize,
      wireBytes: this.wireBytes,
      digest: this.digest.finish(),
      kinds: { ...this.kinds },
    };
    if (summary.digest.length !== DIGEST_BYTES) throw new RwanError('RWAN_ERR_INTERNAL', 'digest length');
    return { chunk, summary };
  }

  /** Encode a whole epoch at once: the pages at `pfns`, read with `pageAt(i)`. */
  encodeEpoch(
    epoch: number,
    pfns: ArrayLike<number>,
    pageAt: (i: number) => Uint8Array,
  ): { chunks: EncodedChunk[]; summary: EpochSummary } {
    const chunks: EncodedChunk[] = [];
    this.begin(epoch);
    for (let i = 0; i < pfns.length; i++) {
      const c = this.add(pfns[i] as number, pageAt(i));
      if (c) chunks.push(c);
    }
    const { chunk, summary } = this.end();
    if (chunk) chunks.push(chunk);
    return { chunks, summary };
  }

  /**
   * Page cache counters (hit rate = hits / (hits + misses)): a hit or a miss per page that needed a
   * delta base (neither ZERO nor DUP).
   */
  cacheStats(): PageCacheStats {
    const stats = this.cache.stats();
    return { ...stats, hits: stats.hits - this.uncountedHits };
  }

  /** Chunks zstd was run on, and chunks sent raw without an attempt (incompressible back-off). */
  compressionStats(): { attempted: number; skipped: number } {
    return { ...(this.compressor?.counts ?? { attempted: 0, skipped: 0 }) };
  }

  /** Forget every cached page (a session restarting from a full copy; the decoder must do the same). */
  reset(): void {
    if (this.open) throw sequence('reset() inside an epoch');
    this.cache.reset();
  }

  private flush(): EncodedChunk {
    const raw = this.buf.subarray(0, this.pos);
    const { method, data } = this.compressor
      ? this.compressor.compress(raw)
      : { method: Method.RAW, data: this.chunkViews ? raw : copyOf(raw) };
    const chunk: EncodedChunk = {
      epoch: this.epoch,
      seq: this.seq++,
      records: this.chunkRecords,
      rawLength: raw.length,
      method,
      data,
    };
    this.wireBytes += data.length;
    this.pos = 0;
    this.chunkRecords = 0;
    return chunk;
  }
}

function sequence(message: string): RwanError {
  return new RwanError('RWAN_ERR_CODEC_SEQUENCE', message);
}

/** Page sizes the codec supports: powers of two from 512 to 65536 bytes. */
export function checkPageSize(pageSize: number): void {
  if (
    !(Number.isInteger(pageSize) && pageSize >= 512 && pageSize <= 65536 && (pageSize & (pageSize - 1)) === 0)
  ) {
    throw new RwanError(
      'RWAN_ERR_INVALID_VALUE',
      `page size ${pageSize}: expected a power of two from 512 to 65536`,
      {
        details: { pageSize },
      },
    );
  }
}
