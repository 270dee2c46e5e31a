/**
 * Frame encoder (docs/protocol.md): typed builders and `encodeFrame()`, which returns the bytes to
 * write as a list of buffers, like ws's `Sender.frame()`. A control frame is one small buffer; a
 * CHUNK is `[header + CHUNK fields, data]` with `data` passed through untouched (never copied), so
 * a sender writes both inside one `cork()`/`uncork()`. Pure: no I/O.
 */
import {
  type AckFrame,
  type ChunkFrame,
  ChunkKind,
  ChunkMethod,
  DEFAULT_LIMITS,
  DEFAULT_MAX_RAW_LENGTH,
  type EpochBeginFrame,
  type EpochEndFrame,
  type ErrorFrame,
  FIXED_PAYLOAD,
  type Frame,
  FrameType,
  HEADER_SIZE,
  type HeartbeatFrame,
  type HelloFrame,
  MAGIC_0,
  MAGIC_1,
  MAX_ERROR_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  type ProtocolLimits,
  type ResumeFrame,
  type StreamDataFrame,
  U64_NONE,
  WireErrorCode,
} from './frames.js';
import { validateFrame } from './validate.js';

/**
 * The bytes of `frame`, validated against `limits` (pass the peer's announced caps).
 * @returns one buffer for a control frame; `[head, data]` for a CHUNK with data, where `data` is the
 *   frame's own buffer
 * @throws RwanError `RWAN_ERR_PROTOCOL_INVALID_FIELD`, `_FIELD_TOO_LARGE`, `_FRAME_TOO_LARGE` or
 *   `_RESERVED` (with `details.direction = 'encode'`) for a field out of range
 */
export function encodeFrame(frame: Frame, limits: ProtocolLimits = DEFAULT_LIMITS): Buffer[] {
  validateFrame(frame, limits, 'encode');
  if (frame.type === FrameType.CHUNK) {
    const w = new Writer(
      FIXED_PAYLOAD[FrameType.CHUNK],
      frame.type,
      FIXED_PAYLOAD[FrameType.CHUNK] + frame.data.length,
    );
    w.u64(frame.epoch).u32(frame.seq).u32(frame.records).u32(frame.rawLength);
    w.u8(frame.method).u8(frame.kind).u32(frame.dictId);
    return frame.data.length === 0 ? [w.done()] : [w.done(), frame.data];
  }
  const length = payloadLength(frame);
  const w = new Writer(length, frame.type, length);
  switch (frame.type) {
    case FrameType.HELLO:
      w.u8(frame.minVersion).u8(frame.maxVersion).u32(frame.capabilities).bytes(frame.sessionId);
      w.u32(frame.pageSize).u8(frame.role).u64(frame.lastEpochHeld);
      w.u16(frame.channelIndex).u16(frame.channelCount).u32(frame.maxChunkBytes).u64(frame.cacheBytes);
      w.text(frame.peerName);
      break;
    case FrameType.EPOCH_BEGIN:
      w.u64(frame.epoch).u8(frame.flags).u64(frame.baseEpoch).u64(frame.imageBytes);
      break;
    case FrameType.EPOCH_END:
      w.u64(frame.epoch).bytes(frame.digest).u32(frame.pageCount).u32(frame.chunkCount);
      w.u64(frame.rawBytes).u32(frame.extraBytes);
      break;
    case FrameType.ACK:
      w.u64(frame.epoch).u8(frame.flags).u64(frame.receivedBytes);
      break;
    case FrameType.HEARTBEAT:
      w.u64(frame.sentAt).u32(frame.seq).u64(frame.lastAcked).u8(frame.flags);
      break;
    case FrameType.RESUME:
      w.bytes(frame.sessionId).u64(frame.fromEpoch).u8(frame.reason);
      break;
    case FrameType.ERROR:
      w.u16(frame.code)
        .u8(frame.fatal ? 1 : 0)
        .text(frame.message);
      break;
    case FrameType.STREAM_DATA:
      w.u64(frame.offset).bytes(frame.data);
      break;
    default: {
      const never: never = frame;
      return never;
    }
  }
  return [w.done()];
}

/** Bytes `frame` takes on the wire (header included), without encoding it. */
export function encodedLength(frame: Frame): number {
  return HEADER_SIZE + payloadLength(frame);
}

function payloadLength(frame: Frame): number {
  switch (frame.type) {
    case FrameType.HELLO:
      return FIXED_PAYLOAD[frame.type] + Buffer.byteLength(frame.peerName, 'utf8');
    case FrameType.CHUNK:
      return FIXED_PAYLOAD[frame.type] + frame.data.length;
    case FrameType.ERROR:
      return FIXED_PAYLOAD[frame.type] + Buffer.byteLength(frame.message, 'utf8');
    case FrameType.STREAM_DATA:
      return FIXED_PAYLOAD[frame.type] + frame.data.length;
    default:
      return FIXED_PAYLOAD[frame.type];
  }
}

/** Writes a header and then fields into one buffer of `HEADER_SIZE + size` bytes. */
class Writer {
  private readonly buf: Buffer;
  private at = HEADER_SIZE;

  constructor(size: number, type: Frame['type'], payloadLength: number) {
    this.buf = Buffer.allocUnsafe(HEADER_SIZE + size);
    this.buf[0] = MAGIC_0;
    this.buf[1] = MAGIC_1;
    this.buf[2] = PROTOCOL_VERSION;
    this.buf[3] = type;
    this.buf.writeUInt32LE(0, 4); // flags, reserved u8, reserved u16
    this.buf.writeUInt32LE(payloadLength, 8);
  }

  u8(v: number): this {
    this.buf[this.at++] = v;
    return this;
  }

  u16(v: number): this {
    this.at = this.buf.writeUInt16LE(v, this.at);
    return this;
  }

  u32(v: number): this {
    this.at = this.buf.writeUInt32LE(v, this.at);
    return this;
  }

  /** A u64 from a safe integer; `null` is the sentinel 2^64-1. */
  u64(v: number | null): this {
    this.at = this.buf.writeBigUInt64LE(v === null ? U64_NONE : BigInt(v), this.at);
    return this;
  }

  bytes(b: Uint8Array): this {
    this.buf.set(b, this.at);
    this.at += b.length;
    return this;
  }

  /** A u16 byte length, then the UTF-8 bytes. */
  text(s: string): this {
    const n = this.buf.write(s, this.at + 2, 'utf8');
    this.buf.writeUInt16LE(n, this.at);
    this.at += 2 + n;
    return this;
  }

  done(): Buffer {
    if (this.at !== this.buf.length)
      throw new Error(`internal: wrote ${this.at} of ${this.buf.length} bytes`);
    return this.buf;
  }
}

type Fields<F extends Frame> = Omit<F, 'type'>;

/**
 * A HELLO; defaults: version 1..1, no capabilities, no epoch held, channel 0 of 1, 16 MiB chunks, no
 * page cache, no name.
 */
export function hello(
  f: Pick<HelloFrame, 'sessionId' | 'pageSize' | 'role'> & Partial<Fields<HelloFrame>>,
): HelloFrame {
  return {
    type: FrameType.HELLO,
    minVersion: f.minVersion ?? PROTOCOL_VERSION,
    maxVersion: f.maxVersion ?? PROTOCOL_VERSION,
    capabilities: f.capabilities ?? 0,
    sessionId: f.sessionId,
    pageSize: f.pageSize,
    role: f.role,
    lastEpochHeld: f.lastEpochHeld ?? null,
    channelIndex: f.channelIndex ?? 0,
    channelCount: f.channelCount ?? 1,
    maxChunkBytes: f.maxChunkBytes ?? DEFAULT_MAX_RAW_LENGTH,
    cacheBytes: f.cacheBytes ?? 0,
    peerName: f.peerName ?? '',
  };
}

/** An EPOCH_BEGIN; `flags` defaults to 0 (an incremental epoch). */
export function epochBegin(
  f: Omit<Fields<EpochBeginFrame>, 'flags'> & Partial<Pick<EpochBeginFrame, 'flags'>>,
): EpochBeginFrame {
  return {
    type: FrameType.EPOCH_BEGIN,
    epoch: f.epoch,
    flags: f.flags ?? 0,
    baseEpoch: f.baseEpoch,
    imageBytes: f.imageBytes,
  };
}

/**
 * A CHUNK; defaults: method RAW, kind PAGES, dictId 0. `data` may be any Uint8Array: it is wrapped as
 * a Buffer view, never copied.
 */
export function chunk(
  f: Pick<ChunkFrame, 'epoch' | 'seq' | 'records' | 'rawLength'> &
    Partial<Pick<ChunkFrame, 'method' | 'kind' | 'dictId'>> & { data: Uint8Array },
): ChunkFrame {
  const data = Buffer.isBuffer(f.data)
    ? f.data
    : Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength);
  return {
    type: FrameType.CHUNK,
    epoch: f.epoch,
    seq: f.seq,
    records: f.records,
    rawLength: f.rawLength,
    method: f.method ?? ChunkMethod.RAW,
    kind: f.kind ?? ChunkKind.PAGES,
    dictId: f.dictId ?? 0,
    data,
  };
}

/** An EPOCH_END; `extraBytes` defaults to 0. */
export function epochEnd(
  f: Omit<Fields<EpochEndFrame>, 'extraBytes'> & Partial<Pick<EpochEndFrame, 'extraBytes'>>,
): EpochEndFrame {
  return {
    type: FrameType.EPOCH_END,
    epoch: f.epoch,
    digest: f.digest,
    pageCount: f.pageCount,
    chunkCount: f.chunkCount,
    rawBytes: f.rawBytes,
    extraBytes: f.extraBytes ?? 0,
  };
}

/** An ACK; `flags` defaults to 0 (received, not yet durable). */
export function ack(f: Omit<Fields<AckFrame>, 'flags'> & Partial<Pick<AckFrame, 'flags'>>): AckFrame {
  return { type: FrameType.ACK, epoch: f.epoch, flags: f.flags ?? 0, receivedBytes: f.receivedBytes };
}

/** A HEARTBEAT; defaults: nothing acknowledged yet, no flags. */
export function heartbeat(
  f: Pick<HeartbeatFrame, 'sentAt' | 'seq'> & Partial<Pick<HeartbeatFrame, 'lastAcked' | 'flags'>>,
): HeartbeatFrame {
  return {
    type: FrameType.HEARTBEAT,
    sentAt: f.sentAt,
    seq: f.seq,
    lastAcked: f.lastAcked ?? null,
    flags: f.flags ?? 0,
  };
}

/** A RESUME. */
export function resume(f: Fields<ResumeFrame>): ResumeFrame {
  return { type: FrameType.RESUME, sessionId: f.sessionId, fromEpoch: f.fromEpoch, reason: f.reason };
}

/**
 * An ERROR; defaults: code INTERNAL, fatal. A message longer than 1 KiB of UTF-8 is cut at a
 * character boundary (error text is often built from other errors, so it is shortened, not refused).
 */
export function errorFrame(f: Partial<Fields<ErrorFrame>>): ErrorFrame {
  return {
    type: FrameType.ERROR,
    code: f.code ?? WireErrorCode.INTERNAL,
    fatal: f.fatal ?? true,
    message: truncateUtf8(f.message ?? '', MAX_ERROR_MESSAGE_BYTES),
  };
}

/** A STREAM_DATA frame. */
export function streamData(f: Fields<StreamDataFrame>): StreamDataFrame {
  return { type: FrameType.STREAM_DATA, offset: f.offset, data: f.data };
}

/** `s` cut to at most `maxBytes` of UTF-8, never inside a character. */
export function truncateUtf8(s: string, maxBytes: number): string {
  if (Buffer.byteLength(s, 'utf8') <= maxBytes) return s;
  const b = Buffer.from(s, 'utf8');
  let end = maxBytes;
  while (end > 0 && ((b[end] ?? 0) & 0xc0) === 0x80) end--; // b[end] continues a character: back off
  return b.toString('utf8', 0, end);
}
