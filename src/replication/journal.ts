/**
 * The replica store's journal (docs/replica-store.md §3): an append-only file of committed epochs,
 * one record per epoch. This module encodes records and reads them back, verifying each one; the
 * store (store.ts) decides what to do with them.
 *
 *   record  = header (segment* | payload) trailer           (every part a multiple of 8 bytes)
 *   header  = "RWJH" version:u16 flags:u16 pageSize:u32 0:u32 seq:u64 epoch:u64 imageBytes:u64
 *             sessionId[16] 0:u64                                                        (64 B)
 *   segment = "RWJS" pages:u32 dataPages:u32 0:u32  pfn:u64[pages]  kind:u8[pages]  pad to 8
 *             page[dataPages]                                 (the non-zero pages, in add order)
 *   payload = "RWJP" 0:u32 length:u64  bytes[length]  pad to 8       (flags bit 1: the epoch as
 *             its producer encoded it, replayed by decoding it; see store.ts)
 *   trailer = "RWJT" segments:u32 pageCount:u64 recordBytes:u64 seq:u64 sha256[32]       (64 B)
 *
 *   sha256 covers the record from its first header byte to the trailer's `seq` field included,
 *   each data page standing in it for its 8-byte page hash (docs/codec.md §3: hi, lo as u32 LE).
 *   The page hash runs natively at several GB/s where SHA-256 over every byte cost the receiver a
 *   third of its time; it still tells a torn or flipped page from the one written (a 64-bit hash of
 *   each page, bound by the SHA-256 to its place in the record).
 *
 * Segments exist so that an epoch larger than the store's staging memory can be written in pieces
 * before it commits: each spill appends one segment, and the record only counts once its trailer is
 * written. Reading is strict and bounded: a record is read in blocks (its page data is hashed, not
 * kept), and what it returns is the per-page metadata plus where each segment's page data lies.
 */
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { hot } from '../codec/hot-loops.js';
import { isRwanError, RwanError } from '../errors.js';

/** Bytes of a record header. */
export const HEADER_BYTES = 64;
/** Bytes of a segment head (before its pfn list). */
export const SEGMENT_HEAD_BYTES = 16;
/** Bytes of a record trailer. */
export const TRAILER_BYTES = 64;
/** Record format version this build writes and reads. */
export const JOURNAL_VERSION = 1;
/** Header flag: the epoch is a full copy of the image. */
export const FLAG_FULL = 1;
/** Header flag: the record holds the epoch's encoded payload instead of its pages. */
export const FLAG_PAYLOAD = 2;
/** Kind byte of a page that is all zeros (no data in the segment). */
export const KIND_ZERO = 0;
/** Kind byte of a page whose bytes follow in the segment. */
export const KIND_DATA = 1;
/** Pages a segment holds at most (its pfn list is then 8 MiB). A writer starts a new segment past it. */
export const MAX_SEGMENT_PAGES = 2 ** 20;
/** Bytes of a raw session id. */
export const SESSION_BYTES = 16;

const magic = (s: string): number => Buffer.from(s, 'latin1').readUInt32LE(0);
/** `RWJH` as read by `readUInt32LE`. */
export const HEADER_MAGIC = magic('RWJH');
/** `RWJS` as read by `readUInt32LE`. */
export const SEGMENT_MAGIC = magic('RWJS');
/** `RWJP` as read by `readUInt32LE`. */
export const PAYLOAD_MAGIC = magic('RWJP');
/** Bytes of a payload head. */
export const PAYLOAD_HEAD_BYTES = 16;
/** `RWJT` as read by `readUInt32LE`. */
export const TRAILER_MAGIC = magic('RWJT');

const TWO_32 = 0x1_0000_0000;

/** Write a safe integer as an unsigned 64-bit little-endian value. */
export function putU64(b: Buffer, off: number, v: number): void {
  b.writeUInt32LE(v % TWO_32, off);
  b.writeUInt32LE(Math.floor(v / TWO_32), off + 4);
}

/** Read an unsigned 64-bit little-endian value; −1 when it is not a safe integer. */
export function getU64(b: Buffer, off: number): number {
  const hi = b.readUInt32LE(off + 4);
  if (hi >= 0x20_0000) return -1;
  return hi * TWO_32 + b.readUInt32LE(off);
}

/** `n` rounded up to a multiple of 8. */
export function pad8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

/** True when `pageSize` is a power of two from 512 to 65536. */
export function isPageSize(pageSize: number): boolean {
  return (
    Number.isInteger(pageSize) && pageSize >= 512 && pageSize <= 65536 && (pageSize & (pageSize - 1)) === 0
  );
}

/** The fields of a record header. */
export interface RecordHeader {
  /** Journal sequence number: 1 for the store's first record, +1 per record, never reused. */
  seq: number;
  epoch: number;
  full: boolean;
  /** The record holds an encoded payload ({@link FLAG_PAYLOAD}) rather than pages. */
  payload: boolean;
  pageSize: number;
  imageBytes: number;
  /** 32 lowercase hex characters. */
  sessionId: string;
}

/** Where one segment of a record lies. */
export interface SegmentInfo {
  /** Index of the segment's first page among the record's pages. */
  first: number;
  /** Pages in the segment. */
  pages: number;
  /** Non-zero pages in the segment (their bytes follow its kind list). */
  dataPages: number;
  /** File offset of the segment's first data page. */
  dataOffset: number;
}

/** A complete, verified record. */
export interface JournalRecord extends RecordHeader {
  /** File offset of the header. */
  start: number;
  /** File offset just past the trailer. */
  end: number;
  /** Where a payload record's payload lies (file offset, bytes); null for a page record. */
  payloadAt: { offset: number; length: number } | null;
  /** Pfn of every page, in add order (none in a payload record). */
  pfns: Float64Array;
  /** {@link KIND_ZERO} or {@link KIND_DATA} per page. */
  kinds: Uint8Array;
  segments: SegmentInfo[];
}

/** What {@link readRecord} found at an offset. */
export type ReadResult =
  | { ok: true; record: JournalRecord }
  | {
      ok: false;
      /** Why the bytes are not a complete record. */
      reason: string;
      /** File offset just past a trailer that was found but did not verify; undefined when the
       * record's structure ends early (torn, or bytes that are not a record). */
      trailerEnd?: number;
    };

/** Encode a record header. */
export function encodeHeader(h: RecordHeader): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  b.writeUInt32LE(HEADER_MAGIC, 0);
  b.writeUInt16LE(JOURNAL_VERSION, 4);
  b.writeUInt16LE((h.full ? FLAG_FULL : 0) | (h.payload ? FLAG_PAYLOAD : 0), 6);
  b.writeUInt32LE(h.pageSize, 8);
  putU64(b, 16, h.seq);
  putU64(b, 24, h.epoch);
  putU64(b, 32, h.imageBytes);
  b.write(h.sessionId, 40, SESSION_BYTES, 'hex');
  return b;
}

/**
 * Encode a segment's head, pfn list and kind list (padded) for pages `from..to` of an epoch: one
 * buffer, so a segment is written as this block plus one slice of staged page data.
 */
export function encodeSegmentIndex(
  pfns: Float64Array,
  kinds: Uint8Array,
  from: number,
  to: number,
  dataPages: number,
): Buffer {
  const n = to - from;
  const b = Buffer.alloc(SEGMENT_HEAD_BYTES + 8 * n + pad8(n));
  b.writeUInt32LE(SEGMENT_MAGIC, 0);
  b.writeUInt32LE(n, 4);
  b.writeUInt32LE(dataPages, 8);
  let at = SEGMENT_HEAD_BYTES;
  for (let i = from; i < to; i++, at += 8) putU64(b, at, pfns[i] as number);
  b.set(kinds.subarray(from, to), at);
  return b;
}

/** Encode a payload head for `length` bytes of payload (followed by pad8(length) − length zeros). */
export function encodePayloadHead(length: number): Buffer {
  const b = Buffer.alloc(PAYLOAD_HEAD_BYTES);
  b.writeUInt32LE(PAYLOAD_MAGIC, 0);
  putU64(b, 8, length);
  return b;
}

/** Encode a trailer, feeding its hashed part to `hash` and appending the digest. */
export function encodeTrailer(
  segments: number,
  pageCount: number,
  recordBytes: number,
  seq: number,
  hash: RecordHash,
): Buffer {
  const b = Buffer.alloc(TRAILER_BYTES);
  b.writeUInt32LE(TRAILER_MAGIC, 0);
  b.writeUInt32LE(segments, 4);
  putU64(b, 8, pageCount);
  putU64(b, 16, recordBytes);
  putU64(b, 24, seq);
  hash.update(b.subarray(0, 32));
  hash.digest().copy(b, 32);
  return b;
}

const BIG_ENDIAN = endianness() === 'BE';

/**
 * A record's checksum as it is built: metadata bytes go in as they are, page data as one 8-byte
 * page hash per page (see the file comment).
 */
export class RecordHash {
  private readonly sha: Hash = createHash('sha256');
  private words = new Uint32Array(0);

  constructor(private readonly pageSize: number) {}

  /** Feed metadata bytes (header, segment index, trailer fields). */
  update(bytes: Uint8Array): this {
    this.sha.update(bytes);
    return this;
  }

  /** Feed whole pages of data (`data.length` a multiple of the page size). */
  pages(data: Uint8Array): this {
    const n = data.length / this.pageSize;
    if (!Number.isInteger(n)) throw new RangeError(`${data.length} bytes are not whole pages`);
    if (this.words.length < 2 * n) this.words = new Uint32Array(2 * n);
    const w = this.words.subarray(0, 2 * n);
    hot.hashPages(data, this.pageSize, w);
    const bytes = new Uint8Array(w.buffer, w.byteOffset, 8 * n);
    if (BIG_ENDIAN) Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).swap32();
    this.sha.update(bytes);
    return this;
  }

  /** The 32-byte digest (the hash cannot be fed afterwards). */
  digest(): Buffer {
    return this.sha.digest();
  }
}

/** Read exactly `length` bytes at `position` (fewer only at end of file); returns the count read. */
export async function readFully(
  fh: FileHandle,
  into: Uint8Array,
  length: number,
  position: number,
): Promise<number> {
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(into, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/**
 * Sequential reads of a file region through one block buffer: small fields come out of the block,
 * larger spans are hashed block by block, never held whole.
 */
export class BlockReader {
  private readonly block: Buffer;
  private blockStart = 0;
  private blockLen = 0;

  /**
   * @param fh the file
   * @param end bytes of the file that may be read
   * @param blockBytes size of the read buffer (a multiple of 8)
   */
  constructor(
    private readonly fh: FileHandle,
    readonly end: number,
    blockBytes: number,
  ) {
    this.block = Buffer.allocUnsafe(blockBytes);
  }

  /**
   * `n` bytes at `pos`: a view into the block valid until the next call (a fresh buffer when `n` is
   * larger than the block), or null when they lie past `end`.
   */
  async bytes(pos: number, n: number): Promise<Buffer | null> {
    if (pos + n > this.end) return null;
    if (pos >= this.blockStart && pos + n <= this.blockStart + this.blockLen) {
      return this.block.subarray(pos - this.blockStart, pos - this.blockStart + n);
    }
    if (n > this.block.length) {
      const big = Buffer.allocUnsafe(n);
      return (await readFully(this.fh, big, n, pos)) === n ? big : null;
    }
    const want = Math.min(this.block.length, this.end - pos);
    this.blockLen = await readFully(this.fh, this.block, want, pos);
    this.blockStart = pos;
    return this.blockLen >= n ? this.block.subarray(0, n) : null;
  }

  /**
   * Feed the `n` bytes at `pos` to `hash`, as whole pages of `pageSize` bytes or (`pageSize` 0) as
   * bytes; false when they lie past `end`. Page steps are whole pages (a block smaller than a page
   * reads each page whole).
   */
  async hashSpan(pos: number, n: number, pageSize: number, hash: RecordHash): Promise<boolean> {
    if (pos + n > this.end) return false;
    const stride =
      pageSize === 0
        ? this.block.length
        : Math.max(pageSize, this.block.length - (this.block.length % pageSize));
    for (let done = 0; done < n; ) {
      const step = Math.min(stride, n - done);
      const b = await this.bytes(pos + done, step);
      if (b === null) return false;
      if (pageSize === 0) hash.update(b);
      else hash.pages(b);
      done += step;
    }
    return true;
  }
}

/** Growable per-page metadata of one record (or one open epoch). */
export class PageList {
  /** Pfn per page (valid up to `count`). */
  pfns = new Float64Array(64);
  /** Kind byte per page (valid up to `count`). */
  kinds = new Uint8Array(64);
  /** Pages appended. */
  count = 0;

  /** Append one page. */
  push(pfn: number, kind: number): void {
    if (this.count === this.pfns.length) {
      const pfns = new Float64Array(this.pfns.length * 2);
      pfns.set(this.pfns);
      this.pfns = pfns;
      const kinds = new Uint8Array(this.kinds.length * 2);
      kinds.set(this.kinds);
      this.kinds = kinds;
    }
    this.pfns[this.count] = pfn;
    this.kinds[this.count] = kind;
    this.count++;
  }

  /** Exact-length copies of the metadata. */
  take(): { pfns: Float64Array; kinds: Uint8Array } {
    return { pfns: this.pfns.slice(0, this.count), kinds: this.kinds.slice(0, this.count) };
  }
}

const bad = (reason: string, trailerEnd?: number): ReadResult =>
  trailerEnd === undefined ? { ok: false, reason } : { ok: false, reason, trailerEnd };

/**
 * Read and verify the record that starts at `start`.
 *
 * Bytes that cannot be a complete record (past the end, a wrong magic, an impossible length) and a
 * trailer whose checksum does not match give `ok: false`: the caller decides whether that is a torn
 * tail. A record whose checksum matches but whose content the store could never have written (a
 * pfn past the image, a kind list that disagrees with the data count, another page size) is damage,
 * not a tear: that throws `RWAN_ERR_STORE`.
 */
export async function readRecord(reader: BlockReader, start: number, pageSize: number): Promise<ReadResult> {
  const where = { offset: start };
  const head = await reader.bytes(start, HEADER_BYTES);
  if (head === null) return bad('the file ends inside a record header');
  if (head.readUInt32LE(0) !== HEADER_MAGIC) return bad('no record header magic');
  const version = head.readUInt16LE(4);
  const flags = head.readUInt16LE(6);
  const hdrPageSize = head.readUInt32LE(8);
  const seq = getU64(head, 16);
  const epoch = getU64(head, 24);
  const imageBytes = getU64(head, 32);
  const sessionId = head.toString('hex', 40, 40 + SESSION_BYTES);
  if (
    version !== JOURNAL_VERSION ||
    (flags & ~(FLAG_FULL | FLAG_PAYLOAD)) !== 0 ||
    !isPageSize(hdrPageSize) ||
    head.readUInt32LE(12) !== 0 ||
    head.readUInt32LE(56) !== 0 ||
    head.readUInt32LE(60) !== 0 ||
    seq < 1 ||
    epoch < 0 ||
    imageBytes < 0
  ) {
    return bad('a record header field out of range');
  }
  const hash = new RecordHash(hdrPageSize);
  hash.update(head);
  const list = new PageList();
  const segments: SegmentInfo[] = [];
  let payloadAt: { offset: number; length: number } | null = null;
  let pos = start + HEADER_BYTES;
  for (;;) {
    const m = await reader.bytes(pos, 4);
    if (m === null) return bad('the file ends before the record trailer');
    const tag = m.readUInt32LE(0);
    if (tag === TRAILER_MAGIC) break;
    if (tag === PAYLOAD_MAGIC) {
      if ((flags & FLAG_PAYLOAD) === 0 || payloadAt !== null) return bad('a payload where none belongs');
      const ph = await reader.bytes(pos, PAYLOAD_HEAD_BYTES);
      if (ph === null) return bad('the file ends inside a payload head');
      const length = getU64(ph, 8);
      if (ph.readUInt32LE(4) !== 0 || length < 0) return bad('a payload head field out of range');
      const offset = pos + PAYLOAD_HEAD_BYTES;
      if (offset + pad8(length) + TRAILER_BYTES > reader.end) return bad('the file ends inside a payload');
      hash.update(ph);
      if (!(await reader.hashSpan(offset, pad8(length), 0, hash)))
        return bad('the file ends inside a payload');
      payloadAt = { offset, length };
      pos = offset + pad8(length);
      continue;
    }
    if (tag !== SEGMENT_MAGIC || (flags & FLAG_PAYLOAD) !== 0) return bad('neither a segment nor a trailer');
    const sh = await reader.bytes(pos, SEGMENT_HEAD_BYTES);
    if (sh === null) return bad('the file ends inside a segment head');
    const pages = sh.readUInt32LE(4);
    const dataPages = sh.readUInt32LE(8);
    if (pages < 1 || pages > MAX_SEGMENT_PAGES || dataPages > pages || sh.readUInt32LE(12) !== 0) {
      return bad('a segment head field out of range');
    }
    const indexBytes = 8 * pages + pad8(pages);
    const dataOffset = pos + SEGMENT_HEAD_BYTES + indexBytes;
    if (dataOffset + dataPages * hdrPageSize + TRAILER_BYTES > reader.end) {
      return bad('the file ends inside a segment');
    }
    hash.update(sh);
    const index = await reader.bytes(pos + SEGMENT_HEAD_BYTES, indexBytes);
    if (index === null) return bad('the file ends inside a segment index');
    hash.update(index);
    const first = list.count;
    for (let i = 0; i < pages; i++) list.push(getU64(index, 8 * i), index[8 * pages + i] as number);
    if (!(await reader.hashSpan(dataOffset, dataPages * hdrPageSize, hdrPageSize, hash))) {
      return bad('the file ends inside segment data');
    }
    segments.push({ first, pages, dataPages, dataOffset });
    pos = dataOffset + dataPages * hdrPageSize;
  }
  const tr = await reader.bytes(pos, TRAILER_BYTES);
  if (tr === null) return bad('the file ends inside the record trailer');
  const end = pos + TRAILER_BYTES;
  if (
    tr.readUInt32LE(4) !== segments.length ||
    getU64(tr, 8) !== list.count ||
    getU64(tr, 16) !== end - start ||
    getU64(tr, 24) !== seq
  ) {
    return bad('trailer fields do not match the record', end);
  }
  hash.update(tr.subarray(0, 32));
  if (!hash.digest().equals(tr.subarray(32, 64))) return bad('record checksum mismatch', end);

  const { pfns, kinds } = list.take();
  const damaged = (msg: string, details: Record<string, unknown> = {}): never => {
    throw new RwanError('RWAN_ERR_STORE', `journal record at byte ${start}: ${msg}`, {
      details: { ...where, seq, epoch, ...details },
    });
  };
  if (hdrPageSize !== pageSize) damaged('written with another page size', { pageSize: hdrPageSize });
  if ((flags & FLAG_PAYLOAD) !== 0 && payloadAt === null) damaged('a payload record without its payload');
  if (imageBytes % pageSize !== 0) damaged('image size is not a whole number of pages', { imageBytes });
  for (const s of segments) {
    let data = 0;
    for (let i = s.first; i < s.first + s.pages; i++) {
      const k = kinds[i] as number;
      const pfn = pfns[i] as number;
      if (k !== KIND_ZERO && k !== KIND_DATA) damaged('unknown page kind', { kind: k });
      if (pfn < 0 || pfn * pageSize >= imageBytes) damaged('pfn past the image', { pfn, imageBytes });
      data += k;
    }
    if (data !== s.dataPages) damaged('segment kind list disagrees with its data count');
  }
  return {
    ok: true,
    record: {
      seq,
      epoch,
      full: (flags & FLAG_FULL) !== 0,
      payload: payloadAt !== null,
      pageSize,
      imageBytes,
      sessionId,
      start,
      end,
      payloadAt,
      pfns,
      kinds,
      segments,
    },
  };
}

/**
 * Whether a complete, verified record with a sequence number above `afterSeq` starts anywhere past
 * `from` (records start at multiples of 8). Used when the record at `from` does not verify: a valid
 * record after it means the damage is in the middle of the journal, not a torn tail. Reads the rest
 * of the file in blocks, looking for trailer magics and checking each candidate's record.
 */
export async function findRecordAfter(
  fh: FileHandle,
  end: number,
  from: number,
  afterSeq: number,
  pageSize: number,
  blockBytes: number,
): Promise<number | null> {
  const block = Buffer.allocUnsafe(blockBytes);
  const probe = new BlockReader(fh, end, blockBytes);
  for (let at = from + 8; at + TRAILER_BYTES <= end; ) {
    const got = await readFully(fh, block, Math.min(blockBytes, end - at), at);
    for (let o = 0; o + 4 <= got; o += 8) {
      if (block.readUInt32LE(o) !== TRAILER_MAGIC) continue;
      const t = at + o;
      if (t + TRAILER_BYTES > end) continue;
      const tr = await probe.bytes(t, TRAILER_BYTES);
      if (tr === null) continue;
      const recordBytes = getU64(tr, 16);
      const seq = getU64(tr, 24);
      const start = t + TRAILER_BYTES - recordBytes;
      if (recordBytes < HEADER_BYTES + TRAILER_BYTES || start <= from || start % 8 !== 0 || seq <= afterSeq) {
        continue;
      }
      try {
        const r = await readRecord(new BlockReader(fh, end, blockBytes), start, pageSize);
        if (r.ok && r.record.end === t + TRAILER_BYTES) return start;
      } catch (err) {
        // a verified record with impossible content still proves that data follows
        if (isRwanError(err, 'RWAN_ERR_STORE')) return start;
        throw err;
      }
    }
    if (got === 0) break;
    at += got;
  }
  return null;
}
