/**
 * The records stream inside a chunk (docs/codec.md §4): one record per dirty page. Pure.
 *
 *   record = kind:u8  pfnStep:zigzag-uleb128  body
 *   pfnStep = pfn − (previous pfn in the epoch + 1)      (0 for consecutive pages; the first page of an
 *                                                         epoch counts from pfn −1)
 *   body    = ZERO: —   RAW: page   DELTA: len:uleb128 delta   DUP: ref:uleb128
 */
import { RwanError } from '../errors.js';

/** Record kinds, as on the wire. */
export const Kind = { ZERO: 0, RAW: 1, DELTA: 2, DUP: 3 } as const;
export type KindValue = (typeof Kind)[keyof typeof Kind];

/** Bytes a record header can take at most: kind + a 53-bit zigzag step. */
export const MAX_RECORD_HEADER = 1 + 9;

/** Zigzag: 0, −1, 1, −2, … → 0, 1, 2, 3, … (exact for |n| < 2^52). */
export function zigzag(n: number): number {
  return n >= 0 ? n * 2 : -n * 2 - 1;
}

/** Inverse of {@link zigzag}. */
export function unzigzag(z: number): number {
  return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
}

/** A cursor over a records stream that fails with typed errors. */
export class RecordReader {
  pos = 0;

  constructor(
    readonly bytes: Uint8Array,
    private readonly where: Record<string, unknown>,
  ) {}

  get done(): boolean {
    return this.pos >= this.bytes.length;
  }

  /** One byte. */
  u8(): number {
    if (this.pos >= this.bytes.length) this.truncated('a record kind');
    return this.bytes[this.pos++] as number;
  }

  /** A ULEB128 of at most 8 bytes (< 2^56; callers bound the value further). */
  uleb(what: string): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= this.bytes.length) this.truncated(what);
      const b = this.bytes[this.pos++] as number;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
      scale *= 128;
    }
    throw new RwanError('RWAN_ERR_CODEC_RUN_OVERFLOW', `${what}: varint longer than 8 bytes`, {
      details: { ...this.where, offset: this.pos },
    });
  }

  /** A view of the next `n` bytes. */
  take(n: number, what: string): Uint8Array {
    if (this.pos + n > this.bytes.length) this.truncated(what);
    const view = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return view;
  }

  /** Skip the next `n` bytes (a view of them, without making one); returns where they start. */
  skip(n: number, what: string): number {
    if (this.pos + n > this.bytes.length) this.truncated(what);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  private truncated(what: string): never {
    throw new RwanError('RWAN_ERR_CODEC_TRUNCATED', `chunk ends inside ${what}`, {
      details: { ...this.where, offset: this.pos },
    });
  }
}

/**
 * The pfns of one epoch in record order, refusing a pfn twice. While pfns only increase (sorted dirty
 * sets, the usual case) the check is one comparison; from the first step back a Set takes over. The
 * list is a typed array reused epoch after epoch ({@link reset}): a JS array of an epoch's thousands of
 * pfns, made anew per epoch, lands in V8's large-object space, which only a full collection empties.
 */
export class EpochPfns {
  private list = new Float64Array(1024);
  private n = 0;
  private max = -1;
  private set: Set<number> | undefined;

  /** Pfns recorded. */
  get length(): number {
    return this.n;
  }

  /** The pfn of record `index` (in [0, length)). */
  at(index: number): number {
    return this.list[index] as number;
  }

  /** Forget every pfn (a new epoch). */
  reset(): void {
    this.n = 0;
    this.max = -1;
    this.set = undefined;
  }

  /** Append `pfn`; false (and nothing recorded) when the epoch already has it. */
  add(pfn: number): boolean {
    if (pfn > this.max) {
      this.max = pfn;
      this.set?.add(pfn);
    } else {
      this.set ??= new Set(this.list.subarray(0, this.n));
      if (this.set.has(pfn)) return false;
      this.set.add(pfn);
    }
    if (this.n === this.list.length) {
      const grown = new Float64Array(2 * this.n);
      grown.set(this.list);
      this.list = grown;
    }
    this.list[this.n++] = pfn;
    return true;
  }
}
