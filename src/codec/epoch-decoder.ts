/**
 * Receiver side of the page codec: chunks in (in order), pages out, the epoch verified at its end.
 * Pure apart from CPU.
 *
 * Strict: every malformed input is a typed `RWAN_ERR_CODEC_*` error, and a page is handed out only
 * when it decoded completely. After an error the decoder refuses to go on (its page cache may no
 * longer mirror the sender's) until `reset()`, which both sides call before a full resync.
 */
import { RwanError } from '../errors.js';
import { ChunkDecompressor } from './chunk-compression.js';
import { EpochDigest } from './digest.js';
import { checkPageSize } from './epoch-encoder.js';
import { faultOf, type HotLoops, hot } from './hot-loops.js';
import { type CodecOptions, DEFAULT_CODEC_OPTIONS, type KindCounts } from './options.js';
import { PageCache, type PageCacheStats } from './page-cache.js';
import { EpochPfns, Kind, RecordReader, unzigzag } from './records.js';
import type { DeltaFault } from './xor-rle.js';

/** A chunk as received (the CHUNK frame's fields). */
export interface ChunkInput {
  epoch: number;
  seq: number;
  records: number;
  rawLength: number;
  method: number;
  data: Uint8Array;
}

/**
 * Called once per decoded page, in record order. `page` is a view valid only during the call: copy it
 * to keep it — unless the epoch's pages fit the cache ({@link EpochDecoder.keepsPages}): then every
 * non-zero page handed out is the cache's copy and stays unchanged until the next epoch begins (an
 * epoch touches each pfn once, and the cache evicts the least recently sent first). `zero` is true
 * for a ZERO record (the page is all zero bytes; a replica store need not write them out, and
 * rebuilding a page cache needs to know).
 */
export type PageSink = (pfn: number, page: Uint8Array, zero: boolean) => void;

const FAULT_CODES = {
  truncated: 'RWAN_ERR_CODEC_TRUNCATED',
  overrun: 'RWAN_ERR_CODEC_RUN_OVERFLOW',
  'empty-literal': 'RWAN_ERR_CODEC_BAD_DELTA',
  'zero-run': 'RWAN_ERR_CODEC_BAD_DELTA',
} as const;

/** Deltas queued for one native call at most. */
const QUEUE = 256;

function deltaFault(pfn: number, fault: DeltaFault | undefined, where: Record<string, unknown>): RwanError {
  if (fault === undefined) return new RwanError('RWAN_ERR_INTERNAL', `delta for pfn ${pfn}: unknown fault`);
  return new RwanError(FAULT_CODES[fault], `delta for pfn ${pfn}: ${fault}`, {
    details: { ...where, pfn, fault },
  });
}

/** Decodes epoch after epoch for one session. */
export class EpochDecoder {
  readonly options: CodecOptions;
  private readonly loops: HotLoops;
  private readonly cache: PageCache;
  private readonly decompressor: ChunkDecompressor;
  private readonly digest = new EpochDigest();
  private readonly zero: Uint8Array;
  private readonly zeroHash: { hi: number; lo: number };
  private readonly scratch: Uint8Array;
  private readonly hashOut = new Uint32Array(2);
  private epoch = -1;
  /** The epoch {@link absorb} last took pages of (−1: none since the last begin or reset). */
  private absorbing = -1;
  private open = false;
  private failed: RwanError | undefined;
  private nextSeq = 0;
  private prevPfn = -1;
  private readonly pfns = new EpochPfns();
  private kinds: KindCounts = { zero: 0, raw: 0, delta: 0, dup: 0 };
  /**
   * Deltas onto cached pages, queued and applied in one native call (flush): slot, stream offset and
   * length per record, and its pfn. Only such records queue, and any other record flushes first, so
   * pages are applied, digested and handed out in record order, and no slot is reused while queued.
   */
  private readonly queue = {
    n: 0,
    ops: new Int32Array(3 * QUEUE),
    pfns: new Float64Array(QUEUE),
    hashes: new Uint32Array(2 * (QUEUE + 1)),
  };

  constructor(options: Partial<CodecOptions> = {}) {
    this.options = { ...DEFAULT_CODEC_OPTIONS, ...options };
    checkPageSize(this.options.pageSize);
    this.loops = this.options.loops ?? hot;
    this.cache = new PageCache(this.options.pageSize, this.options.cacheBytes);
    this.decompressor = new ChunkDecompressor(this.options.dictionary);
    this.zero = new Uint8Array(this.options.pageSize);
    this.zeroHash = this.loops.hashPage(this.zero);
    this.scratch = new Uint8Array(this.options.pageSize);
  }

  /** Start epoch `epoch` (epochs must increase). */
  begin(epoch: number): void {
    this.guard();
    if (this.open || !(Number.isSafeInteger(epoch) && epoch > this.epoch)) {
      this.fail(
        'RWAN_ERR_CODEC_SEQUENCE',
        `begin(${epoch}) after epoch ${this.epoch}${this.open ? ' still open' : ''}`,
      );
    }
    this.epoch = epoch;
    this.open = true;
    this.absorbing = -1;
    this.cache.beginEpoch();
    this.nextSeq = 0;
    this.prevPfn = -1;
    this.pfns.reset();
    this.kinds = { zero: 0, raw: 0, delta: 0, dup: 0 };
  }

  /** Decode the next chunk of the open epoch, handing each page to `sink`. */
  chunk(c: ChunkInput, sink: PageSink): void {
    this.guard();
    const where = { epoch: c.epoch, seq: c.seq };
    if (!this.open || c.epoch !== this.epoch || c.seq !== this.nextSeq) {
      this.fail(
        'RWAN_ERR_CODEC_SEQUENCE',
        `chunk ${c.epoch}/${c.seq} while expecting ${this.epoch}/${this.nextSeq}`,
        where,
      );
    }
    this.nextSeq++;
    const { pageSize, maxChunkBytes } = this.options;
    if (!(Number.isInteger(c.rawLength) && c.rawLength >= 0 && c.rawLength <= maxChunkBytes)) {
      this.fail(
        'RWAN_ERR_CODEC_CHUNK_LENGTH',
        `chunk announces ${c.rawLength} bytes (cap ${maxChunkBytes})`,
        where,
      );
    }
    // every record takes at least 2 bytes: a record count above that is a lie, refused before work
    if (!(Number.isInteger(c.records) && c.records >= 0 && c.records * 2 <= c.rawLength)) {
      this.fail('RWAN_ERR_CODEC_CHUNK_LENGTH', `${c.records} records cannot fit ${c.rawLength} bytes`, where);
    }
    let stream: Uint8Array | undefined;
    try {
      stream = this.decompressor.decompress(c.method, c.data, c.rawLength, where);
      const r = new RecordReader(stream, where);
      for (let i = 0; i < c.records; i++) this.record(r, pageSize, where, sink);
      this.flush(stream, where, sink);
      if (!r.done) {
        throw new RwanError(
          'RWAN_ERR_CODEC_CHUNK_LENGTH',
          `${stream.length - r.pos} bytes after the last record`,
          {
            details: where,
          },
        );
      }
    } catch (err) {
      let first = err;
      // queued records came before the one that failed: apply them (an error there comes first)
      try {
        if (stream) this.flush(stream, where, sink);
      } catch (earlier) {
        first = earlier;
      }
      this.queue.n = 0;
      this.failed =
        first instanceof RwanError
          ? first
          : new RwanError('RWAN_ERR_INTERNAL', String(first), { cause: first });
      throw this.failed;
    }
  }

  /**
   * Close the epoch and check it against the sender's page count and digest.
   * @returns the kinds of records the epoch used
   */
  end(pageCount: number, digest: Uint8Array): KindCounts {
    this.guard();
    if (!this.open) this.fail('RWAN_ERR_CODEC_SEQUENCE', 'end() without begin()');
    this.open = false;
    const mine = this.digest.finish();
    if (pageCount !== this.pfns.length) {
      this.fail(
        'RWAN_ERR_CODEC_DIGEST',
        `epoch ${this.epoch}: ${this.pfns.length} pages decoded, sender sent ${pageCount}`,
        {
          epoch: this.epoch,
        },
      );
    }
    if (Buffer.compare(mine, digest) !== 0) {
      this.fail(
        'RWAN_ERR_CODEC_DIGEST',
        `epoch ${this.epoch}: decoded pages do not match the sender's digest`,
        {
          epoch: this.epoch,
        },
      );
    }
    return { ...this.kinds };
  }

  /**
   * True when an epoch of `pageCount` pages fits the page cache, so that its pages handed to a sink
   * stay valid until the next epoch begins (see {@link PageSink}).
   */
  keepsPages(pageCount: number): boolean {
    return pageCount * this.options.pageSize <= this.options.cacheBytes;
  }

  /** Page cache counters. */
  cacheStats(): PageCacheStats {
    return this.cache.stats();
  }

  /**
   * Forget every cached page, any earlier failure and the epoch order (the encoder must reset too,
   * before a FULL epoch; a new session may number its epochs from anywhere).
   */
  reset(): void {
    this.cache.reset();
    this.failed = undefined;
    this.open = false;
    this.epoch = -1;
    this.absorbing = -1;
  }

  /** The page cache's index as bytes ({@link PageCache.snapshot}), between epochs. */
  cacheSnapshot(): Buffer {
    if (this.open) this.fail('RWAN_ERR_CODEC_SEQUENCE', 'cacheSnapshot() inside an epoch');
    return this.cache.snapshot();
  }

  /**
   * Rebuild the cache of a decoder that had decoded up to `lastEpoch` (after a restart) from the
   * index `snapshot` taken then (or start from an empty cache). Returns the cached non-zero pages,
   * whose content as of that snapshot ({@link EpochDecoder.cachedPages} then) the caller must write
   * before anything else. Only on a fresh or reset decoder.
   */
  restoreCache(
    snapshot: Uint8Array | null,
    lastEpoch: number | null,
  ): Array<{ pfn: number; page: Uint8Array }> {
    if (this.open || this.epoch !== -1) {
      this.fail('RWAN_ERR_CODEC_SEQUENCE', 'restoreCache() on a decoder that has decoded');
    }
    this.cache.reset();
    if (snapshot) this.cache.restore(snapshot);
    this.epoch = lastEpoch ?? -1;
    return this.cache.cachedPages();
  }

  /**
   * The cached copy of page `pfn` (a view into the cache, valid until the cache changes), or undefined
   * when it is not cached or cached as a zero page. No effect on the cache.
   */
  cachedPage(pfn: number): Uint8Array | undefined {
    return this.cache.peek(pfn) ?? undefined;
  }

  /**
   * Call `hook` with each cached page the cache evicts, before its memory is reused (a page of the
   * epoch being decoded is never evicted, so the bytes are those of an earlier epoch); undefined: none.
   */
  onEvict(hook: ((pfn: number, page: Uint8Array) => void) | undefined): void {
    this.cache.onEvict = hook;
  }

  /** The cached non-zero pages (views into the cache), between epochs: what a snapshot's content is. */
  cachedPages(): Array<{ pfn: number; page: Uint8Array }> {
    if (this.open) this.fail('RWAN_ERR_CODEC_SEQUENCE', 'cachedPages() inside an epoch');
    return this.cache.cachedPages();
  }

  /**
   * What decoding page `pfn` of epoch `epoch` (`null`: a zero page) does to this decoder, without the
   * record: the page enters the cache as decoding it would have put it there. For epochs known only
   * by their pages (a restart replaying a journal); call it for each page in record order, after a
   * {@link EpochDecoder.reset} for a full epoch.
   */
  absorb(epoch: number, pfn: number, page: Uint8Array | null): void {
    this.guard();
    if (this.open || !(Number.isSafeInteger(epoch) && epoch >= this.epoch)) {
      this.fail(
        'RWAN_ERR_CODEC_SEQUENCE',
        `absorb(${epoch}) after epoch ${this.epoch}${this.open ? ' still open' : ''}`,
      );
    }
    if (epoch !== this.absorbing) this.cache.beginEpoch(); // as begin() did when it was decoded
    this.absorbing = epoch;
    this.epoch = epoch;
    this.cache.set(pfn, page);
  }

  /** Decode one record and hand its page to `sink` (a delta onto a cached page: queue it). */
  private record(r: RecordReader, pageSize: number, where: Record<string, unknown>, sink: PageSink): void {
    const kind = r.u8();
    if (kind !== Kind.DELTA) this.flush(r.bytes, where, sink);
    const pfn = this.prevPfn + 1 + unzigzag(r.uleb('a page number'));
    if (!Number.isSafeInteger(pfn) || pfn < 0) {
      throw new RwanError('RWAN_ERR_CODEC_RUN_OVERFLOW', `page number ${pfn} out of range`, {
        details: where,
      });
    }
    const index = this.pfns.length; // records before this one: what a DUP may refer to
    if (!this.pfns.add(pfn)) {
      throw new RwanError('RWAN_ERR_CODEC_SEQUENCE', `pfn ${pfn} twice in epoch ${this.epoch}`, {
        details: { ...where, pfn },
      });
    }
    let page: Uint8Array;
    let hashed = false; // this.hashOut already holds the page hash
    switch (kind) {
      case Kind.ZERO:
        page = this.zero;
        this.kinds.zero++;
        break;
      case Kind.RAW:
        page = r.take(pageSize, 'a raw page');
        this.kinds.raw++;
        break;
      case Kind.DELTA: {
        const len = r.uleb('a delta length');
        if (len >= pageSize) {
          throw new RwanError(
            'RWAN_ERR_CODEC_RUN_OVERFLOW',
            `delta of ${len} bytes for a ${pageSize}-byte page`,
            {
              details: { ...where, pfn },
            },
          );
        }
        const at = r.skip(len, 'a delta');
        // Apply straight into the cached copy (no copy in or out), queued; a zero-page base goes via
        // scratch. A fault leaves that copy half-written, which is fine: the decoder is failed until
        // reset().
        const slot = this.cache.updateSlot(pfn);
        if (slot >= 0) {
          const q = this.queue;
          q.ops[3 * q.n] = slot;
          q.ops[3 * q.n + 1] = at;
          q.ops[3 * q.n + 2] = len;
          q.pfns[q.n] = pfn;
          if (++q.n === QUEUE) this.flush(r.bytes, where, sink);
          this.prevPfn = pfn;
          this.kinds.delta++;
          return;
        }
        this.flush(r.bytes, where, sink);
        if (this.cache.peek(pfn) === undefined) {
          throw new RwanError(
            'RWAN_ERR_CODEC_MISSING_BASE',
            `delta for pfn ${pfn}, which this side does not hold`,
            {
              details: { ...where, pfn },
            },
          );
        }
        const target = this.scratch.fill(0);
        const fault = this.loops.applyDeltaHash(target, r.bytes.subarray(at, at + len), this.hashOut);
        if (fault) throw deltaFault(pfn, fault, where);
        page = target;
        hashed = true;
        this.kinds.delta++;
        break;
      }
      case Kind.DUP: {
        const ref = r.uleb('a duplicate reference');
        const refPfn = ref < index ? this.pfns.at(ref) : undefined;
        const copy = refPfn === undefined ? undefined : this.cache.peek(refPfn);
        if (refPfn === undefined || !copy) {
          throw new RwanError(
            'RWAN_ERR_CODEC_BAD_REF',
            `duplicate of record ${ref}, not held in epoch ${this.epoch}`,
            {
              details: { ...where, pfn, ref },
            },
          );
        }
        this.scratch.set(copy);
        page = this.scratch;
        this.kinds.dup++;
        break;
      }
      default:
        throw new RwanError('RWAN_ERR_CODEC_BAD_KIND', `record kind ${kind}`, {
          details: { ...where, kind },
        });
    }
    this.prevPfn = pfn;
    if (page === this.zero) {
      this.digest.add(pfn, this.zeroHash.hi, this.zeroHash.lo);
      this.cache.set(pfn, null);
      sink(pfn, page, true);
      return;
    }
    if (!hashed) this.loops.hashPageInto(page, this.hashOut, 0);
    this.digest.add(pfn, this.hashOut[0] as number, this.hashOut[1] as number);
    // hand out the cached copy (see PageSink): it outlives the stream and the scratch page
    const slot = this.cache.set(pfn, page);
    sink(pfn, slot < 0 ? page : this.cache.pages.subarray(slot * pageSize, (slot + 1) * pageSize), false);
  }

  /** Apply the queued deltas, then digest and hand out their pages, in record order. */
  private flush(stream: Uint8Array, where: Record<string, unknown>, sink: PageSink): void {
    const q = this.queue;
    if (q.n === 0) return;
    const n = q.n;
    q.n = 0;
    const ps = this.options.pageSize;
    const slab = this.cache.pages;
    const applied = this.loops.applyDeltasHash(slab, ps, stream, q.ops, n, q.hashes);
    for (let k = 0; k < applied; k++) {
      const pfn = q.pfns[k] as number;
      const slot = q.ops[3 * k] as number;
      this.digest.add(pfn, q.hashes[2 * k] as number, q.hashes[2 * k + 1] as number);
      sink(pfn, slab.subarray(slot * ps, (slot + 1) * ps), false);
    }
    if (applied < n)
      throw deltaFault(q.pfns[applied] as number, faultOf(q.hashes[2 * applied] as number), where);
  }

  private guard(): void {
    if (this.failed) throw this.failed;
  }

  private fail(
    code: 'RWAN_ERR_CODEC_SEQUENCE' | 'RWAN_ERR_CODEC_CHUNK_LENGTH' | 'RWAN_ERR_CODEC_DIGEST',
    message: string,
    details = {},
  ): never {
    this.failed = new RwanError(code, message, { details });
    throw this.failed;
  }
}
