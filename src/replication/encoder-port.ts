/**
 * Where the sender's epochs are encoded: on its own thread between awaits (`inline`), or on a worker
 * thread (`worker`, the default of the daemon), so that compressing epoch N+1 runs in parallel with
 * sending epoch N and the event loop (heartbeats, ACKs, TLS) never waits for zstd.
 *
 * ```
 *  main thread                                      worker thread (encode-worker.ts)
 *  encode(epoch, pfns, pages) ──postMessage──────►  EpochEncoder.begin/add…/end
 *        (pages' memory transferred, not copied;       │ each chunk as it fills
 *         shared memory: named, read in place)         │
 *  onChunk(chunk) ◄──────────────postMessage──────────┘ (its bytes transferred back)
 *  resolves with the summary ◄─────────────────────  'end' (transferred pages' memory back)
 *        and the pages, for the next capture
 * ```
 *
 * Epochs are encoded in the order they are submitted (the encoder's page cache depends on it); the
 * worker takes the next one as soon as it has finished the last.
 */

import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { copyOf, PooledChunkCompressor } from '../codec/chunk-compression.js';
import { type EncodedChunk, EpochEncoder, type EpochSummary } from '../codec/epoch-encoder.js';
import { nativeLoadError, type ZstdAsync, zstdAsync } from '../codec/hot-loops.js';
import type { CodecOptions } from '../codec/options.js';
import { MAX_RECORD_HEADER } from '../codec/records.js';
import { RwanError } from '../errors.js';

/** Encodes epochs for one session. */
export interface EncoderPort {
  /** The codec settings in force (the page cache cap goes into HELLO). */
  readonly options: CodecOptions;
  /**
   * Encode an epoch after the ones submitted before it; `onChunk` gets each chunk as soon as it is
   * made (in order). `pages` may be handed over (the worker port transfers its memory: do not use it
   * afterwards); with `ownsBuffer`, the whole ArrayBuffer under `pages` is the caller's to hand over
   * (it may be longer than `pages`), and is transferred rather than copied. Resolves with the summary,
   * the time spent encoding (not waiting), ms, and the pages' bytes, now unused (the same memory when
   * it was handed over whole), for the caller to reuse.
   */
  encode(
    epoch: number,
    pfns: ArrayLike<number>,
    pages: Buffer,
    onChunk: (c: EncodedChunk) => void,
    ownsBuffer?: boolean,
  ): Promise<EncodeResult>;
  /** Forget the page cache (before a full copy), after the epochs submitted so far. */
  reset(): void;
  /** Stop (the worker thread ends). */
  close(): Promise<void>;
}

/** What {@link EncoderPort.encode} resolves with. */
export interface EncodeResult {
  summary: EpochSummary;
  encodeMs: number;
  /** The epoch's pages, no longer used by the encoder. */
  pages: Buffer;
}

/** The encoders on the calling thread: one EpochEncoder, epochs one after the other, in order. */
abstract class CallingThreadEncoder implements EncoderPort {
  private queue: Promise<unknown> = Promise.resolve();
  constructor(protected readonly encoder: EpochEncoder) {}
  get options(): CodecOptions {
    return this.encoder.options;
  }
  encode(
    epoch: number,
    pfns: ArrayLike<number>,
    pages: Buffer,
    onChunk: (c: EncodedChunk) => void,
  ): Promise<EncodeResult> {
    const run = this.queue.then(() => this.run(epoch, pfns, pages, onChunk));
    this.queue = run.catch(() => undefined);
    return run;
  }
  /** Encodes one epoch; the next waits for it. */
  protected abstract run(
    epoch: number,
    pfns: ArrayLike<number>,
    pages: Buffer,
    onChunk: (c: EncodedChunk) => void,
  ): Promise<EncodeResult>;
  reset(): void {
    this.queue = this.queue.then(() => this.encoder.reset());
  }
  async close(): Promise<void> {
    await this.queue;
  }
}

/** Encoding on the calling thread, one epoch after the other, yielding to the event loop every 5 ms. */
export class InlineEncoder extends CallingThreadEncoder {
  constructor(options: Partial<CodecOptions> & { pageSize: number }) {
    super(new EpochEncoder(options));
  }
  protected async run(
    epoch: number,
    pfns: ArrayLike<number>,
    pages: Buffer,
    onChunk: (c: EncodedChunk) => void,
  ): Promise<EncodeResult> {
    const ps = this.encoder.options.pageSize;
    let encodeMs = 0;
    let slice = performance.now();
    this.encoder.begin(epoch);
    for (let i = 0; i < pfns.length; i++) {
      const c = this.encoder.add(pfns[i] as number, pages.subarray(i * ps, (i + 1) * ps));
      if (c) onChunk(c);
      if (performance.now() - slice > 5) {
        encodeMs += performance.now() - slice;
        await yieldToLoop(); // let heartbeats, ACKs and the send pump run
        slice = performance.now();
      }
    }
    const { chunk, summary } = this.encoder.end();
    if (chunk) onChunk(chunk);
    return { summary, encodeMs: encodeMs + performance.now() - slice, pages };
  }
}

/** Chunks compressing on the thread pool at once ({@link PoolEncoder}); each holds a slot's buffers. */
const POOL_CONTEXTS = 2;

/**
 * Encoding on the calling thread, as {@link InlineEncoder}, with each chunk's zstd on libuv's thread
 * pool (native/zstd_async.c): the per-page pass (hash, delta, page cache) runs here between awaits
 * while the chunks made so far compress in parallel, and no second JavaScript engine is resident (a
 * worker thread's costs 25–30 MiB). Chunks reach `onChunk` in order. Needs the native addon; no
 * dictionary.
 */
export class PoolEncoder extends CallingThreadEncoder {
  private readonly compressor: PooledChunkCompressor | undefined;

  constructor(
    options: Partial<CodecOptions> & { pageSize: number },
    pool: ZstdAsync | null = zstdAsync ?? null,
  ) {
    if (pool === null) {
      throw new RwanError(
        'RWAN_ERR_INVALID_VALUE',
        `the pool encoder needs the native addon (${nativeLoadError})`,
      );
    }
    if (options.dictionary !== undefined) {
      throw new RwanError('RWAN_ERR_INVALID_VALUE', 'the pool encoder does not take a zstd dictionary');
    }
    super(new EpochEncoder(options, true));
    const { zstdLevel, chunkBytes, pageSize } = this.options;
    this.compressor =
      zstdLevel === null
        ? undefined
        : new PooledChunkCompressor(
            pool,
            zstdLevel,
            chunkBytes + MAX_RECORD_HEADER + pageSize,
            POOL_CONTEXTS,
          );
  }

  protected async run(
    epoch: number,
    pfns: ArrayLike<number>,
    pages: Buffer,
    onChunk: (c: EncodedChunk) => void,
  ): Promise<EncodeResult> {
    const ps = this.encoder.options.pageSize;
    let encodeMs = 0;
    let wireBytes = 0;
    // chunks in order: each is delivered once it and every chunk before it are compressed
    let delivered: Promise<void> = Promise.resolve();
    const submit = (c: EncodedChunk | undefined) => {
      if (!c) return;
      const compressed: Promise<Pick<EncodedChunk, 'method' | 'data'>> = this.compressor
        ? this.compressor.compress(c.data)
        : Promise.resolve({ method: c.method, data: copyOf(c.data) });
      const meta = { epoch: c.epoch, seq: c.seq, records: c.records, rawLength: c.rawLength };
      delivered = Promise.all([delivered, compressed]).then(([, { method, data }]) => {
        wireBytes += data.length;
        onChunk({ ...meta, method, data });
      });
      delivered.catch(() => undefined); // awaited below; not unhandled meanwhile
    };
    let slice = performance.now();
    const pause = async (wait: Promise<void> | undefined) => {
      encodeMs += performance.now() - slice;
      await (wait ?? yieldToLoop()); // let heartbeats, ACKs and the send pump run
      slice = performance.now();
    };
    this.encoder.begin(epoch);
    for (let i = 0; i < pfns.length; i++) {
      // a page may close a chunk, which then takes a slot: wait for one rather than copy the chunk
      const idle = this.compressor?.whenIdle();
      if (idle) await pause(idle);
      submit(this.encoder.add(pfns[i] as number, pages.subarray(i * ps, (i + 1) * ps)));
      if (performance.now() - slice > 5) await pause(undefined);
    }
    const { chunk, summary } = this.encoder.end();
    submit(chunk);
    encodeMs += performance.now() - slice;
    await delivered;
    return { summary: { ...summary, wireBytes }, encodeMs, pages };
  }

  /** Chunks zstd was run on, and chunks sent raw without an attempt (incompressible back-off). */
  compressionStats(): { attempted: number; skipped: number } {
    return { ...(this.compressor?.counts ?? { attempted: 0, skipped: 0 }) };
  }
}

/** Messages to the worker. */
export type ToWorker =
  /** `pages`, or bytes of a shared memory the worker was given earlier ('memory') */
  | {
      type: 'encode';
      epoch: number;
      pfns: Float64Array;
      pages?: Uint8Array;
      shared?: { id: number; byteOffset: number; byteLength: number };
    }
  /** a SharedArrayBuffer that encode messages name by `id` from now on */
  | { type: 'memory'; id: number; memory: SharedArrayBuffer }
  /** the main thread no longer has memory `id` */
  | { type: 'forget'; id: number }
  | { type: 'reset' };

/** Messages from the worker. */
export type FromWorker =
  | { type: 'chunk'; epoch: number; chunk: Omit<EncodedChunk, 'data'> & { data: Uint8Array } }
  /** `pages`: the pages' memory, transferred back (not for shared memory: nothing to give back) */
  | { type: 'end'; epoch: number; summary: EpochSummary; encodeMs: number; pages?: Uint8Array }
  | { type: 'error'; epoch: number; code: string; message: string };

interface Job {
  epoch: number;
  /** The pages, when they stay this thread's (shared memory): what 'end' gives back. */
  pages?: Buffer;
  onChunk: (c: EncodedChunk) => void;
  resolve: (r: EncodeResult) => void;
  reject: (e: Error) => void;
}

/**
 * `b` itself when its whole ArrayBuffer may be transferred (it is all of it, or the caller says it
 * owns all of it), else a transferable copy (always for shared memory the caller does not own).
 */
function transferable(b: Uint8Array, ownsBuffer: boolean): Uint8Array {
  if (b.buffer instanceof SharedArrayBuffer) return new Uint8Array(b);
  if (ownsBuffer || (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength)) return b;
  return new Uint8Array(b);
}

/** Young-generation cap of the encoder worker's heap, MiB. */
const WORKER_YOUNG_GENERATION_MB = 4;

/** Encoding on a worker thread. */
export class WorkerEncoder implements EncoderPort {
  readonly options: CodecOptions;
  private readonly worker: Worker;
  private readonly jobs: Job[] = [];
  private failed: Error | undefined;
  private closed = false;
  /**
   * Shared memories the worker holds, by id. Each is posted once; afterwards an epoch's pages are
   * named by id and offsets, so neither thread makes a new buffer object per epoch (the garbage
   * collector counts each as new external memory). When this thread drops one, so does the worker.
   */
  private readonly memories = new WeakMap<SharedArrayBuffer, number>();
  private nextMemory = 1;
  private readonly forget = new FinalizationRegistry<number>((id) => {
    if (!this.closed) this.worker.postMessage({ type: 'forget', id } satisfies ToWorker);
  });

  /**
   * @param workerUrl the compiled encode-worker module (dist/…/encode-worker.js)
   */
  constructor(
    options: Partial<CodecOptions> & { pageSize: number },
    workerUrl = new URL('./encode-worker.js', import.meta.url),
  ) {
    // the options as the worker's encoder will have them (checked here, on this thread, first)
    this.options = new EpochEncoder(options).options;
    const { loops: _loops, ...plain } = options;
    // The worker allocates little on its heap (the pages and chunks are ArrayBuffers outside it): a
    // small young generation keeps its resident memory down at no measurable cost.
    this.worker = new Worker(workerUrl, {
      workerData: plain,
      resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
    });
    this.worker.on('message', (m: FromWorker) => this.onMessage(m));
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => {
      if (code !== 0) this.fail(new RwanError('RWAN_ERR_INTERNAL', `encoder worker exited with ${code}`));
    });
  }

  encode(
    epoch: number,
    pfns: ArrayLike<number>,
    pages: Buffer,
    onChunk: (c: EncodedChunk) => void,
    ownsBuffer = false,
  ): Promise<EncodeResult> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      // the pfns are copied (8 bytes a page; a source may keep its array, e.g. for the next capture)
      const f64 = Float64Array.from(pfns);
      const memory = pages.buffer;
      if (ownsBuffer && memory instanceof SharedArrayBuffer) {
        // the worker reads the pages where they are; they stay this thread's, and 'end' releases them
        let id = this.memories.get(memory);
        if (id === undefined) {
          id = this.nextMemory++;
          this.memories.set(memory, id);
          this.forget.register(memory, id);
          this.worker.postMessage({ type: 'memory', id, memory } satisfies ToWorker);
        }
        this.jobs.push({ epoch, onChunk, resolve, reject, pages });
        const shared = { id, byteOffset: pages.byteOffset, byteLength: pages.byteLength };
        this.worker.postMessage({ type: 'encode', epoch, pfns: f64, shared } satisfies ToWorker, [
          f64.buffer,
        ]);
        return;
      }
      // otherwise the pages' memory is handed over (and comes back with 'end')
      this.jobs.push({ epoch, onChunk, resolve, reject });
      const p = transferable(pages, ownsBuffer);
      const msg: ToWorker = { type: 'encode', epoch, pfns: f64, pages: p };
      this.worker.postMessage(msg, [f64.buffer, p.buffer as ArrayBuffer]);
    });
  }

  reset(): void {
    this.worker.postMessage({ type: 'reset' } satisfies ToWorker);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.worker.terminate();
  }

  private onMessage(m: FromWorker): void {
    const job = this.jobs[0];
    if (!job || job.epoch !== m.epoch) {
      this.fail(
        new RwanError(
          'RWAN_ERR_INTERNAL',
          `encoder worker answered for epoch ${m.epoch}, expected ${job?.epoch}`,
        ),
      );
      return;
    }
    if (m.type === 'chunk') {
      const d = m.chunk.data;
      job.onChunk({ ...m.chunk, data: Buffer.from(d.buffer, d.byteOffset, d.byteLength) });
    } else if (m.type === 'end') {
      this.jobs.shift();
      const s = m.summary;
      const p = m.pages;
      job.resolve({
        summary: { ...s, digest: Buffer.from(s.digest.buffer, s.digest.byteOffset, s.digest.byteLength) },
        encodeMs: m.encodeMs,
        pages:
          p === undefined
            ? (job.pages ?? Buffer.alloc(0))
            : Buffer.from(p.buffer, p.byteOffset, p.byteLength),
      });
    } else {
      this.jobs.shift();
      job.reject(new RwanError(m.code as 'RWAN_ERR_INTERNAL', m.message));
    }
  }

  private fail(err: Error): void {
    this.failed ??= err;
    for (const j of this.jobs.splice(0)) j.reject(err);
  }
}
