/**
 * The encoder worker thread of {@link WorkerEncoder} (encoder-port.ts): one EpochEncoder, epochs in
 * order, each chunk posted back as soon as it is made, its bytes transferred (not copied), and the
 * epoch's pages transferred back with the summary once encoded.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type EncodedChunk, EpochEncoder } from '../codec/epoch-encoder.js';
import type { CodecOptions } from '../codec/options.js';
import { asRwanError } from '../errors.js';
import type { FromWorker, ToWorker } from './encoder-port.js';

const port = parentPort;
if (!port) throw new Error('encode-worker runs as a worker thread');
const encoder = new EpochEncoder(workerData as Partial<CodecOptions> & { pageSize: number });
const ps = encoder.options.pageSize;

/** Shared memories the main thread names in its encode messages ('memory', 'forget'). */
const memories = new Map<number, SharedArrayBuffer>();

port.on('message', (m: ToWorker) => {
  if (m.type === 'reset') {
    encoder.reset();
    return;
  }
  if (m.type === 'memory') {
    memories.set(m.id, m.memory);
    return;
  }
  if (m.type === 'forget') {
    memories.delete(m.id);
    return;
  }
  const { epoch, pfns } = m;
  const pages = m.shared
    ? Buffer.from(
        memories.get(m.shared.id) ?? new SharedArrayBuffer(0),
        m.shared.byteOffset,
        m.shared.byteLength,
      )
    : Buffer.from((m.pages as Uint8Array).buffer, m.pages?.byteOffset, m.pages?.byteLength);
  const t0 = performance.now();
  try {
    const post = (c: EncodedChunk | undefined) => {
      if (!c) return;
      const msg: FromWorker = { type: 'chunk', epoch, chunk: c };
      // a chunk's data is a fresh buffer of its own (copyOf), or the compressor's exact-size output
      const own = c.data.byteOffset === 0 && c.data.byteLength === c.data.buffer.byteLength;
      port.postMessage(msg, own ? [c.data.buffer as ArrayBuffer] : []);
    };
    encoder.begin(epoch);
    for (let i = 0; i < pfns.length; i++)
      post(encoder.add(pfns[i] as number, pages.subarray(i * ps, (i + 1) * ps)));
    const { chunk, summary } = encoder.end();
    post(chunk);
    // transferred pages go back for the source to read the next captures into (shared ones are
    // released by this message alone)
    const end: FromWorker = { type: 'end', epoch, summary, encodeMs: performance.now() - t0 };
    if (m.pages) end.pages = m.pages;
    port.postMessage(end, m.pages ? [m.pages.buffer as ArrayBuffer] : []);
  } catch (err) {
    const e = asRwanError(err);
    port.postMessage({ type: 'error', epoch, code: e.code, message: e.message } satisfies FromWorker);
  }
});
