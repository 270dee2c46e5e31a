/**
 * The backup's side of a replication session: accept the sender's channels, stage each epoch until
 * it is complete, decode and verify it, commit it durably to the replica store, acknowledge it, and
 * watch for the primary's silence.
 *
 * ```
 *  channels ─► frames ─► staging { epoch → BEGIN, CHUNK by seq, END }   (compressed bytes: small;
 *                           │ complete: END and chunkCount chunks        past stagingBytes they spill
 *                           ▼                                            to a file)
 *  one at a time, in order:  baseEpoch = last decoded (or FULL) ─► EpochDecoder (digest checked)
 *                            ─► store.beginEpoch … addPage … commit() (journal + fsync, applied)
 *                            ─► ACK(epoch, DURABLE) ─► checkpoint when due (with the cache index)
 *  any frame or heartbeat ─► FailureDetector.heard();  every 100 ms tick(): 'primary-lost' once
 * ```
 *
 * An epoch is decoded only once all of it is here, so a connection lost in the middle of an epoch
 * leaves the decoder exactly at the last committed epoch: the sender resends from the next one and
 * nothing is decoded twice. After a restart the decoder's page cache is rebuilt from the store (the
 * cache index saved at the last checkpoint, the journal's epochs since, the replica's pages), so
 * replication resumes without a full copy.
 */

import { EventEmitter } from 'node:events';
import { closeSync, ftruncateSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { EpochDecoder } from '../codec/epoch-decoder.js';
import { PageCache } from '../codec/page-cache.js';
import { asRwanError, RwanError } from '../errors.js';
import { ack, hello, resume } from '../protocol/encoder.js';
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
  PROTOCOL_VERSION,
  ResumeReason,
  Role,
  WireErrorCode,
} from '../protocol/frames.js';
import { awaitHello, Channel } from '../transport/channel.js';
import { type DetectorEvent, type DetectorState, FailureDetector } from './failure-detector.js';
import { digestFile } from './image-digest.js';
import type { Log } from './sender.js';
import type { RecoveryReport, ReplicaStore } from './store.js';

/** Settings of a {@link ReceiverSession}. */
export interface ReceiverOptions {
  store: ReplicaStore;
  recovery: RecoveryReport;
  pageSize: number;
  /** Page cache byte cap: must be the sender's (both sides mirror one cache). */
  cacheBytes: number;
  heartbeatMs: number;
  idleTimeoutMs: number;
  handshakeTimeoutMs: number;
  /** Silence after which the primary is declared lost, ms. */
  deadTimeMs: number;
  /** Compressed epoch bytes staged in memory before spilling to a file. */
  stagingBytes: number;
  /** Largest CHUNK this side accepts, bytes (announced in HELLO). */
  maxChunkBytes?: number;
  /** Compute the replica's image digest after every commit (a full read: for tests and checks). */
  verify?: boolean;
  peerName?: string;
  log: Log;
}

/** One committed epoch: a line of the receiver's stats file. */
export interface ReceiverEpochStats {
  epoch: number;
  full: boolean;
  pages: number;
  chunks: number;
  /** Chunk data bytes received. */
  wireBytes: number;
  decodeMs: number;
  commitMs: number;
  /** From EPOCH_END received to the ACK sent, ms. */
  ackMs: number;
  /** The replica's image digest after the commit (with `verify`). */
  replicaDigest?: string;
}

/** What a staged chunk's data is: in memory, or at an offset of the spill file. */
type StagedData = Buffer | { at: number; length: number };

interface Staged {
  begin?: EpochBeginFrame;
  end?: EpochEndFrame;
  endAt?: number;
  chunks: Map<number, { frame: ChunkFrame; data: StagedData }>;
  bytes: number;
}

/** Events: 'epoch' (ReceiverEpochStats), 'detector' (DetectorEvent, DetectorState), 'session' (id hex). */
export class ReceiverSession extends EventEmitter {
  private decoder: EpochDecoder;
  private decoderValid = true;
  private sessionHex: string | null;
  private channels: Channel[] = [];
  private readonly staging = new Map<number, Staged>();
  private stagedBytes = 0;
  private spill: { fd: number; path: string; end: number } | undefined;
  private processing: Promise<void> | undefined;
  private pendingKick = false;
  /** Set while a HELLO waits for the epoch being committed: no further epoch starts. */
  private hold = false;
  /** Channels of the current session (its channel-0 HELLO says). */
  private sessionChannels = 0;
  /** Refused connections by reason (TLS refusals come from the listener, see noteRefusal). */
  readonly refusals: Record<string, number> = {};
  private storeFailed = false;
  private readonly detector: FailureDetector;
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  private cacheBytes: number;
  /** Counters for metrics and status. */
  readonly counters = { epochs: 0, pages: 0, wireBytes: 0, resumes: 0, refused: 0, digestFailures: 0 };

  private constructor(private readonly o: ReceiverOptions) {
    super();
    this.cacheBytes = o.cacheBytes;
    this.decoder = new EpochDecoder({ pageSize: o.pageSize, cacheBytes: o.cacheBytes });
    this.sessionHex = o.store.state.sessionId;
    this.detector = new FailureDetector({ deadTimeMs: o.deadTimeMs });
    this.timer = setInterval(() => this.tick(), Math.min(100, o.deadTimeMs / 4)).unref();
  }

  /** A session on an opened store, its decoder rebuilt to the store's last committed epoch. */
  static async create(o: ReceiverOptions): Promise<ReceiverSession> {
    const s = new ReceiverSession(o);
    await s.rebuild(o.cacheBytes);
    return s;
  }

  /** Last epoch committed durably (what a reconnecting sender resumes after). */
  get lastEpoch(): number | null {
    return this.o.store.state.committedEpoch;
  }

  get detectorState(): DetectorState {
    return this.detector.state;
  }

  get session(): string | null {
    return this.sessionHex;
  }

  /** The connected channels, for `status`. */
  get peers(): ReturnType<Channel['describe']>[] {
    return this.channels.filter((c) => c && !c.isClosed).map((c) => c.describe());
  }

  get connectedChannels(): number {
    return this.channels.filter((c) => c && !c.isClosed).length;
  }

  /** Round trip on the first channel, ms. */
  get rttMs(): number | undefined {
    return this.channels[0]?.stats.rttMs;
  }

  /** A new secured connection from a sender. */
  accept(
    socket: ConstructorParameters<typeof Channel>[0],
    peer: { remoteAddress: string; remotePort: number },
  ): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const max = this.o.maxChunkBytes ?? DEFAULT_MAX_RAW_LENGTH;
    const ch = new Channel(socket, {
      name: `${peer.remoteAddress}:${peer.remotePort}`,
      limits: { maxChunkData: max, maxRawLength: max },
      heartbeatMs: this.o.heartbeatMs,
      idleTimeoutMs: this.o.idleTimeoutMs,
      lastAcked: () => this.lastEpoch,
    });
    this.handshake(ch, max).catch((err: unknown) => {
      const e = asRwanError(err);
      this.noteRefusal(e.code === 'RWAN_ERR_PEER' ? `hello:${e.details.wireCode ?? 'closed'}` : e.code);
      this.o.log.warn(
        { peer: `${peer.remoteAddress}:${peer.remotePort}`, code: e.code, err: e.message },
        'sender refused',
      );
      ch.close(e);
    });
  }

  /**
   * Stop: channels closed with SHUTDOWN, timers off; waits for an epoch being committed, then
   * checkpoints the store with the cache index (a restart then needs no journal replay).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const ch of this.channels) {
      ch?.close(new RwanError('RWAN_ERR_PEER', 'receiver shutting down'), WireErrorCode.SHUTDOWN);
    }
    await this.processing;
    if (this.decoderValid && !this.storeFailed && this.o.store.state.committedEpoch !== null) {
      try {
        await this.o.store.checkpoint(this.decoder.cacheSnapshot());
      } catch (err) {
        this.o.log.warn(
          { err: (err as Error).message },
          'final checkpoint failed (the journal keeps the epochs)',
        );
      }
    }
    this.dropStaging();
    if (this.spill) {
      closeSync(this.spill.fd);
      unlinkSync(this.spill.path);
      this.spill = undefined;
    }
  }

  // ---------------------------------------------------------------------------------------------

  private async rebuild(configured: number): Promise<void> {
    const { store, recovery, pageSize } = this.o;
    // the cap the cache had when its index was saved (the sender's, adopted at its HELLO)
    const cacheBytes = (recovery.sidecar && PageCache.snapshotCap(recovery.sidecar)) ?? configured;
    this.cacheBytes = cacheBytes;
    this.decoder = new EpochDecoder({ pageSize, cacheBytes });
    this.decoderValid = true;
    const last = store.state.committedEpoch;
    if (last === null) return;
    try {
      const pages = this.decoder.restoreCache(recovery.sidecar, recovery.opsSinceSidecar, last);
      for (const { pfn, page } of pages) await store.readPage(pfn, page);
      this.o.log.info({ epoch: last, cachedPages: pages.length }, 'page cache rebuilt from the replica');
    } catch (err) {
      // a snapshot of another cache size: the sender must start over with a full copy
      this.decoder = new EpochDecoder({ pageSize, cacheBytes });
      this.decoderValid = false;
      this.o.log.warn({ err: (err as Error).message }, 'page cache not rebuilt: a full copy will follow');
    }
  }

  private async handshake(ch: Channel, max: number): Promise<void> {
    // answer only once the epoch being committed (if any) is done: lastEpochHeld must be final
    const theirs = await awaitHello(ch, this.o.handshakeTimeoutMs);
    const refuse = (why: string, wire: number): never => {
      const err = new RwanError('RWAN_ERR_PEER', why, { details: { wireCode: wire } });
      ch.close(err, wire);
      throw err;
    };
    if (theirs.maxVersion < PROTOCOL_VERSION || theirs.minVersion > PROTOCOL_VERSION) {
      refuse(
        `the sender speaks versions ${theirs.minVersion}..${theirs.maxVersion}, not ${PROTOCOL_VERSION}`,
        WireErrorCode.UNSUPPORTED_VERSION,
      );
    }
    if (theirs.role !== Role.SENDER) refuse('the peer is not a sender', WireErrorCode.INCOMPATIBLE);
    if (theirs.pageSize !== this.o.pageSize) {
      refuse(`page size ${theirs.pageSize}, the replica's is ${this.o.pageSize}`, WireErrorCode.INCOMPATIBLE);
    }
    const sid = theirs.sessionId.toString('hex');
    const current = sid === this.sessionHex;
    // one sender session at a time: another one may take over only once the current one is silent
    // (a restarted primary gets in when its old connections have timed out)
    if (!current && this.sessionLive()) {
      refuse(`another sender session (${this.sessionHex}) is active`, WireErrorCode.UNKNOWN_SESSION);
    }
    if (current && theirs.channelIndex > 0 && theirs.channelCount !== this.sessionChannels) {
      refuse(
        `channel ${theirs.channelIndex} of ${theirs.channelCount}: the session has ${this.sessionChannels}`,
        WireErrorCode.INCOMPATIBLE,
      );
    }
    const first = theirs.channelIndex === 0 || !current;
    if (first) {
      // lastEpochHeld must be final: let the epoch being committed finish, and start no other
      this.hold = true;
      try {
        await this.idle();
      } finally {
        this.hold = false;
      }
    }
    // the connection may have closed while the epoch being committed finished (the peer left, or
    // broke the protocol right after its HELLO): a closed channel must not take over the session
    if (ch.isClosed) throw new RwanError('RWAN_ERR_PEER', 'the connection closed during the handshake');
    if (!current) {
      // a new sender session (the primary restarted): its first epoch is a full copy
      this.o.log.info({ session: sid, previous: this.sessionHex }, 'new sender session');
      this.sessionHex = sid;
      this.decoderValid = false;
      this.emit('session', sid);
    } else if (theirs.channelIndex === 0) {
      this.counters.resumes++; // the session's channels came back (channel 0 first)
    }
    if (first) {
      this.sessionChannels = theirs.channelCount;
      if (theirs.cacheBytes !== this.cacheBytes) {
        // both sides mirror one cache: take the sender's cap (what was cached under another cap is
        // not what the sender assumes, so a full copy follows)
        this.o.log.warn(
          { theirs: theirs.cacheBytes, ours: this.cacheBytes },
          'adopting the sender page cache cap',
        );
        this.cacheBytes = theirs.cacheBytes;
        this.decoder = new EpochDecoder({ pageSize: this.o.pageSize, cacheBytes: theirs.cacheBytes });
        this.decoderValid = false;
      }
      // a sender (re)connects channel 0 first and then all the others: the old connections are stale,
      // and whatever was staged is incomplete (it would have been processed otherwise): it is resent
      for (const stale of this.channels)
        stale?.close(new RwanError('RWAN_ERR_PEER', 'replaced by a new connection'));
      this.channels = [];
      this.dropStaging();
    }
    const old = this.channels[theirs.channelIndex];
    old?.close(new RwanError('RWAN_ERR_PEER', 'replaced by a new connection'));
    this.channels[theirs.channelIndex] = ch;
    const held = this.decoderValid && this.o.store.state.sessionId === sid ? this.lastEpoch : null;
    ch.send(
      hello({
        minVersion: PROTOCOL_VERSION,
        maxVersion: PROTOCOL_VERSION,
        capabilities: Capability.ZSTD | Capability.DIGEST | Capability.RESUME,
        sessionId: theirs.sessionId,
        pageSize: this.o.pageSize,
        role: Role.RECEIVER,
        lastEpochHeld: held,
        channelIndex: theirs.channelIndex,
        channelCount: theirs.channelCount,
        maxChunkBytes: max,
        cacheBytes: this.cacheBytes,
        peerName: this.o.peerName ?? '',
      }),
    );
    this.heard();
    ch.on('frame', (f: Frame) => {
      this.heard();
      this.onFrame(ch, f);
    });
    ch.on('heartbeat', () => this.heard());
    ch.on('close', (why: RwanError | undefined) => {
      if (this.channels[theirs.channelIndex] === ch) delete this.channels[theirs.channelIndex];
      if (!this.closed)
        this.o.log.warn({ channel: theirs.channelIndex, err: why?.message }, 'channel closed');
    });
    this.o.log.info(
      { channel: theirs.channelIndex, of: theirs.channelCount, lastEpochHeld: held },
      'sender connected',
    );
    if (first) this.kick(); // staged work held back during the handshake
  }

  /** True while the current session has a channel heard from within the idle timeout. */
  private sessionLive(): boolean {
    const now = performance.now();
    return this.channels.some((c) => c && !c.isClosed && now - c.lastHeard < this.o.idleTimeoutMs);
  }

  /** A refused connection (TLS level, counted with the session-level refusals), by reason. */
  noteRefusal(reason: string): void {
    this.counters.refused++;
    this.refusals[reason] = (this.refusals[reason] ?? 0) + 1;
  }

  private onFrame(ch: Channel, f: Frame): void {
    switch (f.type) {
      case FrameType.EPOCH_BEGIN:
        this.stage(f.epoch).begin = f;
        break;
      case FrameType.CHUNK: {
        const s = this.stage(f.epoch);
        if (s.chunks.has(f.seq)) {
          ch.close(
            new RwanError('RWAN_ERR_PEER', `chunk ${f.epoch}/${f.seq} twice`),
            WireErrorCode.UNEXPECTED_FRAME,
          );
          return;
        }
        s.chunks.set(f.seq, { frame: f, data: this.keep(f.data) });
        s.bytes += f.data.length;
        this.counters.wireBytes += f.data.length;
        break;
      }
      case FrameType.EPOCH_END: {
        const s = this.stage(f.epoch);
        s.end = f;
        s.endAt = performance.now();
        break;
      }
      default:
        ch.close(
          new RwanError('RWAN_ERR_PEER', `unexpected ${FRAME_TYPE_NAMES[f.type]} from the sender`),
          WireErrorCode.UNEXPECTED_FRAME,
        );
        return;
    }
    this.kick();
  }

  private stage(epoch: number): Staged {
    let s = this.staging.get(epoch);
    if (!s) {
      s = { chunks: new Map(), bytes: 0 };
      this.staging.set(epoch, s);
    }
    return s;
  }

  /** Keep a chunk's data: a reference while staging is under its cap, else a copy in the spill file. */
  private keep(data: Buffer): StagedData {
    this.stagedBytes += data.length;
    if (this.stagedBytes <= this.o.stagingBytes) return data;
    if (!this.spill) {
      const path = join(this.o.store.replicaPath, '..', 'staging.spill');
      this.spill = { fd: openSync(path, 'w+', 0o600), path, end: 0 };
    }
    const at = this.spill.end;
    writeSync(this.spill.fd, data, 0, data.length, at);
    this.spill.end += data.length;
    this.stagedBytes -= data.length;
    return { at, length: data.length };
  }

  private dataOf(d: StagedData): Buffer {
    if (Buffer.isBuffer(d)) return d;
    const buf = Buffer.allocUnsafe(d.length);
    readSync((this.spill as { fd: number }).fd, buf, 0, d.length, d.at);
    return buf;
  }

  private dropStaging(): void {
    this.staging.clear();
    this.stagedBytes = 0;
    if (this.spill) {
      ftruncateSync(this.spill.fd, 0);
      this.spill.end = 0;
    }
  }

  private idle(): Promise<void> {
    return this.processing ?? Promise.resolve();
  }

  /**
   * Run the processing loop, or make the running one look again: frames arrive in bursts within one
   * tick, so a loop that found its epoch incomplete must see the END that came right after.
   */
  private kick(): void {
    this.pendingKick = true;
    if (this.processing) return;
    this.processing = (async () => {
      while (this.pendingKick) {
        this.pendingKick = false;
        await this.processLoop();
      }
    })().finally(() => {
      this.processing = undefined;
      if (this.pendingKick && !this.closed) this.kick();
    });
  }

  /** Decode and commit every complete epoch, in order. */
  private async processLoop(): Promise<void> {
    for (;;) {
      if (this.closed || this.hold || this.staging.size === 0) return;
      const epoch = Math.min(...this.staging.keys());
      const s = this.staging.get(epoch) as Staged;
      if (!s.begin || !s.end || s.chunks.size < s.end.chunkCount) return;
      this.staging.delete(epoch);
      try {
        await this.apply(epoch, s);
      } catch (err) {
        const e = asRwanError(err);
        if (e.code === 'RWAN_ERR_STORE' || e.code === 'RWAN_ERR_IO' || e.code === 'RWAN_ERR_INTERNAL') {
          this.storeFailed = true;
          this.o.log.error({ code: e.code, err: e.message, epoch }, 'cannot commit: stopping');
          this.emit('fatal', e);
          await this.close();
          return;
        }
        // the epoch did not decode or verify: the sender starts over with a full copy
        this.counters.digestFailures++;
        this.o.log.warn({ code: e.code, err: e.message, epoch }, 'epoch rejected: asking for a full copy');
        this.decoder.reset();
        this.decoderValid = false;
        this.dropStaging();
        const ch = this.control();
        ch?.send(
          resume({
            sessionId: Buffer.from(this.sessionHex ?? '00'.repeat(16), 'hex'),
            fromEpoch: epoch,
            reason: e.code === 'RWAN_ERR_CODEC_DIGEST' ? ResumeReason.DIGEST_MISMATCH : ResumeReason.GAP,
          }),
        );
        return;
      }
      if (this.staging.size === 0 && this.spill && this.spill.end > 0) {
        ftruncateSync(this.spill.fd, 0);
        this.spill.end = 0;
      }
    }
  }

  private async apply(epoch: number, s: Staged): Promise<void> {
    const begin = s.begin as EpochBeginFrame;
    const end = s.end as EpochEndFrame;
    const full = (begin.flags & EpochFlags.FULL) !== 0;
    const last = this.lastEpoch;
    if (!full && (!this.decoderValid || begin.baseEpoch !== last)) {
      throw new RwanError(
        'RWAN_ERR_CODEC_SEQUENCE',
        `epoch ${epoch} builds on ${begin.baseEpoch}, this side holds ${last}`,
      );
    }
    if (s.chunks.size !== end.chunkCount) {
      throw new RwanError(
        'RWAN_ERR_CODEC_SEQUENCE',
        `epoch ${epoch}: ${s.chunks.size} chunks, END says ${end.chunkCount}`,
      );
    }
    const t0 = performance.now();
    if (full) {
      this.decoder.reset();
      this.decoderValid = true;
    }
    const writer = this.o.store.beginEpoch(epoch, {
      full,
      imageBytes: begin.imageBytes,
      sessionId: this.sessionHex as string,
    });
    let raw = 0;
    try {
      this.decoder.begin(epoch);
      for (let seq = 0; seq < end.chunkCount; seq++) {
        const c = s.chunks.get(seq);
        if (!c) throw new RwanError('RWAN_ERR_CODEC_SEQUENCE', `epoch ${epoch}: chunk ${seq} missing`);
        raw += c.frame.rawLength;
        this.decoder.chunk({ ...c.frame, data: this.dataOf(c.data) }, (pfn, page, zero) =>
          writer.addPage(pfn, zero ? null : page),
        );
        if (seq % 8 === 7) await yieldToLoop();
      }
      if (raw !== end.rawBytes) {
        throw new RwanError(
          'RWAN_ERR_CODEC_CHUNK_LENGTH',
          `epoch ${epoch}: chunks hold ${raw} bytes, END says ${end.rawBytes}`,
        );
      }
      this.decoder.end(end.pageCount, end.digest);
    } catch (err) {
      await writer.abort();
      throw err;
    }
    const decodeMs = performance.now() - t0;
    await writer.commit();
    const commitMs = performance.now() - t0 - decodeMs;
    this.counters.epochs++;
    this.counters.pages += end.pageCount;
    this.control()?.send(ack({ epoch, flags: 1, receivedBytes: 0 }));
    const ackMs = performance.now() - (s.endAt ?? t0);
    if (this.o.store.checkpointDue) await this.o.store.checkpoint(this.decoder.cacheSnapshot());
    const stats: ReceiverEpochStats = {
      epoch,
      full,
      pages: end.pageCount,
      chunks: end.chunkCount,
      wireBytes: s.bytes,
      decodeMs,
      commitMs,
      ackMs,
    };
    if (this.o.verify) stats.replicaDigest = await digestFile(this.o.store.replicaPath);
    this.emit('epoch', stats);
  }

  /** The channel ACKs and RESUMEs go on: channel 0 if it is up, else any. */
  private control(): Channel | undefined {
    return this.channels.find((c) => c && !c.isClosed);
  }

  private heard(): void {
    this.report(this.detector.heard(performance.now()));
  }

  private tick(): void {
    this.report(this.detector.tick(performance.now()));
  }

  private report(ev: DetectorEvent | undefined): void {
    if (!ev) return;
    this.o.log[ev === 'primary-lost' ? 'error' : 'info'](
      { event: ev, lastEpoch: this.lastEpoch, deadTimeMs: this.o.deadTimeMs },
      ev === 'primary-lost' ? 'primary lost' : 'primary back',
    );
    this.emit('detector', ev, this.detector.state);
  }
}
