/**
 * The dirty log: an append-only file in which a cooperating producer names every page it is about to
 * write, so a capture reads only those pages instead of the whole image. Format and rules:
 * docs/dirty-log.md.
 *
 *   file   = header record*
 *   header = magic "RWDIRLOG" version:u16 flags:u16 pageSize:u32          (16 bytes, little-endian)
 *   record = u64 LE: bit 63 set, bit 62 batch start (flag 1, else zero),   (8 bytes)
 *            bits 53–61 zero, bits 0–52 the pfn
 *
 * Log-ahead: a record is in the file (its write() returned) BEFORE the page write it announces starts.
 * The producer opens the log with O_APPEND, so after {@link DirtyLogReader.reset} truncates the log
 * back to its header its next record lands at the new end. A record whose bit 63 is clear is the
 * zero-filled hole a producer without O_APPEND leaves after a reset: the reader refuses it. With the
 * header's flag 1 (batch marks), the first record of each batch has bit 62 set: a capture then knows
 * which pages may still be pending (the last batch's) and re-reads only those (docs/dirty-log.md §5).
 *
 * `DirtyLogWriter` is the producer side for producers written in JavaScript (synchronous, like the
 * page writes it precedes); `DirtyLogReader` is the capture side (asynchronous).
 */
import { closeSync, constants, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { RwanError } from '../errors.js';

/** ASCII `RWDIRLOG`: the first 8 bytes of a dirty log. */
export const DIRTY_LOG_MAGIC = Buffer.from('RWDIRLOG', 'latin1');

/** The format version this build reads and writes. */
export const DIRTY_LOG_VERSION = 1;

/** Bytes of the header: magic, version, flags, page size. */
export const DIRTY_LOG_HEADER_BYTES = 16;

/** Bytes of one record. */
export const DIRTY_LOG_RECORD_BYTES = 8;

/** Largest pfn a record can carry (2⁵³ − 1, the largest safe integer). */
export const DIRTY_LOG_MAX_PFN = Number.MAX_SAFE_INTEGER;

/** Header flag: the first record of each batch carries {@link BATCH_START}. */
export const DIRTY_LOG_FLAG_BATCH_MARKS = 1;

/** Bit 31 of a record's high word (bit 63 of the record): set in every record. */
const PRESENT = 0x8000_0000;
/** Bit 30 of the high word (62 of the record): the first record of a batch (with batch marks). */
const BATCH_START = 0x4000_0000;
/** Bits 21–29 of the high word (53–61 of the record): reserved, zero; bit 30 too without batch marks. */
const RESERVED = 0x3fe0_0000;
/** Bits 0–20 of the high word: the pfn's bits 32–52. */
const PFN_HI = 0x001f_ffff;

/** Records read per block by {@link DirtyLogReader.read} (512 KiB). */
const READ_RECORDS = 65536;

/**
 * Pfns below this are deduplicated by {@link DirtyLogReader.read} in a bitmap (at most 2 MiB, grown
 * to the largest pfn seen), which also yields them in order: no sort. Larger ones are sorted.
 */
const BITMAP_PFNS = 2 ** 24;

/**
 * Checks a page size: a power of two in [64, 65536].
 * @throws RwanError `RWAN_ERR_INVALID_VALUE`
 */
export function checkPageSize(pageSize: number): void {
  if (!Number.isInteger(pageSize) || pageSize < 64 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
    throw new RwanError(
      'RWAN_ERR_INVALID_VALUE',
      `page size must be a power of two in [64, 65536], got ${pageSize}`,
      {
        details: { pageSize },
      },
    );
  }
}

/** The 16-byte header of a dirty log for `pageSize`, with batch marks unless told otherwise. */
export function dirtyLogHeader(pageSize: number, batchMarks = true): Buffer {
  checkPageSize(pageSize);
  const h = Buffer.alloc(DIRTY_LOG_HEADER_BYTES);
  DIRTY_LOG_MAGIC.copy(h, 0);
  h.writeUInt16LE(DIRTY_LOG_VERSION, 8);
  h.writeUInt16LE(batchMarks ? DIRTY_LOG_FLAG_BATCH_MARKS : 0, 10);
  h.writeUInt32LE(pageSize, 12);
  return h;
}

function checkPfn(pfn: number): void {
  if (!Number.isSafeInteger(pfn) || pfn < 0) {
    throw new RwanError(
      'RWAN_ERR_INVALID_VALUE',
      `dirty log: pfn must be an integer in [0, 2^53), got ${pfn}`,
      {
        details: { pfn },
      },
    );
  }
}

/** Writes the record of `pfn` at `buf[at .. at + 8)`, marked as a batch's first with `start`. */
function putRecord(buf: Buffer, at: number, pfn: number, start: boolean): void {
  buf.writeUInt32LE(pfn % 0x1_0000_0000, at);
  buf.writeUInt32LE((PRESENT | (start ? BATCH_START : 0) | Math.floor(pfn / 0x1_0000_0000)) >>> 0, at + 4);
}

/**
 * Sorts `a[0 .. n)` and removes duplicates in place.
 * @returns the number of distinct values, now in `a[0 .. returned)`
 */
export function sortUnique(a: Float64Array, n: number): number {
  if (n < 2) return n;
  const s = a.subarray(0, n).sort();
  let k = 1;
  for (let i = 1; i < n; i++) {
    const v = s[i] as number;
    if (v !== s[k - 1]) s[k++] = v;
  }
  return k;
}

/**
 * The producer side of a dirty log, for producers written in JavaScript. Synchronous: each call
 * returns once its records are in the file, so the page writes that follow are announced. The file is
 * opened with O_APPEND (a capture may truncate it while the producer is paused).
 */
export class DirtyLogWriter {
  private fd: number | undefined;
  private buf = Buffer.alloc(64 * DIRTY_LOG_RECORD_BYTES);

  private constructor(
    /** The log file. */
    readonly path: string,
    /** Bytes per page of the image the log describes. */
    readonly pageSize: number,
    /** The first record of each batch is marked (header flag 1). */
    readonly batchMarks: boolean,
    fd: number,
  ) {
    this.fd = fd;
  }

  /**
   * Creates (or empties) the log at `path` and writes its header. With `batchMarks` (the default) the
   * first record of each batch is marked, so a capture re-reads only the last batch's pages.
   * @throws RwanError `RWAN_ERR_INVALID_VALUE` for a bad page size, `RWAN_ERR_IO` when the file cannot
   *   be created or written
   */
  static create(path: string, pageSize: number, options: { batchMarks?: boolean } = {}): DirtyLogWriter {
    const batchMarks = options.batchMarks ?? true;
    const header = dirtyLogHeader(pageSize, batchMarks);
    let fd: number | undefined;
    try {
      fd = openSync(
        path,
        constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_APPEND,
        0o644,
      );
      writeAll(fd, header, header.length, path);
    } catch (err) {
      if (fd !== undefined) closeSync(fd);
      if (err instanceof RwanError) throw err;
      throw ioError(`dirty log: cannot create ${path}`, path, err);
    }
    return new DirtyLogWriter(path, pageSize, batchMarks, fd);
  }

  /**
   * Appends the record of one page write (call it before the write).
   * @throws RwanError `RWAN_ERR_INVALID_VALUE` for a pfn outside [0, 2⁵³), `RWAN_ERR_IO`
   */
  log(pfn: number): void {
    checkPfn(pfn);
    putRecord(this.buf, 0, pfn, this.batchMarks);
    writeAll(this.open(), this.buf, DIRTY_LOG_RECORD_BYTES, this.path);
  }

  /**
   * Appends the records of a batch of page writes in one write() (call it before the first of them;
   * docs/dirty-log.md §3: write the batch's pages before the next batch is logged).
   * @throws RwanError `RWAN_ERR_INVALID_VALUE` for a pfn outside [0, 2⁵³) (nothing is written),
   *   `RWAN_ERR_IO`
   */
  logMany(pfns: ArrayLike<number>): void {
    const fd = this.open();
    const bytes = pfns.length * DIRTY_LOG_RECORD_BYTES;
    if (bytes === 0) return;
    if (this.buf.length < bytes) this.buf = Buffer.alloc(Math.max(bytes, 2 * this.buf.length));
    for (let i = 0; i < pfns.length; i++) {
      const pfn = pfns[i] as number;
      checkPfn(pfn);
      putRecord(this.buf, i * DIRTY_LOG_RECORD_BYTES, pfn, i === 0 && this.batchMarks);
    }
    writeAll(fd, this.buf, bytes, this.path);
  }

  /** Closes the file (idempotent). */
  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    closeSync(fd);
  }

  private open(): number {
    if (this.fd === undefined) {
      throw new RwanError('RWAN_ERR_INVALID_VALUE', `dirty log ${this.path}: the writer is closed`);
    }
    return this.fd;
  }
}

function ioError(message: string, path: string, cause: unknown): RwanError {
  return new RwanError('RWAN_ERR_IO', `${message}: ${(cause as Error).message ?? String(cause)}`, {
    cause,
    details: { path },
  });
}

/** write() until all of `buf[0 .. n)` is written (O_APPEND: each piece lands at the end). */
function writeAll(fd: number, buf: Buffer, n: number, path: string): void {
  try {
    for (let at = 0; at < n; ) at += writeSync(fd, buf, at, n - at);
  } catch (err) {
    throw ioError(`dirty log: cannot append to ${path}`, path, err);
  }
}

/**
 * The capture side of a dirty log: which pages were announced since the last {@link read}.
 * Not safe for concurrent calls (one capture at a time).
 */
export class DirtyLogReader {
  /** Offset of the first record not yet returned by {@link read}. */
  private at = DIRTY_LOG_HEADER_BYTES;
  private readonly block = new ArrayBuffer(READ_RECORDS * DIRTY_LOG_RECORD_BYTES);
  private readonly blockBytes = Buffer.from(this.block);
  private readonly words = new Uint32Array(this.block);
  /** Pfns below BITMAP_PFNS seen by the read in progress, one bit each (all clear between reads). */
  private seen = new Uint32Array(1024);
  /** Pfns of BITMAP_PFNS and above collected by a read, compacted (sorted, deduplicated) when full. */
  private acc = new Float64Array(1024);
  private total = 0;
  private closed = false;
  private batch: Float64Array | undefined;

  private constructor(
    private readonly fh: FileHandle,
    /** The log file. */
    readonly path: string,
    /** Bytes per page (the header's, checked against the one given to {@link DirtyLogReader.open}). */
    readonly pageSize: number,
    /** The producer marks the first record of each batch (header flag 1). */
    readonly batchMarks: boolean,
  ) {}

  /**
   * Opens an existing log (read and write: {@link reset} truncates it) and checks its header. Records
   * already in the log are returned by the first {@link read}.
   * @throws RwanError `RWAN_ERR_INVALID_VALUE` for a bad page size; `RWAN_ERR_SOURCE` when the file
   *   is missing, cannot be opened, or its header is short, not a dirty log, of another version, has
   *   an unknown flag set or another page size
   */
  static async open(path: string, pageSize: number): Promise<DirtyLogReader> {
    checkPageSize(pageSize);
    let fh: FileHandle;
    try {
      fh = await open(path, 'r+');
    } catch (err) {
      throw new RwanError(
        'RWAN_ERR_SOURCE',
        `dirty log ${path} cannot be opened: ${(err as Error).message}`,
        {
          cause: err,
          details: { path },
        },
      );
    }
    try {
      const h = Buffer.alloc(DIRTY_LOG_HEADER_BYTES);
      const { bytesRead } = await fh.read(h, 0, h.length, 0);
      const bad = (what: string, details: Record<string, unknown> = {}): never => {
        throw new RwanError('RWAN_ERR_SOURCE', `dirty log ${path}: ${what}`, {
          details: { path, ...details },
        });
      };
      if (bytesRead < DIRTY_LOG_HEADER_BYTES) bad('shorter than its 16-byte header', { bytes: bytesRead });
      if (!h.subarray(0, 8).equals(DIRTY_LOG_MAGIC)) bad('not a dirty log (bad magic)');
      const version = h.readUInt16LE(8);
      if (version !== DIRTY_LOG_VERSION) bad(`version ${version} is not supported`, { version });
      const flags = h.readUInt16LE(10);
      if ((flags & ~DIRTY_LOG_FLAG_BATCH_MARKS) !== 0) bad(`reserved flags ${flags} are set`, { flags });
      const logPageSize = h.readUInt32LE(12);
      if (logPageSize !== pageSize) {
        bad(`page size ${logPageSize} differs from the image's ${pageSize}`, { logPageSize, pageSize });
      }
      return new DirtyLogReader(fh, path, pageSize, (flags & DIRTY_LOG_FLAG_BATCH_MARKS) !== 0);
    } catch (err) {
      await fh.close();
      if (err instanceof RwanError) throw err;
      throw ioError(`dirty log: cannot read ${path}`, path, err);
    }
  }

  /** Records returned by {@link read} since the log was opened (duplicates included). */
  get recordsRead(): number {
    return this.total;
  }

  /**
   * After a {@link read}, with batch marks: the pfns (ascending, distinct) of the last batch among the
   * records it returned — the only page writes that may still be pending when the producer was stopped
   * for the read. Undefined without batch marks, when the read returned nothing, or when no batch
   * starts among its records (the batch began before the previous read).
   */
  get lastBatch(): Float64Array | undefined {
    return this.batch;
  }

  /**
   * The pfns of the whole records appended since the last call (or since open), ascending and
   * distinct. A partial record at the end is left for the next call.
   * @returns a new array (an empty one when nothing was appended)
   * @throws RwanError `RWAN_ERR_SOURCE` when a record is malformed (a hole left by a producer without
   *   O_APPEND, reserved bits set) or the log is shorter than what was already read (someone else
   *   truncated it); `RWAN_ERR_IO`
   */
  async read(): Promise<Float64Array> {
    const size = await this.size();
    if (size < this.at) {
      throw new RwanError(
        'RWAN_ERR_SOURCE',
        `dirty log ${this.path} shrank below what was read (${size} < ${this.at} bytes): truncated by another process`,
        { details: { path: this.path, size, read: this.at } },
      );
    }
    const end = this.at + (size - this.at - ((size - this.at) % DIRTY_LOG_RECORD_BYTES));
    const reserved = this.batchMarks ? RESERVED : RESERVED | BATCH_START;
    let lastStart = -1; // byte offset of the last batch's first record
    this.batch = undefined;
    let n = 0; // in acc
    let distinct = 0; // bits set in seen
    let lo = this.seen.length; // the words of seen that may have bits set: [lo, hi]
    let hi = -1;
    try {
      for (let at = this.at; at < end; ) {
        const bytes = Math.min(this.blockBytes.length, end - at);
        this.readFully(this.blockBytes, bytes, at);
        const words = this.words;
        for (let r = 0; r < bytes / DIRTY_LOG_RECORD_BYTES; r++) {
          const low = words[2 * r] as number;
          const high = words[2 * r + 1] as number;
          if ((high & PRESENT) === 0 || (high & reserved) !== 0) {
            const offset = at + r * DIRTY_LOG_RECORD_BYTES;
            throw new RwanError(
              'RWAN_ERR_SOURCE',
              `dirty log ${this.path}: malformed record at byte ${offset}` +
                ((high & PRESENT) === 0 ? ' (a hole: does the producer append with O_APPEND?)' : ''),
              { details: { path: this.path, offset, hi: high, lo: low } },
            );
          }
          if ((high & BATCH_START) !== 0) lastStart = at + r * DIRTY_LOG_RECORD_BYTES;
          const pfnHi = high & PFN_HI;
          if (pfnHi === 0 && low < BITMAP_PFNS) {
            const w = low >>> 5;
            const bit = 1 << (low & 31);
            if (w >= this.seen.length) this.growSeen(w);
            const seen = this.seen;
            if (((seen[w] as number) & bit) !== 0) continue;
            seen[w] = (seen[w] as number) | bit;
            distinct++;
            if (w < lo) lo = w;
            if (w > hi) hi = w;
            continue;
          }
          if (n === this.acc.length) {
            n = sortUnique(this.acc, n);
            if (2 * n > this.acc.length) {
              const grown = new Float64Array(2 * this.acc.length);
              grown.set(this.acc.subarray(0, n));
              this.acc = grown;
            }
          }
          this.acc[n++] = pfnHi * 0x1_0000_0000 + low;
        }
        at += bytes;
      }
    } catch (err) {
      this.seen.fill(0); // the next read starts from a clear bitmap
      throw err;
    }
    // the bitmap's pfns in order (every one below those of acc), clearing it for the next read
    const large = sortUnique(this.acc, n);
    const out = new Float64Array(distinct + large);
    const seen = this.seen;
    let k = 0;
    for (let w = lo; w <= hi; w++) {
      let bits = seen[w] as number;
      if (bits === 0) continue;
      seen[w] = 0;
      while (bits !== 0) {
        const b = 31 - Math.clz32(bits & -bits);
        out[k++] = w * 32 + b;
        bits &= bits - 1;
      }
    }
    out.set(this.acc.subarray(0, large), k);
    if (lastStart >= 0) this.batch = this.pfnsBetween(lastStart, end);
    this.total += (end - this.at) / DIRTY_LOG_RECORD_BYTES;
    this.at = end;
    return out;
  }

  /** The pfns (ascending, distinct) of the records in bytes [from, to) of the log, already checked. */
  private pfnsBetween(from: number, to: number): Float64Array {
    const out = new Float64Array((to - from) / DIRTY_LOG_RECORD_BYTES);
    let n = 0;
    for (let at = from; at < to; ) {
      const bytes = Math.min(this.blockBytes.length, to - at);
      this.readFully(this.blockBytes, bytes, at);
      for (let r = 0; r < bytes / DIRTY_LOG_RECORD_BYTES; r++) {
        out[n++] =
          ((this.words[2 * r + 1] as number) & PFN_HI) * 0x1_0000_0000 + (this.words[2 * r] as number);
      }
      at += bytes;
    }
    return out.slice(0, sortUnique(out, n));
  }

  /** Grows the bitmap to hold word `w` (below BITMAP_PFNS / 32 words). */
  private growSeen(w: number): void {
    const grown = new Uint32Array(Math.min(BITMAP_PFNS / 32, Math.max(2 * this.seen.length, w + 1)));
    grown.set(this.seen);
    this.seen = grown;
  }

  /**
   * Drops the records already returned by {@link read}: truncates the log back to its header. Bytes
   * appended since the last read (normally none, or a partial record) are kept, moved to just after
   * the header. Only safe while the producer is paused (its appends would race with the truncation);
   * the producer must append with O_APPEND so that its next record lands at the new end.
   * @throws RwanError `RWAN_ERR_SOURCE` when the log shrank below what was read; `RWAN_ERR_IO`
   */
  async reset(): Promise<void> {
    const size = await this.size();
    if (size < this.at) {
      throw new RwanError('RWAN_ERR_SOURCE', `dirty log ${this.path} shrank below what was read`, {
        details: { path: this.path, size, read: this.at },
      });
    }
    try {
      const rest = size - this.at;
      if (rest > 0 && this.at > DIRTY_LOG_HEADER_BYTES) {
        const keep = Buffer.allocUnsafe(rest);
        this.readFully(keep, rest, this.at);
        await this.fh.write(keep, 0, rest, DIRTY_LOG_HEADER_BYTES);
      }
      await this.fh.truncate(DIRTY_LOG_HEADER_BYTES + rest);
    } catch (err) {
      if (err instanceof RwanError) throw err;
      throw ioError(`dirty log: cannot truncate ${this.path}`, this.path, err);
    }
    this.at = DIRTY_LOG_HEADER_BYTES;
  }

  /** Closes the file (idempotent). The log itself stays. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }

  /**
   * The log's size. Synchronous, as are the reads below: a system call on a file the producer only
   * appends to (stopped during a capture) costs less than a round trip through the thread pool.
   */
  private async size(): Promise<number> {
    if (this.closed) throw new RwanError('RWAN_ERR_SOURCE', `dirty log ${this.path}: the reader is closed`);
    try {
      return fstatSync(this.fh.fd).size;
    } catch (err) {
      throw ioError(`dirty log: cannot stat ${this.path}`, this.path, err);
    }
  }

  private readFully(buf: Buffer, n: number, position: number): void {
    for (let got = 0; got < n; ) {
      let bytesRead: number;
      try {
        bytesRead = readSync(this.fh.fd, buf, got, n - got, position + got);
      } catch (err) {
        throw ioError(`dirty log: cannot read ${this.path}`, this.path, err);
      }
      if (bytesRead === 0) {
        throw new RwanError('RWAN_ERR_SOURCE', `dirty log ${this.path} shrank while being read`, {
          details: { path: this.path, position: position + got },
        });
      }
      got += bytesRead;
    }
  }
}
