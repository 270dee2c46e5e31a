/**
 * The primary's side of a replication session: capture epochs from a source, encode them, send them
 * over N channels within a window of W unacknowledged epochs, and resume after a connection loss
 * from the last epoch the receiver holds.
 *
 * ```
 *  capture loop (every epochMs, while fewer than W epochs are unacknowledged)
 *    source.capture() ─► EpochEncoder ─► OutEpoch { BEGIN, CHUNK…, END }  (kept until ACKed: the
 *                                          │                               retransmit buffer)
 *  send pump (one at a time, in epoch order)▼
 *    BEGIN → channel 0 │ CHUNK k → channel k mod N (rate limit, socket back-pressure) │ END → channel 0
 *  ACK(epoch, DURABLE) on any channel ─► drop epochs ≤ epoch, stats line, window opens
 *  a channel lost ─► close all, reconnect with back-off; the receiver's HELLO says the last epoch it
 *                    holds: resend from the next one (verbatim: the receiver decodes the same bytes
 *                    against the same cache) — or, when it holds none of this session's epochs or one
 *                    older than the buffer, a FULL epoch (both page caches reset).
 * ```
 *
 * Encoding runs on the encoder port (encoder-port.ts: in the daemon, this thread between awaits with
 * each chunk's zstd on the thread pool, or a worker thread), in parallel with sending; the next
 * capture waits while the encoder holds
 * CAPTURES_AHEAD captures or CAPTURE_AHEAD_BYTES of them, which bounds the raw pages held in memory.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { EncodedChunk } from '../codec/epoch-encoder.js';
import type { CodecOptions } from '../codec/options.js';
import { asRwanError, RwanError } from '../errors.js';
import { chunk as chunkFrame, epochBegin, epochEnd, hello } from '../protocol/encoder.js';
import {
  AckFlags,
  Capability,
  type ChunkFrame,
  type EpochBeginFrame,
  type EpochEndFrame,
  EpochFlags,
  FRAME_TYPE_NAMES,
  type Frame,
  FrameType,
  HEADER_SIZE,
  type HelloFrame,
  PROTOCOL_VERSION,
  Role,
  WireErrorCode,
} from '../protocol/frames.js';
import { Channel, handshake } from '../transport/channel.js';
import { RateLimiter, type RateSettings } from '../transport/rate-limit.js';
import { type EncoderPort, InlineEncoder } from './encoder-port.js';

/**
 * What the sender needs from a source of epochs (src/replication/source-image.ts is one). The sender
 * holds each capture's `pages` until the epoch is encoded (or its encoding failed), then gives them
 * back to the source's `recycle`, if it has one; `pfns` stay the source's. With `ownsBuffer`, a worker
 * encoder takes the memory under the pages as it is: an ArrayBuffer is transferred whole, shared
 * memory is read in place; without it, it transfers a copy.
 */
export interface EpochSource {
  capture(options?: { full?: boolean }): Promise<{
    full: boolean;
    pfns: ArrayLike<number>;
    pages: Buffer;
    imageBytes: number;
    captureMs: number;
    pausedMs: number;
    digest?: string;
    ownsBuffer?: boolean;
  }>;
  /** Takes back the pages of an encoded epoch (unused from then on) to read later captures into. */
  recycle?(pages: Buffer): void;
  /** Bytes of memory the source keeps for reading captures into (for a metric). */
  readonly captureMemoryBytes?: number;
}

/**
 * Captures waiting for the encoder besides the one it is encoding: the next capture waits until there
 * are fewer. One keeps the encoder busy (epoch N+1 is captured while N is encoded) and bounds the raw
 * pages the sender holds to two captures, whatever the window (docs/daemon.md, Memory).
 */
export const CAPTURES_AHEAD = 1;

/**
 * A capture is taken while the encoder still holds earlier ones only if their raw pages come to less
 * than this: large epochs are captured one after the other (the encoder waits for a capture, a few ms
 * per 10 MB read), small ones overlap with encoding. Raw pages held: at most one capture plus this.
 */
export const CAPTURE_AHEAD_BYTES = 16 * 2 ** 20;

/**
 * The next capture also waits while the unacknowledged epochs' chunks (the retransmit buffer) hold
 * this much: small epochs fill the window, epochs of raw pages (a dirty set larger than the page
 * cache) would otherwise keep W × tens of MB each.
 */
export const RETAINED_BYTES = 64 * 2 ** 20;

/** Opens one secured connection to the receiver. */
export type Dialer = () => Promise<{
  socket: ConstructorParameters<typeof Channel>[0];
  peer: { remoteAddress: string; remotePort: number };
}>;

/** A logger with pino's method shape (pino itself, or a no-op in tests). */
export interface Log {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/** Settings of a {@link SenderSession}. */
export interface SenderOptions {
  dial: Dialer;
  source: EpochSource;
  pageSize: number;
  /** Parallel connections; chunks are striped over them. */
  channels: number;
  /**
   * Send an epoch on two channels at once while the unacknowledged chunk bytes, its own included, are
   * at most this many (0: never): see {@link SenderSession.copiesOf}. Needs two channels and a receiver
   * that announces Capability.COPIES.
   */
  copiesBelowBytes?: number;
  /**
   * This long after an epoch's END, and again every as long while it is not acknowledged, send again
   * on a channel with nothing left to send the frames of it still waiting unsent in another, ms (0:
   * never). See {@link SenderSession.armHedge}. Needs two channels and a receiver that announces
   * Capability.COPIES.
   */
  hedgeAfterMs?: number;
  /** Most epochs sent and not yet acknowledged (1: stop and wait). */
  window: number;
  /** Capture interval, ms (0: capture as soon as the source has an epoch and the window allows). */
  epochMs: number;
  /** HELLO capability bits besides the ones the session speaks (Capability.XEN_STREAM …). */
  capabilities?: number;
  codec?: Partial<Omit<CodecOptions, 'pageSize'>>;
  /** Where epochs are encoded (default: on this thread, {@link InlineEncoder} with `codec`). */
  encoder?: EncoderPort;
  rate?: RateSettings | null;
  heartbeatMs: number;
  /** A channel that hears nothing for this long is dropped and reconnected, ms. */
  idleTimeoutMs: number;
  handshakeTimeoutMs: number;
  reconnect: { initialMs: number; maxMs: number };
  /** Stop after this many epochs have been acknowledged (tests, benchmarks). */
  maxEpochs?: number;
  peerName?: string;
  log: Log;
}

/** What one acknowledged epoch cost: a line of the stats file (`remus-plan` reads it). */
export interface SenderEpochStats {
  epoch: number;
  full: boolean;
  /** Time since the previous capture started, ms (the epoch's length as the guest saw it). */
  epochMs: number;
  dirtyPages: number;
  /** Page bytes captured (dirtyPages × page size). */
  rawBytes: number;
  /** Chunk data bytes sent (compressed). */
  wireBytes: number;
  chunks: number;
  captureMs: number;
  pausedMs: number;
  encodeMs: number;
  /** From the end of the capture to the receiver's durable ACK, ms. */
  ackMs: number;
  /** Times the epoch's frames were sent again after a reconnect. */
  resent: number;
  /** Chunk bytes also sent on a second channel ({@link SenderOptions.copiesBelowBytes}). */
  copyBytes: number;
  /** Of copyBytes, those sent again on an idle channel ({@link SenderOptions.hedgeAfterMs}). */
  hedgedBytes: number;
  /**
   * From the end of the capture until every frame of the epoch had left the primary (the socket's
   * buffer and the kernel's send queue) on one channel at least, ms: encoding, then what the TCP flows'
   * pace and windows held back. Polled every {@link SENT_POLL_MS} ms.
   */
  sendMs: number;
  kinds: { zero: number; raw: number; delta: number; dup: number };
  /** Image digest at the capture, when the source computes it. */
  digest?: string;
}

/** How often the sender looks whether the frames of the epochs it sent have left the primary, ms. */
export const SENT_POLL_MS = 2;

/** A CHUNK frame's bytes besides its data: the frame header and the CHUNK fields (docs/protocol.md). */
const CHUNK_FRAME_OVERHEAD = HEADER_SIZE + 26;

/** One epoch on its way: its frames as they are encoded, kept until acknowledged. */
class OutEpoch {
  readonly chunks: ChunkFrame[] = [];
  /** Chunk data bytes held (for the retransmit buffer's bound). */
  bytes = 0;
  end: EpochEndFrame | undefined;
  resent = 0;
  endSentAt = 0;
  stats: Omit<SenderEpochStats, 'ackMs' | 'resent' | 'copyBytes' | 'hedgedBytes' | 'sendMs'> | undefined;
  /** Chunk bytes sent a second time, on another channel. */
  copyBytes = 0;
  /** Of those, the hedges. */
  hedgedBytes = 0;
  /** Where each frame sent went (the last time the epoch was sent), for {@link SenderSession.hedge}. */
  placed: Array<{ frame: Frame; on: Array<{ ch: Channel; end: number }> }> = [];
  /** How many of `placed`, from the first, have left the primary on some channel. */
  sentFrames = 0;
  /** When every frame placed had left (0: not yet). */
  sentAt = 0;
  private waiters: Array<() => void> = [];

  constructor(
    readonly epoch: number,
    readonly begin: EpochBeginFrame,
    readonly capturedAt: number,
  ) {}

  push(c: ChunkFrame): void {
    this.chunks.push(c);
    this.bytes += c.data.length;
    this.wake();
  }

  finish(end: EpochEndFrame): void {
    this.end = end;
    this.wake();
  }

  /** Resolves when there is a chunk at `index` or the epoch is complete. */
  next(index: number): Promise<void> {
    if (index < this.chunks.length || this.end) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** Session states, for `status`. */
export type SenderState = 'connecting' | 'replicating' | 'reconnecting' | 'stopped';

/**
 * Events: `'epoch'` (SenderEpochStats, once acknowledged), `'state'` (SenderState), `'progress'`
 * ({ epoch, sentBytes, totalBytes } about once a second while a full copy is sent), `'fatal'` (a
 * RwanError that stops the session: the receiver refused it for good), `'capture-start'` (the epoch
 * about to be captured), `'stream-data'` (offset, bytes:
 * with Capability.XEN_STREAM, the backup's receive command's output).
 */
export class SenderSession extends EventEmitter {
  readonly sessionId = randomBytes(16);
  private readonly encoder: EncoderPort;
  private readonly limiter: RateLimiter;
  private channels: Channel[] = [];
  private connected = false;
  private readonly retained = new Map<number, OutEpoch>();
  private lastEpoch = 0;
  private lastAcked: number | null = null;
  private needFull = true;
  private running = false;
  private current: SenderState = 'connecting';
  private pumpGen = 0;
  private acked = 0;
  private lastCaptureStart = 0;
  /** Epochs handed to the encoder and not yet encoded (their raw pages are held meanwhile), and their bytes. */
  private encoding = 0;
  private encodingBytes = 0;
  private windowWaiters: Array<() => void> = [];
  /** Epochs whose END is written and whose frames have not all left the primary ({@link checkSent}). */
  private readonly sending = new Set<OutEpoch>();
  private sentTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private backoffMs: number;
  private stopped: Promise<void> | undefined;
  private finishStop: (() => void) | undefined;
  private fatal: RwanError | undefined;
  /** Counters for metrics and status. */
  readonly counters = {
    epochsAcked: 0,
    fullEpochs: 0,
    rawBytes: 0,
    wireBytes: 0,
    frameBytesOut: 0,
    reconnects: 0,
    resentEpochs: 0,
    /** Chunk bytes sent a second time, on another channel ({@link SenderOptions.copiesBelowBytes}). */
    copyBytes: 0,
    /** The part of copyBytes that hedged a slowed channel ({@link SenderOptions.hedgeAfterMs}). */
    hedgedBytes: 0,
  };
  /** Whether the receiver takes the first of several copies of a frame (Capability.COPIES). */
  private peerTakesCopies = false;
  /** Last round trip seen on channel 0, ms. */
  rttMs: number | undefined;

  constructor(private readonly o: SenderOptions) {
    super();
    if (!(Number.isInteger(o.channels) && o.channels >= 1 && o.channels <= 64)) {
      throw new RwanError('RWAN_ERR_INVALID_VALUE', `channels ${o.channels}: expected 1..64`);
    }
    if (!(Number.isInteger(o.window) && o.window >= 1)) {
      throw new RwanError('RWAN_ERR_INVALID_VALUE', `window ${o.window}: expected an integer ≥ 1`);
    }
    this.encoder = o.encoder ?? new InlineEncoder({ ...o.codec, pageSize: o.pageSize });
    if (this.encoder.options.pageSize !== o.pageSize) {
      throw new RwanError(
        'RWAN_ERR_INVALID_VALUE',
        `encoder page size ${this.encoder.options.pageSize}, session ${o.pageSize}`,
      );
    }
    this.limiter = new RateLimiter(o.rate ?? null);
    this.backoffMs = o.reconnect.initialMs;
  }

  /** Bytes of memory the source keeps for reading captures into (0 when it does not say). */
  get captureMemoryBytes(): number {
    return this.o.source.captureMemoryBytes ?? 0;
  }

  get state(): SenderState {
    return this.current;
  }

  /** Last epoch the receiver acknowledged as durable. */
  get lastAckedEpoch(): number | null {
    return this.lastAcked;
  }

  /** Epochs sent (or being sent) and not yet acknowledged. */
  /** The connected channels, for `status`. */
  get peers(): ReturnType<Channel['describe']>[] {
    return this.channels.filter((c) => !c.isClosed).map((c) => c.describe());
  }

  /** How long the oldest unacknowledged epoch has waited since its capture, ms (0: none waiting). */
  get lagMs(): number {
    let oldest = Number.POSITIVE_INFINITY;
    for (const out of this.retained.values()) oldest = Math.min(oldest, out.capturedAt);
    return Number.isFinite(oldest) ? performance.now() - oldest : 0;
  }

  get inFlight(): number {
    return this.retained.size;
  }

  /** The rate limiter (its cap can change at run time). */
  get rate(): RateLimiter {
    return this.limiter;
  }

  /** Start connecting and replicating; resolves when the session stops (stop(), maxEpochs, or a fatal error). */
  run(): Promise<void> {
    if (this.stopped) return this.stopped;
    this.running = true;
    this.stopped = new Promise((resolve) => {
      this.finishStop = resolve;
    });
    this.connect();
    this.captureLoop().catch((err) => this.fail(asRwanError(err)));
    return this.stopped;
  }

  /** Stop: no new capture, channels closed with SHUTDOWN. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.sentTimer);
    for (const ch of this.channels) {
      ch.close(new RwanError('RWAN_ERR_PEER', 'sender shutting down'), WireErrorCode.SHUTDOWN);
    }
    this.channels = [];
    this.wakeWindow();
    await this.limiter.stop();
    this.setState('stopped');
    this.finishStop?.();
  }

  /** The error that stopped the session, if any. */
  get error(): RwanError | undefined {
    return this.fatal;
  }

  private fail(err: RwanError): void {
    if (!this.running) return;
    this.fatal = err;
    this.o.log.error({ code: err.code, err: err.message }, 'replication stopped');
    this.emit('fatal', err);
    void this.stop();
  }

  private setState(s: SenderState): void {
    if (s === this.current) return;
    this.current = s;
    this.emit('state', s);
  }

  // ---------------------------------------------------------------------------------------------
  // connections

  private connect(): void {
    if (!this.running) return;
    const gen = ++this.pumpGen;
    this.attempt(gen).catch((err: unknown) => {
      const e = asRwanError(err);
      if (!this.running || gen !== this.pumpGen) return;
      if (isFatalPeerError(e)) {
        this.fail(e);
        return;
      }
      this.o.log.warn({ code: e.code, err: e.message, retryInMs: this.backoffMs }, 'connection failed');
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (!this.running || this.reconnectTimer) return;
    this.setState('reconnecting');
    const delay = this.backoffMs * (0.75 + Math.random() * 0.5);
    this.backoffMs = Math.min(this.o.reconnect.maxMs, this.backoffMs * 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.counters.reconnects++;
      this.connect();
    }, delay);
  }

  private async attempt(gen: number): Promise<void> {
    const n = this.o.channels;
    const channels: Channel[] = [];
    try {
      const hellos: HelloFrame[] = [];
      for (let i = 0; i < n; i++) {
        const { socket, peer } = await this.o.dial();
        const ch = new Channel(socket, {
          name: `${peer.remoteAddress}:${peer.remotePort}#${i}`,
          heartbeatMs: this.o.heartbeatMs,
          idleTimeoutMs: this.o.idleTimeoutMs,
          lastAcked: () => this.lastAcked,
        });
        channels.push(ch);
        const mine = hello({
          minVersion: PROTOCOL_VERSION,
          maxVersion: PROTOCOL_VERSION,
          capabilities:
            Capability.ZSTD |
            Capability.DIGEST |
            Capability.RESUME |
            Capability.COPIES |
            (this.o.capabilities ?? 0),
          sessionId: this.sessionId,
          pageSize: this.o.pageSize,
          role: Role.SENDER,
          channelIndex: i,
          channelCount: n,
          cacheBytes: this.encoder.options.cacheBytes,
          peerName: this.o.peerName ?? '',
        });
        const theirs = await handshake(ch, mine, this.o.handshakeTimeoutMs);
        checkReceiverHello(theirs, this.o.pageSize, ch);
        ch.setPeerLimits({ maxChunkData: theirs.maxChunkBytes, maxRawLength: theirs.maxChunkBytes });
        hellos.push(theirs);
      }
      if (!this.running || gen !== this.pumpGen) throw new RwanError('RWAN_ERR_PEER', 'superseded');
      this.channels = channels;
      this.peerTakesCopies = ((hellos[0] as HelloFrame).capabilities & Capability.COPIES) !== 0;
      for (const ch of channels) {
        ch.on('frame', (f: Frame) => this.onFrame(f));
        ch.on('close', (why: RwanError | undefined) => this.onChannelClosed(gen, why));
        ch.on('heartbeat', () => {
          if (ch === this.channels[0]) this.rttMs = ch.stats.rttMs;
        });
      }
      this.resumeFrom((hellos[0] as HelloFrame).lastEpochHeld);
      this.connected = true;
      this.backoffMs = this.o.reconnect.initialMs;
      this.setState('replicating');
      this.o.log.info(
        { channels: n, lastEpochHeld: (hellos[0] as HelloFrame).lastEpochHeld, retained: this.retained.size },
        'connected',
      );
      void this.pump(gen);
    } catch (err) {
      for (const ch of channels) ch.close(undefined);
      throw err;
    }
  }

  /** Decide where sending starts, from the last epoch the receiver holds of this session. */
  private resumeFrom(held: number | null): void {
    if (held !== null) this.ackThrough(held, false);
    const first = this.retained.get(Math.min(...this.retained.keys()));
    const resumable =
      held === null
        ? this.lastEpoch === 0 || (first !== undefined && (first.begin.flags & EpochFlags.FULL) !== 0)
        : held <= this.lastEpoch &&
          (first === undefined ? held === this.lastEpoch : first.epoch === held + 1);
    if (!resumable) {
      this.o.log.warn(
        { held, first: first?.epoch, last: this.lastEpoch },
        'cannot resume: the next epoch is a full copy',
      );
      this.retained.clear();
      this.needFull = true;
      this.wakeWindow();
    }
  }

  private onChannelClosed(gen: number, why: RwanError | undefined): void {
    if (!this.running || gen !== this.pumpGen || !this.connected) return; // stop() closes them too
    this.connected = false;
    if (why && isFatalPeerError(why)) {
      this.fail(why);
      return;
    }
    this.o.log.warn({ err: why?.message }, 'channel lost: reconnecting');
    for (const ch of this.channels) ch.close(undefined);
    this.channels = [];
    // what was on them does not leave now: the epochs are sent again, and watched again from their END
    this.sending.clear();
    this.pumpGen++;
    this.scheduleReconnect();
  }

  private onFrame(f: Frame): void {
    if (f.type === FrameType.ACK) {
      if ((f.flags & AckFlags.DURABLE) !== 0) this.ackThrough(f.epoch, true);
    } else if (f.type === FrameType.RESUME) {
      // the receiver could not use what it got (a digest mismatch, a gap): start over from a full copy
      this.o.log.warn(
        { reason: f.reason, fromEpoch: f.fromEpoch },
        'receiver asks to resume: full copy next',
      );
      this.retained.clear();
      this.needFull = true;
      this.pumpGen++;
      for (const ch of this.channels) ch.close(undefined);
      this.channels = [];
      this.connected = false;
      this.wakeWindow();
      this.scheduleReconnect();
    } else if (f.type === FrameType.STREAM_DATA && (this.o.capabilities ?? 0) & Capability.XEN_STREAM) {
      this.emit('stream-data', f.offset, f.data);
    } else {
      const err = new RwanError('RWAN_ERR_PEER', `unexpected ${FRAME_TYPE_NAMES[f.type]} from the receiver`);
      this.channels[0]?.close(err, WireErrorCode.UNEXPECTED_FRAME);
    }
  }

  private ackThrough(epoch: number, fromAck: boolean): void {
    const now = performance.now();
    for (const [e, out] of [...this.retained]) {
      if (e > epoch) continue;
      this.retained.delete(e);
      if (out.stats) {
        const stats: SenderEpochStats = {
          ...out.stats,
          ackMs: fromAck ? now - out.capturedAt : Number.NaN,
          resent: out.resent,
          copyBytes: out.copyBytes,
          hedgedBytes: out.hedgedBytes,
          // the ACK proves every frame arrived: if the last look came before it, it left by now
          sendMs: (out.sentAt || now) - out.capturedAt,
        };
        this.counters.epochsAcked++;
        this.emit('epoch', stats);
        this.acked++;
      }
    }
    if (this.lastAcked === null || epoch > this.lastAcked) this.lastAcked = epoch;
    this.wakeWindow();
    if (this.o.maxEpochs !== undefined && this.acked >= this.o.maxEpochs) void this.stop();
  }

  // ---------------------------------------------------------------------------------------------
  // capture and encode

  private async captureLoop(): Promise<void> {
    while (this.running) {
      const max = this.o.maxEpochs ?? Number.POSITIVE_INFINITY;
      await this.waitWindow(
        () =>
          (this.retained.size < this.o.window &&
            this.acked + this.retained.size < max &&
            this.retainedBytes() < RETAINED_BYTES &&
            (this.encoding === 0 ||
              (this.encoding <= CAPTURES_AHEAD && this.encodingBytes < CAPTURE_AHEAD_BYTES))) ||
          !this.running,
      );
      if (!this.running) return;
      const wait = this.lastCaptureStart + this.o.epochMs - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (!this.running) return;
      const started = performance.now();
      const epochMs = this.lastCaptureStart === 0 ? 0 : started - this.lastCaptureStart;
      this.lastCaptureStart = started;
      const full = this.needFull;
      this.emit('capture-start', this.lastEpoch + 1); // output commit: what comes later waits for the next
      const cap = await this.o.source.capture({ full });
      if (!this.running) return;
      this.needFull = false;
      if (cap.full) {
        this.encoder.reset();
        this.retained.clear();
        this.counters.fullEpochs++;
      }
      const epoch = ++this.lastEpoch;
      const capturedAt = performance.now();
      const out = new OutEpoch(
        epoch,
        epochBegin({
          epoch,
          flags: cap.full ? EpochFlags.FULL : 0,
          baseEpoch: cap.full ? null : epoch - 1,
          imageBytes: cap.imageBytes,
        }),
        capturedAt,
      );
      this.retained.set(epoch, out);
      this.wakeWindow(); // the pump may be waiting for this epoch
      let wire = 0;
      const push = (c: EncodedChunk) => {
        wire += c.data.length;
        out.push(
          chunkFrame({
            epoch,
            seq: c.seq,
            records: c.records,
            rawLength: c.rawLength,
            method: c.method,
            data: c.data,
          }),
        );
      };
      // encoding runs on (or in the order of) the encoder port; the next capture need not wait for it
      // (only for the encoder to have no more than CAPTURES_AHEAD captures queued)
      const held = cap.pages.length;
      this.encoding++;
      this.encodingBytes += held;
      const encoded = this.encoder.encode(epoch, cap.pfns, cap.pages, push, cap.ownsBuffer === true);
      const release = () => {
        this.encoding--;
        this.encodingBytes -= held;
        this.wakeWindow();
      };
      void encoded.then(
        ({ pages }) => {
          this.o.source.recycle?.(pages);
          release();
        },
        () => {
          this.o.source.recycle?.(cap.pages); // the encoder no longer reads them
          release();
        },
      );
      const done = encoded.then(({ summary, encodeMs }) => {
        const rawBytes = out.chunks.reduce((sum, c) => sum + c.rawLength, 0);
        out.finish(
          epochEnd({
            epoch,
            digest: summary.digest,
            pageCount: summary.pageCount,
            chunkCount: out.chunks.length,
            rawBytes,
          }),
        );
        this.counters.rawBytes += summary.rawBytes;
        this.counters.wireBytes += wire;
        out.stats = {
          epoch,
          full: cap.full,
          epochMs,
          dirtyPages: summary.pageCount,
          rawBytes: summary.rawBytes,
          wireBytes: wire,
          chunks: out.chunks.length,
          captureMs: cap.captureMs,
          pausedMs: cap.pausedMs,
          encodeMs,
          kinds: summary.kinds,
          ...(cap.digest === undefined ? {} : { digest: cap.digest }),
        };
      });
      // an encoder failure stops the session; the next capture does not wait for this one
      done.catch((err: unknown) => this.fail(asRwanError(err)));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // the send pump

  /** Chunk bytes of the unacknowledged epochs. */
  private retainedBytes(): number {
    let n = 0;
    for (const out of this.retained.values()) n += out.bytes;
    return n;
  }

  /** Send retained epochs in order, then new ones as they come, until the connection generation changes. */
  private async pump(gen: number): Promise<void> {
    const live = () => this.running && gen === this.pumpGen && this.connected;
    let next = this.retained.size > 0 ? Math.min(...this.retained.keys()) : this.lastEpoch + 1;
    try {
      while (live()) {
        const out = this.retained.get(next);
        if (!out) {
          if (next <= this.lastEpoch) {
            // acknowledged meanwhile, or dropped by a FULL copy: skip to what is retained
            const later = [...this.retained.keys()].filter((e) => e > next);
            next = later.length > 0 ? Math.min(...later) : this.lastEpoch + 1;
            continue;
          }
          await this.waitWindow(() => this.retained.has(next) || !live());
          continue;
        }
        await this.sendEpoch(out, live);
        next = out.epoch + 1;
      }
    } catch (err) {
      if (live()) this.onChannelClosed(gen, asRwanError(err));
    }
  }

  private async sendEpoch(out: OutEpoch, live: () => boolean): Promise<void> {
    if (out.endSentAt > 0) {
      out.resent++;
      this.counters.resentEpochs++;
    }
    out.placed = [];
    out.sentFrames = 0;
    out.sentAt = 0;
    const full = (out.begin.flags & EpochFlags.FULL) !== 0;
    let sentRaw = 0;
    let told = performance.now();
    // while the epoch is small, every frame goes on two channels (the first copy to arrive counts)
    const pair = this.copiesOf(out);
    const bound = this.o.copiesBelowBytes ?? 0;
    // the BEGIN and the END are small: a receiver that takes copies gets them on every channel, so
    // that neither waits behind a slow channel's backlog
    const every = () => (this.peerTakesCopies ? this.channels : this.channels.slice(0, 1));
    await this.send(out, out.begin, every(), bound);
    let copying = pair !== undefined;
    let bytes = 0;
    for (let i = 0; ; i++) {
      await out.next(i);
      if (!live()) return;
      const c = out.chunks[i];
      if (!c) break;
      bytes += c.data.length;
      // the epoch outgrew the bound: its other chunks go once, striped
      if (copying && this.retainedBytes() - out.bytes + bytes > bound) copying = false;
      await this.limiter.take((c.data.length + CHUNK_FRAME_OVERHEAD) * (copying ? 2 : 1));
      if (!live()) return;
      if (copying) {
        this.counters.copyBytes += c.data.length;
        out.copyBytes += c.data.length;
      }
      if (copying && pair) await this.send(out, c, pair, bound);
      else await this.send(out, c, [this.stripe(i)], bound);
      sentRaw += c.rawLength;
      if (full && performance.now() - told > 1000) {
        told = performance.now();
        this.emit('progress', { epoch: out.epoch, sentBytes: sentRaw, totalBytes: out.begin.imageBytes });
      }
    }
    if (!live() || !out.end) return;
    await this.send(out, out.end, every(), bound);
    out.endSentAt = performance.now();
    this.sending.add(out);
    this.checkSent();
    this.armHedge(out, live);
  }

  /**
   * Note when each epoch whose END is written has left the primary: every frame of it out of the
   * socket's buffer and the kernel's send queue on one of the channels it went on (a channel's stream
   * is in order, so it has sent what lies before `bytesOut − unsentBytes`). Looks again every
   * {@link SENT_POLL_MS} ms while some have not; each channel's unsent bytes are read once a look.
   */
  private checkSent(): void {
    clearTimeout(this.sentTimer);
    this.sentTimer = undefined;
    const through = new Map<Channel, number>();
    const sentThrough = (ch: Channel) => {
      let at = through.get(ch);
      if (at === undefined) {
        at = ch.isClosed ? -1 : ch.stats.bytesOut - ch.unsentBytes;
        through.set(ch, at);
      }
      return at;
    };
    const now = performance.now();
    for (const out of this.sending) {
      if (this.retained.get(out.epoch) !== out) {
        this.sending.delete(out); // acknowledged, or dropped by a full copy
        continue;
      }
      const { placed } = out;
      while (
        out.sentFrames < placed.length &&
        placed[out.sentFrames]?.on.some((o) => o.end <= sentThrough(o.ch))
      )
        out.sentFrames++;
      if (out.sentFrames === placed.length) {
        out.sentAt = now;
        this.sending.delete(out);
      }
    }
    if (this.sending.size > 0 && this.running)
      this.sentTimer = setTimeout(() => this.checkSent(), SENT_POLL_MS).unref();
  }

  /**
   * Write a frame of an epoch on the channels given, and note where it went. On one channel the write
   * waits for the socket to drain when the session has no other; on several it does not wait for a
   * slow one (that is what the copies are for), and a channel with a backlog of more than `bound` gets
   * none, but the frame goes on one channel at least (the receiver takes each frame from any).
   */
  private async send(out: OutEpoch, f: Frame, on: readonly Channel[], bound: number): Promise<void> {
    const open = on.filter((c) => !c.isClosed);
    const ready = open.length > 1 ? open.filter((c) => c.queuedBytes <= bound) : [];
    if (ready.length === 0) {
      const ch = open[0] ?? (on[0] as Channel);
      // with other channels open, the next frame need not wait for this one to drain ({@link stripe}
      // sends it where less waits); the epochs in flight bound what the sockets buffer
      await this.write(ch, f, this.channels.length === 1);
      out.placed.push({ frame: f, on: [{ ch, end: ch.stats.bytesOut }] });
      return;
    }
    for (const c of ready) c.send(f);
    out.placed.push({ frame: f, on: ready.map((ch) => ({ ch, end: ch.stats.bytesOut })) });
  }

  /**
   * Hedge an epoch sent once: `hedgeAfterMs` after its END, and again every as long while it is not
   * acknowledged, the frames of it that no channel has put on the wire yet (they wait in the socket of
   * a channel whose TCP flow has slowed: BBR's pace after a loss recovery, the congestion window) go
   * again on a channel with nothing left to send, while that slowed channel is the only one with
   * anything left to send. The receiver takes the first copy. In effect the channels that finished
   * their share of the epoch take over what the slow one still holds. On a busy link several channels
   * hold unsent bytes, so hedging costs bandwidth only when there is room, like the copies.
   */
  private armHedge(out: OutEpoch, live: () => boolean): void {
    const after = this.o.hedgeAfterMs ?? 0;
    if (after <= 0 || !this.peerTakesCopies || this.channels.length < 2) return;
    const pending = () => live() && this.retained.get(out.epoch) === out;
    const check = async () => {
      if (!pending()) return;
      await this.hedge(out);
      if (pending()) setTimeout(check, after).unref();
    };
    setTimeout(check, after).unref();
  }

  private async hedge(out: OutEpoch): Promise<void> {
    // one channel lags while the others have sent all they were given: hedge onto one of those. When
    // two or more hold unsent bytes the link is busy, not one flow slow, and copies would only add to
    // it. Each channel's unsent bytes are read once (a kernel call each)
    const open = this.channels.filter((c) => !c.isClosed).map((ch) => ({ ch, unsent: ch.unsentBytes }));
    const busy = open.filter((c) => c.unsent > 0);
    const idle = open.find((c) => c.unsent === 0)?.ch;
    const slow = busy[0];
    if (busy.length !== 1 || !slow || !idle) return;
    // the slow channel has put on the wire the bytes it was given up to bytesOut − unsent (its stream
    // is in order); a frame sent on it alone waits when it lies past that (a frame goes on two channels
    // at most: the copies and the hedges do not add up on three or more)
    const sentThrough = slow.ch.stats.bytesOut - slow.unsent;
    const waiting = out.placed.filter(
      (p) => p.on.length === 1 && p.on[0]?.ch === slow.ch && p.on[0].end > sentThrough,
    );
    if (waiting.length === 0) return;
    let bytes = 0;
    for (const p of waiting) if (p.frame.type === FrameType.CHUNK) bytes += p.frame.data.length;
    await this.limiter.take(bytes + CHUNK_FRAME_OVERHEAD * waiting.length);
    if (idle.isClosed || this.retained.get(out.epoch) !== out) return;
    for (const p of waiting) {
      idle.send(p.frame);
      p.on.push({ ch: idle, end: idle.stats.bytesOut });
    }
    this.counters.copyBytes += bytes;
    this.counters.hedgedBytes += bytes;
    out.copyBytes += bytes;
    out.hedgedBytes += bytes;
  }

  /**
   * The two channels an epoch is copied on, or undefined: a receiver that takes copies, two channels
   * or more, and the unacknowledged chunk bytes before this epoch within the bound. An epoch is copied
   * while its own bytes keep within the bound too. A lost segment or a channel whose congestion control
   * has slowed (BBR's bandwidth estimate drops after a loss recovery) then delays the epoch only if
   * the other channel is slow at the same time: the copies cost bandwidth only when the link has room
   * (a link that falls behind holds more unacknowledged bytes than the bound, and copying stops).
   */
  private copiesOf(out: OutEpoch): [Channel, Channel] | undefined {
    const bound = this.o.copiesBelowBytes ?? 0;
    if (bound <= 0 || !this.peerTakesCopies || this.channels.length < 2) return undefined;
    if (this.retainedBytes() - out.bytes > bound) return undefined;
    return [this.channels[0] as Channel, this.channels[1] as Channel];
  }

  /**
   * The channel for the i-th chunk of an epoch sent once: the open channel with the fewest bytes not
   * yet sent, the i-th in turn first. A channel whose TCP flow has slowed (a loss recovery, BBR's
   * estimate after it) keeps a backlog and gets fewer chunks, so it holds up the epoch less; on an
   * idle link the chunks go round the channels in turn.
   */
  private stripe(i: number): Channel {
    const n = this.channels.length;
    let best = this.channels[i % n] as Channel;
    let least = best.isClosed ? Number.POSITIVE_INFINITY : best.unsentBytes;
    for (let k = 1; k < n && least > 0; k++) {
      const c = this.channels[(i + k) % n] as Channel;
      if (c.isClosed) continue;
      const u = c.unsentBytes;
      if (u < least) {
        best = c;
        least = u;
      }
    }
    return best;
  }

  private async write(ch: Channel, f: Frame, drain = true): Promise<void> {
    if (ch.isClosed) throw new RwanError('RWAN_ERR_PEER', 'channel closed');
    if (!ch.send(f) && drain) await ch.drained();
  }

  // ---------------------------------------------------------------------------------------------
  // waiting

  private waitWindow(ready: () => boolean): Promise<void> {
    if (ready()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (ready()) resolve();
        else this.windowWaiters.push(check);
      };
      this.windowWaiters.push(check);
    });
  }

  private wakeWindow(): void {
    const w = this.windowWaiters;
    this.windowWaiters = [];
    for (const f of w) f();
  }
}

/**
 * TLS failures that are no refusal: the connection dropped or stalled during the handshake (a link cut,
 * a receiver restarting). Reconnecting can help.
 */
const TRANSIENT_TLS_REASONS: ReadonlySet<unknown> = new Set(['closed', 'handshake-timeout', 'tls']);

/**
 * Errors after which reconnecting cannot help: the receiver refuses this sender (its certificate, its
 * name, its key, its protocol version or page size), or was promoted (failover). The session stops
 * with the error.
 */
function isFatalPeerError(e: RwanError): boolean {
  const wire = e.details.wireCode;
  return (
    (e.code === 'RWAN_ERR_TLS' && !TRANSIENT_TLS_REASONS.has(e.details.reason)) ||
    wire === WireErrorCode.UNSUPPORTED_VERSION ||
    wire === WireErrorCode.INCOMPATIBLE ||
    wire === WireErrorCode.PROMOTED ||
    (e.code === 'RWAN_ERR_PEER' && e.details.fatalHello === true)
  );
}

function checkReceiverHello(h: HelloFrame, pageSize: number, ch: Channel): void {
  const refuse = (why: string, wire: number): never => {
    const err = new RwanError('RWAN_ERR_PEER', `receiver refused: ${why}`, {
      details: { wireCode: wire, fatalHello: true },
    });
    ch.close(err, wire);
    throw err;
  };
  if (h.maxVersion < PROTOCOL_VERSION || h.minVersion > PROTOCOL_VERSION) {
    refuse(
      `it speaks versions ${h.minVersion}..${h.maxVersion}, not ${PROTOCOL_VERSION}`,
      WireErrorCode.UNSUPPORTED_VERSION,
    );
  }
  if (h.role !== Role.RECEIVER) refuse('the peer is not a receiver', WireErrorCode.INCOMPATIBLE);
  if (h.pageSize !== pageSize)
    refuse(`page size ${h.pageSize}, ours ${pageSize}`, WireErrorCode.INCOMPATIBLE);
}
