/**
 * The worker encoder gives exactly the inline encoder's chunks and summaries, epoch after epoch (its
 * page cache follows the same order), and a reset before a full copy is ordered with the epochs.
 * The worker runs the compiled module from dist/ (`npm test` builds first).
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { EncodedChunk } from '../../src/codec/epoch-encoder.js';
import { InlineEncoder, WorkerEncoder } from '../../src/replication/encoder-port.js';

const WORKER = new URL('../../dist/src/replication/encode-worker.js', import.meta.url);
const PS = 4096;

function epochs(n: number, pages: number, seed: number): Array<{ pfns: number[]; pages: Buffer }> {
  let x = seed;
  const rnd = () => {
    x = (x * 1103515245 + 12345) >>> 0;
    return x / 2 ** 32;
  };
  const memory = Buffer.alloc(pages * PS);
  for (let i = 0; i < memory.length; i += 64) memory[i] = Math.floor(rnd() * 256);
  return Array.from({ length: n }, (_, e) => {
    const dirty = new Set<number>();
    const count = e === 0 ? pages : 1 + Math.floor(rnd() * 200);
    for (let k = 0; dirty.size < count; k++) dirty.add(e === 0 ? k : Math.floor(rnd() * pages));
    const pfns = [...dirty].sort((a, b) => a - b);
    for (const p of pfns)
      if (e > 0) memory.writeUInt32LE(Math.floor(rnd() * 2 ** 32), p * PS + 8 * Math.floor(rnd() * 512));
    const out = Buffer.allocUnsafe(pfns.length * PS);
    pfns.forEach((p, i) => {
      memory.copy(out, i * PS, p * PS, (p + 1) * PS);
    });
    return { pfns, pages: out };
  });
}

describe('WorkerEncoder', () => {
  it('gives the inline encoder bytes, in order, with resets in order too', async () => {
    expect(existsSync(WORKER), `${WORKER.pathname} missing: run npm run build (npm test does)`).toBe(true);
    const opts = { pageSize: PS, cacheBytes: 2 * 2 ** 20, chunkBytes: 64 * 1024 };
    const list = epochs(12, 1024, 5);
    const inline = new InlineEncoder(opts);
    const worker = new WorkerEncoder(opts, WORKER);
    const run = async (port: InlineEncoder | WorkerEncoder, shared = false) => {
      const got: Array<{ chunks: EncodedChunk[]; digest: string; kinds: unknown }> = [];
      // shared: the pages in shared memory the caller owns (as ImageSource captures them), every other
      // epoch at an offset: the worker reads them in place and gives the same view back
      const memories = list.map(() => new SharedArrayBuffer(8 + 1100 * PS));
      const pending = list.map((e, i) => {
        if (i === 6) port.reset(); // as before a full copy: both must reset at the same point
        const chunks: EncodedChunk[] = [];
        let pages: Buffer = Buffer.from(e.pages);
        if (shared) {
          pages = Buffer.from(memories[i] as SharedArrayBuffer, (i & 1) * 4, e.pages.length);
          e.pages.copy(pages);
        }
        return port
          .encode(i + 1, e.pfns, pages, (c) => chunks.push(c), shared)
          .then(({ summary, pages: back }) => {
            if (shared) expect(back).toBe(pages);
            else expect(back.equals(e.pages)).toBe(true);
            got.push({ chunks, digest: summary.digest.toString('hex'), kinds: summary.kinds });
          });
      });
      await Promise.all(pending); // submitted without waiting: the port keeps the order
      return got;
    };
    const a = await run(inline);
    const b = await run(worker);
    const shared = new WorkerEncoder(opts, WORKER);
    const c = await run(shared, true);
    await worker.close();
    await shared.close();
    expect(c).toEqual(b);
    expect(b.length).toBe(a.length);
    a.forEach((x, i) => {
      const y = b[i];
      expect(y?.digest).toBe(x.digest);
      expect(y?.kinds).toEqual(x.kinds);
      expect(y?.chunks.map((c) => [c.seq, c.records, c.rawLength, c.method, c.data.toString('hex')])).toEqual(
        x.chunks.map((c) => [c.seq, c.records, c.rawLength, c.method, c.data.toString('hex')]),
      );
    });
    expect(a[5]?.kinds).not.toMatchObject({ delta: 0 }); // before the reset, deltas
    expect(a[6]?.kinds).toMatchObject({ delta: 0 }); // right after it nothing has a base
  });
});
