/**
 * Frame decoder, after ws's Receiver (docs/protocol.md §5). Pure: it never touches a socket or a timer.
 *
 * ```
 *  socket 'data' ──► write(chunk) ──► [chunks…] ──► GET_HEADER ──► GET_PAYLOAD ──► [frames…] ──► read()
 *       ▲              │ false when pendingBytes > highWaterMark                          │
 *       └── resume ◄── 'drain' (emitted by read() when the last pending frame is taken) ◄─┘
 * ```
 *
 * `consume(n)` hands out views of the written chunks and copies only when a header or a payload
 * straddles two chunks; a payload length is checked against its type's cap before anything is
 * buffered for it. The first violation fails the decoder for good: `write()` throws that same
 * `RwanError` again on every later call. Frames decoded before the violation stay readable.
 *
 * ```ts
 * socket.on('data', (chunk) => { if (!decoder.write(chunk)) socket.pause(); for (let f; (f = decoder.read()); ) handle(f); });
 * decoder.on('drain', () => socket.resume());
 * socket.on('end', () => decoder.end());
 * ```
 */
import { EventEmitter } from 'node:events';
import { RwanError } from '../errors.js';
import {
  DEFAULT_MAX_CHUNK_DATA,
  DEFAULT_MAX_RAW_LENGTH,
  FRAME_TYPE_NAMES,
  type Frame,
  type FrameType,
  HEADER_SIZE,
  isFixedSize,
  isFrameType,
  MAGIC_0,
  MAGIC_1,
  MAX_CHUNK_CAP,
  MIN_CHUNK_CAP,
  maxPayload,
  PROTOCOL_VERSION,
  type ProtocolLimits,
} from './frames.js';
import { minPayload, parsePayload } from './parse-payload.js';
import { type ProtocolErrorCode, protocolError } from './protocol-error.js';

const GET_HEADER = 0;
const GET_PAYLOAD = 1;

/** Default backpressure threshold: 32 MiB of decoded frames waiting for `read()`. */
export const DEFAULT_HIGH_WATER_MARK = 32 * 2 ** 20;

/** Options of {@link FrameDecoder}. */
export interface FrameDecoderOptions {
  /** Largest CHUNK data accepted, bytes (default 16 MiB; 128 KiB .. 4 GiB - 27). */
  maxChunkData?: number;
  /** Largest CHUNK rawLength accepted, bytes (default 16 MiB; 128 KiB .. 4 GiB - 27). */
  maxRawLength?: number;
  /** `write()` returns false while more than this many frame bytes wait for `read()` (default 32 MiB). */
  highWaterMark?: number;
}

/**
 * Turns a byte stream into frames. Events: `'drain'` (no arguments) once `read()` empties the queue
 * after a `write()` returned false.
 */
export class FrameDecoder extends EventEmitter {
  /** The caps in force; announce `Math.min(maxChunkData, maxRawLength)` as HELLO.maxChunkBytes. */
  readonly limits: ProtocolLimits;
  readonly highWaterMark: number;

  private readonly buffers: Buffer[] = [];
  private buffered = 0;
  private state: typeof GET_HEADER | typeof GET_PAYLOAD = GET_HEADER;
  private type: FrameType = 1;
  private payloadLength = 0;
  /** Stream offset of the current frame's first byte. */
  private frameStart = 0;

  private readonly queue: Frame[] = [];
  private readonly queueSizes: number[] = [];
  private head = 0;
  private pending = 0;
  private needDrain = false;
  private failure: RwanError | undefined;

  /** @throws RwanError `RWAN_ERR_INVALID_VALUE` for a cap or highWaterMark out of range */
  constructor(options: FrameDecoderOptions = {}) {
    super();
    this.limits = {
      maxChunkData: checkCap('maxChunkData', options.maxChunkData ?? DEFAULT_MAX_CHUNK_DATA),
      maxRawLength: checkCap('maxRawLength', options.maxRawLength ?? DEFAULT_MAX_RAW_LENGTH),
    };
    const hwm = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
    if (!Number.isSafeInteger(hwm) || hwm < 0) {
      throw new RwanError('RWAN_ERR_INVALID_VALUE', `highWaterMark ${hwm}: expected an integer ≥ 0`, {
        details: { option: 'highWaterMark', value: hwm },
      });
    }
    this.highWaterMark = hwm;
  }

  /**
   * Bytes written and not yet consumed (a parsed header no longer counts). Between writes it is below
   * the part being waited for: < HEADER_SIZE, or < the announced payload length (≤ its cap).
   */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Wire bytes (headers + payloads) of the decoded frames not yet taken by `read()`. */
  get pendingBytes(): number {
    return this.pending;
  }

  /** Decoded frames not yet taken by `read()`. */
  get pendingFrames(): number {
    return this.queue.length - this.head;
  }

  /** Wire bytes of every complete frame decoded so far (ACK.receivedBytes). */
  get decodedBytes(): number {
    return this.frameStart;
  }

  /** The error that failed the decoder, if any. */
  get error(): RwanError | undefined {
    return this.failure;
  }

  /**
   * Adds bytes and decodes every frame they complete.
   * @returns false when more than `highWaterMark` bytes of frames wait for `read()`: pause the source
   *   until `'drain'`
   * @throws RwanError `RWAN_ERR_PROTOCOL_*` on the first violation, and the same error on every later call
   */
  write(chunk: Buffer): boolean {
    if (this.failure) throw this.failure;
    if (chunk.length > 0) {
      this.buffers.push(chunk);
      this.buffered += chunk.length;
    }
    this.loop();
    if (this.pending > this.highWaterMark) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  /** The next decoded frame, or undefined. Emits `'drain'` when this empties the queue after backpressure. */
  read(): Frame | undefined {
    if (this.head === this.queue.length) return undefined;
    const frame = this.queue[this.head] as Frame;
    this.pending -= this.queueSizes[this.head] as number;
    this.head++;
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.queueSizes.length = 0;
      this.head = 0;
      if (this.needDrain) {
        this.needDrain = false;
        this.emit('drain');
      }
    } else if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.queue.splice(0, this.head);
      this.queueSizes.splice(0, this.head);
      this.head = 0;
    }
    return frame;
  }

  /** Every decoded frame not yet read (same drain rule as `read()`). */
  readAll(): Frame[] {
    const out: Frame[] = [];
    for (let f = this.read(); f !== undefined; f = this.read()) out.push(f);
    return out;
  }

  /**
   * The stream ended (socket 'end'). Fine between frames.
   * @throws RwanError `RWAN_ERR_PROTOCOL_UNEXPECTED_EOF` when a frame was cut short (the decoder fails)
   */
  end(): void {
    if (this.failure) throw this.failure;
    if (this.buffered > 0 || this.state === GET_PAYLOAD) {
      const needed = this.state === GET_HEADER ? HEADER_SIZE : this.payloadLength;
      this.fail(
        'RWAN_ERR_PROTOCOL_UNEXPECTED_EOF',
        `stream ended ${this.buffered} bytes into a ${needed}-byte part`,
        {
          buffered: this.buffered,
          needed,
          part: this.state === GET_HEADER ? 'header' : 'payload',
        },
      );
    }
  }

  private loop(): void {
    try {
      for (;;) {
        if (this.state === GET_HEADER) {
          if (this.buffered < HEADER_SIZE) return;
          this.getHeader();
        } else {
          if (this.buffered < this.payloadLength) return;
          this.getPayload();
        }
      }
    } catch (err) {
      if (err instanceof RwanError && err !== this.failure) {
        err.details.offset ??= this.frameStart;
        this.failure = err;
      }
      throw err;
    }
  }

  private getHeader(): void {
    const h = this.consume(HEADER_SIZE);
    if (h[0] !== MAGIC_0 || h[1] !== MAGIC_1) {
      this.fail('RWAN_ERR_PROTOCOL_BAD_MAGIC', `bad magic ${h.toString('hex', 0, 2)}, expected 5257 ('RW')`, {
        magic: h.readUInt16BE(0),
      });
    }
    if (h[2] !== PROTOCOL_VERSION) {
      this.fail(
        'RWAN_ERR_PROTOCOL_UNSUPPORTED_VERSION',
        `frame version ${h[2]}, this build speaks ${PROTOCOL_VERSION}`,
        {
          version: h[2],
        },
      );
    }
    const type = h[3] as number;
    if (!isFrameType(type))
      this.fail('RWAN_ERR_PROTOCOL_UNKNOWN_TYPE', `unknown frame type ${type}`, { type });
    const name = FRAME_TYPE_NAMES[type];
    if (h[4] !== 0)
      this.fail('RWAN_ERR_PROTOCOL_RESERVED', `${name}: header flags ${h[4]}`, { field: 'flags' });
    if (h[5] !== 0 || h.readUInt16LE(6) !== 0) {
      this.fail('RWAN_ERR_PROTOCOL_RESERVED', `${name}: reserved header bytes not 0`, { field: 'reserved' });
    }
    const length = h.readUInt32LE(8);
    const cap = maxPayload(type, this.limits);
    const details = { frame: name, payloadLength: length };
    if (length > cap) {
      this.fail('RWAN_ERR_PROTOCOL_FRAME_TOO_LARGE', `${name} of ${length} bytes > ${cap}`, {
        ...details,
        limit: cap,
      });
    }
    if (length < minPayload(type)) {
      this.fail(
        'RWAN_ERR_PROTOCOL_TRUNCATED',
        `${name} of ${length} bytes < its ${minPayload(type)} fixed bytes`,
        details,
      );
    }
    if (isFixedSize(type) && length > minPayload(type)) {
      this.fail(
        'RWAN_ERR_PROTOCOL_TRAILING_BYTES',
        `${name} of ${length} bytes > its ${minPayload(type)} bytes`,
        details,
      );
    }
    this.type = type;
    this.payloadLength = length;
    this.state = GET_PAYLOAD;
  }

  private getPayload(): void {
    const payload = this.consume(this.payloadLength);
    const frame = parsePayload(this.type, payload, this.limits);
    const size = HEADER_SIZE + this.payloadLength;
    this.queue.push(frame);
    this.queueSizes.push(size);
    this.pending += size;
    this.frameStart += size;
    this.state = GET_HEADER;
  }

  /** `n` bytes off the front: a view when they lie in one chunk, else one copy of exactly `n` bytes. */
  private consume(n: number): Buffer {
    this.buffered -= n;
    const first = this.buffers[0];
    if (n === 0 || first === undefined) return Buffer.alloc(0);
    if (n === first.length) return this.buffers.shift() as Buffer;
    if (n < first.length) {
      this.buffers[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const dst = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const buf = this.buffers[0] as Buffer;
      const take = Math.min(buf.length, n - at);
      buf.copy(dst, at, 0, take);
      at += take;
      if (take === buf.length) this.buffers.shift();
      else this.buffers[0] = buf.subarray(take);
    }
    return dst;
  }

  private fail(code: ProtocolErrorCode, message: string, details: Record<string, unknown>): never {
    const err = protocolError(code, message, { direction: 'decode', offset: this.frameStart, ...details });
    this.failure = err;
    throw err;
  }
}

function checkCap(option: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < MIN_CHUNK_CAP || value > MAX_CHUNK_CAP) {
    throw new RwanError(
      'RWAN_ERR_INVALID_VALUE',
      `${option} ${value}: expected ${MIN_CHUNK_CAP}..${MAX_CHUNK_CAP} bytes`,
      {
        details: { option, value },
      },
    );
  }
  return value;
}
