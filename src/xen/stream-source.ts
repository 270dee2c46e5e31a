/**
 * The tunnel's source of epochs: the stream xl writes on the tunnel's stdin, read (reader.ts), cut
 * into checkpoints (checkpoint.ts) and segments (segment.ts), one segment per epoch, as the sender
 * session captures them. The stream drives the pace: a capture waits for the next segment.
 *
 * Reading stops while `maxQueued` segments wait for the sender (xl then waits on its pipe). A stream
 * cannot be sent again from its start: when the receiver holds none of this session's epochs (it was
 * restarted) the sender asks for a full epoch, and that capture fails (RWAN_ERR_PEER): the tunnel
 * stops, and xl resumes the guest at the primary, as when its ssh dies.
 */
import type { Readable } from 'node:stream';
import { asRwanError, RwanError } from '../errors.js';
import type { EpochSource } from '../replication/sender.js';
import { XenCheckpointer } from './checkpoint.js';
import { type StreamEnd, XenStreamReader } from './reader.js';
import { segmentCheckpoint, type XenSegment } from './segment.js';

export interface XenEpoch {
  checkpoint: number;
  /** It ends its checkpoint: its acknowledgement commits the checkpoint. */
  last: boolean;
  guestPages: number;
  bytes: number;
}

export class XenStreamSource implements EpochSource {
  private readonly reader = new XenStreamReader();
  private readonly checkpointer = new XenCheckpointer();
  private readonly queue: XenSegment[] = [];
  private wake: (() => void) | undefined;
  private failure: RwanError | undefined;
  private captures = 0;
  private streamEnd: StreamEnd | undefined;
  /** What each epoch (1, 2, …: the sender numbers its captures so) carries. */
  readonly epochs = new Map<number, XenEpoch>();
  /** Resolves when the stream has ended and every segment of it was captured. */
  readonly drained: Promise<StreamEnd>;
  private drainedResolve!: (e: StreamEnd) => void;

  constructor(
    private readonly input: Readable,
    private readonly o: { maxPages?: number; maxQueued?: number } = {},
  ) {
    this.drained = new Promise((resolve) => {
      this.drainedResolve = resolve;
    });
    input.on('data', (chunk: Buffer) => this.onData(chunk));
    input.on('end', () => {
      try {
        this.streamEnd = this.reader.end();
      } catch (err) {
        this.fail(asRwanError(err));
      }
      this.check();
    });
    input.on('error', (err) =>
      this.fail(new RwanError('RWAN_ERR_IO', `reading the stream: ${err.message}`, { cause: err })),
    );
  }

  /** Bytes of the stream read so far. */
  get position(): number {
    return this.reader.position;
  }

  /** Epochs captured so far (the last one's number). */
  get captured(): number {
    return this.captures;
  }

  /** Where the stream ended, once it has. */
  get end(): StreamEnd | undefined {
    return this.streamEnd;
  }

  private onData(chunk: Buffer): void {
    if (this.failure) return;
    try {
      for (const c of this.checkpointer.push(this.reader.push(chunk))) {
        this.queue.push(...segmentCheckpoint(c, this.o.maxPages));
      }
    } catch (err) {
      this.fail(asRwanError(err));
      return;
    }
    if (this.queue.length >= (this.o.maxQueued ?? 2)) this.input.pause();
    this.check();
  }

  private fail(e: RwanError): void {
    this.failure ??= e;
    this.input.pause();
    this.check();
  }

  private check(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
    if (this.streamEnd && this.queue.length === 0 && !this.failure) this.drainedResolve(this.streamEnd);
  }

  async capture(options: { full?: boolean } = {}): ReturnType<EpochSource['capture']> {
    if (options.full && this.captures > 0) {
      throw new RwanError(
        'RWAN_ERR_PEER',
        'the backup holds none of this stream’s epochs (was it restarted?): a Xen stream cannot be sent again from its start',
      );
    }
    const t0 = performance.now();
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.queue.length > 0) break;
      if (this.streamEnd) await new Promise<never>(() => undefined); // nothing more, ever: the tunnel stops
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
    const s = this.queue.shift() as XenSegment;
    if (this.queue.length < (this.o.maxQueued ?? 2)) this.input.resume();
    this.check();
    this.epochs.set(++this.captures, {
      checkpoint: s.checkpoint,
      last: s.last,
      guestPages: s.guestPages,
      bytes: s.pages.length,
    });
    return {
      full: this.captures === 1,
      pfns: s.pfns,
      pages: s.pages,
      imageBytes: s.pages.length,
      captureMs: performance.now() - t0,
      pausedMs: 0,
    };
  }
}
