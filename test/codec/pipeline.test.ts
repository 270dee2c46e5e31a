/**
 * Codec and protocol together, the way the daemon will use them: epochs → EpochEncoder → CHUNK frames
 * in a byte stream → FrameDecoder (fed in arbitrary pieces) → EpochDecoder → the same pages.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EpochDecoder, EpochEncoder } from '../../src/codec/index.js';
import {
  chunk,
  EpochFlags,
  encodeFrame,
  epochBegin,
  epochEnd,
  type Frame,
  FrameDecoder,
  FrameType,
} from '../../src/protocol/index.js';

const PAGE = 512;

/** Three epochs over a small guest, as one byte stream, and the pages each epoch sent. */
function stream(zstdLevel: number | null): { bytes: Buffer; sent: Array<Map<number, Buffer>> } {
  const enc = new EpochEncoder({ pageSize: PAGE, zstdLevel, chunkBytes: 1500, cacheBytes: 64 * 1024 });
  const memory = Array.from({ length: 10 }, (_, i) => Buffer.alloc(PAGE, i));
  const parts: Buffer[] = [];
  const sent: Array<Map<number, Buffer>> = [];
  for (let epoch = 1; epoch <= 3; epoch++) {
    const dirty = [0, 2, 3, 5, 9].filter((p) => (p + epoch) % 2 === 0 || epoch === 1);
    for (const p of dirty) (memory[p] as Buffer)[(epoch * 37 + p) % PAGE] = epoch * 10 + p;
    if (epoch === 3) (memory[9] as Buffer).fill(0);
    const { chunks, summary } = enc.encodeEpoch(epoch, dirty, (i) => memory[dirty[i] as number] as Buffer);
    const frames: Frame[] = [
      epochBegin({
        epoch,
        flags: epoch === 1 ? EpochFlags.FULL : 0,
        baseEpoch: epoch === 1 ? null : epoch - 1,
        imageBytes: memory.length * PAGE,
      }),
      ...chunks.map((c) =>
        chunk({
          epoch,
          seq: c.seq,
          records: c.records,
          rawLength: c.rawLength,
          method: c.method,
          data: c.data,
        }),
      ),
      epochEnd({
        epoch,
        digest: summary.digest,
        pageCount: summary.pageCount,
        chunkCount: chunks.length,
        rawBytes: chunks.reduce((s, c) => s + c.rawLength, 0),
      }),
    ];
    for (const f of frames) parts.push(...encodeFrame(f));
    sent.push(new Map(dirty.map((p) => [p, Buffer.from(memory[p] as Buffer)])));
  }
  return { bytes: Buffer.concat(parts), sent };
}

/** Feed `bytes` cut at `cuts`, decode frames and epochs; the pages each epoch produced. */
function receive(bytes: Buffer, cuts: number[]): Array<Map<number, Buffer>> {
  const frames = new FrameDecoder();
  const dec = new EpochDecoder({ pageSize: PAGE, cacheBytes: 64 * 1024 });
  const got: Array<Map<number, Buffer>> = [];
  let current = new Map<number, Buffer>();
  const handle = (f: Frame) => {
    if (f.type === FrameType.EPOCH_BEGIN) {
      dec.begin(f.epoch);
      current = new Map();
    } else if (f.type === FrameType.CHUNK) {
      dec.chunk(f, (pfn, page) => current.set(pfn, Buffer.from(page)));
    } else if (f.type === FrameType.EPOCH_END) {
      dec.end(f.pageCount, f.digest);
      got.push(current);
    }
  };
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    frames.write(bytes.subarray(at, cut));
    at = cut;
    for (let f = frames.read(); f; f = frames.read()) handle(f);
  }
  frames.end();
  return got;
}

/** Epochs as one comparable string (vitest's deep equality on many Buffers is slow). */
function summary(epochs: Array<Map<number, Buffer>>): string {
  return epochs
    .map((m) => [...m].map(([pfn, page]) => `${pfn}:${page.toString('base64')}`).join(','))
    .join('|');
}

describe('codec inside protocol frames', () => {
  for (const level of [null, 1]) {
    const { bytes, sent: sentEpochs } = stream(level);
    const sent = summary(sentEpochs);
    it(`${level === null ? 'raw' : 'zstd'} chunks: split at every offset`, () => {
      for (let cut = 0; cut <= bytes.length; cut++) expect(summary(receive(bytes, [cut]))).toBe(sent);
    });
    it(`${level === null ? 'raw' : 'zstd'} chunks: one byte at a time, and random splits`, () => {
      expect(
        summary(
          receive(
            bytes,
            Array.from({ length: bytes.length }, (_, i) => i),
          ),
        ),
      ).toBe(sent);
      fc.assert(
        fc.property(fc.uniqueArray(fc.nat(bytes.length), { maxLength: 30 }), (cuts) => {
          expect(
            summary(
              receive(
                bytes,
                cuts.sort((a, b) => a - b),
              ),
            ),
          ).toBe(sent);
        }),
        { numRuns: 100 },
      );
    });
  }
});
