/**
 * The worker encoder and the pool encoder give exactly the inline encoder's chunks and summaries,
 * epoch after epoch (their page caches follow the same order), and a reset before a full copy is
 * ordered with the epochs. The worker runs the compiled module from dist/ (`npm test` builds first).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { EncodedChunk } from '../../src/codec/epoch-encoder.js';
import { zstdAsync } from '../../src/codec/hot-loops.js';
import {
  type EncoderPort,
  InlineEncoder,
  PoolEncoder,
  WorkerEncoder,
} from '../../src/replication/encoder-port.js';

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

type Got = Array<{ chunks: EncodedChunk[]; digest: string; kinds: unknown }>;

/** The epochs through `port`, all submitted without waiting, a reset before the seventh. */
async function run(
  port: EncoderPort,
  list: Array<{ pfns: number[]; pages: Buffer }>,
  shared = false,
): Promise<Got> {
  const got: Got = [];
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
}

/** The chunks' fields as comparable values. */
const shape = (g: Got) =>
  g.map((x) => ({
    digest: x.digest,
    kinds: x.kinds,
    chunks: x.chunks.map((c) => [c.seq, c.records, c.rawLength, c.method, c.data.toString('hex')]),
  }));

const OPTS = { pageSize: PS, cacheBytes: 2 * 2 ** 20, chunkBytes: 64 * 1024 };

describe('WorkerEncoder', () => {
  it('gives the inline encoder bytes, in order, with resets in order too', async () => {
    expect(existsSync(WORKER), `${WORKER.pathname} missing: run npm run build (npm test does)`).toBe(true);
    const list = epochs(12, 1024, 5);
    const worker = new WorkerEncoder(OPTS, WORKER);
    const a = await run(new InlineEncoder(OPTS), list);
    const b = await run(worker, list);
    const shared = new WorkerEncoder(OPTS, WORKER);
    const c = await run(shared, list, true);
    await worker.close();
    await shared.close();
    expect(c).toEqual(b);
    expect(shape(b)).toEqual(shape(a));
    expect(a[5]?.kinds).not.toMatchObject({ delta: 0 }); // before the reset, deltas
    expect(a[6]?.kinds).toMatchObject({ delta: 0 }); // right after it nothing has a base
  });
});

describe.skipIf(zstdAsync === undefined)('PoolEncoder', () => {
  it('gives the inline encoder bytes, in order, with resets in order too', async () => {
    const list = epochs(12, 1024, 5);
    const a = await run(new InlineEncoder(OPTS), list);
    const pool = new PoolEncoder(OPTS);
    const b = await run(pool, list);
    await pool.close();
    expect(shape(b)).toEqual(shape(a));
    // more than one chunk per epoch: several were compressing at once, and came out in order
    expect(Math.max(...b.map((x) => x.chunks.length))).toBeGreaterThan(4);
  });

  it('sends incompressible chunks raw, and backs off', async () => {
    // random pages, each epoch a new content: no deltas pay, zstd cannot shrink a chunk
    let n = 0;
    const list = Array.from({ length: 3 }, () => {
      const pages = Buffer.alloc(256 * PS);
      for (let i = 0; i < pages.length; i += 32)
        createHash('sha256').update(String(n++)).digest().copy(pages, i);
      return { pfns: Array.from({ length: 256 }, (_, i) => i), pages };
    });
    const inline = new InlineEncoder(OPTS);
    const pool = new PoolEncoder(OPTS);
    const a = await run(inline, list);
    const b = await run(pool, list);
    await pool.close();
    const methods = (g: Got) => g.flatMap((e) => e.chunks.map((c) => c.method));
    expect(new Set(methods(b))).toEqual(new Set([0]));
    expect(shape(b).map((e) => e.digest)).toEqual(shape(a).map((e) => e.digest));
    // the pages went raw in raw chunks: no byte saved, none lost
    for (const [i, e] of b.entries()) {
      expect(Buffer.concat(e.chunks.map((c) => c.data)).length).toBeGreaterThan(list[i]?.pages.length ?? 0);
    }
    expect(pool.compressionStats().skipped).toBeGreaterThan(0); // the back-off held zstd off some chunks
  });

  it('is refused without the addon and with a dictionary', () => {
    expect(() => new PoolEncoder(OPTS, null)).toThrow(/native addon/);
    expect(() => new PoolEncoder({ ...OPTS, dictionary: Buffer.alloc(64) })).toThrow(/dictionary/);
  });
});
