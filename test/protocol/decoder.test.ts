import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RwanError } from '../../src/errors.js';
import { FrameDecoder } from '../../src/protocol/decoder.js';
import {
  ack,
  chunk,
  encodeFrame,
  epochBegin,
  epochEnd,
  errorFrame,
  heartbeat,
  hello,
  resume,
} from '../../src/protocol/encoder.js';
import {
  ChunkMethod,
  DEFAULT_LIMITS,
  type Frame,
  HEADER_SIZE,
  MAX_CONTROL_PAYLOAD,
  MIN_CHUNK_CAP,
  ResumeReason,
  Role,
  WireErrorCode,
} from '../../src/protocol/frames.js';
import {
  ackArb,
  chunkArb,
  epochBeginArb,
  epochEndArb,
  errorArb,
  frameArb,
  heartbeatArb,
  helloArb,
  resumeArb,
  split,
  streamOf,
} from '../../tools/fuzz/protocol-arbitraries.js';

const sid = Buffer.alloc(16, 0x5a);

/** One frame of each type, two CHUNKs. */
const SAMPLE: Frame[] = [
  hello({ sessionId: sid, pageSize: 4096, role: Role.SENDER, peerName: 'src-host €' }),
  epochBegin({ epoch: 5, baseEpoch: 4, imageBytes: 1 << 30 }),
  chunk({ epoch: 5, seq: 0, records: 2, rawLength: 24, data: Buffer.from('abcdefghijklmnopqrstuvwx') }),
  chunk({
    epoch: 5,
    seq: 1,
    records: 1,
    rawLength: 9000,
    method: ChunkMethod.ZSTD,
    data: Buffer.from('zstd....'),
  }),
  epochEnd({ epoch: 5, digest: Buffer.alloc(16, 3), pageCount: 3, chunkCount: 2, rawBytes: 9024 }),
  ack({ epoch: 5, flags: 1, receivedBytes: 12345 }),
  heartbeat({ sentAt: 1_700_000_000_000, seq: 3, lastAcked: 5 }),
  resume({ sessionId: sid, fromEpoch: 6, reason: ResumeReason.RECONNECT }),
  errorFrame({ code: WireErrorCode.SHUTDOWN, fatal: false, message: 'bye' }),
];

/** Feeds `pieces` and returns every frame. */
function decodeAll(pieces: readonly Buffer[], d = new FrameDecoder()): Frame[] {
  const out: Frame[] = [];
  for (const p of pieces) {
    d.write(p);
    out.push(...d.readAll());
  }
  return out;
}

/** The error that feeding `pieces` (and then end(), when `end`) raises. */
function errorOf(pieces: readonly Buffer[], end = false): RwanError {
  const d = new FrameDecoder();
  try {
    for (const p of pieces) d.write(p);
    if (end) d.end();
  } catch (err) {
    if (err instanceof RwanError) return err;
    throw err;
  }
  throw new Error('no error');
}

const bytesOf = (f: Frame) => Buffer.concat(encodeFrame(f));

/** `b` with the u32 at payload offset `at` (or header offset with `header`) replaced. */
function patch(b: Buffer, edits: [at: number, bytes: number[]][]): Buffer {
  const c = Buffer.from(b);
  for (const [at, bs] of edits) c.set(bs, at);
  return c;
}

const u32le = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];

describe('round trip', () => {
  const arbs = {
    HELLO: helloArb,
    EPOCH_BEGIN: epochBeginArb,
    CHUNK: chunkArb(DEFAULT_LIMITS),
    EPOCH_END: epochEndArb,
    ACK: ackArb,
    HEARTBEAT: heartbeatArb,
    RESUME: resumeArb,
    ERROR: errorArb,
  } as const;

  it.each(Object.entries(arbs))('%s', (_, arb) => {
    fc.assert(
      fc.property(arb as fc.Arbitrary<Frame>, (frame) => {
        expect(decodeAll([bytesOf(frame)])).toEqual([frame]);
      }),
      { numRuns: 200 },
    );
  });

  it('streams of mixed frames, cut anywhere', () => {
    fc.assert(
      fc.property(
        fc.array(frameArb(DEFAULT_LIMITS), { maxLength: 10 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (frames, cuts) => {
          expect(decodeAll(split(streamOf(frames), cuts))).toEqual(frames);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('split writes', () => {
  const stream = streamOf(SAMPLE);

  it('gives the same frames for a cut at every offset', () => {
    for (let i = 0; i <= stream.length; i++) {
      expect(decodeAll([stream.subarray(0, i), stream.subarray(i)]), `cut at ${i}`).toEqual(SAMPLE);
    }
  });

  it('gives the same frames fed one byte at a time', () => {
    const d = new FrameDecoder();
    const out: Frame[] = [];
    for (let i = 0; i < stream.length; i++) {
      d.write(stream.subarray(i, i + 1));
      expect(d.bufferedBytes).toBeLessThan(HEADER_SIZE + MAX_CONTROL_PAYLOAD);
      out.push(...d.readAll());
    }
    expect(out).toEqual(SAMPLE);
    expect(d.bufferedBytes).toBe(0);
    expect(d.decodedBytes).toBe(stream.length);
    d.end();
  });

  it('accepts empty writes', () => {
    expect(decodeAll([Buffer.alloc(0), stream, Buffer.alloc(0)])).toEqual(SAMPLE);
  });
});

describe('zero copy', () => {
  const data = Buffer.alloc(5000, 0x42);
  const frame = chunk({ epoch: 1, seq: 0, records: 1, rawLength: data.length, data });
  const wire = bytesOf(frame);
  const dataAt = HEADER_SIZE + 26;

  it('CHUNK data is a view of the written chunk when it arrived contiguous', () => {
    const input = Buffer.concat([bytesOf(SAMPLE[5] as Frame), wire]);
    const [, got] = decodeAll([input]) as [Frame, Frame & { data: Buffer }];
    expect(got.data.buffer).toBe(input.buffer);
    expect(got.data.byteOffset).toBe(input.byteOffset + 29 + dataAt);
    expect(got.data.length).toBe(5000);
  });

  it('only the header is copied when the header straddles', () => {
    const a = Buffer.alloc(5);
    const b = Buffer.alloc(wire.length - 5);
    wire.copy(a, 0, 0, 5);
    wire.copy(b, 0, 5);
    const [got] = decodeAll([a, b]) as [Frame & { data: Buffer }];
    expect(got.data.buffer).toBe(b.buffer);
    expect(got.data.byteOffset).toBe(b.byteOffset + dataAt - 5);
  });

  it('the payload is copied once when it straddles', () => {
    const cut = dataAt + 100;
    const a = Buffer.alloc(cut);
    const b = Buffer.alloc(wire.length - cut);
    wire.copy(a, 0, 0, cut);
    wire.copy(b, 0, cut);
    const [got] = decodeAll([a, b]) as [Frame & { data: Buffer }];
    expect(got.data.buffer).not.toBe(a.buffer);
    expect(got.data.buffer).not.toBe(b.buffer);
    expect(got).toEqual(frame);
  });
});

describe('violations: one code each, with the wire code for the peer', () => {
  const a = bytesOf(ack({ epoch: 1, receivedBytes: 0 }));
  const h = bytesOf(hello({ sessionId: sid, pageSize: 4096, role: Role.SENDER, peerName: 'abc' }));
  const e = bytesOf(errorFrame({ message: 'oops' }));
  const c = bytesOf(
    chunk({
      epoch: 1,
      seq: 0,
      records: 1,
      rawLength: 10,
      method: ChunkMethod.ZSTD,
      data: Buffer.from('xyz'),
    }),
  );
  const P = HEADER_SIZE; // payload offset
  const HELLO_NAME_LEN = P + 51;
  const cases: [string, string, Buffer[], number][] = [
    ['bad magic', 'BAD_MAGIC', [patch(a, [[0, [0x57, 0x52]]])], WireErrorCode.PROTOCOL_VIOLATION],
    ['TLS record instead of a frame', 'BAD_MAGIC', [Buffer.from('160301020000010001fc0303', 'hex')], 1],
    ['version 2', 'UNSUPPORTED_VERSION', [patch(a, [[2, [2]]])], WireErrorCode.UNSUPPORTED_VERSION],
    ['version 0', 'UNSUPPORTED_VERSION', [patch(a, [[2, [0]]])], 2],
    ['type 0', 'UNKNOWN_TYPE', [patch(a, [[3, [0]]])], 1],
    ['type 10', 'UNKNOWN_TYPE', [patch(a, [[3, [10]]])], 1],
    ['header flags', 'RESERVED', [patch(a, [[4, [1]]])], 1],
    ['reserved u8', 'RESERVED', [patch(a, [[5, [0x80]]])], 1],
    ['reserved u16', 'RESERVED', [patch(a, [[7, [1]]])], 1],
    ['undefined ACK flag', 'RESERVED', [patch(a, [[P + 8, [2]]])], 1],
    ['control frame above 4 KiB', 'FRAME_TOO_LARGE', [patch(a.subarray(0, 12), [[8, u32le(4097)]])], 3],
    [
      'CHUNK above 16 MiB',
      'FRAME_TOO_LARGE',
      [patch(c.subarray(0, 12), [[8, u32le(26 + 16 * 2 ** 20 + 1)]])],
      3,
    ],
    ['CHUNK of 4 GiB', 'FRAME_TOO_LARGE', [patch(c.subarray(0, 12), [[8, u32le(0xffffffff)]])], 3],
    ['CHUNK rawLength above 16 MiB', 'FIELD_TOO_LARGE', [patch(c, [[P + 16, u32le(16 * 2 ** 20 + 1)]])], 3],
    ['peer name of 257 bytes', 'FIELD_TOO_LARGE', [peerNameOf(257, 257)], 3],
    ['error message of 1025 bytes', 'FIELD_TOO_LARGE', [errorMessageOf(1025)], 3],
    ['ACK shorter than its fields', 'TRUNCATED', [patch(a, [[8, u32le(16)]]).subarray(0, 28)], 1],
    ['HELLO shorter than its fields', 'TRUNCATED', [patch(h, [[8, u32le(44)]]).subarray(0, 56)], 1],
    ['peer name running past the payload', 'TRUNCATED', [patch(h, [[HELLO_NAME_LEN, [4, 0]]])], 1],
    [
      'ACK longer than its fields',
      'TRAILING_BYTES',
      [Buffer.concat([patch(a, [[8, u32le(18)]]), Buffer.from([0])])],
      1,
    ],
    ['bytes after the peer name', 'TRAILING_BYTES', [patch(h, [[HELLO_NAME_LEN, [2, 0]]])], 1],
    ['bytes after the error message', 'TRAILING_BYTES', [patch(e, [[P + 3, [3, 0]]])], 1],
    ['page size 3000', 'INVALID_FIELD', [patch(h, [[P + 22, u32le(3000)]])], 1],
    ['epoch 2^64-1 where none is not allowed', 'INVALID_FIELD', [patch(a, [[P, Array(8).fill(0xff)]])], 1],
    ['epoch 2^53', 'INVALID_FIELD', [patch(a, [[P + 6, [0x20, 0]]])], 1],
    ['fatal = 2', 'INVALID_FIELD', [patch(e, [[P + 2, [2]]])], 1],
    ['peer name not UTF-8', 'INVALID_FIELD', [patch(h, [[P + 53, [0xc3, 0x28, 0x61]]])], 1],
    ['CHUNK method 3', 'INVALID_FIELD', [patch(c, [[P + 20, [3]]])], 1],
    ['RESUME reason 7', 'INVALID_FIELD', [patch(bytesOf(SAMPLE[7] as Frame), [[P + 24, [7]]])], 1],
  ];

  it.each(cases)('%s → %s', (_, code, pieces, wireCode) => {
    const err = errorOf(pieces);
    expect(err.code).toBe(`RWAN_ERR_PROTOCOL_${code}`);
    expect(err.details).toMatchObject({ wireCode, direction: 'decode', offset: 0 });
  });

  it('UNEXPECTED_EOF: the stream ends inside a header or a payload', () => {
    expect(errorOf([a.subarray(0, 5)], true).code).toBe('RWAN_ERR_PROTOCOL_UNEXPECTED_EOF');
    expect(errorOf([a.subarray(0, 12)], true).details).toMatchObject({
      part: 'payload',
      needed: 17,
      buffered: 0,
    });
    expect(errorOf([a, a.subarray(0, 20)], true).details).toMatchObject({ offset: a.length, buffered: 8 });
    const d = new FrameDecoder();
    d.write(a);
    expect(() => d.end()).not.toThrow();
  });

  it('every kind of violation has its own code', () => {
    const codes = new Set([...cases.map(([, code]) => code), 'UNEXPECTED_EOF']);
    expect(codes.size).toBe(10);
  });

  it('an oversized payload fails from its header alone, before any of it is buffered', () => {
    const d = new FrameDecoder();
    expect(() => d.write(patch(c.subarray(0, 12), [[8, u32le(0xffffffff)]]))).toThrow(RwanError);
    expect(d.bufferedBytes).toBe(0);
  });

  it('the offset names the frame that broke the rules', () => {
    const err = errorOf([a, a, patch(a, [[0, [0]]])]);
    expect(err.details.offset).toBe(2 * a.length);
  });

  it('stays failed: later writes and end() throw the same error; earlier frames stay readable', () => {
    const d = new FrameDecoder();
    let first: unknown;
    try {
      d.write(Buffer.concat([a, patch(a, [[3, [99]]])]));
    } catch (err) {
      first = err;
    }
    expect(first).toBeInstanceOf(RwanError);
    expect(d.error).toBe(first);
    expect(d.read()).toMatchObject({ epoch: 1 });
    expect(() => d.write(a)).toThrow(first as Error);
    expect(() => d.write(Buffer.alloc(0))).toThrow(first as Error);
    expect(() => d.end()).toThrow(first as Error);
  });

  function peerNameOf(declared: number, actual: number): Buffer {
    const f = bytesOf(
      hello({
        sessionId: sid,
        pageSize: 4096,
        role: Role.SENDER,
        peerName: 'x'.repeat(Math.min(actual, 256)),
      }),
    );
    const out = Buffer.concat([f, Buffer.alloc(actual - Math.min(actual, 256), 0x78)]);
    out.writeUInt32LE(53 + actual, 8);
    out.writeUInt16LE(declared, HELLO_NAME_LEN);
    return out;
  }

  function errorMessageOf(n: number): Buffer {
    const out = Buffer.alloc(HEADER_SIZE + 5 + n, 0x61);
    out.set([0x52, 0x57, 1, 8, 0, 0, 0, 0], 0);
    out.writeUInt32LE(5 + n, 8);
    out.writeUInt16LE(1, P);
    out[P + 2] = 1;
    out.writeUInt16LE(n, P + 3);
    return out;
  }
});

describe('backpressure', () => {
  const a = bytesOf(ack({ epoch: 1, receivedBytes: 0 })); // 29 bytes on the wire

  it('write() returns false above highWaterMark; read() emptying the queue emits drain once', () => {
    const d = new FrameDecoder({ highWaterMark: 60 });
    let drains = 0;
    d.on('drain', () => drains++);
    expect(d.write(Buffer.concat([a, a]))).toBe(true); // 58 ≤ 60
    expect(d.pendingBytes).toBe(58);
    expect(d.write(a)).toBe(false); // 87 > 60
    expect(d.pendingFrames).toBe(3);
    d.read();
    d.read();
    expect(drains).toBe(0);
    d.read();
    expect(drains).toBe(1);
    expect(d.pendingBytes).toBe(0);
    expect(d.read()).toBeUndefined();
    expect(drains).toBe(1);
  });

  it('no drain unless a write returned false', () => {
    const d = new FrameDecoder({ highWaterMark: 1000 });
    let drains = 0;
    d.on('drain', () => drains++);
    d.write(a);
    d.readAll();
    expect(drains).toBe(0);
  });

  it('a partial frame does not count as pending', () => {
    const d = new FrameDecoder({ highWaterMark: 0 });
    expect(d.write(a.subarray(0, 28))).toBe(true);
    expect(d.bufferedBytes).toBe(16); // the header is consumed, 16 of 17 payload bytes wait
    expect(d.write(a.subarray(28))).toBe(false);
  });

  it('many frames in one write are queued and read in order', () => {
    const frames = Array.from({ length: 3000 }, (_, i) => heartbeat({ sentAt: i, seq: i }));
    const d = new FrameDecoder();
    d.write(streamOf(frames));
    const got: Frame[] = [];
    for (let f = d.read(); f; f = d.read()) got.push(f);
    expect(got).toEqual(frames);
  });
});

describe('options', () => {
  it('caps are configurable and enforced', () => {
    const d = new FrameDecoder({ maxChunkData: MIN_CHUNK_CAP, maxRawLength: MIN_CHUNK_CAP });
    const data = Buffer.alloc(MIN_CHUNK_CAP + 1);
    const wire = bytesOf(
      chunk({ epoch: 0, seq: 0, records: 1, rawLength: 1, method: ChunkMethod.ZSTD, data }),
    );
    expect(() => d.write(wire)).toThrow(
      expect.objectContaining({ code: 'RWAN_ERR_PROTOCOL_FRAME_TOO_LARGE' }),
    );
  });

  it.each([
    { maxChunkData: 1000 },
    { maxRawLength: 2 ** 32 },
    { highWaterMark: -1 },
    { highWaterMark: Number.NaN },
  ])('refuses %o', (options) => {
    expect(() => new FrameDecoder(options)).toThrow(
      expect.objectContaining({ code: 'RWAN_ERR_INVALID_VALUE' }),
    );
  });
});
