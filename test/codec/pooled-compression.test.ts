/**
 * zstd on the thread pool (native/zstd_async.c) and the chunk compressor over it: every frame
 * decompresses to its chunk with zstd-napi (the receiver's zstd), argument and state errors throw,
 * chunks submitted beyond the slots wait for one, and the incompressible back-off is the sync one's.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import type * as Binding from 'zstd-napi/binding.js';
import {
  ChunkCompressor,
  ChunkDecompressor,
  Method,
  PooledChunkCompressor,
} from '../../src/codec/chunk-compression.js';
import { native, zstdAsync } from '../../src/codec/hot-loops.js';

const zstd = createRequire(import.meta.url)('zstd-napi/binding') as typeof Binding;

/** `n` bytes of text-like content (compressible), varied by `seed`. */
function text(n: number, seed: number): Buffer {
  const words = ['page', 'epoch', 'delta', 'replica', 'chunk', 'commit', String(seed)];
  const out = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; ) {
    x = (x * 1103515245 + 12345) >>> 0;
    i += out.write(`${words[x % words.length]} `, i);
  }
  return out;
}

/** `n` bytes no compressor shrinks (SHA-256 in counter mode). */
function noise(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i += 32) createHash('sha256').update(`${seed}:${i}`).digest().copy(out, i);
  return out;
}

const pool = zstdAsync;

it('is loaded whenever the native hot loops are', () => {
  expect(zstdAsync === undefined).toBe(native === undefined);
});

describe.skipIf(pool === undefined)('zstdCompressAsync', () => {
  const z = pool as NonNullable<typeof pool>;

  it('writes one zstd frame that decompresses to the input', async () => {
    const ctx = z.context(1);
    for (const src of [Buffer.alloc(0), text(1000, 1), text(600_000, 2), noise(70_000, 3)]) {
      const dst = Buffer.alloc(zstd.compressBound(src.length));
      const n = await new Promise<number>((resolve, reject) =>
        z.compress(ctx, src, dst, (e, bytes) => (e === null ? resolve(bytes) : reject(new Error(e)))),
      );
      const back = Buffer.alloc(src.length);
      expect(new zstd.DCtx().decompress(back, dst.subarray(0, n))).toBe(src.length);
      expect(back.equals(src)).toBe(true);
    }
  });

  it('refuses a busy context, a short output, and wrong arguments', async () => {
    const ctx = z.context(1);
    const src = text(100_000, 4);
    const dst = Buffer.alloc(zstd.compressBound(src.length));
    const done = new Promise<number>((resolve) => z.compress(ctx, src, dst, (_e, n) => resolve(n)));
    expect(() => z.compress(ctx, src, dst, () => undefined)).toThrow(/busy/);
    expect(await done).toBeGreaterThan(0);
    expect(() => z.compress(ctx, src, Buffer.alloc(10), () => undefined)).toThrow(/bound/);
    const bad = z.compress as (...a: unknown[]) => void;
    expect(() => bad({}, src, dst, () => undefined)).toThrow(TypeError);
    expect(() => bad(ctx, 'text', dst, () => undefined)).toThrow(TypeError);
    expect(() => bad(ctx, src, dst, 'not a function')).toThrow(TypeError);
    expect(() => (z.context as (l: unknown) => object)('one')).toThrow(TypeError);
    // the context works again once its job is done
    await new Promise<void>((resolve) => z.compress(ctx, src, dst, () => resolve()));
  });
});

describe.skipIf(pool === undefined)('PooledChunkCompressor', () => {
  const z = pool as NonNullable<typeof pool>;

  it('compresses more chunks than it has slots, each to its own bytes', async () => {
    const c = new PooledChunkCompressor(z, 1, 128 * 1024, 2);
    const chunks = Array.from({ length: 9 }, (_, i) => text(20_000 + i * 10_000, i));
    const scratch = Buffer.alloc(128 * 1024);
    // submitted back to back from one reused buffer: each is read when submitted
    const pending = chunks.map((chunk) => {
      chunk.copy(scratch);
      return c.compress(scratch.subarray(0, chunk.length));
    });
    const d = new ChunkDecompressor();
    for (const [i, p] of pending.entries()) {
      const { method, data } = await p;
      expect(method).toBe(Method.ZSTD);
      const chunk = chunks[i] as Buffer;
      expect(Buffer.from(d.decompress(method, data, chunk.length, {})).equals(chunk)).toBe(true);
    }
    expect(c.counts).toEqual({ attempted: 9, skipped: 0 });
    expect(c.whenIdle()).toBeUndefined();
  });

  it('backs off on incompressible chunks as the synchronous compressor does', async () => {
    const chunks = [noise(50_000, 1), noise(50_000, 2), noise(50_000, 3), text(50_000, 4), text(50_000, 5)];
    const sync = new ChunkCompressor(1);
    const c = new PooledChunkCompressor(z, 1, 64 * 1024, 2);
    for (const chunk of chunks) {
      // one at a time: each decision sees the results before it, as the synchronous one's do
      const a = sync.compress(chunk);
      const b = await c.compress(chunk);
      expect(b.method).toBe(a.method);
      expect(b.data.equals(a.data)).toBe(true);
    }
    expect(c.counts).toEqual(sync.counts);
    expect(c.counts.skipped).toBeGreaterThan(0);
  });

  it('refuses a chunk longer than its slots', async () => {
    const c = new PooledChunkCompressor(z, 1, 4096, 1);
    await expect(c.compress(text(5000, 1))).rejects.toMatchObject({ code: 'RWAN_ERR_INTERNAL' });
    expect((await c.compress(text(4000, 2))).method).toBe(Method.ZSTD); // the slot came back
  });
});
