/**
 * Fuzz the frame decoder with a fixed budget (the long run is `npm run fuzz:protocol`): random bytes
 * and mutated valid streams, cut anywhere, give frames or one typed RWAN_ERR_PROTOCOL_* error —
 * never another exception, never a hang, never more buffered or allocated than a header plus the
 * largest cap. The properties live in tools/fuzz/protocol-arbitraries.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameDecoder } from '../../src/protocol/decoder.js';
import { DEFAULT_LIMITS, HEADER_SIZE, MIN_CHUNK_CAP } from '../../src/protocol/frames.js';
import {
  bufferBound,
  fuzzDecode,
  fuzzProperties,
  trackAllocations,
} from '../../tools/fuzz/protocol-arbitraries.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 500);
const smallest = { maxChunkData: MIN_CHUNK_CAP, maxRawLength: MIN_CHUNK_CAP };

describe.each([
  ['default caps', DEFAULT_LIMITS],
  ['smallest caps', smallest],
])('decoder fuzz (%s)', (_, limits) => {
  const p = fuzzProperties(limits);

  it('random bytes give frames or a typed error', () => {
    fc.assert(p.randomBytes, { numRuns: RUNS });
  });

  it('mutated valid streams give frames or a typed error', () => {
    fc.assert(p.mutatedStreams, { numRuns: RUNS });
  });

  it('valid streams cut anywhere decode whole', () => {
    fc.assert(p.validStreams, { numRuns: RUNS });
  });
});

describe('decoder allocation bound', () => {
  it('a CHUNK at the cap, fed in 64 KiB pieces, is buffered once and allocated once, at its size', () => {
    const payload = 26 + MIN_CHUNK_CAP;
    const wire = Buffer.alloc(HEADER_SIZE + payload);
    wire.set([0x52, 0x57, 1, 3], 0);
    wire.writeUInt32LE(payload, 8);
    wire.writeUInt32LE(MIN_CHUNK_CAP, HEADER_SIZE + 16); // rawLength
    wire[HEADER_SIZE + 20] = 1; // zstd
    const pieces: Buffer[] = [];
    for (let at = 0; at < wire.length; at += 65536) pieces.push(Buffer.from(wire.subarray(at, at + 65536)));
    const alloc = trackAllocations();
    let out: ReturnType<typeof fuzzDecode>;
    try {
      out = fuzzDecode(pieces, smallest);
    } finally {
      alloc.stop();
    }
    expect(out.error).toBeUndefined();
    expect(out.frames).toHaveLength(1);
    expect(out.maxBuffered).toBeLessThan(bufferBound(smallest));
    expect(alloc.max()).toBe(payload);
  });

  it('random garbage never leaves more than a header plus the cap buffered, even in one write', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 3000 }), (bytes) => {
        const d = new FrameDecoder(smallest);
        try {
          d.write(Buffer.from(bytes));
        } catch {
          return;
        }
        expect(d.bufferedBytes).toBeLessThan(bufferBound(smallest));
      }),
      { numRuns: RUNS },
    );
  });
});
