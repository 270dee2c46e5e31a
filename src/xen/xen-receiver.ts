/**
 * The backup's side of a Xen tunnel (`remus-wan xen-receive`): accept the tunnel's channels, stage
 * each epoch until it is complete, decode it with the page codec, join its segment back into the
 * stream's bytes (segment.ts), hand them to the receive command (`xl migrate-receive -r`), and
 * acknowledge the epoch once the command's pipe has taken them.
 *
 * ```
 *  channels ─► frames ─► staging { epoch → BEGIN, CHUNK by seq, END }
 *  one at a time, in order: EpochDecoder ─► joinSegment ─► sink.write (xl's stdin) ─► ACK(epoch)
 *  any frame or heartbeat ─► FailureDetector.heard();  every 100 ms tick(): 'primary-lost' once
 * ```
 *
 * One stream per receiver: the first session's HELLO opens the sink (the receive command is started
 * and its banner checked, before the HELLO is answered: the tunnel then gives xl the banner; what the
 * command writes after it goes back to the tunnel in STREAM_DATA frames, for xl), later
 * connections of that session resume it (the tunnel resends what was not acknowledged), and any
 * other session is refused. A link blip never touches the sink: only the end of the stream (a
 * migration's libxl END) or a promotion (promote(): the failover controller declared the primary
 * lost) closes it, and xl then restores the last complete checkpoint.
 */
import { EventEmitter } from 'node:events';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { EpochDecoder } from '../codec/epoch-decoder.js';
import { asRwanError, RwanError } from '../errors.js';
import { streamData } from '../protocol/encoder.js';
import {
  Capability,
  type ChunkFrame,
  DEFAULT_MAX_RAW_LENGTH,
  type EpochBeginFrame,
  type EpochEndFrame,
  EpochFlags,
  FRAME_TYPE_NAMES,
  type Frame,
  FrameType,
  MAX_STREAM_DATA_BYTES,
  PROTOCOL_VERSION,
  Role,
  WireErrorCode,
} from '../protocol/frames.js';
import { type DetectorEvent, type DetectorState, FailureDetector } from '../replication/failure-detector.js';
import { KickedLoop } from '../replication/kicked-loop.js';
import type { Log } from '../replication/sender.js';
import {
  acceptedChannel,
  answerHello,
  awaitHello,
  type Channel,
  sendDurableAck,
} from '../transport/channel.js';
import { joinSegment } from './segment.js';

/** Where the stream goes: the receive command's stdin. */
export interface XenSink {
  /** Start the receive command (`detach`: xl's -e) and check its banner; rejects with why not. */
  open(detach: boolean): Promise<void>;
  /** Bytes of the stream, in order; resolves once the command's pipe has taken them. */
  write(bytes: Buffer): Promise<void>;
  /** End the stream (the command's stdin closes). */
  end(): Promise<void>;
  /** Where the command's output after its banner (xl's back channel) goes. */
  onOutput?(fn: (bytes: Buffer) => void): void;
}

/** Back-channel bytes kept for a tunnel that reconnects, at most (the oldest go first). */
const BACK_CHANNEL_KEPT = 1 << 20;

export interface XenReceiverOptions {
  sink: XenSink;
  pageSize: number;
  cacheBytes: number;
  heartbeatMs: number;
  idleTimeoutMs: number;
  handshakeTimeoutMs: number;
  deadTimeMs: number;
  maxChunkBytes?: number;
  peerName?: string;
  log: Log;
}

/** One epoch handed to the receive command: a line of the stats file. */
export interface XenEpochStats {
  epoch: number;
  checkpoint: number;
  /** It ends its checkpoint. */
  last: boolean;
  pages: number;
  /** Stream bytes written to the receive command. */
  bytes: number;
  wireBytes: number;
  decodeMs: number;
  writeMs: number;
}

interface Staged {
  begin?: EpochBeginFrame;
  end?: EpochEndFrame;
  chunks: Map<number, ChunkFrame>;
  bytes: number;
}

/** Events: 'epoch' (XenEpochStats), 'detector' (DetectorEvent, DetectorState), 'ended' (why), 'fatal' (RwanError). */
export class XenReceiverSession extends EventEmitter {
  private readonly decoder: EpochDecoder;
  private session: string | null = null;
  private opened: Promise<void> | undefined;
  private channels: Channel[] = [];
  private channelCount = 0;
  private readonly staging = new Map<number, Staged>();
  /** The processing loop: hands complete epochs over, one run at a time. */
  private readonly work = new KickedLoop(
    () => this.processLoop(),
    () => this.promotion !== undefined || this.finished !== undefined,
  );
  private last: number | null = null;
  private lastCheckpoint: number | null = null;
  private finished: string | undefined;
  private readonly detector: FailureDetector;
  private readonly timer: NodeJS.Timeout;
  private promotion: { token: number; epoch: number | null } | undefined;
  /** The back channel: bytes the receive command wrote after its banner, from offset `backFrom`. */
  private back = Buffer.alloc(0);
  private backFrom = 0;
  readonly counters = {
    epochs: 0,
    checkpoints: 0,
    pages: 0,
    wireBytes: 0,
    streamBytes: 0,
    resumes: 0,
    refused: 0,
  };

  constructor(private readonly o: XenReceiverOptions) {
    super();
    this.decoder = new EpochDecoder({ pageSize: o.pageSize, cacheBytes: o.cacheBytes });
    this.detector = new FailureDetector({ deadTimeMs: o.deadTimeMs });
    this.timer = setInterval(
      () => this.report(this.detector.tick(performance.now())),
      Math.min(100, o.deadTimeMs / 4),
    ).unref();
    o.sink.onOutput?.((bytes) => this.backChannel(bytes));
  }

  /** The receive command wrote `bytes` after its banner: to the tunnel, which gives them to xl. */
  private backChannel(bytes: Buffer): void {
    const offset = this.backFrom + this.back.length;
    this.back = Buffer.concat([this.back, bytes]);
    if (this.back.length > BACK_CHANNEL_KEPT) {
      this.backFrom += this.back.length - BACK_CHANNEL_KEPT;
      this.back = this.back.subarray(this.back.length - BACK_CHANNEL_KEPT);
    }
    this.sendBack(offset, bytes);
  }

  private sendBack(offset: number, bytes: Buffer, ch = this.channels.find((c) => c && !c.isClosed)): void {
    if (!ch) return; // sent again when the tunnel reconnects
    for (let at = 0; at < bytes.length; at += MAX_STREAM_DATA_BYTES) {
      ch.send(streamData({ offset: offset + at, data: bytes.subarray(at, at + MAX_STREAM_DATA_BYTES) }));
    }
  }

  /** The last epoch handed to the receive command (what a reconnecting tunnel resumes after). */
  get lastEpoch(): number | null {
    return this.last;
  }

  /** The last checkpoint handed whole to the receive command. */
  get lastCompleteCheckpoint(): number | null {
    return this.lastCheckpoint;
  }

  get detectorState(): DetectorState {
    return this.detector.state;
  }

  get sessionId(): string | null {
    return this.session;
  }

  get promoted(): { token: number; epoch: number | null } | null {
    return this.promotion ?? null;
  }

  /** Why the stream ended (the sink closed), if it has. */
  get ended(): string | undefined {
    return this.finished;
  }

  get connectedChannels(): number {
    return this.channels.filter((c) => c && !c.isClosed).length;
  }

  /** A new secured connection from a tunnel. */
  accept(
    socket: ConstructorParameters<typeof Channel>[0],
    peer: { remoteAddress: string; remotePort: number },
  ): void {
    const max = this.o.maxChunkBytes ?? DEFAULT_MAX_RAW_LENGTH;
    const ch = acceptedChannel(socket, peer, { ...this.o, maxChunkBytes: max }, () => this.last);
    this.handshake(ch, max).catch((err: unknown) => {
      const e = asRwanError(err);
      this.counters.refused++;
      this.o.log.warn({ peer: ch.describe().peer, code: e.code, err: e.message }, 'tunnel refused');
      ch.close(e, typeof e.details.wireCode === 'number' ? e.details.wireCode : WireErrorCode.INCOMPATIBLE);
    });
  }

  /**
   * The failover controller promoted this site: the stream ends here. The epoch being handed over
   * finishes, nothing more is, the receive command's stdin closes (xl restores the last complete
   * checkpoint), and every tunnel is refused from now on with ERROR PROMOTED.
   */
  async promote(token: number): Promise<{ token: number; epoch: number | null }> {
    if (!Number.isSafeInteger(token) || token < 1)
      throw new RwanError('RWAN_ERR_INVALID_VALUE', `fencing token ${token}: expected an integer ≥ 1`);
    if (this.promotion === undefined) {
      this.promotion = { token, epoch: null };
      const why = new RwanError('RWAN_ERR_PEER', `the backup was promoted (fencing token ${token})`);
      for (const ch of this.channels) ch?.close(why, WireErrorCode.PROMOTED);
      this.channels = [];
      this.staging.clear();
      while (this.work.current) await this.work.current;
      this.promotion.epoch = this.last;
      await this.finish(`promoted (fencing token ${token})`);
      this.o.log.warn(
        { token, epoch: this.last, checkpoint: this.lastCheckpoint },
        'promoted: the stream ended',
      );
    }
    this.promotion.token = Math.max(this.promotion.token, token);
    return { ...this.promotion };
  }

  /** Stop: channels closed with SHUTDOWN, timers off. The receive command's stdin stays as it is. */
  close(): void {
    clearInterval(this.timer);
    for (const ch of this.channels)
      ch?.close(new RwanError('RWAN_ERR_PEER', 'receiver shutting down'), WireErrorCode.SHUTDOWN);
    this.channels = [];
  }

  private async finish(why: string): Promise<void> {
    if (this.finished !== undefined) return;
    this.finished = why;
    if (this.opened) await this.o.sink.end().catch(() => undefined);
    this.emit('ended', why);
  }

  private async handshake(ch: Channel, max: number): Promise<void> {
    const theirs = await awaitHello(ch, this.o.handshakeTimeoutMs);
    const refuse = (why: string, wire: number): never => {
      throw new RwanError('RWAN_ERR_PEER', why, { details: { wireCode: wire } });
    };
    if (theirs.maxVersion < PROTOCOL_VERSION || theirs.minVersion > PROTOCOL_VERSION)
      refuse(
        `the tunnel speaks versions ${theirs.minVersion}..${theirs.maxVersion}, not ${PROTOCOL_VERSION}`,
        WireErrorCode.UNSUPPORTED_VERSION,
      );
    if (theirs.role !== Role.SENDER) refuse('the peer is not a sender', WireErrorCode.INCOMPATIBLE);
    if (!(theirs.capabilities & Capability.XEN_STREAM))
      refuse(
        'the sender replicates an image (remus-wan send): it needs remus-wan receive, not xen-receive',
        WireErrorCode.INCOMPATIBLE,
      );
    if (theirs.pageSize !== this.o.pageSize)
      refuse(`page size ${theirs.pageSize}, ours ${this.o.pageSize}`, WireErrorCode.INCOMPATIBLE);
    if (this.promotion) {
      refuse(
        `the backup was promoted (fencing token ${this.promotion.token}) at epoch ${this.promotion.epoch}`,
        WireErrorCode.PROMOTED,
      );
    }
    if (this.finished !== undefined)
      refuse(`the stream has ended (${this.finished})`, WireErrorCode.UNKNOWN_SESSION);
    const sid = theirs.sessionId.toString('hex');
    if (this.session !== null && sid !== this.session)
      refuse(`this receiver carries the stream of session ${this.session}`, WireErrorCode.UNKNOWN_SESSION);
    if (theirs.cacheBytes !== this.o.cacheBytes)
      refuse(
        `page cache ${theirs.cacheBytes} bytes, ours ${this.o.cacheBytes}: use the same --cache on both ends`,
        WireErrorCode.INCOMPATIBLE,
      );
    if (this.session === null) {
      this.session = sid;
      // the receive command first: the tunnel gives xl the banner only once it is answered here
      this.opened = this.o.sink.open((theirs.capabilities & Capability.XEN_DETACH) !== 0);
      this.o.log.info(
        { session: sid, detach: (theirs.capabilities & Capability.XEN_DETACH) !== 0 },
        'new Xen stream',
      );
    }
    try {
      await this.opened;
    } catch (err) {
      // the tunnel cannot do better by trying again: it stops, and xl resumes the guest at the primary
      refuse(`the receive command: ${(err as Error).message}`, WireErrorCode.INCOMPATIBLE);
    }
    if (ch.isClosed) throw new RwanError('RWAN_ERR_PEER', 'the connection closed during the handshake');
    if (theirs.channelIndex === 0) {
      // channel 0 (re)connects first: the old connections are stale, and what was staged incomplete
      for (const stale of this.channels)
        stale?.close(new RwanError('RWAN_ERR_PEER', 'replaced by a new connection'));
      this.channels = [];
      this.staging.clear();
      this.channelCount = theirs.channelCount;
      if (this.last !== null) this.counters.resumes++;
      while (this.work.current) await this.work.current;
    } else if (theirs.channelCount !== this.channelCount) {
      refuse(
        `channel ${theirs.channelIndex} of ${theirs.channelCount}: the session has ${this.channelCount}`,
        WireErrorCode.INCOMPATIBLE,
      );
    }
    this.channels[theirs.channelIndex]?.close(new RwanError('RWAN_ERR_PEER', 'replaced by a new connection'));
    this.channels[theirs.channelIndex] = ch;
    answerHello(
      ch,
      theirs,
      {
        capabilities: Capability.ZSTD | Capability.DIGEST | Capability.RESUME | Capability.XEN_STREAM,
        pageSize: this.o.pageSize,
        lastEpochHeld: this.last,
        maxChunkBytes: max,
        cacheBytes: this.o.cacheBytes,
        peerName: this.o.peerName ?? '',
      },
      {
        heard: () => this.heard(),
        onFrame: (f) => this.onFrame(ch, f),
        onClose: (why) => {
          if (this.channels[theirs.channelIndex] === ch) delete this.channels[theirs.channelIndex];
          this.o.log.warn({ channel: theirs.channelIndex, err: why?.message }, 'channel closed');
        },
      },
    );
    this.o.log.info(
      { channel: theirs.channelIndex, of: theirs.channelCount, lastEpochHeld: this.last },
      'tunnel connected',
    );
    // the back channel so far, again: the tunnel writes each byte once (by offset)
    if (theirs.channelIndex === 0 && this.back.length > 0) this.sendBack(this.backFrom, this.back, ch);
  }

  private onFrame(ch: Channel, f: Frame): void {
    if (f.type !== FrameType.EPOCH_BEGIN && f.type !== FrameType.CHUNK && f.type !== FrameType.EPOCH_END) {
      ch.close(
        new RwanError('RWAN_ERR_PEER', `unexpected ${FRAME_TYPE_NAMES[f.type]} from the tunnel`),
        WireErrorCode.UNEXPECTED_FRAME,
      );
      return;
    }
    if (this.last !== null && f.epoch <= this.last) return; // resent after a reconnect: already handed over
    let s = this.staging.get(f.epoch);
    if (!s) {
      s = { chunks: new Map(), bytes: 0 };
      this.staging.set(f.epoch, s);
    }
    if (f.type === FrameType.EPOCH_BEGIN) s.begin = f;
    else if (f.type === FrameType.EPOCH_END) s.end = f;
    else {
      s.chunks.set(f.seq, f);
      s.bytes += f.data.length;
      this.counters.wireBytes += f.data.length;
    }
    this.kick();
  }

  private kick(): void {
    this.work.kick();
  }

  private async processLoop(): Promise<void> {
    for (;;) {
      if (this.promotion || this.finished !== undefined || this.staging.size === 0) return;
      const epoch = Math.min(...this.staging.keys());
      const s = this.staging.get(epoch) as Staged;
      if (!s.begin || !s.end || s.chunks.size < s.end.chunkCount) return;
      this.staging.delete(epoch);
      try {
        await this.apply(epoch, s);
      } catch (err) {
        const e = asRwanError(err);
        this.o.log.error({ code: e.code, err: e.message, epoch }, 'cannot hand the epoch over: stopping');
        this.emit('fatal', e);
        for (const ch of this.channels) ch?.close(e, WireErrorCode.RESOURCE);
        this.channels = [];
        await this.finish(`failed at epoch ${epoch}: ${e.message}`);
        return;
      }
    }
  }

  private async apply(epoch: number, s: Staged): Promise<void> {
    const begin = s.begin as EpochBeginFrame;
    const end = s.end as EpochEndFrame;
    const full = (begin.flags & EpochFlags.FULL) !== 0;
    if (full ? this.last !== null : begin.baseEpoch !== this.last) {
      throw new RwanError(
        'RWAN_ERR_CODEC_SEQUENCE',
        full
          ? `a full epoch ${epoch} in the middle of the stream: a Xen stream cannot start again`
          : `epoch ${epoch} builds on ${begin.baseEpoch}, this side holds ${this.last}`,
      );
    }
    const t0 = performance.now();
    const pfns: number[] = [];
    const pages: Buffer[] = [];
    this.decoder.begin(epoch);
    for (let seq = 0; seq < end.chunkCount; seq++) {
      const c = s.chunks.get(seq);
      if (!c) throw new RwanError('RWAN_ERR_CODEC_SEQUENCE', `epoch ${epoch}: chunk ${seq} missing`);
      this.decoder.chunk(c, (pfn, page, zero) => {
        pfns.push(pfn);
        pages.push(zero ? Buffer.alloc(this.o.pageSize) : Buffer.from(page));
      });
      if (seq % 8 === 7) await yieldToLoop();
    }
    this.decoder.end(end.pageCount, end.digest);
    const seg = joinSegment(pfns, Buffer.concat(pages));
    const decodeMs = performance.now() - t0;
    await this.o.sink.write(seg.bytes);
    const writeMs = performance.now() - t0 - decodeMs;
    this.last = epoch;
    if (seg.last) {
      this.lastCheckpoint = seg.checkpoint;
      this.counters.checkpoints++;
    }
    this.counters.epochs++;
    this.counters.pages += end.pageCount;
    this.counters.streamBytes += seg.bytes.length;
    sendDurableAck(this.channels, epoch);
    const stats: XenEpochStats = {
      epoch,
      checkpoint: seg.checkpoint,
      last: seg.last,
      pages: end.pageCount,
      bytes: seg.bytes.length,
      wireBytes: s.bytes,
      decodeMs,
      writeMs,
    };
    this.emit('epoch', stats);
    if (seg.end === 'migration' && seg.last) await this.finish('the migration stream finished');
  }

  private heard(): void {
    this.report(this.detector.heard(performance.now()));
  }

  private report(ev: DetectorEvent | undefined): void {
    if (!ev) return;
    this.o.log[ev === 'primary-lost' ? 'error' : 'info'](
      { event: ev, lastEpoch: this.last, lastCheckpoint: this.lastCheckpoint, deadTimeMs: this.o.deadTimeMs },
      ev === 'primary-lost' ? 'primary lost' : 'primary back',
    );
    this.emit('detector', ev, this.detector.state);
  }
}
