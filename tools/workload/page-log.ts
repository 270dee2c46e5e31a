/**
 * Page-log files: epochs of dirty pages with their new content, as a workload generator or a capture
 * of a real process produced them. The format is specified byte by byte in `docs/page-log.md`:
 *
 *   header   "RWPAGLOG" version:u16=1 flags:u16=0 pageSize:u32 metaLen:u32 meta[metaLen] (UTF-8 JSON)
 *   epoch*   "EPCH" epoch:u64 count:u32 (pfn:u64 page[pageSize])*count
 *   trailer  "DONE" epochs:u64 pages:u64
 *
 * All integers little-endian. Reading and writing stream: one epoch at a time is held in memory, so
 * multi-GB logs work. The reader is strict and reports every fault as RWAN_ERR_INVALID_INPUT with the
 * byte offset and a `reason` in `details`.
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { RwanError } from '../../src/errors.js';

/** The 8 bytes every page log starts with. */
export const PAGE_LOG_MAGIC = Buffer.from('RWPAGLOG', 'latin1');
/** The only version this code reads and writes. */
export const PAGE_LOG_VERSION = 1;
/** Bytes of the fixed part of the header (before the metadata). */
export const HEADER_BYTES = 20;
/** Bytes of an epoch block's header (tag, epoch, count). */
export const EPOCH_HEADER_BYTES = 16;
/** Bytes of the trailer. */
export const TRAILER_BYTES = 20;
/** Largest metadata the reader accepts. */
export const MAX_META_BYTES = 1 << 20;
const EPOCH_TAG = 0x48435045; // "EPCH" read as u32 LE
const DONE_TAG = 0x454e4f44; // "DONE"
const TWO32 = 4294967296;

/** Reasons a page log is rejected (in `RwanError.details.reason`). */
export type PageLogFault =
  | 'magic'
  | 'version'
  | 'flags'
  | 'page-size'
  | 'meta'
  | 'truncated'
  | 'tag'
  | 'epoch-order'
  | 'pfn-order'
  | 'range'
  | 'trailer'
  | 'trailing-bytes';

/** The header of a page log. */
export interface PageLogHeader {
  version: number;
  pageSize: number;
  /** The metadata object (what produced the log), or null when none was written. */
  meta: Record<string, unknown> | null;
}

/** One epoch of a page log. */
export interface PageLogEpoch {
  epoch: number;
  /** Dirty pfns, strictly increasing. */
  pfns: Uint32Array;
  /** Their content: page i is `pages.subarray(i * pageSize, (i + 1) * pageSize)`. */
  pages: Buffer;
}

function isPageSize(n: number): boolean {
  return Number.isInteger(n) && n >= 64 && n <= 65536 && (n & (n - 1)) === 0;
}

// ---------------------------------------------------------------------------------------------------
// Reader

/** A streaming, strict reader of one page-log file. Iterating it yields the epochs in file order. */
export class PageLogReader implements Iterable<PageLogEpoch> {
  readonly header: PageLogHeader;
  /** File size in bytes. */
  readonly size: number;
  private fd: number | undefined;
  private pos = 0;
  private readonly chunk: Buffer;
  private started = false;

  private constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
    this.size = fstatSync(fd).size;
    if (this.size < HEADER_BYTES) {
      const head = this.read(Math.min(this.size, 8), 'header');
      if (!PAGE_LOG_MAGIC.subarray(0, head.length).equals(head)) {
        this.fail('magic', 0, 'not a page log (the file does not start with "RWPAGLOG")');
      }
      this.pos = 0;
    }
    const fixed = this.read(HEADER_BYTES, 'header');
    if (!fixed.subarray(0, 8).equals(PAGE_LOG_MAGIC)) {
      this.fail('magic', 0, 'not a page log (the file does not start with "RWPAGLOG")');
    }
    const version = fixed.readUInt16LE(8);
    if (version !== PAGE_LOG_VERSION) {
      this.fail('version', 8, `version ${version} is not supported (this reader knows ${PAGE_LOG_VERSION})`);
    }
    const flags = fixed.readUInt16LE(10);
    if (flags !== 0) this.fail('flags', 10, `unknown flags 0x${flags.toString(16)}`);
    const pageSize = fixed.readUInt32LE(12);
    if (!isPageSize(pageSize))
      this.fail('page-size', 12, `page size ${pageSize} is not a power of two in [64, 65536]`);
    const metaLen = fixed.readUInt32LE(16);
    if (metaLen > MAX_META_BYTES)
      this.fail('meta', 16, `metadata length ${metaLen} exceeds ${MAX_META_BYTES}`);
    let meta: Record<string, unknown> | null = null;
    if (metaLen > 0) {
      const text = this.read(metaLen, 'metadata').toString('utf8');
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        this.fail('meta', HEADER_BYTES, `metadata is not valid JSON (${(err as Error).message})`);
      }
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
        this.fail('meta', HEADER_BYTES, 'metadata is not a JSON object');
      }
      meta = parsed as Record<string, unknown>;
    }
    this.header = { version, pageSize, meta };
    const recordBytes = 8 + pageSize;
    this.chunk = Buffer.alloc(recordBytes * Math.max(1, Math.floor((4 << 20) / recordBytes)));
  }

  /** Opens `path` and reads its header (throws RWAN_ERR_IO or RWAN_ERR_INVALID_INPUT). */
  static open(path: string): PageLogReader {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      throw new RwanError('RWAN_ERR_IO', `page-log ${path}: cannot open (${(err as Error).message})`, {
        cause: err,
        details: { path },
      });
    }
    try {
      return new PageLogReader(path, fd);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** Closes the file (iteration closes it too, when it ends or stops early). */
  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  /** The epochs, in file order; validates the trailer at the end. May be iterated once. */
  *[Symbol.iterator](): Generator<PageLogEpoch, void, undefined> {
    if (this.started) throw new RwanError('RWAN_ERR_USAGE', `page-log ${this.path}: iterated twice`);
    this.started = true;
    const ps = this.header.pageSize;
    const recordBytes = 8 + ps;
    const perChunk = this.chunk.length / recordBytes;
    let epochs = 0;
    let total = 0;
    let last = -1;
    try {
      for (;;) {
        const at = this.pos;
        const tagBuf = this.read(4, 'epoch or trailer tag');
        const tag = tagBuf.readUInt32LE(0);
        if (tag === DONE_TAG) {
          const t = this.read(TRAILER_BYTES - 4, 'trailer');
          const wantEpochs = this.u64(t, 0, at + 4);
          const wantPages = this.u64(t, 8, at + 12);
          if (wantEpochs !== epochs || wantPages !== total) {
            this.fail(
              'trailer',
              at,
              `trailer announces ${wantEpochs} epochs / ${wantPages} pages, the file holds ${epochs} / ${total}`,
            );
          }
          if (this.pos !== this.size) {
            this.fail('trailing-bytes', this.pos, `${this.size - this.pos} bytes after the trailer`);
          }
          return;
        }
        if (tag !== EPOCH_TAG) {
          this.fail('tag', at, `expected "EPCH" or "DONE", found 0x${tag.toString(16).padStart(8, '0')}`);
        }
        const h = this.read(EPOCH_HEADER_BYTES - 4, 'epoch header');
        const epoch = this.u64(h, 0, at + 4);
        if (epoch <= last) this.fail('epoch-order', at + 4, `epoch ${epoch} does not follow epoch ${last}`);
        last = epoch;
        const count = h.readUInt32LE(8);
        if (count * recordBytes > this.size - this.pos) {
          this.fail(
            'truncated',
            at + 12,
            `epoch ${epoch} announces ${count} pages (${count * recordBytes} bytes) but only ${this.size - this.pos} bytes remain`,
          );
        }
        const pfns = new Uint32Array(count);
        const pages = Buffer.allocUnsafe(count * ps);
        let prev = -1;
        for (let i = 0; i < count; ) {
          const n = Math.min(perChunk, count - i);
          const base = this.pos;
          const buf = this.read(n * recordBytes, 'page records', this.chunk);
          for (let j = 0; j < n; j++, i++) {
            const r = j * recordBytes;
            const pfn = this.u64(buf, r, base + r);
            if (pfn > 0xffffffff) this.fail('range', base + r, `pfn ${pfn} exceeds 2^32 - 1`);
            if (pfn <= prev) {
              this.fail('pfn-order', base + r, `epoch ${epoch}: pfn ${pfn} does not follow pfn ${prev}`);
            }
            prev = pfn;
            pfns[i] = pfn;
            buf.copy(pages, i * ps, r + 8, r + recordBytes);
          }
        }
        epochs++;
        total += count;
        yield { epoch, pfns, pages };
      }
    } finally {
      this.close();
    }
  }

  /** Reads exactly `n` bytes at the current position (into `into` when given). */
  private read(n: number, what: string, into?: Buffer): Buffer {
    const fd = this.fd;
    if (fd === undefined) throw new RwanError('RWAN_ERR_USAGE', `page-log ${this.path}: closed`);
    if (this.pos + n > this.size) {
      this.fail(
        'truncated',
        this.pos,
        `the file ends inside the ${what} (${n} bytes needed, ${this.size - this.pos} left)`,
      );
    }
    const buf = into === undefined ? Buffer.allocUnsafe(n) : into.subarray(0, n);
    let got = 0;
    while (got < n) {
      const k = readSync(fd, buf, got, n - got, this.pos + got);
      if (k === 0) this.fail('truncated', this.pos + got, `the file ends inside the ${what}`);
      got += k;
    }
    this.pos += n;
    return buf;
  }

  private u64(buf: Buffer, at: number, fileOffset: number): number {
    const lo = buf.readUInt32LE(at);
    const hi = buf.readUInt32LE(at + 4);
    if (hi >= 0x200000) this.fail('range', fileOffset, 'a 64-bit field exceeds 2^53 - 1');
    return hi * TWO32 + lo;
  }

  private fail(reason: PageLogFault, offset: number, message: string): never {
    throw new RwanError('RWAN_ERR_INVALID_INPUT', `page-log ${this.path}: at byte ${offset}: ${message}`, {
      details: { path: this.path, offset, reason },
    });
  }
}

/** The epochs of the page log at `path`, streamed (the header is read on the first step). */
export function* readPageLog(path: string): Generator<PageLogEpoch, void, undefined> {
  yield* PageLogReader.open(path);
}

/** The header of the page log at `path`. */
export function readPageLogHeader(path: string): PageLogHeader {
  const r = PageLogReader.open(path);
  r.close();
  return r.header;
}

// ---------------------------------------------------------------------------------------------------
// Writer

/** Options of {@link PageLogWriter.create}. */
export interface PageLogWriterOptions {
  /** Bytes per page: a power of two in [64, 65536]. */
  pageSize: number;
  /** What produced the log (any JSON object; stored in the header). */
  meta?: Record<string, unknown>;
}

/** Totals of a written page log. */
export interface PageLogTotals {
  epochs: number;
  pages: number;
  bytes: number;
}

/** A streaming page-log writer (synchronous, buffered). Call {@link close} to write the trailer. */
export class PageLogWriter {
  readonly pageSize: number;
  private fd: number | undefined;
  private readonly stage = Buffer.alloc(1 << 20);
  private used = 0;
  private bytes = 0;
  private epochs = 0;
  private pages = 0;
  private last = -1;

  private constructor(
    readonly path: string,
    fd: number,
    pageSize: number,
  ) {
    this.fd = fd;
    this.pageSize = pageSize;
  }

  /** Creates (truncates) `path` and writes the header. */
  static create(path: string, options: PageLogWriterOptions): PageLogWriter {
    const { pageSize } = options;
    if (!isPageSize(pageSize)) {
      throw new RwanError(
        'RWAN_ERR_INVALID_VALUE',
        `page-log: page size ${pageSize} is not a power of two in [64, 65536]`,
      );
    }
    const meta =
      options.meta === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(options.meta), 'utf8');
    if (meta.length > MAX_META_BYTES) {
      throw new RwanError('RWAN_ERR_INVALID_VALUE', `page-log: metadata exceeds ${MAX_META_BYTES} bytes`);
    }
    let fd: number;
    try {
      fd = openSync(path, 'w');
    } catch (err) {
      throw new RwanError('RWAN_ERR_IO', `page-log ${path}: cannot create (${(err as Error).message})`, {
        cause: err,
        details: { path },
      });
    }
    const w = new PageLogWriter(path, fd, pageSize);
    const h = Buffer.alloc(HEADER_BYTES);
    PAGE_LOG_MAGIC.copy(h, 0);
    h.writeUInt16LE(PAGE_LOG_VERSION, 8);
    h.writeUInt16LE(0, 10);
    h.writeUInt32LE(pageSize, 12);
    h.writeUInt32LE(meta.length, 16);
    w.put(h);
    w.put(meta);
    return w;
  }

  /**
   * Appends an epoch: `pfns` strictly increasing, `pages` their content back to back
   * (`pfns.length × pageSize` bytes). Epoch numbers must increase from call to call.
   */
  writeEpoch(epoch: number, pfns: ArrayLike<number>, pages: Uint8Array): void {
    if (pages.length !== pfns.length * this.pageSize) {
      throw new RwanError(
        'RWAN_ERR_INVALID_VALUE',
        `page-log: ${pfns.length} pfns need ${pfns.length * this.pageSize} bytes of pages, got ${pages.length}`,
      );
    }
    this.epochHeader(epoch, pfns);
    const ps = this.pageSize;
    for (let i = 0; i < pfns.length; i++)
      this.record(pfns[i] as number, pages.subarray(i * ps, (i + 1) * ps));
  }

  /** Appends an epoch whose page `pfn` is read from `memory` at `pfn × pageSize` (a guest image). */
  writeEpochFromMemory(epoch: number, pfns: ArrayLike<number>, memory: Uint8Array): void {
    const ps = this.pageSize;
    for (let i = 0; i < pfns.length; i++) {
      if (((pfns[i] as number) + 1) * ps > memory.length) {
        throw new RwanError('RWAN_ERR_INVALID_VALUE', `page-log: pfn ${pfns[i]} lies outside the memory`);
      }
    }
    this.epochHeader(epoch, pfns);
    for (let i = 0; i < pfns.length; i++) {
      const pfn = pfns[i] as number;
      this.record(pfn, memory.subarray(pfn * ps, (pfn + 1) * ps));
    }
  }

  /** Writes the trailer, closes the file, returns the totals. */
  close(): PageLogTotals {
    if (this.fd === undefined) throw new RwanError('RWAN_ERR_USAGE', `page-log ${this.path}: closed twice`);
    const t = Buffer.alloc(TRAILER_BYTES);
    t.writeUInt32LE(DONE_TAG, 0);
    writeU64(t, 4, this.epochs);
    writeU64(t, 12, this.pages);
    this.put(t);
    this.flush();
    closeSync(this.fd);
    this.fd = undefined;
    return { epochs: this.epochs, pages: this.pages, bytes: this.bytes };
  }

  private epochHeader(epoch: number, pfns: ArrayLike<number>): void {
    if (this.fd === undefined) throw new RwanError('RWAN_ERR_USAGE', `page-log ${this.path}: closed`);
    if (!Number.isSafeInteger(epoch) || epoch < 0 || epoch <= this.last) {
      throw new RwanError(
        'RWAN_ERR_INVALID_VALUE',
        `page-log: epoch ${epoch} does not follow epoch ${this.last}`,
      );
    }
    let prev = -1;
    for (let i = 0; i < pfns.length; i++) {
      const p = pfns[i] as number;
      if (!Number.isInteger(p) || p <= prev || p > 0xffffffff) {
        throw new RwanError(
          'RWAN_ERR_INVALID_VALUE',
          `page-log: epoch ${epoch}: pfns must be strictly increasing integers < 2^32 (${p} after ${prev})`,
        );
      }
      prev = p;
    }
    this.last = epoch;
    const h = Buffer.alloc(EPOCH_HEADER_BYTES);
    h.writeUInt32LE(EPOCH_TAG, 0);
    writeU64(h, 4, epoch);
    h.writeUInt32LE(pfns.length, 12);
    this.put(h);
    this.epochs++;
    this.pages += pfns.length;
  }

  private record(pfn: number, page: Uint8Array): void {
    if (this.used + 8 > this.stage.length) this.flush();
    this.stage.writeUInt32LE(pfn, this.used);
    this.stage.writeUInt32LE(0, this.used + 4);
    this.used += 8;
    this.put(page);
  }

  private put(b: Uint8Array): void {
    if (b.length > this.stage.length - this.used) {
      this.flush();
      if (b.length >= this.stage.length) {
        this.writeAll(b);
        return;
      }
    }
    this.stage.set(b, this.used);
    this.used += b.length;
  }

  private flush(): void {
    if (this.used > 0) this.writeAll(this.stage.subarray(0, this.used));
    this.used = 0;
  }

  private writeAll(b: Uint8Array): void {
    const fd = this.fd as number;
    let off = 0;
    try {
      while (off < b.length) off += writeSync(fd, b, off, b.length - off);
    } catch (err) {
      throw new RwanError('RWAN_ERR_IO', `page-log ${this.path}: write failed (${(err as Error).message})`, {
        cause: err,
        details: { path: this.path },
      });
    }
    this.bytes += b.length;
  }
}

function writeU64(b: Buffer, at: number, v: number): void {
  b.writeUInt32LE(v % TWO32, at);
  b.writeUInt32LE(Math.floor(v / TWO32), at + 4);
}

/** Writes a whole page log from an iterable of epochs; returns the totals. */
export function writePageLog(
  path: string,
  options: PageLogWriterOptions,
  epochs: Iterable<{ epoch: number; pfns: ArrayLike<number>; pages: Uint8Array }>,
): PageLogTotals {
  const w = PageLogWriter.create(path, options);
  for (const e of epochs) w.writeEpoch(e.epoch, e.pfns, e.pages);
  return w.close();
}
