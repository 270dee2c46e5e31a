/**
 * The page codec end to end: epochs of pages through EpochEncoder → EpochDecoder give the same pages
 * and digests, whatever the page size, chunk size, cache size and compression; and every malformed
 * input is a typed error.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Method } from '../../src/codec/chunk-compression.js';
import { type EncodedChunk, EpochDecoder, EpochEncoder, type PageSink } from '../../src/codec/index.js';
import { Kind } from '../../src/codec/records.js';
import { codeOf } from '../helpers.js';

type Op =
  | { kind: 'sparse'; pfn: number; at: number; value: number }
  | { kind: 'rewrite'; pfn: number; seed: number }
  | {
      kind: 'zero';
      pfn: number;
    }
  | { kind: 'copy'; pfn: number; from: number };

/** Guest memory mutated by ops; an epoch's dirty set is the pfns its ops touched. */
function applyOps(memory: Map<number, Uint8Array>, ops: Op[], pageSize: number): number[] {
  const dirty = new Set<number>();
  for (const op of ops) {
    const page = memory.get(op.pfn) ?? new Uint8Array(pageSize);
    switch (op.kind) {
      case 'sparse':
        page[op.at % pageSize] = op.value;
        break;
      case 'rewrite': {
        let x = op.seed | 1;
        for (let i = 0; i < pageSize; i++) {
          x ^= x << 13;
          x ^= x >>> 17;
          x ^= x << 5;
          page[i] = x & 0xff;
        }
        break;
      }
      case 'zero':
        page.fill(0);
        break;
      case 'copy':
        page.set(memory.get(op.from) ?? new Uint8Array(pageSize));
        break;
    }
    memory.set(op.pfn, page);
    dirty.add(op.pfn);
  }
  return [...dirty];
}

function roundTrip(
  epochs: Op[][],
  opts: {
    pageSize: number;
    chunkBytes: number;
    cacheBytes: number;
    zstdLevel: number | null;
    shuffle: boolean;
  },
): void {
  const enc = new EpochEncoder(opts);
  const dec = new EpochDecoder(opts);
  const memory = new Map<number, Uint8Array>();
  const replica = new Map<number, Uint8Array>();
  const sink: PageSink = (pfn, page) => replica.set(pfn, Uint8Array.from(page));
  epochs.forEach((ops, e) => {
    const dirty = applyOps(memory, ops, opts.pageSize);
    if (!opts.shuffle) dirty.sort((a, b) => a - b);
    const { chunks, summary } = enc.encodeEpoch(
      e + 1,
      dirty,
      (i) => memory.get(dirty[i] as number) as Uint8Array,
    );
    dec.begin(e + 1);
    for (const c of chunks) dec.chunk(c, sink);
    dec.end(summary.pageCount, summary.digest);
    for (const pfn of dirty) {
      const same = Buffer.compare(replica.get(pfn) ?? Buffer.alloc(0), memory.get(pfn) as Uint8Array) === 0;
      if (!same) expect.fail(`epoch ${e + 1}: pfn ${pfn} differs after decoding`);
    }
  });
}

const opArb = (pfns: number): fc.Arbitrary<Op> =>
  fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        kind: fc.constant('sparse' as const),
        pfn: fc.nat(pfns - 1),
        at: fc.nat(65535),
        value: fc.nat(255),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('rewrite' as const),
        pfn: fc.nat(pfns - 1),
        seed: fc.integer(),
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('zero' as const), pfn: fc.nat(pfns - 1) }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('copy' as const),
        pfn: fc.nat(pfns - 1),
        from: fc.nat(pfns - 1),
      }),
    },
  );

describe('round trip', () => {
  it('random epoch sequences decode to the same pages (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(opArb(48), { maxLength: 60 }), { minLength: 1, maxLength: 8 }),
        fc.constantFrom(512, 4096),
        fc.constantFrom(600, 5000, 1 << 20),
        fc.constantFrom(0, 4 * 4096, 1 << 20),
        fc.constantFrom(null, 1, 3),
        fc.boolean(),
        (epochs, pageSize, chunkBytes, cacheBytes, zstdLevel, shuffle) => {
          roundTrip(epochs, { pageSize, chunkBytes, cacheBytes, zstdLevel, shuffle });
        },
      ),
      { numRuns: 200 },
    );
  });

  it('uses every record kind and the cache pays off', () => {
    const enc = new EpochEncoder({ pageSize: 4096 });
    const pages = Array.from({ length: 8 }, (_, i) => new Uint8Array(4096).fill(i + 1));
    enc.encodeEpoch(1, [0, 1, 2, 3, 4, 5, 6, 7], (i) => pages[i] as Uint8Array);
    pages[0]?.set([9, 9, 9], 100); // sparse change → DELTA
    const dupOf = pages[1] as Uint8Array;
    const { summary } = enc.encodeEpoch(
      2,
      [0, 1, 8, 9, 10],
      (i) =>
        [pages[0], pages[1], dupOf, new Uint8Array(4096), new Uint8Array(4096).fill(77)][i] as Uint8Array,
    );
    // 0: delta; 1: unchanged → empty delta; 8: same content as pfn 1 this epoch → DUP; 9: ZERO; 10: RAW
    expect(summary.kinds).toEqual({ zero: 1, raw: 1, delta: 2, dup: 1 });
    expect(summary.wireBytes).toBeLessThan(500);
    expect(enc.cacheStats().hits).toBe(2);
  });
});

/** One epoch with a DELTA, encoded raw (no zstd) so tests can poke at the bytes. */
function rawChunks(): { first: EncodedChunk[]; firstDigest: Buffer; second: EncodedChunk } {
  const enc = new EpochEncoder({ pageSize: 512, zstdLevel: null });
  const a = new Uint8Array(512).fill(3);
  const { chunks: first, summary: s1 } = enc.encodeEpoch(1, [5], () => a);
  const b = Uint8Array.from(a);
  b[10] = 4;
  const { chunks } = enc.encodeEpoch(2, [5], () => b);
  return { first, firstDigest: s1.digest, second: chunks[0] as EncodedChunk };
}

describe('restart: a decoder rebuilt from a cache snapshot, the epochs since and the replica', () => {
  it('decodes the following epochs exactly like the decoder that never stopped (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(opArb(24), { minLength: 1, maxLength: 30 }), { minLength: 3, maxLength: 9 }),
        fc.nat(100),
        fc.nat(100),
        fc.constantFrom(4, 8, 40),
        (epochs, a, b, cachePages) => {
          const opts = { pageSize: 512, chunkBytes: 2048, cacheBytes: cachePages * 512, zstdLevel: null };
          const enc = new EpochEncoder(opts);
          const dec = new EpochDecoder(opts);
          const memory = new Map<number, Uint8Array>();
          const replica = new Map<number, Uint8Array>();
          const snapAt = a % (epochs.length - 1); // the checkpoint: after epoch snapAt (0: before any)
          const stopAt = snapAt + 1 + (b % (epochs.length - 1 - snapAt)); // the crash: after epoch stopAt
          let snapshot: Buffer | null = null;
          let content = new Map<number, Uint8Array>();
          const since: Array<{ epoch: number; pages: Array<[number, Uint8Array | null]> }> = [];
          let fresh: EpochDecoder | undefined;
          epochs.forEach((ops, e) => {
            const epoch = e + 1;
            const dirty = applyOps(memory, ops, 512).sort((x, y) => x - y);
            const { chunks, summary } = enc.encodeEpoch(
              epoch,
              dirty,
              (i) => memory.get(dirty[i] as number) as Uint8Array,
            );
            const d = fresh ?? dec;
            const seen: Array<[number, Uint8Array | null]> = [];
            d.begin(epoch);
            for (const c of chunks) {
              d.chunk(c, (pfn, page, zero) => {
                replica.set(pfn, Uint8Array.from(page));
                seen.push([pfn, zero ? null : Uint8Array.from(page)]);
              });
            }
            d.end(summary.pageCount, summary.digest);
            if (epoch === snapAt) {
              snapshot = dec.cacheSnapshot();
              content = new Map(dec.cachedPages().map(({ pfn, page }) => [pfn, Uint8Array.from(page)]));
            }
            if (epoch > snapAt && epoch <= stopAt) since.push({ epoch, pages: seen });
            if (epoch === stopAt) {
              // a restart: the checkpoint's index and content, then the epochs since, page by page
              fresh = new EpochDecoder(opts);
              for (const { pfn, page } of fresh.restoreCache(snapshot, snapAt === 0 ? null : snapAt)) {
                page.set(content.get(pfn) as Uint8Array);
              }
              for (const s of since) for (const [pfn, page] of s.pages) fresh.absorb(s.epoch, pfn, page);
              expect(fresh.cacheSnapshot()).toEqual(dec.cacheSnapshot());
            }
          });
          for (const [pfn, page] of memory)
            expect(Buffer.compare(replica.get(pfn) as Uint8Array, page)).toBe(0);
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('strict decoding: each fault is a typed error, never a wrong page', () => {
  const none: PageSink = () => undefined;

  it('a delta against a page the receiver lacks', () => {
    const { second } = rawChunks();
    const dec = new EpochDecoder({ pageSize: 512 });
    dec.begin(2);
    expect(codeOf(() => dec.chunk(second, none))).toBe('RWAN_ERR_CODEC_MISSING_BASE');
    // and the decoder stays failed until reset
    expect(codeOf(() => dec.begin(3))).toBe('RWAN_ERR_CODEC_MISSING_BASE');
    dec.reset();
    dec.begin(3);
  });

  it('a run past the page end, an unknown kind, a truncated record, trailing bytes', () => {
    const { first, firstDigest, second } = rawChunks();
    const fresh = () => {
      const dec = new EpochDecoder({ pageSize: 512 });
      dec.begin(1);
      for (const c of first) dec.chunk(c, none);
      dec.end(1, firstDigest);
      dec.begin(2);
      return dec;
    };
    // record: kind, zigzag(pfn 5 − (−1 + 1)) = 10, len 3, delta = [zrun 10, lit 1, xor 3^4 = 7]
    expect([...second.data]).toEqual([Kind.DELTA, 10, 3, 10, 1, 7]);
    const overrun = { ...second, data: Buffer.from([Kind.DELTA, 10, 4, 0x80, 0x04, 1, 7]), rawLength: 7 };
    expect(codeOf(() => fresh().chunk(overrun, none))).toBe('RWAN_ERR_CODEC_RUN_OVERFLOW');
    const badKind = { ...second, data: Buffer.from([9, 10, 3, 10, 1, 7]) };
    expect(codeOf(() => fresh().chunk(badKind, none))).toBe('RWAN_ERR_CODEC_BAD_KIND');
    const cut = { ...second, data: Buffer.from([Kind.DELTA, 10, 3, 10, 1]), rawLength: 5 };
    expect(codeOf(() => fresh().chunk(cut, none))).toBe('RWAN_ERR_CODEC_TRUNCATED');
    const trailing = { ...second, data: Buffer.from([...second.data, 0, 0]), rawLength: 8 };
    expect(codeOf(() => fresh().chunk(trailing, none))).toBe('RWAN_ERR_CODEC_CHUNK_LENGTH');
    const emptyLit = { ...second, data: Buffer.from([Kind.DELTA, 10, 2, 10, 0]), rawLength: 5 };
    expect(codeOf(() => fresh().chunk(emptyLit, none))).toBe('RWAN_ERR_CODEC_BAD_DELTA');
  });

  it('a bad delta among good ones: the pages before it come out, in order, and its error wins', () => {
    const enc = new EpochEncoder({ pageSize: 512, zstdLevel: null });
    const pages = [1, 2, 3, 4].map((v) => new Uint8Array(512).fill(v));
    const { chunks, summary } = enc.encodeEpoch(1, [0, 1, 2, 3], (i) => pages[i] as Uint8Array);
    const dec = new EpochDecoder({ pageSize: 512 });
    dec.begin(1);
    for (const c of chunks) dec.chunk(c, none);
    dec.end(4, summary.digest);
    dec.begin(2);
    const good = [Kind.DELTA, 0, 3, 0, 1, 0xff]; // pfn +1: byte 0 ^= 0xff
    const overrun = [Kind.DELTA, 0, 4, 0x80, 0x04, 1, 7]; // a run of 512 then a literal: past the end
    const truncatedRaw = [Kind.RAW, 0, 1, 2, 3]; // a raw page cut short, after the bad delta
    const data = Buffer.from([...good, ...good, ...overrun, ...truncatedRaw]);
    const seen: Array<[number, number]> = [];
    const err = (() => {
      try {
        dec.chunk(
          { epoch: 2, seq: 0, records: 4, rawLength: data.length, method: Method.RAW, data },
          (pfn, page) => seen.push([pfn, page[0] as number]),
        );
      } catch (e) {
        return e as { code: string; details: { pfn: number } };
      }
      return undefined;
    })();
    expect(err?.code).toBe('RWAN_ERR_CODEC_RUN_OVERFLOW');
    expect(err?.details.pfn).toBe(2);
    expect(seen).toEqual([
      [0, 1 ^ 0xff],
      [1, 2 ^ 0xff],
    ]);
  });

  it('a pfn twice in an epoch, also after a step back', () => {
    const dec = new EpochDecoder({ pageSize: 512, cacheBytes: 4096 });
    dec.begin(1);
    // ZERO pfn 5 (step 5 → zigzag 10), ZERO pfn 3 (step −3 → 5), ZERO pfn 5 again (step 1 → 2)
    const data = Buffer.from([Kind.ZERO, 10, Kind.ZERO, 5, Kind.ZERO, 2]);
    const c = { epoch: 1, seq: 0, records: 3, rawLength: data.length, method: Method.RAW, data };
    expect(codeOf(() => dec.chunk(c, none))).toBe('RWAN_ERR_CODEC_SEQUENCE');
    const ok = new EpochDecoder({ pageSize: 512, cacheBytes: 4096 });
    ok.begin(1);
    const seen: number[] = [];
    ok.chunk({ ...c, records: 2, rawLength: 4, data: data.subarray(0, 4) }, (pfn) => seen.push(pfn));
    expect(seen).toEqual([5, 3]);
  });

  it('wrong chunk lengths and counts are refused before any work', () => {
    const { first } = rawChunks();
    const c = first[0] as EncodedChunk;
    const dec = () => {
      const d = new EpochDecoder({ pageSize: 512, maxChunkBytes: 1 << 16 });
      d.begin(1);
      return d;
    };
    expect(codeOf(() => dec().chunk({ ...c, rawLength: c.rawLength + 1 }, none))).toBe(
      'RWAN_ERR_CODEC_CHUNK_LENGTH',
    );
    expect(codeOf(() => dec().chunk({ ...c, rawLength: 1 << 30 }, none))).toBe('RWAN_ERR_CODEC_CHUNK_LENGTH');
    expect(codeOf(() => dec().chunk({ ...c, records: 1e9 }, none))).toBe('RWAN_ERR_CODEC_CHUNK_LENGTH');
    expect(codeOf(() => dec().chunk({ ...c, seq: 1 }, none))).toBe('RWAN_ERR_CODEC_SEQUENCE');
    expect(codeOf(() => dec().chunk({ ...c, method: 7 }, none))).toBe('RWAN_ERR_CODEC_DECOMPRESS');
  });

  it('a corrupted zstd chunk, or one that decodes larger than announced', () => {
    const enc = new EpochEncoder({ pageSize: 4096, zstdLevel: 1 });
    const { chunks } = enc.encodeEpoch(1, [1, 2, 3], () => new Uint8Array(4096).fill(5));
    const c = chunks[0] as EncodedChunk;
    expect(c.method).toBe(Method.ZSTD);
    const d = () => {
      const dec = new EpochDecoder({ pageSize: 4096 });
      dec.begin(1);
      return dec;
    };
    const bad = Buffer.from(c.data);
    bad[bad.length - 2] = (bad[bad.length - 2] as number) ^ 0xff;
    expect(['RWAN_ERR_CODEC_DECOMPRESS', 'RWAN_ERR_CODEC_CHUNK_LENGTH']).toContain(
      codeOf(() => d().chunk({ ...c, data: bad }, none)),
    );
    expect(codeOf(() => d().chunk({ ...c, rawLength: c.rawLength - 1 }, none))).toBe(
      'RWAN_ERR_CODEC_DECOMPRESS',
    );
  });

  it('a flipped byte in a raw page fails the digest; a wrong page count too', () => {
    const enc = new EpochEncoder({ pageSize: 512, zstdLevel: null });
    const { chunks, summary } = enc.encodeEpoch(1, [1], () => new Uint8Array(512).fill(8));
    const c = chunks[0] as EncodedChunk;
    const flipped = Buffer.from(c.data);
    flipped[100] = 1;
    const dec = new EpochDecoder({ pageSize: 512 });
    dec.begin(1);
    dec.chunk({ ...c, data: flipped }, none);
    expect(codeOf(() => dec.end(summary.pageCount, summary.digest))).toBe('RWAN_ERR_CODEC_DIGEST');
    const dec2 = new EpochDecoder({ pageSize: 512 });
    dec2.begin(1);
    dec2.chunk(c, none);
    expect(codeOf(() => dec2.end(2, summary.digest))).toBe('RWAN_ERR_CODEC_DIGEST');
  });

  it('the encoder refuses a pfn twice, a wrong page size, and calls out of order', () => {
    const enc = new EpochEncoder({ pageSize: 512 });
    expect(codeOf(() => enc.add(1, new Uint8Array(512)))).toBe('RWAN_ERR_CODEC_SEQUENCE');
    enc.begin(1);
    enc.add(1, new Uint8Array(512));
    expect(codeOf(() => enc.add(1, new Uint8Array(512)))).toBe('RWAN_ERR_CODEC_SEQUENCE');
    expect(codeOf(() => enc.add(2, new Uint8Array(100)))).toBe('RWAN_ERR_CODEC_SEQUENCE');
    expect(codeOf(() => enc.begin(2))).toBe('RWAN_ERR_CODEC_SEQUENCE');
    expect(codeOf(() => new EpochEncoder({ pageSize: 1000 }))).toBe('RWAN_ERR_INVALID_VALUE');
  });
});

describe('incompressible chunks', () => {
  it('after a chunk zstd cannot shrink, the next ones go raw without an attempt, and round-trip', () => {
    const enc = new EpochEncoder({ pageSize: 4096, chunkBytes: 16 * 1024, zstdLevel: 1 });
    const dec = new EpochDecoder({ pageSize: 4096 });
    let x = 12345;
    const random = () => {
      const p = new Uint8Array(4096);
      for (let i = 0; i < p.length; i++) {
        x = (Math.imul(x, 1103515245) + 12345) | 0;
        p[i] = x >>> 24;
      }
      return p;
    };
    const pages = Array.from({ length: 64 }, random);
    const { chunks, summary } = enc.encodeEpoch(
      1,
      pages.map((_, i) => i),
      (i) => pages[i] as Uint8Array,
    );
    expect(chunks.length).toBe(16);
    expect(chunks.every((c) => c.method === Method.RAW)).toBe(true);
    // 16 chunks: tried at 0, skip 1; tried at 2, skip 2; tried at 5, skip 4; tried at 10, skip 8
    expect(enc.compressionStats()).toEqual({ attempted: 4, skipped: 12 });
    dec.begin(1);
    const got: Uint8Array[] = [];
    for (const c of chunks) dec.chunk(c, (_, p) => got.push(Uint8Array.from(p)));
    dec.end(summary.pageCount, summary.digest);
    expect(got.every((p, i) => Buffer.compare(p, pages[i] as Uint8Array) === 0)).toBe(true);
  });
});

describe('zstd dictionary', () => {
  it('both sides with the dictionary round-trip; a receiver without it gets a typed error', () => {
    const dictionary = Buffer.from(
      'GET /api/v1/items HTTP/1.1 Host: example Content-Type: application/json '.repeat(40),
    );
    const text = Buffer.alloc(4096);
    text.write('{"id": 42, "name": "GET /api/v1/items", "type": "application/json"} '.repeat(50));
    const enc = new EpochEncoder({ pageSize: 4096, dictionary });
    const { chunks, summary } = enc.encodeEpoch(1, [3], () => text);
    expect(chunks[0]?.method).toBe(Method.ZSTD_DICT);
    const dec = new EpochDecoder({ pageSize: 4096, dictionary });
    dec.begin(1);
    let got: Uint8Array | undefined;
    dec.chunk(chunks[0] as EncodedChunk, (_, p) => {
      got = Uint8Array.from(p);
    });
    dec.end(summary.pageCount, summary.digest);
    expect(Buffer.compare(got as Uint8Array, text)).toBe(0);
    const without = new EpochDecoder({ pageSize: 4096 });
    without.begin(1);
    expect(codeOf(() => without.chunk(chunks[0] as EncodedChunk, () => undefined))).toBe(
      'RWAN_ERR_CODEC_DECOMPRESS',
    );
  });
});
