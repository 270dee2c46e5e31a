/**
 * One connection of a replication session: frames in and out over an already secured socket, with
 * heartbeats and an idle timeout. No replication logic: the session layer (src/replication/) decides
 * what to send and what a frame means.
 *
 * ```
 *  socket 'data' ─► FrameDecoder ─► HEARTBEAT? ──yes─► answer (REPLY) / measure the round trip
 *                                        │ no
 *                                        └──────────► 'frame' event ─► session
 *  session ─► send(frame) ─► encodeFrame ─► socket (cork … uncork: a CHUNK's header and data in one go)
 *  timers:  every heartbeatMs a HEARTBEAT; nothing heard for idleTimeoutMs ─► close(TIMEOUT)
 * ```
 *
 * A protocol violation by the peer closes the channel after an ERROR frame with the violation's wire
 * code, so the peer learns why; an ERROR frame from the peer closes it too (`RWAN_ERR_PEER`).
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { tcpUnsent } from '../codec/hot-loops.js';
import { asRwanError, RwanError } from '../errors.js';
import { FrameDecoder, type FrameDecoderOptions } from '../protocol/decoder.js';
import { ack, encodeFrame, errorFrame, heartbeat, hello } from '../protocol/encoder.js';
import {
  AckFlags,
  FRAME_TYPE_NAMES,
  type Frame,
  FrameType,
  HeartbeatFlags,
  type HelloFrame,
  PROTOCOL_VERSION,
  type ProtocolLimits,
  Role,
  WireErrorCode,
} from '../protocol/frames.js';

/** The descriptor of a TCP socket, or of the one under a TLS socket; undefined for other streams. */
export function socketFd(socket: unknown): number | undefined {
  const raw = (socket as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof raw === 'number' && raw >= 0 ? raw : undefined;
}

/** Options of a {@link Channel}. */
export interface ChannelOptions {
  /** Name for logs and errors (e.g. `backup.example:7800#1`). */
  name: string;
  /** Caps of the frame decoder (what this side accepts). */
  limits?: FrameDecoderOptions;
  /** Caps the peer announced (what this side may send); set after the handshake. */
  peerLimits?: ProtocolLimits;
  /** A HEARTBEAT every this many ms (0: none). */
  heartbeatMs: number;
  /** Close when nothing arrived for this long, ms (0: never). */
  idleTimeoutMs: number;
  /** The `lastAcked` a heartbeat carries. */
  lastAcked?: () => number | null;
}

/** Counters of one channel. */
export interface ChannelStats {
  bytesIn: number;
  bytesOut: number;
  framesIn: number;
  framesOut: number;
  /** Last measured heartbeat round trip, ms. */
  rttMs: number | undefined;
}

/**
 * Events: `'frame'` (a frame that is not a HEARTBEAT), `'close'` (why: a RwanError, or undefined for
 * an orderly end). Emits `'close'` exactly once.
 */
export class Channel extends EventEmitter {
  readonly stats: ChannelStats = { bytesIn: 0, bytesOut: 0, framesIn: 0, framesOut: 0, rttMs: undefined };
  /** performance.now() of the last byte received. */
  lastHeard = performance.now();
  private readonly decoder: FrameDecoder;
  private peerLimits: ProtocolLimits | undefined;
  private hbSeq = 0;
  private readonly timers: NodeJS.Timeout[] = [];
  private closed = false;

  constructor(
    readonly socket: Duplex & { destroy(error?: Error): void },
    private readonly options: ChannelOptions,
  ) {
    super();
    this.decoder = new FrameDecoder(options.limits);
    this.peerLimits = options.peerLimits;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => {
      try {
        this.decoder.end();
        this.close(undefined);
      } catch (err) {
        this.close(asRwanError(err));
      }
    });
    socket.on('error', (err) =>
      this.close(new RwanError('RWAN_ERR_PEER', `${options.name}: ${err.message}`, { cause: err })),
    );
    socket.on('close', () => this.close(this.closed ? undefined : this.lost('connection closed')));
    this.decoder.on('drain', () => socket.resume());
    if (options.heartbeatMs > 0) {
      this.timers.push(setInterval(() => this.beat(), options.heartbeatMs).unref());
    }
    if (options.idleTimeoutMs > 0) {
      const every = Math.max(10, Math.min(options.idleTimeoutMs / 4, 1000));
      this.timers.push(
        setInterval(() => {
          if (performance.now() - this.lastHeard > options.idleTimeoutMs) {
            this.close(
              new RwanError(
                'RWAN_ERR_PEER',
                `${options.name}: nothing received for ${options.idleTimeoutMs} ms`,
                {
                  details: { wireCode: WireErrorCode.TIMEOUT },
                },
              ),
              WireErrorCode.TIMEOUT,
            );
          }
        }, every).unref(),
      );
    }
  }

  /** What `status` shows of this channel. */
  describe(): { peer: string; rttMs: number | null; bytesIn: number; bytesOut: number; silentMs: number } {
    return {
      peer: this.options.name,
      rttMs: this.stats.rttMs ?? null,
      bytesIn: this.stats.bytesIn,
      bytesOut: this.stats.bytesOut,
      silentMs: Math.round(performance.now() - this.lastHeard),
    };
  }

  /** The caps the peer announced, once known (CHUNKs larger than these would be refused). */
  setPeerLimits(limits: ProtocolLimits): void {
    this.peerLimits = limits;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Bytes queued in the socket and not yet written. */
  get queuedBytes(): number {
    return (this.socket as unknown as { writableLength?: number }).writableLength ?? 0;
  }

  /**
   * Bytes written and not sent yet: those in the socket's buffer, plus, for a TCP socket (under TLS
   * too), those the kernel holds back for the congestion window or the pacing (through the addon;
   * without it, the socket's buffer only). A channel whose TCP flow has slowed shows it here first.
   */
  get unsentBytes(): number {
    const fd = socketFd(this.socket);
    const kernel = fd !== undefined && tcpUnsent ? tcpUnsent(fd) : 0;
    return this.queuedBytes + Math.max(0, kernel);
  }

  /**
   * Send a frame. Returns false when the socket's buffer is above its high-water mark: wait for
   * {@link drained} before sending much more.
   */
  send(frame: Frame): boolean {
    if (this.closed) return false;
    const parts = encodeFrame(frame, this.peerLimits);
    let ok = true;
    if (parts.length > 1) (this.socket as unknown as { cork?: () => void }).cork?.();
    for (const p of parts) {
      ok = this.socket.write(p) && ok;
      this.stats.bytesOut += p.length;
    }
    if (parts.length > 1) (this.socket as unknown as { uncork?: () => void }).uncork?.();
    this.stats.framesOut++;
    return ok;
  }

  /** Resolves once the socket's buffer has drained (or the channel closed). */
  drained(): Promise<void> {
    if (this.closed || this.queuedBytes === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.on('close', done);
    });
  }

  /**
   * Close the channel. With a wire code, an ERROR frame (fatal) tells the peer why first. Idempotent:
   * only the first call emits `'close'`.
   */
  close(reason: RwanError | undefined, wireCode?: number): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    if (wireCode !== undefined) {
      try {
        this.socket.write(
          encodeFrame(
            errorFrame({ code: wireCode, fatal: true, message: reason?.message ?? '' }),
          )[0] as Buffer,
        );
      } catch {
        // the socket is already gone: nothing to tell
      }
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1000).unref();
    } else {
      this.socket.destroy();
    }
    this.emit('close', reason);
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.lastHeard = performance.now();
    this.stats.bytesIn += chunk.length;
    try {
      if (!this.decoder.write(chunk)) this.socket.pause();
      for (let f = this.decoder.read(); f && !this.closed; f = this.decoder.read()) this.onFrame(f);
    } catch (err) {
      const e = asRwanError(err);
      const wire =
        typeof e.details.wireCode === 'number' ? e.details.wireCode : WireErrorCode.PROTOCOL_VIOLATION;
      this.close(e, wire);
    }
  }

  private onFrame(f: Frame): void {
    this.stats.framesIn++;
    if (f.type === FrameType.HEARTBEAT) {
      if ((f.flags & HeartbeatFlags.REPLY) !== 0) {
        this.stats.rttMs = Math.max(0, Date.now() - f.sentAt);
      } else {
        this.send(
          heartbeat({
            sentAt: f.sentAt,
            seq: f.seq,
            lastAcked: this.lastAcked(),
            flags: HeartbeatFlags.REPLY,
          }),
        );
      }
      this.emit('heartbeat', f);
      return;
    }
    if (f.type === FrameType.ERROR) {
      this.close(
        new RwanError(
          'RWAN_ERR_PEER',
          `${this.options.name}: the peer reports error ${f.code}: ${f.message}`,
          {
            details: { wireCode: f.code, fatal: f.fatal },
          },
        ),
      );
      return;
    }
    this.emit('frame', f);
  }

  private beat(): void {
    this.send(heartbeat({ sentAt: Date.now(), seq: this.hbSeq++ >>> 0, lastAcked: this.lastAcked() }));
  }

  private lastAcked(): number | null {
    return this.options.lastAcked?.() ?? null;
  }

  private lost(why: string): RwanError {
    return new RwanError('RWAN_ERR_PEER', `${this.options.name}: ${why}`);
  }
}

/**
 * An epoch's durable ACK, sent on every open channel of a session: a segment lost on one (and its
 * retransmission a round trip, or a timeout of 200 ms or more at the tail of a quiet connection,
 * later) does not hold the epoch's release. The sender acts on the first copy; ACKs are cumulative
 * and it ignores the others.
 */
export function sendDurableAck(channels: ReadonlyArray<Channel | undefined>, epoch: number): void {
  const frame = ack({ epoch, flags: AckFlags.DURABLE, receivedBytes: 0 });
  for (const ch of channels) if (ch && !ch.isClosed) ch.send(frame);
}

/**
 * Wait for the peer's HELLO, which must be the first frame (else the channel closes with
 * UNEXPECTED_FRAME). Rejects when the channel closes or nothing comes within `timeoutMs` (then the
 * channel closes with TIMEOUT).
 */
export function awaitHello(ch: Channel, timeoutMs: number): Promise<HelloFrame> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      const err = new RwanError('RWAN_ERR_PEER', `no HELLO within ${timeoutMs} ms`, {
        details: { wireCode: WireErrorCode.TIMEOUT },
      });
      ch.close(err, WireErrorCode.TIMEOUT);
    }, timeoutMs);
    const onFrame = (f: Frame) => {
      cleanup();
      if (f.type !== FrameType.HELLO) {
        const err = new RwanError('RWAN_ERR_PEER', `expected HELLO, got ${FRAME_TYPE_NAMES[f.type]}`, {
          details: { wireCode: WireErrorCode.UNEXPECTED_FRAME },
        });
        ch.close(err, WireErrorCode.UNEXPECTED_FRAME);
        reject(err);
        return;
      }
      resolve(f);
    };
    const onClose = (why: RwanError | undefined) => {
      cleanup();
      reject(why ?? new RwanError('RWAN_ERR_PEER', 'the connection closed before HELLO'));
    };
    const cleanup = () => {
      clearTimeout(timer);
      ch.off('frame', onFrame);
      ch.off('close', onClose);
    };
    ch.on('frame', onFrame);
    ch.on('close', onClose);
  });
}

/** Send `mine` and wait for the peer's HELLO ({@link awaitHello}). */
export function handshake(ch: Channel, mine: HelloFrame, timeoutMs: number): Promise<HelloFrame> {
  const theirs = awaitHello(ch, timeoutMs);
  ch.send(mine);
  return theirs;
}

/**
 * The receiver's side of a handshake, once it accepted `theirs`: answer with its own HELLO, then
 * hand every frame (`onFrame`) and heartbeat to the session, each a sign of life (`heard`), and
 * report the channel's close (`onClose`).
 */
export function answerHello(
  ch: Channel,
  theirs: HelloFrame,
  mine: {
    capabilities: number;
    pageSize: number;
    lastEpochHeld: number | null;
    maxChunkBytes: number;
    cacheBytes: number;
    peerName: string;
  },
  on: { heard(): void; onFrame(f: Frame): void; onClose(why: RwanError | undefined): void },
): void {
  ch.send(
    hello({
      minVersion: PROTOCOL_VERSION,
      maxVersion: PROTOCOL_VERSION,
      capabilities: mine.capabilities,
      sessionId: theirs.sessionId,
      pageSize: mine.pageSize,
      role: Role.RECEIVER,
      lastEpochHeld: mine.lastEpochHeld,
      channelIndex: theirs.channelIndex,
      channelCount: theirs.channelCount,
      maxChunkBytes: mine.maxChunkBytes,
      cacheBytes: mine.cacheBytes,
      peerName: mine.peerName,
    }),
  );
  on.heard();
  ch.on('frame', (f: Frame) => {
    on.heard();
    on.onFrame(f);
  });
  ch.on('heartbeat', () => on.heard());
  ch.on('close', (why: RwanError | undefined) => on.onClose(why));
}

/** A receiver's channel on a connection it accepted: chunks up to `maxChunkBytes`, its heartbeats. */
export function acceptedChannel(
  socket: ConstructorParameters<typeof Channel>[0],
  peer: { remoteAddress: string; remotePort: number },
  o: { maxChunkBytes: number; heartbeatMs: number; idleTimeoutMs: number },
  lastAcked: () => number | null,
): Channel {
  return new Channel(socket, {
    name: `${peer.remoteAddress}:${peer.remotePort}`,
    limits: { maxChunkData: o.maxChunkBytes, maxRawLength: o.maxChunkBytes },
    heartbeatMs: o.heartbeatMs,
    idleTimeoutMs: o.idleTimeoutMs,
    lastAcked,
  });
}
