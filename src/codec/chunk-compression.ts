/**
 * zstd on chunks, with reusable contexts and output sizes bounded before allocation. Pure apart from
 * CPU (zstd-napi runs synchronously on the calling thread).
 *
 * A chunk is compressed once; when zstd does not make it smaller it goes raw, so an incompressible
 * chunk never pays for a second attempt. Decompression writes into a buffer of exactly the announced
 * length: a frame that would decode to more is an error, never a larger allocation.
 */
import { createRequire } from 'node:module';
import type * as Binding from 'zstd-napi/binding.js';
import { RwanError } from '../errors.js';
import type { ZstdAsync } from './hot-loops.js';

const require = createRequire(import.meta.url);
const zstd = require('zstd-napi/binding') as typeof Binding;

/** A fresh buffer with the bytes of `src` (Buffer.from on a view takes a slow element-wise path). */
export function copyOf(src: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(src.length);
  out.set(src);
  return out;
}

/** How a chunk's records stream is carried. */
export const Method = { RAW: 0, ZSTD: 1, ZSTD_DICT: 2 } as const;
export type MethodValue = (typeof Method)[keyof typeof Method];

/** zstd level used when none is given (chosen by `npm run bench:codec`, see README). */
export const DEFAULT_ZSTD_LEVEL = 1;

/** A chunk that zstd shrinks by less than this share counts as incompressible. */
export const INCOMPRESSIBLE_SAVING = 0.03;
/** Most chunks sent raw, without an attempt, after incompressible ones. */
export const MAX_SKIP = 16;

/**
 * The incompressible back-off: after a chunk zstd could not shrink by {@link INCOMPRESSIBLE_SAVING},
 * the next 1, 2, 4 … {@link MAX_SKIP} chunks go raw without an attempt (encrypted or
 * already-compressed memory costs no zstd time); one chunk that compresses well ends it.
 */
class Backoff {
  private backoff = 0;
  private skip = 0;
  /** Chunks zstd was run on, and chunks sent raw without trying. */
  readonly counts = { attempted: 0, skipped: 0 };

  /** Whether the next chunk goes raw without an attempt (counted either way). */
  skipNext(): boolean {
    if (this.skip > 0) {
      this.skip--;
      this.counts.skipped++;
      return true;
    }
    this.counts.attempted++;
    return false;
  }

  /** After an attempt that made `n` bytes of `rawLength`: whether to send them (else the raw chunk). */
  result(n: number, rawLength: number): boolean {
    if (n > rawLength * (1 - INCOMPRESSIBLE_SAVING)) {
      this.backoff = Math.min(MAX_SKIP, Math.max(1, this.backoff * 2));
      this.skip = this.backoff;
      return n < rawLength;
    }
    this.backoff = 0;
    return true;
  }
}

/** Compresses chunks with one context (and optionally one dictionary), with the {@link Backoff}. */
export class ChunkCompressor {
  private readonly cctx = new zstd.CCtx();
  private readonly cdict: Binding.CDict | undefined;
  private scratch: Buffer = Buffer.alloc(0);
  private readonly backoff = new Backoff();

  /**
   * @param level zstd level (negative levels are faster, 19+ slow)
   * @param dictionary raw-content or trained zstd dictionary, shared with the receiver
   */
  constructor(
    readonly level = DEFAULT_ZSTD_LEVEL,
    dictionary?: Uint8Array,
  ) {
    this.cdict = dictionary ? new zstd.CDict(dictionary, level) : undefined;
  }

  /** Chunks zstd was run on, and chunks sent raw without trying. */
  get counts(): { attempted: number; skipped: number } {
    return this.backoff.counts;
  }

  /** Compress `raw`; returns the bytes to send (a fresh buffer) and how. */
  compress(raw: Uint8Array): { method: MethodValue; data: Buffer } {
    if (this.backoff.skipNext()) return { method: Method.RAW, data: copyOf(raw) };
    const bound = zstd.compressBound(raw.length);
    if (this.scratch.length < bound) this.scratch = Buffer.allocUnsafe(bound);
    const n = this.cdict
      ? this.cctx.compressUsingCDict(this.scratch, raw, this.cdict)
      : this.cctx.compress(this.scratch, raw, this.level);
    if (!this.backoff.result(n, raw.length)) return { method: Method.RAW, data: copyOf(raw) };
    return {
      method: this.cdict ? Method.ZSTD_DICT : Method.ZSTD,
      data: copyOf(this.scratch.subarray(0, n)),
    };
  }
}

/** A thread-pool compression context with its input and output buffers. */
interface PoolSlot {
  ctx: object;
  src: Buffer;
  dst: Buffer;
}

/**
 * {@link ChunkCompressor} on the thread pool ({@link ZstdAsync}): `compress` copies the chunk into one
 * of `contexts` slots and returns at once; zstd runs on a pool thread, in parallel with the caller.
 * The back-off decides from the results known when a chunk is submitted. No dictionary.
 */
export class PooledChunkCompressor {
  private readonly idle: PoolSlot[] = [];
  private readonly waiters: Array<() => void> = [];
  private readonly backoff = new Backoff();

  /**
   * @param maxRawBytes the longest chunk that will be submitted
   * @param contexts slots (chunks compressing at once)
   */
  constructor(
    private readonly pool: ZstdAsync,
    readonly level: number,
    maxRawBytes: number,
    contexts = 2,
  ) {
    for (let i = 0; i < contexts; i++) {
      this.idle.push({
        ctx: pool.context(level),
        src: Buffer.allocUnsafeSlow(maxRawBytes),
        dst: Buffer.allocUnsafeSlow(zstd.compressBound(maxRawBytes)),
      });
    }
  }

  /** Chunks zstd was run on, and chunks sent raw without trying. */
  get counts(): { attempted: number; skipped: number } {
    return this.backoff.counts;
  }

  /** Resolves once a slot is free (at once when one is): then `compress` does not wait. */
  whenIdle(): Promise<void> | undefined {
    if (this.idle.length > 0) return undefined;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * Compress `raw` (read now: the caller may reuse it when this returns); the promise gives the bytes
   * to send (a fresh buffer) and how. Waits for a free slot when there is none.
   */
  compress(raw: Uint8Array): Promise<{ method: MethodValue; data: Buffer }> {
    if (this.backoff.skipNext()) return Promise.resolve({ method: Method.RAW, data: copyOf(raw) });
    const slot = this.idle.pop();
    if (slot !== undefined) return this.start(slot, raw);
    const copy = copyOf(raw);
    return this.takeSlot().then((s) => this.start(s, copy));
  }

  private async takeSlot(): Promise<PoolSlot> {
    for (;;) {
      const slot = this.idle.pop();
      if (slot !== undefined) return slot;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private start(slot: PoolSlot, raw: Uint8Array): Promise<{ method: MethodValue; data: Buffer }> {
    if (raw.length > slot.src.length) {
      this.release(slot);
      return Promise.reject(
        new RwanError('RWAN_ERR_INTERNAL', `chunk of ${raw.length} bytes, slots hold ${slot.src.length}`),
      );
    }
    slot.src.set(raw);
    const src = slot.src.subarray(0, raw.length);
    return new Promise((resolve, reject) => {
      this.pool.compress(slot.ctx, src, slot.dst, (error, n) => {
        try {
          if (error !== null) {
            reject(new RwanError('RWAN_ERR_INTERNAL', `zstd: ${error}`));
          } else if (!this.backoff.result(n, src.length)) {
            resolve({ method: Method.RAW, data: copyOf(src) });
          } else {
            resolve({ method: Method.ZSTD, data: copyOf(slot.dst.subarray(0, n)) });
          }
        } finally {
          this.release(slot);
        }
      });
    });
  }

  private release(slot: PoolSlot): void {
    this.idle.push(slot);
    this.waiters.shift()?.();
  }
}

/** Decompresses chunks into buffers of the announced size. */
export class ChunkDecompressor {
  private readonly dctx = new zstd.DCtx();
  private readonly ddict: Binding.DDict | undefined;
  private out: Buffer = Buffer.alloc(0);

  constructor(dictionary?: Uint8Array) {
    this.ddict = dictionary ? new zstd.DDict(dictionary) : undefined;
  }

  /**
   * The records stream of a chunk. `rawLength` must already be checked against the caller's cap.
   * @returns a view of `data` (raw), or of this decompressor's own buffer, valid until the next call
   *   (reusing one buffer keeps large allocations off the per-chunk path)
   */
  decompress(
    method: number,
    data: Uint8Array,
    rawLength: number,
    where: Record<string, unknown>,
  ): Uint8Array {
    if (method === Method.RAW) {
      if (data.length !== rawLength) {
        throw new RwanError(
          'RWAN_ERR_CODEC_CHUNK_LENGTH',
          `raw chunk of ${data.length} bytes announced as ${rawLength}`,
          {
            details: where,
          },
        );
      }
      return data;
    }
    if (method !== Method.ZSTD && method !== Method.ZSTD_DICT) {
      throw new RwanError('RWAN_ERR_CODEC_DECOMPRESS', `unknown chunk method ${method}`, {
        details: { ...where, method },
      });
    }
    if (method === Method.ZSTD_DICT && !this.ddict) {
      throw new RwanError(
        'RWAN_ERR_CODEC_DECOMPRESS',
        'chunk compressed with a dictionary this side does not have',
        {
          details: where,
        },
      );
    }
    if (this.out.length < rawLength) this.out = Buffer.allocUnsafe(rawLength);
    const out = this.out.subarray(0, rawLength);
    let n: number;
    try {
      n =
        method === Method.ZSTD_DICT && this.ddict
          ? this.dctx.decompressUsingDDict(out, data, this.ddict)
          : this.dctx.decompress(out, data);
    } catch (cause) {
      throw new RwanError('RWAN_ERR_CODEC_DECOMPRESS', `zstd: ${(cause as Error).message}`, {
        cause,
        details: where,
      });
    }
    if (n !== rawLength) {
      throw new RwanError(
        'RWAN_ERR_CODEC_CHUNK_LENGTH',
        `chunk decoded to ${n} bytes, announced ${rawLength}`,
        {
          details: where,
        },
      );
    }
    return out;
  }
}
