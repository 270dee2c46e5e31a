/**
 * Xen checkpoints as remus-wan epochs (src/xen/segment.ts): no pfn twice in an epoch (the first pass
 * of xl remus resends pages), a size cap, every byte back in order; and through the real page codec
 * (EpochEncoder → EpochDecoder), the stream comes out byte for byte, with its compression reported.
 */
import { describe, expect, it } from 'vitest';
import { EpochDecoder, EpochEncoder } from '../../src/codec/index.js';
import { type XenCheckpoint, XenCheckpointer } from '../../src/xen/checkpoint.js';
import { type GenerateOptions, generateXenStream } from '../../src/xen/generate.js';
import { readXenStream } from '../../src/xen/reader.js';
import { joinSegment, segmentCheckpoint, XEN_META_PFN, type XenSegment } from '../../src/xen/segment.js';
import { writeXenStream } from '../../src/xen/writer.js';

function checkpointsOf(o: GenerateOptions, tail = Buffer.alloc(0)): { bytes: Buffer; cps: XenCheckpoint[] } {
  const bytes = Buffer.concat([writeXenStream(generateXenStream(o)), tail]);
  return { bytes, cps: new XenCheckpointer().push(readXenStream(bytes).items) };
}

describe('segments', () => {
  it.each<[string, GenerateOptions, number]>([
    [
      'HVM, a live first pass (pfns repeat)',
      { guest: 'hvm', pages: 2000, checkpoints: 5, dirtyPages: 150, liveIterations: 3, seed: 31 },
      700,
    ],
    [
      'PV big-endian, small cap',
      { guest: 'pv', pages: 1200, checkpoints: 3, dirtyPages: 90, endian: 'be', seed: 32 },
      256,
    ],
    [
      'a migration with closing bytes',
      { guest: 'hvm', pages: 300, checkpoints: 0, dirtyPages: 40, end: 'migration', liveIterations: 2 },
      16384,
    ],
  ])('%s: unique pfns, capped, every byte back', (_name, o, cap) => {
    const tail =
      o.end === 'migration' ? Buffer.from('domain is yours, you are cleared to unpause\0') : Buffer.alloc(0);
    const { bytes, cps } = checkpointsOf(o, tail);
    const segs = cps.flatMap((c) => segmentCheckpoint(c, cap));
    for (const s of segs) {
      expect(new Set(s.pfns).size).toBe(s.pfns.length);
      expect(s.guestPages).toBeLessThanOrEqual(Math.max(cap, 1024)); // one PAGE_DATA record is not cut
      expect(s.pfns.slice(s.guestPages).every((p) => p >= XEN_META_PFN)).toBe(true);
      expect(s.pages.length).toBe(4096 * s.pfns.length);
    }
    // one last segment per checkpoint, in order
    expect(segs.filter((s) => s.last).map((s) => s.checkpoint)).toEqual(cps.map((c) => c.index));
    if (o.liveIterations)
      expect(segs.filter((s) => s.checkpoint === 0).length).toBeGreaterThan(o.liveIterations);
    const joined = segs.map((s) => joinSegment(s.pfns, s.pages));
    expect(joined.map((j) => [j.checkpoint, j.last, j.end])).toEqual(
      segs.map((s) => [s.checkpoint, s.last, s.end]),
    );
    expect(Buffer.concat(joined.map((j) => j.bytes)).equals(bytes)).toBe(true);
  });

  it('meta pages that are not a segment’s are refused', () => {
    const { cps } = checkpointsOf({ guest: 'hvm', pages: 50, checkpoints: 1, dirtyPages: 5 });
    const s = segmentCheckpoint(cps[1] as XenCheckpoint)[0] as XenSegment;
    const broken = Buffer.from(s.pages);
    broken.writeUInt32LE(0, s.guestPages * 4096);
    expect(() => joinSegment(s.pfns, broken)).toThrow(
      expect.objectContaining({ code: 'RWAN_ERR_XEN_RECORD' }),
    );
    const short = Buffer.from(s.pages);
    short.writeUInt32LE(1, s.guestPages * 4096 + 20 + 4 + 4); // the first cut claims one page more
    expect(() => joinSegment(s.pfns, short)).toThrow(
      expect.objectContaining({ code: 'RWAN_ERR_XEN_RECORD' }),
    );
  });
});

describe('through the page codec', () => {
  it('each segment an epoch: the stream comes out byte for byte; compression reported', () => {
    const o: GenerateOptions = {
      guest: 'hvm',
      pages: 4000,
      checkpoints: 20,
      dirtyPages: 300,
      liveIterations: 2,
      seed: 41,
    };
    const { bytes, cps } = checkpointsOf(o);
    const opts = { pageSize: 4096, cacheBytes: 64 * 2 ** 20 };
    const enc = new EpochEncoder({ ...opts, zstdLevel: 1, chunkBytes: 512 * 1024 });
    const dec = new EpochDecoder(opts);
    const out: Buffer[] = [];
    let wire = 0;
    let wireAfterFirst = 0;
    let rawAfterFirst = 0;
    let epoch = 0;
    for (const s of cps.flatMap((c) => segmentCheckpoint(c))) {
      epoch++;
      const { chunks, summary } = enc.encodeEpoch(epoch, s.pfns, (i) =>
        s.pages.subarray(4096 * i, 4096 * (i + 1)),
      );
      const pfns: number[] = [];
      const pages: Buffer[] = [];
      dec.begin(epoch);
      for (const c of chunks) {
        dec.chunk(c, (pfn, page) => {
          pfns.push(pfn);
          pages.push(Buffer.from(page));
        });
      }
      dec.end(summary.pageCount, summary.digest);
      out.push(joinSegment(pfns, Buffer.concat(pages)).bytes);
      const w = chunks.reduce((n, c) => n + c.data.length, 0);
      wire += w;
      if (s.checkpoint > 0) {
        wireAfterFirst += w;
        rawAfterFirst += joinSegment(s.pfns, s.pages).bytes.length;
      }
    }
    expect(Buffer.concat(out).equals(bytes)).toBe(true);
    const ratio = wireAfterFirst / rawAfterFirst;
    console.log(
      `Xen stream through the page codec: ${(bytes.length / 2 ** 20).toFixed(1)} MiB → ${(wire / 2 ** 20).toFixed(2)} MiB on the wire; ` +
        `checkpoints after the first pass: ${(rawAfterFirst / 2 ** 20).toFixed(2)} MiB → ${(wireAfterFirst / 2 ** 20).toFixed(2)} MiB (${(100 * ratio).toFixed(1)} %)`,
    );
    // pages rewritten in a few words go as deltas against the cached copy: far under the raw stream
    expect(ratio).toBeLessThan(0.3);
  });
});
