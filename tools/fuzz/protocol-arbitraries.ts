/**
 * fast-check arbitraries for every frame type, and the decoder fuzz property, shared by the tests
 * (test/protocol/, a fixed run budget) and by `npm run fuzz:protocol` (a time budget).
 *
 * The property: any bytes, cut into any pieces, give frames or one typed `RWAN_ERR_PROTOCOL_*`
 * error (then the decoder stays failed); never another exception, and never more buffered or
 * allocated than a header plus the largest payload cap.
 */
import fc from 'fast-check';
import { RwanError } from '../../src/errors.js';
import { FrameDecoder, type FrameDecoderOptions } from '../../src/protocol/decoder.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import {
  type AckFrame,
  type ChunkFrame,
  ChunkKind,
  ChunkMethod,
  DIGEST_BYTES,
  type EpochBeginFrame,
  type EpochEndFrame,
  EpochFlags,
  type ErrorFrame,
  type Frame,
  FrameType,
  HEADER_SIZE,
  type HeartbeatFrame,
  type HelloFrame,
  MAX_CHUNK_CAP,
  MAX_CONTROL_PAYLOAD,
  MIN_CHUNK_CAP,
  type ProtocolLimits,
  type ResumeFrame,
  ResumeReason,
  Role,
  SESSION_ID_BYTES,
} from '../../src/protocol/frames.js';

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const safe = fc.maxSafeNat();
const epochOrNone = fc.option(safe, { nil: null });
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n }).map((b) => Buffer.from(b));
/** Well-formed text of at most `maxChars` code points (≤ 4 UTF-8 bytes each). */
const text = (maxChars: number) =>
  fc.string({ unit: 'binary', maxLength: maxChars }).filter((s) => !/\p{Cs}/u.test(s));

export const helloArb: fc.Arbitrary<HelloFrame> = fc
  .record({
    versions: fc.tuple(fc.integer({ min: 1, max: 255 }), fc.integer({ min: 1, max: 255 })),
    capabilities: u32,
    sessionId: bytes(SESSION_ID_BYTES),
    pageShift: fc.integer({ min: 9, max: 16 }),
    role: fc.constantFrom(Role.SENDER, Role.RECEIVER),
    lastEpochHeld: epochOrNone,
    channels: fc.tuple(fc.integer({ min: 1, max: 0xffff }), fc.nat()),
    maxChunkBytes: fc.integer({ min: MIN_CHUNK_CAP, max: MAX_CHUNK_CAP }),
    cacheBytes: safe,
    peerName: text(64),
  })
  .map(({ versions: [a, b], pageShift, channels: [count, i], ...f }) => ({
    type: FrameType.HELLO,
    minVersion: Math.min(a, b),
    maxVersion: Math.max(a, b),
    capabilities: f.capabilities,
    sessionId: f.sessionId,
    pageSize: 2 ** pageShift,
    role: f.role,
    lastEpochHeld: f.lastEpochHeld,
    channelIndex: i % count,
    channelCount: count,
    maxChunkBytes: f.maxChunkBytes,
    cacheBytes: f.cacheBytes,
    peerName: f.peerName,
  }));

export const epochBeginArb: fc.Arbitrary<EpochBeginFrame> = fc
  .record({
    epoch: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    full: fc.boolean(),
    back: safe,
    imageBytes: safe,
  })
  .map(({ epoch, full, back, imageBytes }) => ({
    type: FrameType.EPOCH_BEGIN,
    epoch,
    flags: full ? EpochFlags.FULL : 0,
    baseEpoch: full ? null : back % epoch,
    imageBytes,
  }));

/** CHUNKs under `limits` (data up to `maxData` bytes, to keep runs fast). */
export function chunkArb(limits: ProtocolLimits, maxData = 300): fc.Arbitrary<ChunkFrame> {
  return fc
    .record({
      epoch: safe,
      seq: u32,
      records: u32,
      method: fc.constantFrom(ChunkMethod.RAW, ChunkMethod.ZSTD, ChunkMethod.ZSTD_DICT),
      kind: fc.constantFrom(ChunkKind.PAGES, ChunkKind.EXTRA),
      dictId: fc.integer({ min: 1, max: 0xffff_ffff }),
      rawLength: fc.integer({ min: 0, max: limits.maxRawLength }),
      data: fc.uint8Array({ maxLength: Math.min(maxData, limits.maxChunkData) }),
    })
    .map((f) => ({
      type: FrameType.CHUNK,
      epoch: f.epoch,
      seq: f.seq,
      records: f.records,
      rawLength: f.method === ChunkMethod.RAW ? f.data.length : f.rawLength,
      method: f.method,
      kind: f.kind,
      dictId: f.method === ChunkMethod.ZSTD_DICT ? f.dictId : 0,
      data: Buffer.from(f.data),
    }));
}

export const epochEndArb: fc.Arbitrary<EpochEndFrame> = fc
  .record({
    epoch: safe,
    digest: bytes(DIGEST_BYTES),
    pageCount: u32,
    chunkCount: u32,
    rawBytes: safe,
    extra: u32,
  })
  .map(({ extra, ...f }) => ({ type: FrameType.EPOCH_END, ...f, extraBytes: Math.min(extra, f.rawBytes) }));

export const ackArb: fc.Arbitrary<AckFrame> = fc
  .record({ epoch: safe, flags: fc.constantFrom(0, 1), receivedBytes: safe })
  .map((f) => ({ type: FrameType.ACK, ...f }));

export const heartbeatArb: fc.Arbitrary<HeartbeatFrame> = fc
  .record({ sentAt: safe, seq: u32, lastAcked: epochOrNone, flags: fc.constantFrom(0, 1) })
  .map((f) => ({ type: FrameType.HEARTBEAT, ...f }));

export const resumeArb: fc.Arbitrary<ResumeFrame> = fc
  .record({
    sessionId: bytes(SESSION_ID_BYTES),
    fromEpoch: safe,
    reason: fc.constantFrom(...Object.values(ResumeReason)),
  })
  .map((f) => ({ type: FrameType.RESUME, ...f }));

export const errorArb: fc.Arbitrary<ErrorFrame> = fc
  .record({ code: u16, fatal: fc.boolean(), message: text(256) })
  .map((f) => ({ type: FrameType.ERROR, ...f }));

/** Any valid frame under `limits`. */
export function frameArb(limits: ProtocolLimits, maxData = 300): fc.Arbitrary<Frame> {
  return fc.oneof(
    helloArb,
    epochBeginArb,
    chunkArb(limits, maxData),
    epochEndArb,
    ackArb,
    heartbeatArb,
    resumeArb,
    errorArb,
  );
}

/** The wire bytes of `frames`, in one buffer. */
export function streamOf(frames: readonly Frame[], limits?: ProtocolLimits): Buffer {
  return Buffer.concat(frames.flatMap((f) => encodeFrame(f, limits)));
}

/** `bytes` cut at `cuts` (positions, any order, any range: taken modulo length + 1). */
export function split(bytes: Uint8Array, cuts: readonly number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, bytes.length]) {
    out.push(Buffer.from(bytes.subarray(prev, c)));
    prev = c;
  }
  return out;
}

/** A change to a byte stream: overwrite, flip a bit, insert, delete, or cut off the rest. */
export type Mutation =
  | { op: 'set'; at: number; byte: number }
  | { op: 'flip'; at: number; bit: number }
  | { op: 'insert'; at: number; byte: number }
  | { op: 'delete'; at: number }
  | { op: 'truncate'; at: number };

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), byte: u8 }),
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), byte: u8 }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
);

/** `bytes` with `mutations` applied in order (positions modulo the current length). */
export function mutate(bytes: Uint8Array, mutations: readonly Mutation[]): Buffer {
  const b = [...bytes];
  for (const m of mutations) {
    if (b.length === 0) break;
    const at = m.at % b.length;
    if (m.op === 'set') b[at] = m.byte;
    else if (m.op === 'flip') b[at] = (b[at] as number) ^ (1 << m.bit);
    else if (m.op === 'insert') b.splice(at, 0, m.byte);
    else if (m.op === 'delete') b.splice(at, 1);
    else b.length = at;
  }
  return Buffer.from(b);
}

/** Random bytes that often start like a frame header, so the fuzzer gets past the magic. */
export const headerishBytesArb: fc.Arbitrary<Uint8Array> = fc
  .tuple(
    fc.constantFrom(...Object.values(FrameType), 0, 9, 255),
    fc.uint8Array({ maxLength: 200 }),
    fc.integer({ min: 0, max: 300 }),
    fc.boolean(),
  )
  .map(([type, tail, length, header]) => {
    if (!header) return tail;
    const h = Buffer.from([0x52, 0x57, 1, type, 0, 0, 0, 0, 0, 0, 0, 0]);
    h.writeUInt32LE(length, 8);
    return Buffer.concat([h, tail]);
  });

/** What {@link fuzzDecode} saw. */
export interface FuzzOutcome {
  frames: Frame[];
  error: RwanError | undefined;
  /** Largest `bufferedBytes` after any write. */
  maxBuffered: number;
}

/** Bytes a decoder with `limits` may hold for one frame: a header plus the largest payload cap. */
export function bufferBound(limits: ProtocolLimits): number {
  return HEADER_SIZE + Math.max(MAX_CONTROL_PAYLOAD, 26 + limits.maxChunkData);
}

/**
 * Feeds `pieces` to a fresh decoder and checks the fuzz invariants; throws a plain `Error` (a
 * finding) when one breaks, and rethrows any exception that is not a protocol `RwanError`.
 */
export function fuzzDecode(pieces: readonly Buffer[], options: FrameDecoderOptions = {}): FuzzOutcome {
  const d = new FrameDecoder(options);
  const bound = bufferBound(d.limits);
  const frames: Frame[] = [];
  let maxBuffered = 0;
  for (const piece of pieces) {
    try {
      d.write(piece);
    } catch (err) {
      if (!(err instanceof RwanError) || !String(err.code).startsWith('RWAN_ERR_PROTOCOL_')) throw err;
      frames.push(...d.readAll());
      let again: unknown;
      try {
        d.write(Buffer.from([0x52]));
      } catch (e) {
        again = e;
      }
      if (again !== err) throw new Error(`decoder did not stay failed after ${err.code}`);
      if (typeof err.details.wireCode !== 'number') throw new Error(`${err.code} without details.wireCode`);
      return { frames, error: err, maxBuffered };
    }
    maxBuffered = Math.max(maxBuffered, d.bufferedBytes);
    if (d.bufferedBytes >= bound) throw new Error(`buffered ${d.bufferedBytes} bytes ≥ bound ${bound}`);
    frames.push(...d.readAll());
  }
  return { frames, error: undefined, maxBuffered };
}

/**
 * Records the largest `Buffer.alloc`/`Buffer.allocUnsafe` request until `stop()` is called (the
 * decoder's only allocations proportional to input). Not re-entrant.
 */
export function trackAllocations(): { readonly max: () => number; stop: () => void } {
  const alloc = Buffer.alloc;
  const allocUnsafe = Buffer.allocUnsafe;
  let max = 0;
  Buffer.alloc = (...args: Parameters<typeof alloc>) => {
    max = Math.max(max, args[0]);
    return alloc(...args);
  };
  Buffer.allocUnsafe = (size: number) => {
    max = Math.max(max, size);
    return allocUnsafe(size);
  };
  return {
    max: () => max,
    stop: () => {
      Buffer.alloc = alloc;
      Buffer.allocUnsafe = allocUnsafe;
    },
  };
}

/** The fuzz properties, each taking `[pieces]` for `fc.assert(fc.property(...))`. */
export function fuzzProperties(limits: ProtocolLimits) {
  const cuts = fc.array(fc.nat(), { maxLength: 12 });
  const options = { maxChunkData: limits.maxChunkData, maxRawLength: limits.maxRawLength };
  const check = (pieces: Buffer[]): void => {
    const alloc = trackAllocations();
    try {
      fuzzDecode(pieces, options);
    } finally {
      alloc.stop();
    }
    if (alloc.max() > bufferBound(limits))
      throw new Error(`allocated ${alloc.max()} bytes > ${bufferBound(limits)}`);
  };
  return {
    /** Arbitrary bytes (half of them behind a plausible header). */
    randomBytes: fc.property(
      fc.oneof(fc.uint8Array({ maxLength: 400 }), headerishBytesArb),
      cuts,
      (bytes, at) => check(split(bytes, at)),
    ),
    /** Valid streams, mutated, cut anywhere. */
    mutatedStreams: fc.property(
      fc.array(frameArb(limits, 64), { minLength: 1, maxLength: 6 }),
      fc.array(mutationArb, { minLength: 1, maxLength: 4 }),
      cuts,
      (frames, mutations, at) => check(split(mutate(streamOf(frames, limits), mutations), at)),
    ),
    /** Valid streams cut anywhere decode to exactly the frames encoded. */
    validStreams: fc.property(fc.array(frameArb(limits, 64), { maxLength: 6 }), cuts, (frames, at) => {
      const out = fuzzDecode(split(streamOf(frames, limits), at), options);
      if (out.error) throw out.error;
      if (out.frames.length !== frames.length)
        throw new Error(`${out.frames.length} frames, ${frames.length} sent`);
    }),
  };
}
