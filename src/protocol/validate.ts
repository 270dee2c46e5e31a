/**
 * Field rules of every frame (docs/protocol.md §4), shared by the encoder (frames we are about to
 * send) and the decoder (frames the peer sent): the same rule raises the same code either way, with
 * `details.direction` telling which side broke it. Pure.
 */
import type { RwanError } from '../errors.js';
import {
  ACK_FLAGS_KNOWN,
  ChunkKind,
  ChunkMethod,
  DIGEST_BYTES,
  EPOCH_FLAGS_KNOWN,
  EpochFlags,
  FRAME_TYPE_NAMES,
  type Frame,
  FrameType,
  HEARTBEAT_FLAGS_KNOWN,
  MAX_CHUNK_CAP,
  MAX_ERROR_MESSAGE_BYTES,
  MAX_PAGE_SIZE,
  MAX_PEER_NAME_BYTES,
  MAX_STREAM_DATA_BYTES,
  MIN_CHUNK_CAP,
  MIN_PAGE_SIZE,
  type ProtocolLimits,
  ResumeReason,
  Role,
  SESSION_ID_BYTES,
} from './frames.js';
import { type Direction, type ProtocolErrorCode, protocolError } from './protocol-error.js';

const U8 = 0xff;
const U16 = 0xffff;
const U32 = 0xffff_ffff;
const LONE_SURROGATE = /\p{Cs}/u;

/** Checks one frame; throws a protocol `RwanError` naming the first field that breaks a rule. */
export function validateFrame(frame: Frame, limits: ProtocolLimits, direction: Direction): void {
  const c = new Checker(frame, direction);
  switch (frame.type) {
    case FrameType.HELLO:
      c.uint('minVersion', frame.minVersion, U8);
      c.uint('maxVersion', frame.maxVersion, U8);
      c.rule('minVersion', frame.minVersion, frame.minVersion >= 1, 'at least 1');
      c.rule('maxVersion', frame.maxVersion, frame.maxVersion >= frame.minVersion, '≥ minVersion');
      c.uint('capabilities', frame.capabilities, U32);
      c.bytes('sessionId', frame.sessionId, SESSION_ID_BYTES);
      c.uint('pageSize', frame.pageSize, U32);
      c.rule(
        'pageSize',
        frame.pageSize,
        frame.pageSize >= MIN_PAGE_SIZE &&
          frame.pageSize <= MAX_PAGE_SIZE &&
          (frame.pageSize & (frame.pageSize - 1)) === 0,
        `a power of two from ${MIN_PAGE_SIZE} to ${MAX_PAGE_SIZE}`,
      );
      c.oneOf('role', frame.role, Role);
      c.epochOrNone('lastEpochHeld', frame.lastEpochHeld);
      c.uint('channelIndex', frame.channelIndex, U16);
      c.uint('channelCount', frame.channelCount, U16);
      c.rule('channelCount', frame.channelCount, frame.channelCount >= 1, 'at least 1');
      c.rule('channelIndex', frame.channelIndex, frame.channelIndex < frame.channelCount, '< channelCount');
      c.uint('maxChunkBytes', frame.maxChunkBytes, U32);
      c.rule(
        'maxChunkBytes',
        frame.maxChunkBytes,
        frame.maxChunkBytes >= MIN_CHUNK_CAP && frame.maxChunkBytes <= MAX_CHUNK_CAP,
        `from ${MIN_CHUNK_CAP} to ${MAX_CHUNK_CAP}`,
      );
      c.uint('cacheBytes', frame.cacheBytes, Number.MAX_SAFE_INTEGER);
      c.text('peerName', frame.peerName, MAX_PEER_NAME_BYTES);
      return;
    case FrameType.EPOCH_BEGIN: {
      c.epoch('epoch', frame.epoch);
      c.flags('flags', frame.flags, EPOCH_FLAGS_KNOWN);
      c.epochOrNone('baseEpoch', frame.baseEpoch);
      const full = (frame.flags & EpochFlags.FULL) !== 0;
      c.rule(
        'baseEpoch',
        frame.baseEpoch,
        full ? frame.baseEpoch === null : frame.baseEpoch !== null && frame.baseEpoch < frame.epoch,
        'none with FULL, else an earlier epoch',
      );
      c.uint('imageBytes', frame.imageBytes, Number.MAX_SAFE_INTEGER);
      return;
    }
    case FrameType.CHUNK:
      c.epoch('epoch', frame.epoch);
      c.uint('seq', frame.seq, U32);
      c.uint('records', frame.records, U32);
      c.uint('rawLength', frame.rawLength, U32);
      if (frame.rawLength > limits.maxRawLength) {
        throw c.fail('RWAN_ERR_PROTOCOL_FIELD_TOO_LARGE', 'rawLength', frame.rawLength, {
          limit: limits.maxRawLength,
        });
      }
      c.oneOf('method', frame.method, ChunkMethod);
      c.oneOf('kind', frame.kind, ChunkKind);
      c.uint('dictId', frame.dictId, U32);
      if (frame.method === ChunkMethod.ZSTD_DICT) {
        c.rule('dictId', frame.dictId, frame.dictId !== 0, 'non-zero with method 2');
      } else {
        c.rule('dictId', frame.dictId, frame.dictId === 0, '0 unless method is 2');
      }
      if (!Buffer.isBuffer(frame.data))
        throw c.fail('RWAN_ERR_PROTOCOL_INVALID_FIELD', 'data', typeof frame.data);
      if (frame.data.length > limits.maxChunkData) {
        throw c.fail('RWAN_ERR_PROTOCOL_FRAME_TOO_LARGE', 'data', frame.data.length, {
          limit: limits.maxChunkData,
        });
      }
      if (frame.method === ChunkMethod.RAW) {
        c.rule(
          'rawLength',
          frame.rawLength,
          frame.rawLength === frame.data.length,
          'the data length with method 0',
        );
      }
      return;
    case FrameType.EPOCH_END:
      c.epoch('epoch', frame.epoch);
      c.bytes('digest', frame.digest, DIGEST_BYTES);
      c.uint('pageCount', frame.pageCount, U32);
      c.uint('chunkCount', frame.chunkCount, U32);
      c.uint('rawBytes', frame.rawBytes, Number.MAX_SAFE_INTEGER);
      c.uint('extraBytes', frame.extraBytes, U32);
      c.rule('extraBytes', frame.extraBytes, frame.extraBytes <= frame.rawBytes, '≤ rawBytes');
      return;
    case FrameType.ACK:
      c.epoch('epoch', frame.epoch);
      c.flags('flags', frame.flags, ACK_FLAGS_KNOWN);
      c.uint('receivedBytes', frame.receivedBytes, Number.MAX_SAFE_INTEGER);
      return;
    case FrameType.HEARTBEAT:
      c.uint('sentAt', frame.sentAt, Number.MAX_SAFE_INTEGER);
      c.uint('seq', frame.seq, U32);
      c.epochOrNone('lastAcked', frame.lastAcked);
      c.flags('flags', frame.flags, HEARTBEAT_FLAGS_KNOWN);
      return;
    case FrameType.RESUME:
      c.bytes('sessionId', frame.sessionId, SESSION_ID_BYTES);
      c.epoch('fromEpoch', frame.fromEpoch);
      c.oneOf('reason', frame.reason, ResumeReason);
      return;
    case FrameType.ERROR:
      c.uint('code', frame.code, U16);
      c.rule('fatal', frame.fatal, typeof frame.fatal === 'boolean', 'a boolean');
      c.text('message', frame.message, MAX_ERROR_MESSAGE_BYTES);
      return;
    case FrameType.STREAM_DATA:
      c.uint('offset', frame.offset, Number.MAX_SAFE_INTEGER);
      c.rule('data', frame.data, Buffer.isBuffer(frame.data), 'a Buffer');
      c.uint('data length', frame.data.length, MAX_STREAM_DATA_BYTES);
      return;
    default: {
      const never: never = frame;
      throw protocolError('RWAN_ERR_PROTOCOL_UNKNOWN_TYPE', 'unknown frame type', {
        direction,
        type: (never as { type: unknown }).type,
      });
    }
  }
}

/** Raises errors that name the frame, the field and the value. */
class Checker {
  private readonly name: string;

  constructor(
    frame: Frame,
    private readonly direction: Direction,
  ) {
    this.name = FRAME_TYPE_NAMES[frame.type] ?? String(frame.type);
  }

  fail(
    code: ProtocolErrorCode,
    field: string,
    value: unknown,
    extra: Record<string, unknown> = {},
    why = 'out of range',
  ): RwanError {
    const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 40)) : String(value);
    return protocolError(code, `${this.name}.${field} = ${shown}: ${why}`, {
      direction: this.direction,
      frame: this.name,
      field,
      value: typeof value === 'string' ? value.slice(0, 40) : value,
      ...extra,
    });
  }

  rule(field: string, value: unknown, ok: boolean, why: string): void {
    if (ok) return;
    throw this.fail('RWAN_ERR_PROTOCOL_INVALID_FIELD', field, value, {}, `must be ${why}`);
  }

  uint(field: string, value: number, max: number): void {
    this.rule(
      field,
      value,
      Number.isSafeInteger(value) && value >= 0 && value <= max,
      `an integer from 0 to ${max}`,
    );
  }

  epoch(field: string, value: number): void {
    this.uint(field, value, Number.MAX_SAFE_INTEGER);
  }

  epochOrNone(field: string, value: number | null): void {
    if (value !== null) this.epoch(field, value);
  }

  oneOf(field: string, value: number, table: Readonly<Record<string, number>>): void {
    this.rule(
      field,
      value,
      Object.values(table).includes(value),
      `one of ${Object.values(table).join(', ')}`,
    );
  }

  flags(field: string, value: number, known: number): void {
    this.uint(field, value, U8);
    if ((value & ~known) !== 0) throw this.fail('RWAN_ERR_PROTOCOL_RESERVED', field, value, { known });
  }

  bytes(field: string, value: Buffer, length: number): void {
    this.rule(field, value?.length, Buffer.isBuffer(value) && value.length === length, `${length} bytes`);
  }

  text(field: string, value: string, maxBytes: number): void {
    this.rule(
      field,
      value,
      typeof value === 'string' && !LONE_SURROGATE.test(value),
      'well-formed UTF-16 text',
    );
    const n = Buffer.byteLength(value, 'utf8');
    if (n > maxBytes)
      throw this.fail('RWAN_ERR_PROTOCOL_FIELD_TOO_LARGE', field, value, { bytes: n, limit: maxBytes });
  }
}
