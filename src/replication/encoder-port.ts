/**
 * Where the sender's epochs are encoded: on its own thread between awaits (`inline`), or on a worker
 * thread (`worker`, the default of the daemon), so that compressing epoch N+1 runs in parallel with
 * sending epoch N and the event loop (heartbeats, ACKs, TLS) never waits for zstd.
 *
 * ```
 *  main thread                                      worker thread (encode-worker.ts)
 *  encode(epoch, pfns, pages) ──postMessage──────►  EpochEncoder.begin/add…/end
 *        (pages' memory transferred, not copied)       │ each chunk as it fills
 *  onChunk(chunk) ◄──────────────postMessage──────────┘ (its bytes transferred back)
 *  resolves with the summary ◄─────────────────────  'end'
 * ```
 *
 * Epochs are encoded in the order they are submitted (the encoder's page cache depends on it); the
 * worker takes the next one as soon as it has finished the last.
 */

import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { type EncodedChunk, EpochEncoder, type EpochSummary } from '../codec/epoch-encoder.js';
import type { CodecOptions } from '../codec/options.js';
import { RwanError } from '../errors.js';

/** Encodes epochs for one session. */
export interface EncoderPort {
  /** The codec settings in force (the page cache cap goes into HELLO). */
  readonly options: CodecOptions;
  /**
   * Encode an epoch after the ones submitted before it; `onChunk` gets each chunk as soon as it is
   * made (in order). `pages` may be handed over (the worker port transfers its memory: do not use it
   * afterwards). Resolves with the summary and the time spent encoding (not waiting), ms.
   */
  encode(
    epoch: number,
    pfns: ArrayLike<number>,
    pages: Buffer,
    onChunk: (c: EncodedChunk) => void,
  ): Promise<{ summary: EpochSummary; encodeMs: number }>;
  /** Forget the page cache (before a full copy), after the epochs submitted so far. */
  reset(): void;
  /** Stop (the worker thread ends). */
  close(): Promise<void>;
}

/** Encoding on the calling thread, one epoch after the other, yielding to the event loop every 5 ms. */
export class InlineEncoder implements EncoderPort {
  private readonly encoder: EpochEncoder;
  private queue: Promise<unknown> = Promise.resolve();
  constructor(options: Partial<CodecOptions> & { pageSize: number }) {
    this.encoder = new EpochEncoder(options);
  }
  get options(): CodecOptions {
    return this.encoder.options;
  }
  encode(
    epoch: number,
    pfns: ArrayLike<number>,
    pages: Buffer,
    onChunk: (c: EncodedChunk) => void,
  ): Promise<{ summary: EpochSummary; encodeMs: number }> {
    const run = this.queue.then(() => this.run(epoch, pfns, pages, onChunk));
    this.queue = run.catch(() => undefined);
    return run;
  }
  private async run(
    epoch: number,
    pfns: ArrayLike<number>,
    pages: Buffer,
    onChunk: (c: EncodedChunk) => void,
  ): Promise<{ summary: EpochSummary; encodeMs: number }> {
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
    return { summary, encodeMs: encodeMs + performance.now() - slice };
  }
  reset(): void {
    this.queue = this.queue.then(() => this.encoder.reset());
  }
  async close(): Promise<void> {
    await this.queue;
  }
}

/** Messages to the worker. */
export type ToWorker =
  | { type: 'encode'; epoch: number; pfns: Float64Array; pages: Uint8Array }
  | { type: 'reset' };

/** Messages from the worker. */
export type FromWorker =
  | { type: 'chunk'; epoch: number; chunk: Omit<EncodedChunk, 'data'> & { data: Uint8Array } }
  | { type: 'end'; epoch: number; summary: EpochSummary; encodeMs: number }
  | { type: 'error'; epoch: number; code: string; message: string };

interface Job {
  epoch: number;
  onChunk: (c: EncodedChunk) => void;
  resolve: (r: { summary: EpochSummary; encodeMs: number }) => void;
  reject: (e: Error) => void;
}

/** An owned, transferable copy of `b` unless it already owns its whole ArrayBuffer. */
function transferable(b: Uint8Array): Uint8Array {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && !(b.buffer instanceof SharedArrayBuffer))
    return b;
  return new Uint8Array(b);
}

/** Encoding on a worker thread. */
export class WorkerEncoder implements EncoderPort {
  readonly options: CodecOptions;
  private readonly worker: Worker;
  private readonly jobs: Job[] = [];
  private failed: Error | undefined;

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
    this.worker = new Worker(workerUrl, { workerData: plain });
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
  ): Promise<{ summary: EpochSummary; encodeMs: number }> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.jobs.push({ epoch, onChunk, resolve, reject });
      // the pfns are copied (8 bytes a page; a source may keep its array, e.g. for the next capture),
      // the pages' memory is handed over
      const f64 = Float64Array.from(pfns);
      const p = transferable(pages);
      const msg: ToWorker = { type: 'encode', epoch, pfns: f64, pages: p };
      this.worker.postMessage(msg, [f64.buffer, p.buffer as ArrayBuffer]);
    });
  }

  reset(): void {
    this.worker.postMessage({ type: 'reset' } satisfies ToWorker);
  }

  async close(): Promise<void> {
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
      job.resolve({
        summary: { ...s, digest: Buffer.from(s.digest.buffer, s.digest.byteOffset, s.digest.byteLength) },
        encodeMs: m.encodeMs,
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
