/**
 * An incremental reader of the stream xl writes (format.ts): bytes in, in chunks of any size, items
 * out as soon as they are whole. Two nested state machines, libxl around libxc:
 *
 *   xl-header ─► libxl-header ─► libxl ──LIBXC_CONTEXT──► libxc-header ─► libxc
 *   libxc ──CHECKPOINT──► libxl (emulator records) ──CHECKPOINT_END──► libxc   (checkpoint + 1)
 *   libxc ──END──► libxl ──END──► done: any bytes after it (xl's closing messages) are a `trailer`
 *
 * Checks, each a typed error with the stream offset (format.ts xenError):
 *   RWAN_ERR_XEN_HEADER     a bad xl magic or byte order, a stream that is not v2 (legacy xl format),
 *                           a bad libxl ident or version, a bad libxc marker, id or version
 *   RWAN_ERR_XEN_RECORD     a record over 128 MiB, non-zero padding, an unknown mandatory type, a
 *                           non-empty body where the spec wants none, LIBXC_CONTEXT twice,
 *                           CHECKPOINT_END without a CHECKPOINT before it
 *   RWAN_ERR_XEN_PAGE_DATA  a PAGE_DATA body that does not match its pfns (page-data.ts)
 *   RWAN_ERR_XEN_TRUNCATED  from end(), when the bytes stop inside an item
 *
 * Records travel as their bodies, untouched; with the headers they are all the writer (writer.ts)
 * needs to give back the same bytes. Pure: no I/O.
 */
import {
  type Endian,
  LIBXC_DOMAIN_HEADER_BYTES,
  LIBXC_ID,
  LIBXC_IMAGE_HEADER_BYTES,
  LIBXC_RECORD_MAX,
  LIBXL_HEADER_BYTES,
  LIBXL_IDENT,
  LIBXL_RECORD_MAX,
  LIBXL_VERSION,
  LibxcRecord,
  LibxlRecord,
  OPTIONAL_RECORD,
  paddingOf,
  REC_LENGTH_MAX,
  RECORD_HEADER_BYTES,
  recordName,
  type XenItem,
  type XenRecord,
  XL_FLAG_STREAM_V2,
  XL_HEADER_BYTES,
  XL_MAGIC,
  xenError,
} from './format.js';
import { parsePageData } from './page-data.js';

/** Bytes received and not yet consumed, in the chunks they came in. */
class ByteQueue {
  private chunks: Buffer[] = [];
  length = 0;

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.length += b.length;
  }

  /** The first `n` bytes (n ≤ length), contiguous; consumed with `take`. */
  peek(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0] as Buffer;
    if (first.length >= n) return first.subarray(0, n);
    const whole = Buffer.concat(this.chunks, this.length);
    this.chunks = [whole];
    return whole.subarray(0, n);
  }

  take(n: number): Buffer {
    const out = this.peek(n);
    let left = n;
    while (left > 0) {
      const c = this.chunks[0] as Buffer;
      if (c.length <= left) {
        this.chunks.shift();
        left -= c.length;
      } else {
        this.chunks[0] = c.subarray(left);
        left = 0;
      }
    }
    this.length -= n;
    return out;
  }

  takeAll(): Buffer {
    return this.take(this.length);
  }
}

type State = 'xl-header' | 'libxl-header' | 'libxl' | 'libxc-header' | 'libxc' | 'done';

/** Where a stream stopped, when its bytes ended (end()). */
export interface StreamEnd {
  /** `finished`: libxl END was read; `checkpoint`: right after a CHECKPOINT_END (a Remus stream
   *  whose primary stopped); `partial`: inside a checkpoint or before the first one ended. */
  at: 'finished' | 'checkpoint' | 'partial';
  /** Checkpoints completed (CHECKPOINT_END read). */
  checkpoints: number;
}

export interface ReaderOptions {
  /** Page size for PAGE_DATA checks, from the domain header's page_shift when absent. */
  pageSize?: number;
}

export class XenStreamReader {
  private readonly q = new ByteQueue();
  private state: State = 'xl-header';
  /** Offset in the stream of the queue's first byte. */
  private offset = 0;
  private libxlEndian: Endian = 'le';
  private libxcEndian: Endian = 'le';
  private pageSize: number;
  private seenLibxc = false;
  /** Why the libxl state was entered from libxc: after a CHECKPOINT, or after END. */
  private libxlAfter: 'start' | 'checkpoint' | 'end' = 'start';
  private checkpoint = 0;
  /** A libxc record was read since the last CHECKPOINT_END (or the start). */
  private inCheckpoint = true;

  constructor(private readonly o: ReaderOptions = {}) {
    this.pageSize = o.pageSize ?? 4096;
  }

  /** Bytes consumed so far (the offset of the next item). */
  get position(): number {
    return this.offset;
  }

  /** Checkpoints completed so far. */
  get checkpoints(): number {
    return this.checkpoint;
  }

  /**
   * Bytes still needed to complete the next item (at least 1): exact for headers and records (a
   * record's header first, then its body and padding), a fixed read size after libxl END.
   */
  need(): number {
    const have = this.q.length;
    switch (this.state) {
      case 'xl-header': {
        if (have < XL_HEADER_BYTES) return XL_HEADER_BYTES - have;
        const h = this.q.peek(XL_HEADER_BYTES);
        const big = h.readUInt32LE(32) === 0x04030201;
        const optional = big ? h.readUInt32BE(44) : h.readUInt32LE(44);
        return Math.max(1, XL_HEADER_BYTES + Math.min(optional, REC_LENGTH_MAX) - have);
      }
      case 'libxl-header':
        return Math.max(1, LIBXL_HEADER_BYTES - have);
      case 'libxc-header':
        return Math.max(1, LIBXC_IMAGE_HEADER_BYTES + LIBXC_DOMAIN_HEADER_BYTES - have);
      case 'libxl':
      case 'libxc': {
        const r = this.nextRecord();
        if (r === undefined) return RECORD_HEADER_BYTES - have;
        return Math.max(
          1,
          RECORD_HEADER_BYTES + Math.min(r.length, REC_LENGTH_MAX) + paddingOf(r.length) - have,
        );
      }
      case 'done':
        return 65_536;
    }
  }

  /**
   * The record being read, once its header is here: its layer, type and body length, and whether it
   * is in a checkpoint's libxl tail (after libxc CHECKPOINT: the guest runs again, xl writes the
   * emulator records and CHECKPOINT_END).
   */
  nextRecord(): { layer: 'libxl' | 'libxc'; type: number; length: number; inTail: boolean } | undefined {
    if ((this.state !== 'libxl' && this.state !== 'libxc') || this.q.length < RECORD_HEADER_BYTES)
      return undefined;
    const endian = this.state === 'libxl' ? this.libxlEndian : this.libxcEndian;
    const h = this.q.peek(RECORD_HEADER_BYTES);
    return {
      layer: this.state,
      type: endian === 'le' ? h.readUInt32LE(0) : h.readUInt32BE(0),
      length: endian === 'le' ? h.readUInt32LE(4) : h.readUInt32BE(4),
      inTail: this.state === 'libxl' && this.libxlAfter === 'checkpoint',
    };
  }

  /** Feed bytes; returns the items they complete, in order. */
  push(chunk: Buffer): XenItem[] {
    this.q.push(chunk);
    const items: XenItem[] = [];
    for (;;) {
      const item = this.next();
      if (item === undefined) return items;
      items.push(item);
    }
  }

  /**
   * The bytes have ended: where the stream stopped.
   * @throws RwanError RWAN_ERR_XEN_TRUNCATED when bytes of an unfinished item are left
   */
  end(): StreamEnd {
    if (this.q.length > 0) {
      throw xenError(
        'RWAN_ERR_XEN_TRUNCATED',
        `the stream ends inside ${this.state === 'libxl' || this.state === 'libxc' ? 'a record' : `the ${this.state}`} (${this.q.length} bytes left)`,
        this.offset,
        { state: this.state, bytes: this.q.length },
      );
    }
    const at =
      this.state === 'done'
        ? 'finished'
        : this.state === 'libxc' && !this.inCheckpoint
          ? 'checkpoint'
          : 'partial';
    return { at, checkpoints: this.checkpoint };
  }

  private take(n: number): Buffer {
    const b = this.q.take(n);
    this.offset += n;
    return b;
  }

  private next(): XenItem | undefined {
    switch (this.state) {
      case 'xl-header':
        return this.xlHeader();
      case 'libxl-header':
        return this.libxlHeader();
      case 'libxc-header':
        return this.libxcHeader();
      case 'libxl':
      case 'libxc':
        return this.record(this.state);
      case 'done':
        return this.q.length > 0 ? { kind: 'trailer', bytes: this.takeAll() } : undefined;
    }
  }

  private takeAll(): Buffer {
    const n = this.q.length;
    this.offset += n;
    return this.q.takeAll();
  }

  private xlHeader(): XenItem | undefined {
    if (this.q.length < XL_HEADER_BYTES) return undefined;
    const h = this.q.peek(XL_HEADER_BYTES);
    if (!h.subarray(0, 32).equals(XL_MAGIC))
      throw xenError('RWAN_ERR_XEN_HEADER', 'not an xl save stream: bad magic', this.offset);
    const order = h.readUInt32LE(32);
    const endian: Endian | undefined = order === 0x01020304 ? 'le' : order === 0x04030201 ? 'be' : undefined;
    if (endian === undefined) {
      throw xenError('RWAN_ERR_XEN_HEADER', `bad xl byte order 0x${order.toString(16)}`, this.offset + 32);
    }
    const u32 = (at: number) => (endian === 'le' ? h.readUInt32LE(at) : h.readUInt32BE(at));
    const mandatoryFlags = u32(36);
    if (!(mandatoryFlags & XL_FLAG_STREAM_V2)) {
      throw xenError(
        'RWAN_ERR_XEN_HEADER',
        'a legacy (pre-v2) xl stream: only migration stream v2 is supported',
        this.offset + 36,
        { mandatoryFlags },
      );
    }
    const optionalLength = u32(44);
    if (optionalLength > REC_LENGTH_MAX) {
      throw xenError('RWAN_ERR_XEN_HEADER', `optional data of ${optionalLength} bytes`, this.offset + 44);
    }
    if (this.q.length < XL_HEADER_BYTES + optionalLength) return undefined;
    this.take(XL_HEADER_BYTES);
    const optionalData = Buffer.from(this.take(optionalLength));
    this.state = 'libxl-header';
    return { kind: 'xl-header', endian, mandatoryFlags, optionalFlags: u32(40), optionalData };
  }

  private libxlHeader(): XenItem | undefined {
    if (this.q.length < LIBXL_HEADER_BYTES) return undefined;
    const h = this.q.peek(LIBXL_HEADER_BYTES);
    if (!h.subarray(0, 8).equals(LIBXL_IDENT))
      throw xenError('RWAN_ERR_XEN_HEADER', 'bad libxl stream ident (not "LibxlFmt")', this.offset);
    const version = h.readUInt32BE(8);
    if (version !== LIBXL_VERSION) {
      throw xenError('RWAN_ERR_XEN_HEADER', `libxl stream version ${version}, not 2`, this.offset + 8, {
        version,
      });
    }
    const options = h.readUInt32BE(12);
    this.take(LIBXL_HEADER_BYTES);
    this.libxlEndian = options & 1 ? 'be' : 'le';
    this.state = 'libxl';
    return { kind: 'libxl-header', version, options };
  }

  private libxcHeader(): XenItem | undefined {
    const n = LIBXC_IMAGE_HEADER_BYTES + LIBXC_DOMAIN_HEADER_BYTES;
    if (this.q.length < n) return undefined;
    const h = this.q.peek(n);
    if (h.readUInt32BE(0) !== 0xffffffff || h.readUInt32BE(4) !== 0xffffffff) {
      throw xenError('RWAN_ERR_XEN_HEADER', 'bad libxc marker (a legacy libxc image?)', this.offset);
    }
    if (h.readUInt32BE(8) !== LIBXC_ID)
      throw xenError('RWAN_ERR_XEN_HEADER', 'bad libxc id (not "XENF")', this.offset + 8);
    const version = h.readUInt32BE(12);
    if (version !== 2 && version !== 3) {
      throw xenError('RWAN_ERR_XEN_HEADER', `libxc image version ${version}, not 2 or 3`, this.offset + 12, {
        version,
      });
    }
    const options = h.readUInt16BE(16);
    if (h.readUInt16BE(18) !== 0 || h.readUInt32BE(20) !== 0)
      throw xenError('RWAN_ERR_XEN_HEADER', 'libxc image header: reserved bytes not 0', this.offset + 18);
    const endian: Endian = options & 1 ? 'be' : 'le';
    const d = LIBXC_IMAGE_HEADER_BYTES;
    const u32 = (at: number) => (endian === 'le' ? h.readUInt32LE(d + at) : h.readUInt32BE(d + at));
    const u16 = (at: number) => (endian === 'le' ? h.readUInt16LE(d + at) : h.readUInt16BE(d + at));
    const pageShift = u16(4);
    if (pageShift < 9 || pageShift > 16 || u16(6) !== 0) {
      throw xenError(
        'RWAN_ERR_XEN_HEADER',
        `libxc domain header: page_shift ${pageShift}, reserved ${u16(6)}`,
        this.offset + d + 4,
      );
    }
    this.take(n);
    this.libxcEndian = endian;
    this.pageSize = this.o.pageSize ?? 2 ** pageShift;
    this.seenLibxc = true;
    this.state = 'libxc';
    return {
      kind: 'libxc-header',
      version,
      options,
      domainType: u32(0),
      pageShift,
      xenMajor: u32(8),
      xenMinor: u32(12),
    };
  }

  private record(layer: 'libxl' | 'libxc'): XenItem | undefined {
    if (this.q.length < RECORD_HEADER_BYTES) return undefined;
    const endian = layer === 'libxl' ? this.libxlEndian : this.libxcEndian;
    const h = this.q.peek(RECORD_HEADER_BYTES);
    const type = endian === 'le' ? h.readUInt32LE(0) : h.readUInt32BE(0);
    const length = endian === 'le' ? h.readUInt32LE(4) : h.readUInt32BE(4);
    const kind: XenRecord['kind'] = layer === 'libxl' ? 'libxl-record' : 'libxc-record';
    const name = recordName(kind, type);
    const at = this.offset;
    if (length > REC_LENGTH_MAX) {
      throw xenError(
        'RWAN_ERR_XEN_RECORD',
        `${layer} ${name}: a body of ${length} bytes (over 128 MiB)`,
        at,
        {
          type,
          length,
        },
      );
    }
    const optional = (type & OPTIONAL_RECORD) !== 0;
    if (!optional && type > (layer === 'libxl' ? LIBXL_RECORD_MAX : LIBXC_RECORD_MAX)) {
      throw xenError('RWAN_ERR_XEN_RECORD', `unknown mandatory ${layer} record ${name}`, at, { type });
    }
    const pad = paddingOf(length);
    if (this.q.length < RECORD_HEADER_BYTES + length + pad) return undefined;
    this.take(RECORD_HEADER_BYTES);
    const body = Buffer.from(this.take(length));
    const padding = this.take(pad);
    if (padding.some((b) => b !== 0))
      throw xenError('RWAN_ERR_XEN_RECORD', `${layer} ${name}: padding not 0`, at + 8 + length, { type });
    const record: XenRecord = { kind, type, body, checkpoint: this.checkpoint };
    if (layer === 'libxl') this.libxlRecord(record, at);
    else this.libxcRecord(record, at, endian);
    return record;
  }

  private empty(r: XenRecord, at: number): void {
    if (r.body.length !== 0) {
      throw xenError(
        'RWAN_ERR_XEN_RECORD',
        `${recordName(r.kind, r.type)} must be empty, it has ${r.body.length} bytes`,
        at,
        { type: r.type },
      );
    }
  }

  private libxlRecord(r: XenRecord, at: number): void {
    switch (r.type) {
      case LibxlRecord.END:
        this.empty(r, at);
        this.state = 'done';
        return;
      case LibxlRecord.LIBXC_CONTEXT:
        this.empty(r, at);
        if (this.seenLibxc) throw xenError('RWAN_ERR_XEN_RECORD', 'LIBXC_CONTEXT a second time', at);
        this.state = 'libxc-header';
        return;
      case LibxlRecord.CHECKPOINT_END:
        this.empty(r, at);
        if (this.libxlAfter !== 'checkpoint')
          throw xenError('RWAN_ERR_XEN_RECORD', 'CHECKPOINT_END without a libxc CHECKPOINT before it', at);
        this.checkpoint++;
        this.inCheckpoint = false;
        this.state = 'libxc';
        return;
    }
  }

  private libxcRecord(r: XenRecord, at: number, endian: Endian): void {
    this.inCheckpoint = true;
    switch (r.type) {
      case LibxcRecord.END:
      case LibxcRecord.CHECKPOINT:
        this.empty(r, at);
        this.libxlAfter = r.type === LibxcRecord.END ? 'end' : 'checkpoint';
        this.state = 'libxl';
        return;
      case LibxcRecord.VERIFY:
      case LibxcRecord.STATIC_DATA_END:
        this.empty(r, at);
        return;
      case LibxcRecord.PAGE_DATA:
        parsePageData(r.body, endian, this.pageSize, at + RECORD_HEADER_BYTES);
        return;
    }
  }
}

/**
 * Every item of a whole stream held in memory.
 * @throws RwanError the reader's errors, RWAN_ERR_XEN_TRUNCATED included
 */
export function readXenStream(bytes: Buffer, o: ReaderOptions = {}): { items: XenItem[]; end: StreamEnd } {
  const r = new XenStreamReader(o);
  const items = r.push(bytes);
  return { items, end: r.end() };
}
