/**
 * Payload → frame, for one complete payload whose length already passed the header checks. Strict:
 * a field that runs past the end is `RWAN_ERR_PROTOCOL_TRUNCATED`, bytes after the last field are
 * `RWAN_ERR_PROTOCOL_TRAILING_BYTES`, a string longer than its cap is refused before it is decoded,
 * and every decoded frame then passes the same `validateFrame()` as the encoder's. Pure.
 */
import { TextDecoder } from 'node:util';
import type { RwanError } from '../errors.js';
import {
  type ChunkKind,
  type ChunkMethod,
  DIGEST_BYTES,
  FIXED_PAYLOAD,
  FRAME_TYPE_NAMES,
  type Frame,
  FrameType,
  MAX_ERROR_MESSAGE_BYTES,
  MAX_PEER_NAME_BYTES,
  type ProtocolLimits,
  type ResumeReason,
  type Role,
  SESSION_ID_BYTES,
} from './frames.js';
import { type ProtocolErrorCode, protocolError } from './protocol-error.js';
import { validateFrame } from './validate.js';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const TWO_32 = 2 ** 32;
/** High u32 of the largest safe integer (2^53 - 1). */
const MAX_SAFE_HI = 0x1f_ffff;

/**
 * Decodes the payload of a frame of `type`.
 * @param payload exactly the frame's payload; CHUNK data is returned as a view of it
 * @throws RwanError with a `RWAN_ERR_PROTOCOL_*` code
 */
export function parsePayload(type: FrameType, payload: Buffer, limits: ProtocolLimits): Frame {
  const r = new Reader(payload, FRAME_TYPE_NAMES[type]);
  let frame: Frame;
  switch (type) {
    case FrameType.HELLO:
      frame = {
        type,
        minVersion: r.u8(),
        maxVersion: r.u8(),
        capabilities: r.u32(),
        sessionId: r.copy(SESSION_ID_BYTES),
        pageSize: r.u32(),
        role: r.u8() as Role,
        lastEpochHeld: r.u64OrNone('lastEpochHeld'),
        channelIndex: r.u16(),
        channelCount: r.u16(),
        maxChunkBytes: r.u32(),
        cacheBytes: r.u64('cacheBytes'),
        peerName: r.text('peerName', MAX_PEER_NAME_BYTES),
      };
      break;
    case FrameType.EPOCH_BEGIN:
      frame = {
        type,
        epoch: r.u64('epoch'),
        flags: r.u8(),
        baseEpoch: r.u64OrNone('baseEpoch'),
        imageBytes: r.u64('imageBytes'),
      };
      break;
    case FrameType.CHUNK:
      frame = {
        type,
        epoch: r.u64('epoch'),
        seq: r.u32(),
        records: r.u32(),
        rawLength: r.u32(),
        method: r.u8() as ChunkMethod,
        kind: r.u8() as ChunkKind,
        dictId: r.u32(),
        data: r.rest(),
      };
      break;
    case FrameType.EPOCH_END:
      frame = {
        type,
        epoch: r.u64('epoch'),
        digest: r.copy(DIGEST_BYTES),
        pageCount: r.u32(),
        chunkCount: r.u32(),
        rawBytes: r.u64('rawBytes'),
        extraBytes: r.u32(),
      };
      break;
    case FrameType.ACK:
      frame = { type, epoch: r.u64('epoch'), flags: r.u8(), receivedBytes: r.u64('receivedBytes') };
      break;
    case FrameType.HEARTBEAT:
      frame = {
        type,
        sentAt: r.u64('sentAt'),
        seq: r.u32(),
        lastAcked: r.u64OrNone('lastAcked'),
        flags: r.u8(),
      };
      break;
    case FrameType.RESUME:
      frame = {
        type,
        sessionId: r.copy(SESSION_ID_BYTES),
        fromEpoch: r.u64('fromEpoch'),
        reason: r.u8() as ResumeReason,
      };
      break;
    case FrameType.ERROR: {
      const code = r.u16();
      const fatal = r.u8();
      if (fatal > 1) throw r.fail('RWAN_ERR_PROTOCOL_INVALID_FIELD', 'fatal', fatal, 'must be 0 or 1');
      frame = { type, code, fatal: fatal === 1, message: r.text('message', MAX_ERROR_MESSAGE_BYTES) };
      break;
    }
    case FrameType.STREAM_DATA:
      frame = { type, offset: r.u64('offset'), data: Buffer.from(r.rest()) };
      break;
    default: {
      const never: never = type;
      throw protocolError('RWAN_ERR_PROTOCOL_UNKNOWN_TYPE', `unknown frame type ${String(never)}`);
    }
  }
  r.end();
  validateFrame(frame, limits, 'decode');
  return frame;
}

/** Smallest payload of each type (its fixed fields), bytes. */
export function minPayload(type: FrameType): number {
  return FIXED_PAYLOAD[type];
}

/** Reads fields in order from a payload; every read is bounds-checked. */
class Reader {
  private at = 0;

  constructor(
    private readonly buf: Buffer,
    private readonly frame: string,
  ) {}

  fail(code: ProtocolErrorCode, field: string, value: unknown, why: string): RwanError {
    return protocolError(code, `${this.frame}.${field} = ${String(value)}: ${why}`, {
      direction: 'decode',
      frame: this.frame,
      field,
      value,
      at: this.at,
    });
  }

  private need(n: number): number {
    const at = this.at;
    if (at + n > this.buf.length) {
      throw protocolError(
        'RWAN_ERR_PROTOCOL_TRUNCATED',
        `${this.frame}: payload of ${this.buf.length} bytes ends inside a field at byte ${at} (needs ${n})`,
        { direction: 'decode', frame: this.frame, at, needed: n, payloadLength: this.buf.length },
      );
    }
    this.at = at + n;
    return at;
  }

  u8(): number {
    return this.buf[this.need(1)] as number;
  }

  u16(): number {
    return this.buf.readUInt16LE(this.need(2));
  }

  u32(): number {
    return this.buf.readUInt32LE(this.need(4));
  }

  /** A u64 that must be a safe integer. */
  u64(field: string): number {
    const v = this.u64OrNone(field);
    if (v === null)
      throw this.fail('RWAN_ERR_PROTOCOL_INVALID_FIELD', field, '2^64-1', 'none is not allowed here');
    return v;
  }

  /** A u64 that is a safe integer or the sentinel 2^64-1 (`null`). */
  u64OrNone(field: string): number | null {
    const at = this.need(8);
    const lo = this.buf.readUInt32LE(at);
    const hi = this.buf.readUInt32LE(at + 4);
    if (hi === 0xffff_ffff && lo === 0xffff_ffff) return null;
    if (hi > MAX_SAFE_HI) {
      throw this.fail('RWAN_ERR_PROTOCOL_INVALID_FIELD', field, this.buf.readBigUInt64LE(at), 'above 2^53-1');
    }
    return hi * TWO_32 + lo;
  }

  /** `n` bytes copied out, so a small id does not pin the whole received chunk in memory. */
  copy(n: number): Buffer {
    const at = this.need(n);
    return Buffer.from(this.buf.subarray(at, at + n));
  }

  /** The rest of the payload, as a view. */
  rest(): Buffer {
    const at = this.at;
    this.at = this.buf.length;
    return this.buf.subarray(at);
  }

  /** A u16 byte length (checked against `maxBytes` first), then that many bytes of strict UTF-8. */
  text(field: string, maxBytes: number): string {
    const n = this.u16();
    if (n > maxBytes) {
      throw protocolError(
        'RWAN_ERR_PROTOCOL_FIELD_TOO_LARGE',
        `${this.frame}.${field}: ${n} bytes > ${maxBytes}`,
        {
          direction: 'decode',
          frame: this.frame,
          field,
          bytes: n,
          limit: maxBytes,
        },
      );
    }
    const at = this.need(n);
    try {
      return utf8.decode(this.buf.subarray(at, at + n));
    } catch {
      throw this.fail('RWAN_ERR_PROTOCOL_INVALID_FIELD', field, `<${n} bytes>`, 'not valid UTF-8');
    }
  }

  /** No bytes may follow the last field. */
  end(): void {
    if (this.at !== this.buf.length) {
      throw protocolError(
        'RWAN_ERR_PROTOCOL_TRAILING_BYTES',
        `${this.frame}: ${this.buf.length - this.at} bytes after the last field`,
        { direction: 'decode', frame: this.frame, at: this.at, payloadLength: this.buf.length },
      );
    }
  }
}
