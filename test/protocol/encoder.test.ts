import { describe, expect, it } from 'vitest';
import { isRwanError } from '../../src/errors.js';
import {
  ack,
  chunk,
  encodedLength,
  encodeFrame,
  epochBegin,
  epochEnd,
  errorFrame,
  heartbeat,
  hello,
  resume,
  truncateUtf8,
} from '../../src/protocol/encoder.js';
import {
  AckFlags,
  Capability,
  ChunkKind,
  ChunkMethod,
  EpochFlags,
  type Frame,
  FrameType,
  HeartbeatFlags,
  type HeartbeatFrame,
  MIN_CHUNK_CAP,
  ResumeReason,
  Role,
  WireErrorCode,
} from '../../src/protocol/frames.js';

const sid = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
const hex = (s: string) => s.replace(/[\s|]/g, '');
const bytes = (f: Frame) => Buffer.concat(encodeFrame(f)).toString('hex');

/** Expected bytes written out field by field from docs/protocol.md, not computed by the encoder. */
describe('encodeFrame: golden bytes (docs/protocol.md §3)', () => {
  it('HELLO', () => {
    const f = hello({
      capabilities: Capability.ZSTD | Capability.DIGEST,
      sessionId: sid,
      pageSize: 4096,
      role: Role.RECEIVER,
      lastEpochHeld: 41,
      channelIndex: 1,
      channelCount: 2,
      maxChunkBytes: 16 * 2 ** 20,
      cacheBytes: 64 * 2 ** 20,
      peerName: 'db1',
    });
    expect(bytes(f)).toBe(
      hex(`5257 01 01 00 00 0000 38000000 | 01 01 | 05000000 | 000102030405060708090a0b0c0d0e0f | 00100000 | 01
           | 2900000000000000 | 0100 | 0200 | 00000001 | 0000000400000000 | 0300 646231`),
    );
  });

  it('EPOCH_BEGIN', () => {
    const f = epochBegin({ epoch: 7, baseEpoch: 6, imageBytes: 2 ** 32 });
    expect(bytes(f)).toBe(
      hex('5257 01 02 00 00 0000 19000000 | 0700000000000000 | 00 | 0600000000000000 | 0000000001000000'),
    );
    const full = epochBegin({ epoch: 1, flags: EpochFlags.FULL, baseEpoch: null, imageBytes: 4096 });
    expect(bytes(full)).toBe(
      hex('5257 01 02 00 00 0000 19000000 | 0100000000000000 | 01 | ffffffffffffffff | 0010000000000000'),
    );
  });

  it('CHUNK: the head holds header + fields, the data follows untouched', () => {
    const data = Buffer.from('hello');
    const parts = encodeFrame(chunk({ epoch: 7, seq: 1, records: 3, rawLength: 5, data }));
    expect(parts).toHaveLength(2);
    expect(parts[0]?.toString('hex')).toBe(
      hex(
        '5257 01 03 00 00 0000 1f000000 | 0700000000000000 | 01000000 | 03000000 | 05000000 | 00 | 00 | 00000000',
      ),
    );
    expect(parts[1]).toBe(data);
  });

  it('CHUNK with dictionary, kind EXTRA', () => {
    const f = chunk({
      epoch: 1,
      seq: 0,
      records: 1,
      rawLength: 300,
      method: ChunkMethod.ZSTD_DICT,
      kind: ChunkKind.EXTRA,
      dictId: 0xdeadbeef,
      data: Buffer.from([0xfe]),
    });
    expect(bytes(f)).toBe(
      hex(
        '5257 01 03 00 00 0000 1b000000 | 0100000000000000 | 00000000 | 01000000 | 2c010000 | 02 | 01 | efbeadde | fe',
      ),
    );
  });

  it('EPOCH_END', () => {
    const f = epochEnd({
      epoch: 7,
      digest: Buffer.alloc(16, 0xaa),
      pageCount: 1000,
      chunkCount: 2,
      rawBytes: 4_100_000,
      extraBytes: 4096,
    });
    expect(bytes(f)).toBe(
      hex(
        `5257 01 04 00 00 0000 2c000000 | 0700000000000000 | ${'aa'.repeat(16)} | e8030000 | 02000000 | a08f3e0000000000 | 00100000`,
      ),
    );
  });

  it('ACK', () => {
    const f = ack({ epoch: 7, flags: AckFlags.DURABLE, receivedBytes: 123_456_789 });
    expect(bytes(f)).toBe(hex('5257 01 05 00 00 0000 11000000 | 0700000000000000 | 01 | 15cd5b0700000000'));
  });

  it('HEARTBEAT: lastAcked none is 2^64-1', () => {
    const f = heartbeat({ sentAt: 0x01_0203_0405, seq: 9, flags: HeartbeatFlags.REPLY });
    expect(bytes(f)).toBe(
      hex('5257 01 06 00 00 0000 15000000 | 0504030201000000 | 09000000 | ffffffffffffffff | 01'),
    );
  });

  it('RESUME', () => {
    const f = resume({
      sessionId: Buffer.alloc(16, 0x11),
      fromEpoch: 42,
      reason: ResumeReason.DIGEST_MISMATCH,
    });
    expect(bytes(f)).toBe(hex(`5257 01 07 00 00 0000 19000000 | ${'11'.repeat(16)} | 2a00000000000000 | 02`));
  });

  it('ERROR', () => {
    const f = errorFrame({ code: WireErrorCode.DIGEST_MISMATCH, message: 'bad digest' });
    expect(bytes(f)).toBe(hex('5257 01 08 00 00 0000 0f000000 | 0800 | 01 | 0a00 62616420646967657374'));
  });

  it('the example of §8', () => {
    const frames = [
      epochBegin({ epoch: 7, baseEpoch: 6, imageBytes: 1 << 30 }),
      chunk({
        epoch: 7,
        seq: 0,
        records: 1,
        rawLength: 4097,
        method: ChunkMethod.ZSTD,
        data: Buffer.from('28b52f', 'hex'),
      }),
      ack({ epoch: 7, flags: AckFlags.DURABLE, receivedBytes: 206 }),
    ];
    expect(frames.map(bytes)).toEqual([
      hex('5257 01 02 00 00 0000 19000000 | 0700000000000000 | 00 | 0600000000000000 | 0000004000000000'),
      hex(
        '5257 01 03 00 00 0000 1d000000 | 0700000000000000 | 00000000 | 01000000 | 01100000 | 01 | 00 | 00000000 | 28b52f',
      ),
      hex('5257 01 05 00 00 0000 11000000 | 0700000000000000 | 01 | ce00000000000000'),
    ]);
    expect(encodedLength(hello({ sessionId: sid, pageSize: 4096, role: Role.SENDER }))).toBe(65);
  });

  it('the largest safe integer round-trips through a u64 field', () => {
    const f = ack({ epoch: Number.MAX_SAFE_INTEGER, receivedBytes: 0 });
    expect(bytes(f)).toContain('ffffffffffff1f00');
  });
});

describe('encodeFrame: zero copy', () => {
  it('passes CHUNK data through as the same object', () => {
    const big = Buffer.alloc(1 << 20, 7);
    const parts = encodeFrame(chunk({ epoch: 0, seq: 0, records: 1, rawLength: big.length, data: big }));
    expect(parts[1]).toBe(big);
    expect(parts[0]).toHaveLength(12 + 26);
  });

  it('wraps a Uint8Array as a view, never a copy', () => {
    const u8 = new Uint8Array(new ArrayBuffer(64), 8, 32);
    const f = chunk({ epoch: 0, seq: 0, records: 1, rawLength: 32, data: u8 });
    expect(f.data.buffer).toBe(u8.buffer);
    expect(f.data.byteOffset).toBe(8);
  });

  it('sends an empty CHUNK as the head alone', () => {
    expect(
      encodeFrame(chunk({ epoch: 0, seq: 0, records: 0, rawLength: 0, data: Buffer.alloc(0) })),
    ).toHaveLength(1);
  });

  it('encodedLength is the sum of the parts', () => {
    const frames: Frame[] = [
      hello({ sessionId: sid, pageSize: 4096, role: Role.SENDER, peerName: 'héllo' }),
      chunk({ epoch: 0, seq: 0, records: 1, rawLength: 3, data: Buffer.from('abc') }),
      errorFrame({ message: '€' }),
    ];
    for (const f of frames) {
      expect(encodedLength(f)).toBe(encodeFrame(f).reduce((n, b) => n + b.length, 0));
    }
  });
});

describe('encodeFrame: out-of-range fields are refused', () => {
  const h = hello({ sessionId: sid, pageSize: 4096, role: Role.SENDER });
  const c = chunk({ epoch: 1, seq: 0, records: 1, rawLength: 3, data: Buffer.from('abc') });
  const z = { ...c, method: ChunkMethod.ZSTD, rawLength: 1000 } as const;
  const hb: HeartbeatFrame = heartbeat({ sentAt: 1, seq: 1 });
  const cases: [string, Frame, string, string][] = [
    ['page size not a power of two', { ...h, pageSize: 3000 }, 'INVALID_FIELD', 'pageSize'],
    ['page size below 512', { ...h, pageSize: 256 }, 'INVALID_FIELD', 'pageSize'],
    ['page size above 64 KiB', { ...h, pageSize: 131072 }, 'INVALID_FIELD', 'pageSize'],
    ['minVersion 0', { ...h, minVersion: 0 }, 'INVALID_FIELD', 'minVersion'],
    ['maxVersion < minVersion', { ...h, minVersion: 2, maxVersion: 1 }, 'INVALID_FIELD', 'maxVersion'],
    ['version above a u8', { ...h, maxVersion: 256 }, 'INVALID_FIELD', 'maxVersion'],
    [
      'channelIndex ≥ channelCount',
      { ...h, channelIndex: 2, channelCount: 2 },
      'INVALID_FIELD',
      'channelIndex',
    ],
    ['no channel', { ...h, channelIndex: 0, channelCount: 0 }, 'INVALID_FIELD', 'channelCount'],
    ['short session id', { ...h, sessionId: Buffer.alloc(15) }, 'INVALID_FIELD', 'sessionId'],
    ['unknown role', { ...h, role: 2 as Role }, 'INVALID_FIELD', 'role'],
    ['capabilities above a u32', { ...h, capabilities: 2 ** 32 }, 'INVALID_FIELD', 'capabilities'],
    ['maxChunkBytes below 128 KiB', { ...h, maxChunkBytes: 1000 }, 'INVALID_FIELD', 'maxChunkBytes'],
    ['lastEpochHeld negative', { ...h, lastEpochHeld: -1 }, 'INVALID_FIELD', 'lastEpochHeld'],
    ['lastEpochHeld unsafe', { ...h, lastEpochHeld: 2 ** 53 }, 'INVALID_FIELD', 'lastEpochHeld'],
    ['peer name of 257 bytes', { ...h, peerName: 'x'.repeat(257) }, 'FIELD_TOO_LARGE', 'peerName'],
    ['peer name with a lone surrogate', { ...h, peerName: 'a\ud800' }, 'INVALID_FIELD', 'peerName'],
    [
      'extraBytes > rawBytes',
      epochEnd({
        epoch: 1,
        digest: Buffer.alloc(16),
        pageCount: 0,
        chunkCount: 1,
        rawBytes: 10,
        extraBytes: 11,
      }),
      'INVALID_FIELD',
      'extraBytes',
    ],
    ['fractional epoch', epochBegin({ epoch: 1.5, baseEpoch: 1, imageBytes: 0 }), 'INVALID_FIELD', 'epoch'],
    [
      'a FULL epoch with a base',
      epochBegin({ epoch: 3, flags: EpochFlags.FULL, baseEpoch: 2, imageBytes: 0 }),
      'INVALID_FIELD',
      'baseEpoch',
    ],
    [
      'an incremental epoch without a base',
      epochBegin({ epoch: 3, baseEpoch: null, imageBytes: 0 }),
      'INVALID_FIELD',
      'baseEpoch',
    ],
    [
      'a base that is not earlier',
      epochBegin({ epoch: 3, baseEpoch: 3, imageBytes: 0 }),
      'INVALID_FIELD',
      'baseEpoch',
    ],
    [
      'undefined EPOCH_BEGIN flag',
      epochBegin({ epoch: 3, flags: 2, baseEpoch: 2, imageBytes: 0 }),
      'RESERVED',
      'flags',
    ],
    ['rawLength above the cap', { ...z, rawLength: 16 * 2 ** 20 + 1 }, 'FIELD_TOO_LARGE', 'rawLength'],
    ['unknown method', { ...c, method: 3 as ChunkMethod }, 'INVALID_FIELD', 'method'],
    ['unknown kind', { ...c, kind: 2 as ChunkKind }, 'INVALID_FIELD', 'kind'],
    ['raw chunk whose rawLength is not its length', { ...c, rawLength: 4 }, 'INVALID_FIELD', 'rawLength'],
    ['dictionary method without dictId', { ...z, method: ChunkMethod.ZSTD_DICT }, 'INVALID_FIELD', 'dictId'],
    ['dictId without the dictionary method', { ...z, dictId: 5 }, 'INVALID_FIELD', 'dictId'],
    ['seq above a u32', { ...c, seq: 2 ** 32 }, 'INVALID_FIELD', 'seq'],
    [
      'short digest',
      epochEnd({ epoch: 1, digest: Buffer.alloc(15), pageCount: 0, chunkCount: 0, rawBytes: 0 }),
      'INVALID_FIELD',
      'digest',
    ],
    ['undefined ACK flag', ack({ epoch: 1, flags: 2, receivedBytes: 0 }), 'RESERVED', 'flags'],
    ['undefined HEARTBEAT flag', { ...hb, flags: 0x80 }, 'RESERVED', 'flags'],
    ['NaN sentAt', { ...hb, sentAt: Number.NaN }, 'INVALID_FIELD', 'sentAt'],
    [
      'unknown resume reason',
      resume({ sessionId: sid, fromEpoch: 1, reason: 9 as ResumeReason }),
      'INVALID_FIELD',
      'reason',
    ],
    ['error code above a u16', errorFrame({ code: 70000 }), 'INVALID_FIELD', 'code'],
    [
      'error message over 1 KiB (bypassing the builder)',
      { ...errorFrame({}), message: 'é'.repeat(513) },
      'FIELD_TOO_LARGE',
      'message',
    ],
  ];

  it.each(cases)('%s', (_, frame, code, field) => {
    let err: unknown;
    try {
      encodeFrame(frame);
    } catch (e) {
      err = e;
    }
    expect(isRwanError(err)).toBe(true);
    expect(err).toMatchObject({ code: `RWAN_ERR_PROTOCOL_${code}`, details: { field, direction: 'encode' } });
  });

  it('refuses CHUNK data above the peer’s cap', () => {
    const limits = { maxChunkData: MIN_CHUNK_CAP, maxRawLength: MIN_CHUNK_CAP };
    const data = Buffer.alloc(MIN_CHUNK_CAP + 1);
    const f = chunk({ epoch: 1, seq: 0, records: 1, rawLength: 10, method: ChunkMethod.ZSTD, data });
    expect(() => encodeFrame(f, limits)).toThrow(
      expect.objectContaining({ code: 'RWAN_ERR_PROTOCOL_FRAME_TOO_LARGE' }),
    );
    expect(() => encodeFrame(f)).not.toThrow();
  });
});

describe('builders', () => {
  it('hello() fills documented defaults', () => {
    expect(hello({ sessionId: sid, pageSize: 4096, role: Role.SENDER })).toMatchObject({
      type: FrameType.HELLO,
      minVersion: 1,
      maxVersion: 1,
      capabilities: 0,
      lastEpochHeld: null,
      channelIndex: 0,
      channelCount: 1,
      maxChunkBytes: 16 * 2 ** 20,
      cacheBytes: 0,
      peerName: '',
    });
  });

  it('errorFrame() cuts a long message at a character boundary', () => {
    const f = errorFrame({ message: `${'a'.repeat(1023)}€€` });
    expect(f.message).toBe('a'.repeat(1023));
    expect(f.fatal).toBe(true);
    expect(f.code).toBe(WireErrorCode.INTERNAL);
    expect(() => encodeFrame(f)).not.toThrow();
  });

  it('truncateUtf8 never splits a character', () => {
    for (let max = 0; max <= 12; max++) {
      const s = truncateUtf8('a€𝄞b€', max);
      expect(Buffer.byteLength(s)).toBeLessThanOrEqual(max);
      expect('a€𝄞b€'.startsWith(s)).toBe(true);
    }
  });
});
