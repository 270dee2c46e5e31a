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
 *                            ─► store.beginEpoch … addPage … setPayload(the epoch's frames)
 *                            ─► commit() (the frames journaled + fsync, the pages applied)
 *                            ─► ACK(epoch, DURABLE) ─► checkpoint when due (cache index + content;
 *                               its syncs run in the background while the next epochs commit)
 *  any frame or heartbeat ─► FailureDetector.heard();  every 100 ms tick(): 'primary-lost' once
 * ```
 *
 * An epoch is decoded only once all of it is here, so a connection lost in the middle of an epoch
 * leaves the decoder exactly at the last committed epoch: the sender resends from the next one and
 * nothing is decoded twice.
 *
 * The journal keeps each epoch as it arrived (its frames, compressed: a tenth of the page bytes or
 * less, so the fdatasync per epoch stays short), unless its pages spilled out of the store's staging
 * memory; then it keeps the pages. Replaying such a journal needs the decoder's state at the last
 * checkpoint, so a checkpoint saves the page cache whole (its index and its pages: the sidecar,
 * below). After a restart the store hands that sidecar to the session's replayer, which restores the
 * decoder and decodes (or absorbs) every journal epoch since, so replication resumes without a full
 * copy.
 *
 *   sidecar = "RWRC" 1:u32 pageSize:u32 pages:u32 indexBytes:u64  index[indexBytes] pad to 8
 *             pfn:u64[pages]  page[pages]                   (the cache's non-zero pages)
 */

import { EventEmitter } from 'node:events';
import { closeSync, ftruncateSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { EpochDecoder } from '../codec/epoch-decoder.js';
import { PageCache } from '../codec/page-cache.js';
import { asRwanError, RwanError } from '../errors.js';
import { FrameDecoder } from '../protocol/decoder.js';
import { encodeFrame, resume } from '../protocol/encoder.js';
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
import {
  acceptedChannel,
  answerHello,
  awaitHello,
  type Channel,
  sendDurableAck,
} from '../transport/channel.js';
import { type DetectorEvent, type DetectorState, FailureDetector } from './failure-detector.js';
import { getU64, pad8, putU64 } from './journal.js';
import { KickedLoop } from './kicked-loop.js';
import type { Log } from './sender.js';
import { type RecoveryReport, type Replayer, ReplicaStore, type StoreOptions } from './store.js';

/** Settings of a {@link ReceiverSession}. */
export interface ReceiverOptions {
  /** The replica store, opened (and recovered) by {@link ReceiverSession.create}. */
  store: Omit<StoreOptions, 'pageSize' | 'replayer'>;
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
  /** Of `bytes`, those held in memory (the rest went to the spill file). */
  memoryBytes: number;
}

const SIDECAR_MAGIC = Buffer.from('RWRC', 'latin1');
const SIDECAR_VERSION = 1;
const SIDECAR_HEAD_BYTES = 24;

/** A checkpoint's sidecar for `decoder` (see the file comment), as parts that view its cache. */
function encodeSidecar(decoder: EpochDecoder, pageSize: number): Uint8Array[] {
  const index = decoder.cacheSnapshot();
  const pages = decoder.cachedPages();
  const head = Buffer.alloc(SIDECAR_HEAD_BYTES + pad8(index.length) - index.length);
  SIDECAR_MAGIC.copy(head, 0);
  head.writeUInt32LE(SIDECAR_VERSION, 4);
  head.writeUInt32LE(pageSize, 8);
  head.writeUInt32LE(pages.length, 12);
  putU64(head, 16, index.length);
  const pfns = Buffer.alloc(8 * pages.length);
  for (let i = 0; i < pages.length; i++) putU64(pfns, 8 * i, (pages[i] as { pfn: number }).pfn);
  return [
    head.subarray(0, SIDECAR_HEAD_BYTES),
    index,
    head.subarray(SIDECAR_HEAD_BYTES),
    pfns,
    ...pages.map((p) => p.page),
  ];
}

/** The parts of a sidecar; throws on bytes that are not one. */
function decodeSidecar(b: Buffer, pageSize: number): { index: Buffer; pfns: Float64Array; pages: Buffer } {
  const bad = (why: string) => new RwanError('RWAN_ERR_STORE', `checkpoint sidecar: ${why}`);
  if (b.length < SIDECAR_HEAD_BYTES || !b.subarray(0, 4).equals(SIDECAR_MAGIC))
    throw bad('not a page cache sidecar');
  if (b.readUInt32LE(4) !== SIDECAR_VERSION) throw bad(`version ${b.readUInt32LE(4)}`);
  if (b.readUInt32LE(8) !== pageSize) throw bad(`page size ${b.readUInt32LE(8)}, not ${pageSize}`);
  const n = b.readUInt32LE(12);
  const indexBytes = getU64(b, 16);
  const at = SIDECAR_HEAD_BYTES + pad8(indexBytes);
  if (indexBytes < 0 || b.length !== at + n * (8 + pageSize)) throw bad('lengths do not add up');
  const pfns = new Float64Array(n);
  for (let i = 0; i < n; i++) pfns[i] = getU64(b, at + 8 * i);
  return {
    index: b.subarray(SIDECAR_HEAD_BYTES, SIDECAR_HEAD_BYTES + indexBytes),
    pfns,
    pages: b.subarray(at + 8 * n),
  };
}

/** Events: 'epoch' (ReceiverEpochStats), 'detector' (DetectorEvent, DetectorState), 'session' (id hex). */
export class ReceiverSession extends EventEmitter {
  private decoder: EpochDecoder;
  private decoderValid = true;
  private sessionHex: string | null = null;
  private replica: { store: ReplicaStore; recovery: RecoveryReport } | undefined;
  private channels: Channel[] = [];
  private readonly staging = new Map<number, Staged>();
  private stagedBytes = 0;
  private spill: { fd: number; path: string; end: number } | undefined;
  /** The processing loop: decodes and commits complete epochs, one run at a time. */
  private readonly work = new KickedLoop(
    () => this.processLoop(),
    () => this.closed,
  );
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
  private closing: Promise<void> | undefined;
  private cacheBytes: number;
  private promotion: { token: number; epoch: number | null } | undefined;
  /** Counters for metrics and status. */
  readonly counters = {
    epochs: 0,
    pages: 0,
    wireBytes: 0,
    resumes: 0,
    refused: 0,
    digestFailures: 0,
    /** Chunk bytes written to the spill file because staging was over its cap. */
    spilledBytes: 0,
    /** Chunk bytes dropped as later copies of chunks already taken (Capability.COPIES). */
    copyBytes: 0,
  };
  /** The last epoch of the session taken out of staging: frames of it and earlier ones are copies. */
  private taken: number | undefined;

  private constructor(private readonly o: ReceiverOptions) {
    super();
    this.cacheBytes = o.cacheBytes;
    this.decoder = this.newDecoder(o.cacheBytes);
    this.detector = new FailureDetector({ deadTimeMs: o.deadTimeMs });
    this.timer = setInterval(() => this.tick(), Math.min(100, o.deadTimeMs / 4)).unref();
  }

  /**
   * Open (and recover) the replica store, the decoder rebuilt to its last committed epoch, and start
   * a session on it. Errors: those of {@link ReplicaStore.open}.
   */
  static async create(o: ReceiverOptions): Promise<ReceiverSession> {
    const s = new ReceiverSession(o);
    await s.openStore();
    s.sessionHex = s.store.state.sessionId;
    const last = s.store.state.committedEpoch;
    if (last !== null && s.decoderValid) {
      s.o.log.info({ epoch: last, cachedPages: s.decoder.cacheStats().entries }, 'page cache rebuilt');
    }
    return s;
  }

  /** The replica store (closed by {@link close}). */
  get store(): ReplicaStore {
    return (this.replica as { store: ReplicaStore }).store;
  }

  /** What opening the store found and replayed. */
  get recovery(): RecoveryReport {
    return (this.replica as { recovery: RecoveryReport }).recovery;
  }

  /**
   * Resolves once no epoch is being decoded or committed and none that is complete waits: the
   * replica is then exactly epoch {@link lastEpoch} (while the sender is silent, it stays so).
   */
  async drained(): Promise<void> {
    while (this.work.current) await this.work.current;
    if (!this.storeFailed && !this.closed) this.store.flushRetained();
  }

  /** Committed pages not yet written into the replica file (write-back: replica-store.md §5.1). */
  get retainedPages(): number {
    return this.replica?.store.retainedPages ?? 0;
  }

  /** Last epoch committed durably (what a reconnecting sender resumes after). */
  get lastEpoch(): number | null {
    return this.store.state.committedEpoch;
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

  /** The promotion, once {@link promote} was called: its fencing token and the replica's last epoch. */
  get promoted(): { token: number; epoch: number | null } | null {
    return this.promotion ?? null;
  }

  /**
   * The failover controller promoted this site (fencing token `token`): end the stream at the last
   * complete epoch. The epoch being committed (if any) finishes, staged epochs are dropped, every
   * channel is closed with ERROR PROMOTED, and from now on every sender is refused with it: the
   * replica stays exactly epoch {@link lastEpoch}, for the service to start from. Called again, it
   * keeps the highest token. Resolves with the promotion.
   */
  async promote(token: number): Promise<{ token: number; epoch: number | null }> {
    if (!Number.isSafeInteger(token) || token < 1)
      throw new RwanError('RWAN_ERR_INVALID_VALUE', `fencing token ${token}: expected an integer ≥ 1`);
    if (this.promotion === undefined) {
      this.hold = true; // no further epoch starts
      try {
        await this.idle();
      } finally {
        this.hold = false;
      }
      if (this.promotion === undefined) {
        this.promotion = { token, epoch: this.lastEpoch };
        const why = new RwanError('RWAN_ERR_PEER', `the backup was promoted (fencing token ${token})`);
        for (const ch of this.channels) ch?.close(why, WireErrorCode.PROMOTED);
        this.channels = [];
        this.dropStaging();
        await this.drained();
        this.o.log.warn({ token, epoch: this.promotion.epoch }, 'promoted: the stream ended');
      }
    }
    this.promotion.token = Math.max(this.promotion.token, token);
    return { ...this.promotion };
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
    const ch = acceptedChannel(socket, peer, { ...this.o, maxChunkBytes: max }, () => this.lastEpoch);
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
   * checkpoints the store with the page cache (a restart then needs no journal replay) and closes it.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    for (const ch of this.channels) {
      ch?.close(new RwanError('RWAN_ERR_PEER', 'receiver shutting down'), WireErrorCode.SHUTDOWN);
    }
    await this.work.current;
    if (this.decoderValid && !this.storeFailed && this.store.state.committedEpoch !== null) {
      try {
        await this.store.checkpoint(encodeSidecar(this.decoder, this.o.pageSize));
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
    await this.store.close();
  }

  // ---------------------------------------------------------------------------------------------

  /** The store failed: report it and stop (close() waits for the processing loop to end). */
  private fatal(e: RwanError, epoch: number, message: string): void {
    this.storeFailed = true;
    this.o.log.error({ code: e.code, err: e.message, epoch }, message);
    this.emit('fatal', e);
    void this.close();
  }

  /** A decoder whose evicted pages go to the replica when the store retains them (write-back). */
  private newDecoder(cacheBytes: number): EpochDecoder {
    const d = new EpochDecoder({ pageSize: this.o.pageSize, cacheBytes });
    d.onEvict((pfn, page) => {
      if (this.replica !== undefined) this.store.writeBack(pfn, page);
    });
    return d;
  }

  /**
   * Close the store and open it again: recovery brings the replica to the last committed epoch from
   * the journal, and rebuilds the decoder as it does at start-up.
   */
  private async reopenStore(): Promise<void> {
    await this.store.close();
    this.replica = undefined;
    await this.openStore();
  }

  /**
   * Open (and recover) the store; its replayer rebuilds the decoder. Its sidecar files are extended
   * in the background to about the size a full page cache's sidecar has (its pages, 8 bytes of pfn
   * and some index bytes each), so that the first checkpoints do not allocate them.
   */
  private async openStore(): Promise<void> {
    this.replica = await ReplicaStore.open({
      ...this.o.store,
      pageSize: this.o.pageSize,
      replayer: (sidecar, epoch) => this.replayer(sidecar, epoch),
    });
    const pages = Math.floor(this.o.cacheBytes / this.o.pageSize);
    void this.store.prepareSidecars(pages * (this.o.pageSize + 32) + 4096);
  }

  /**
   * The store's replayer: restore the decoder from the checkpoint's sidecar, then bring it through
   * the journal's epochs.
   */
  private replayer(sidecar: Buffer | null, sidecarEpoch: number | null): Replayer {
    let lost: string | undefined; // why the checkpoint's cache could not be restored
    try {
      this.restoreDecoder(sidecar, sidecarEpoch);
    } catch (err) {
      // a sidecar this build cannot use: the sender starts over with a full copy (a journal epoch
      // that needs the cache cannot be replayed, and says so)
      lost = (err as Error).message;
      this.cacheBytes = this.o.cacheBytes;
      this.decoder = this.newDecoder(this.cacheBytes);
      this.decoderValid = false;
      this.o.log.warn({ err: lost }, 'page cache not restored: a full copy will follow');
    }
    let epoch = sidecarEpoch ?? -1;
    // the restored cache is the checkpoint's: its pages are what the replica held then, retained
    // pages included (a checkpoint between epochs leaves those in the sidecar)
    const base = lost === undefined ? { base: () => this.decoder.cachedPages() } : {};
    return {
      ...base,
      begin: (e) => {
        epoch = e.epoch;
        if (e.full) {
          this.decoder.reset();
          this.decoderValid = true;
        }
      },
      page: (pfn, page) => {
        if (this.decoderValid) this.decoder.absorb(epoch, pfn, page);
      },
      decode: (payload, out) => {
        if (!this.decoderValid) {
          throw new RwanError('RWAN_ERR_STORE', `epoch ${epoch} needs the page cache, not restored: ${lost}`);
        }
        this.decodePayload(payload, (pfn, page, zero) => out(pfn, zero ? null : page));
      },
    };
  }

  /**
   * A decoder at epoch `sidecarEpoch` from a checkpoint's sidecar (with the cache cap it was saved
   * under: the sender's, adopted at its HELLO), or a fresh one without a sidecar.
   */
  private restoreDecoder(sidecar: Buffer | null, sidecarEpoch: number | null): void {
    const { pageSize } = this.o;
    const saved = sidecar === null ? null : decodeSidecar(sidecar, pageSize);
    this.cacheBytes = (saved && PageCache.snapshotCap(saved.index)) ?? this.o.cacheBytes;
    this.decoder = this.newDecoder(this.cacheBytes);
    this.decoderValid = true;
    if (saved === null) return;
    const slot = new Map<number, number>();
    for (let i = 0; i < saved.pfns.length; i++) slot.set(saved.pfns[i] as number, i);
    for (const { pfn, page } of this.decoder.restoreCache(saved.index, sidecarEpoch)) {
      const i = slot.get(pfn);
      if (i === undefined)
        throw new RwanError('RWAN_ERR_STORE', `checkpoint sidecar: no content for page ${pfn}`);
      page.set(saved.pages.subarray(i * pageSize, (i + 1) * pageSize));
    }
  }

  /** Decode an epoch journaled as its frames (BEGIN, the CHUNKs in order, END). */
  private decodePayload(payload: Buffer, sink: (pfn: number, page: Uint8Array, zero: boolean) => void): void {
    const max = this.o.maxChunkBytes ?? DEFAULT_MAX_RAW_LENGTH;
    const frames = new FrameDecoder({
      maxChunkData: max,
      maxRawLength: max,
      highWaterMark: payload.length + 1,
    });
    frames.write(payload);
    frames.end();
    const all = frames.readAll();
    const begin = all[0];
    const end = all[all.length - 1];
    if (begin?.type !== FrameType.EPOCH_BEGIN || end?.type !== FrameType.EPOCH_END || all.length < 2) {
      throw new RwanError('RWAN_ERR_CODEC_SEQUENCE', 'a journaled epoch must be BEGIN, CHUNKs, END');
    }
    this.decoder.begin(begin.epoch);
    for (let i = 1; i < all.length - 1; i++) {
      const c = all[i] as Frame;
      if (c.type !== FrameType.CHUNK)
        throw new RwanError('RWAN_ERR_CODEC_SEQUENCE', 'a journaled epoch holds a control frame');
      this.decoder.chunk(c, sink);
    }
    this.decoder.end(end.pageCount, end.digest);
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
    if (theirs.capabilities & Capability.XEN_STREAM) {
      refuse(
        'the sender carries a Xen stream (remus-wan tunnel): it needs remus-wan xen-receive, not a replica receiver',
        WireErrorCode.INCOMPATIBLE,
      );
    }
    if (this.promotion !== undefined) {
      refuse(
        `the backup was promoted (fencing token ${this.promotion.token}) at epoch ${this.promotion.epoch}`,
        WireErrorCode.PROMOTED,
      );
    }
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
      this.taken = undefined;
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
        this.store.flushRetained();
        this.decoder = this.newDecoder(theirs.cacheBytes);
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
    const held = this.decoderValid && this.store.state.sessionId === sid ? this.lastEpoch : null;
    answerHello(
      ch,
      theirs,
      {
        capabilities: Capability.ZSTD | Capability.DIGEST | Capability.RESUME | Capability.COPIES,
        pageSize: this.o.pageSize,
        lastEpochHeld: held,
        maxChunkBytes: max,
        cacheBytes: this.cacheBytes,
        peerName: this.o.peerName ?? '',
      },
      {
        heard: () => this.heard(),
        onFrame: (f) => this.onFrame(ch, f),
        onClose: (why) => {
          if (this.channels[theirs.channelIndex] === ch) delete this.channels[theirs.channelIndex];
          if (!this.closed)
            this.o.log.warn({ channel: theirs.channelIndex, err: why?.message }, 'channel closed');
        },
      },
    );
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
    if (f.type !== FrameType.EPOCH_BEGIN && f.type !== FrameType.CHUNK && f.type !== FrameType.EPOCH_END) {
      ch.close(
        new RwanError('RWAN_ERR_PEER', `unexpected ${FRAME_TYPE_NAMES[f.type]} from the sender`),
        WireErrorCode.UNEXPECTED_FRAME,
      );
      return;
    }
    // this receiver announces Capability.COPIES: the first copy of a frame counts, later ones (on
    // another channel, or of an epoch already taken) are dropped
    if (this.taken !== undefined && f.epoch <= this.taken) {
      if (f.type === FrameType.CHUNK) this.counters.copyBytes += f.data.length;
      return;
    }
    const s = this.stage(f.epoch);
    if (f.type === FrameType.EPOCH_BEGIN) {
      if (s.begin) return;
      s.begin = f;
    } else if (f.type === FrameType.CHUNK) {
      if (s.chunks.has(f.seq)) {
        this.counters.copyBytes += f.data.length;
        return;
      }
      const data = this.keep(f.data);
      if (Buffer.isBuffer(data)) s.memoryBytes += data.length;
      s.chunks.set(f.seq, { frame: f, data });
      s.bytes += f.data.length;
      this.counters.wireBytes += f.data.length;
    } else {
      if (s.end) return;
      s.end = f;
      s.endAt = performance.now();
    }
    this.kick();
  }

  private stage(epoch: number): Staged {
    let s = this.staging.get(epoch);
    if (!s) {
      s = { chunks: new Map(), bytes: 0, memoryBytes: 0 };
      this.staging.set(epoch, s);
    }
    return s;
  }

  /** Keep a chunk's data: a reference while staging is under its cap, else a copy in the spill file. */
  private keep(data: Buffer): StagedData {
    this.stagedBytes += data.length;
    if (this.stagedBytes <= this.o.stagingBytes) return data;
    if (!this.spill) {
      const path = join(this.store.replicaPath, '..', 'staging.spill');
      this.spill = { fd: openSync(path, 'w+', 0o600), path, end: 0 };
    }
    const at = this.spill.end;
    writeSync(this.spill.fd, data, 0, data.length, at);
    this.spill.end += data.length;
    this.stagedBytes -= data.length;
    this.counters.spilledBytes += data.length;
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
    return this.work.current ?? Promise.resolve();
  }

  /** Run the processing loop, or make the running one look again (kicked-loop.ts). */
  private kick(): void {
    this.work.kick();
  }

  /** Decode and commit every complete epoch, in order. */
  private async processLoop(): Promise<void> {
    for (;;) {
      if (this.closed || this.hold || this.promotion || this.staging.size === 0) return;
      const epoch = Math.min(...this.staging.keys());
      const s = this.staging.get(epoch) as Staged;
      if (!s.begin || !s.end || s.chunks.size < s.end.chunkCount) return;
      this.staging.delete(epoch);
      this.taken = epoch;
      this.stagedBytes -= s.memoryBytes; // its chunks no longer count against the staging cap
      try {
        await this.apply(epoch, s);
      } catch (err) {
        const e = asRwanError(err);
        if (e.code === 'RWAN_ERR_STORE' || e.code === 'RWAN_ERR_IO' || e.code === 'RWAN_ERR_INTERNAL') {
          this.fatal(e, epoch, 'cannot commit: stopping');
          return;
        }
        // the epoch did not decode or verify: the sender starts over with a full copy
        this.counters.digestFailures++;
        this.o.log.warn({ code: e.code, err: e.message, epoch }, 'epoch rejected: asking for a full copy');
        if (this.store.retainedPages > 0) {
          // the decoder changed cached pages the replica does not have yet: rebuild it from the journal
          try {
            await this.reopenStore();
          } catch (err2) {
            this.fatal(asRwanError(err2), epoch, 'cannot rebuild the replica: stopping');
            return;
          }
        }
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
      this.store.flushRetained();
      this.decoder.reset();
      this.decoderValid = true;
    }
    const writer = this.store.beginEpoch(epoch, {
      full,
      imageBytes: begin.imageBytes,
      sessionId: this.sessionHex as string,
      // the pages stay in the decoder's cache until the commit: lend them rather than copy
      borrow: this.decoder.keepsPages(end.pageCount),
      // write-back: the replica gets a cached page when the cache evicts it or at a checkpoint
      retain: (pfn) => this.decoder.cachedPage(pfn),
    });
    let raw = 0;
    // the journal keeps the epoch's frames as they came (a replay decodes them again)
    const limits = { maxChunkData: Number.MAX_SAFE_INTEGER, maxRawLength: Number.MAX_SAFE_INTEGER };
    const payload = encodeFrame(begin, limits);
    try {
      this.decoder.begin(epoch);
      for (let seq = 0; seq < end.chunkCount; seq++) {
        const c = s.chunks.get(seq);
        if (!c) throw new RwanError('RWAN_ERR_CODEC_SEQUENCE', `epoch ${epoch}: chunk ${seq} missing`);
        raw += c.frame.rawLength;
        const frame = { ...c.frame, data: this.dataOf(c.data) };
        payload.push(...encodeFrame(frame, limits));
        this.decoder.chunk(frame, (pfn, page, zero) => writer.addPage(pfn, zero ? null : page));
        if (seq % 8 === 7) await yieldToLoop();
      }
      if (raw !== end.rawBytes) {
        throw new RwanError(
          'RWAN_ERR_CODEC_CHUNK_LENGTH',
          `epoch ${epoch}: chunks hold ${raw} bytes, END says ${end.rawBytes}`,
        );
      }
      this.decoder.end(end.pageCount, end.digest);
      payload.push(...encodeFrame(end, limits));
      writer.setPayload(payload);
    } catch (err) {
      await writer.abort();
      throw err;
    }
    const decodeMs = performance.now() - t0;
    await writer.commit();
    const commitMs = performance.now() - t0 - decodeMs;
    this.counters.epochs++;
    this.counters.pages += end.pageCount;
    sendDurableAck(this.channels, epoch);
    const ackMs = performance.now() - (s.endAt ?? t0);
    if (this.store.checkpointDue) {
      // the decoder's cache goes into a sidecar file now, and with it the retained pages (the cache
      // holds them: they need not be written into the replica too); syncing the sidecar and the
      // replica and installing the state run in the background while the next epochs commit
      const previous = this.store.checkpointTimes;
      const t1 = performance.now();
      await this.store.beginCheckpoint(encodeSidecar(this.decoder, this.o.pageSize), {
        retainedInSidecar: true,
      });
      const ms = (v: number | null | undefined) => (v == null ? undefined : Math.round(v));
      const t = this.store.checkpointTimes;
      this.o.log.info(
        {
          epoch,
          ms: ms(performance.now() - t1),
          sidecarMs: ms(t?.sidecarMs),
          rotateMs: ms(t?.rotateMs),
          previousBackgroundMs: ms(previous?.backgroundMs),
        },
        'checkpoint written',
      );
    }
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
    if (this.o.verify) stats.replicaDigest = await this.store.digest();
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
