/**
 * The tunnel's source of epochs: the stream xl writes on the tunnel's stdin, read (reader.ts) item by
 * item, cut into checkpoints (checkpoint.ts) and segments (segment.ts), one segment per epoch, as the
 * sender session captures them. The stream drives the pace: a capture waits for the next segment.
 *
 * **Output commit** (docs/xen-stream.md). xl releases a checkpoint's network output when its write of
 * CHECKPOINT_END into the pipe returns. With `gate` (the pipe shrunk to one page), the source stops
 * reading in each checkpoint's libxl tail, just after the EMULATOR_CONTEXT record's header when its
 * body is at least the pipe's capacity: everything before it is cut off as a part of the checkpoint,
 * and reading goes on only once the backup has acknowledged that part. xl meanwhile waits on a full
 * pipe, its checkpoint unfinished. A checkpoint without such a record (PV, or a small device model)
 * cannot be held so: it is counted as ungated.
 *
 * Reading stops while `maxQueued` segments wait for the sender (xl then waits on its pipe). A stream
 * cannot be sent again from its start: when the receiver holds none of this session's epochs (it was
 * restarted) the sender asks for a full epoch, and that capture fails (RWAN_ERR_PEER): the tunnel
 * stops, and xl resumes the guest at the primary, as when its ssh dies.
 */
import { read, readSync } from 'node:fs';
import { waitReadable } from '../codec/hot-loops.js';
import { asRwanError, RwanError } from '../errors.js';
import type { EpochSource } from '../replication/sender.js';
import { XenCheckpointer } from './checkpoint.js';
import { LibxlRecord } from './format.js';
import { type StreamEnd, XenStreamReader } from './reader.js';
import { segmentCheckpoint, type XenSegment } from './segment.js';

/** Where the stream's bytes come from. */
export interface ByteInput {
  /** Up to `max` bytes (at least one), or null at the end of the stream (or once closed). */
  read(max: number): Promise<Buffer | null>;
  /** Stop reading: a read waiting for data ends (null) within its poll. */
  close?(): void;
}

/**
 * A file descriptor as input (the tunnel's stdin: xl's pipe). With the addon it waits for data on
 * the thread pool in bounded polls, then reads without blocking; without it, a blocking read on the
 * pool (then the process cannot exit while xl keeps the pipe open and silent).
 */
export function fdInput(fd: number): ByteInput {
  let closed = false;
  const once = (max: number) => {
    const buf = Buffer.allocUnsafe(max);
    const n = readSync(fd, buf, 0, max, null);
    return n === 0 ? null : buf.subarray(0, n);
  };
  return {
    async read(max) {
      if (waitReadable === undefined) {
        return new Promise((resolve, reject) => {
          const buf = Buffer.allocUnsafe(max);
          read(fd, buf, 0, max, null, (err, n) =>
            err ? reject(err) : resolve(n === 0 ? null : buf.subarray(0, n)),
          );
        });
      }
      while (!closed) {
        const revents = await waitReadable(fd, 200);
        if (revents < 0) throw new RwanError('RWAN_ERR_IO', `waiting for the stream: errno ${-revents}`);
        if (revents === 0) continue;
        try {
          return once(max);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
        }
      }
      return null;
    },
    close() {
      closed = true;
    },
  };
}

export interface XenEpoch {
  checkpoint: number;
  /** It ends its checkpoint: its acknowledgement commits the checkpoint. */
  last: boolean;
  guestPages: number;
  bytes: number;
}

export interface SourceOptions {
  maxPages?: number;
  maxQueued?: number;
  /** Hold xl's checkpoint writes until the backup acknowledges (the pipe's capacity, bytes). */
  gate?: { pipeBytes: number };
}

export class XenStreamSource implements EpochSource {
  private readonly reader = new XenStreamReader();
  private readonly checkpointer = new XenCheckpointer();
  private readonly queue: XenSegment[] = [];
  private waiters: Array<() => void> = [];
  private failure: RwanError | undefined;
  private captures = 0;
  private acknowledged = 0;
  private streamEnd: StreamEnd | undefined;
  private gatedCheckpoint = -1;
  private readonly heldCheckpoints = new Set<number>();
  /** What each epoch (1, 2, …: the sender numbers its captures so) carries. */
  readonly epochs = new Map<number, XenEpoch>();
  /** Checkpoints read whole, held by the gate, not held (no record to hold them at); ms held in all. */
  readonly counters = { checkpoints: 0, gated: 0, ungated: 0, heldMs: 0 };
  /** Resolves when the stream has ended and every segment of it was captured. */
  readonly drained: Promise<StreamEnd>;
  private drainedResolve!: (e: StreamEnd) => void;

  constructor(
    private readonly input: ByteInput,
    private readonly o: SourceOptions = {},
  ) {
    this.drained = new Promise((resolve) => {
      this.drainedResolve = resolve;
    });
    this.pump().catch((err: unknown) => this.fail(asRwanError(err)));
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

  /** Whether the gate held checkpoint `index` (asked once, when its last epoch is acknowledged). */
  wasGated(index: number): boolean {
    return this.heldCheckpoints.delete(index);
  }

  /** Stop reading the stream (the tunnel is stopping). */
  close(): void {
    this.input.close?.();
    this.fail(new RwanError('RWAN_ERR_IO', 'the tunnel is stopping'));
  }

  /** The backup acknowledged `epoch` (and every one before it). */
  acked(epoch: number): void {
    if (epoch > this.acknowledged) this.acknowledged = epoch;
    this.notify();
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
    if (this.streamEnd && this.queue.length === 0 && !this.failure) this.drainedResolve(this.streamEnd);
  }

  private async until(cond: () => boolean): Promise<void> {
    while (!cond() && !this.failure) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private fail(e: RwanError): void {
    this.failure ??= e;
    this.notify();
  }

  private enqueue(c: ReturnType<XenCheckpointer['cut']>): void {
    if (c) this.queue.push(...segmentCheckpoint(c, this.o.maxPages));
  }

  /** Read the stream item by item, holding it at each checkpoint's gate. */
  private async pump(): Promise<void> {
    const maxQueued = this.o.maxQueued ?? 2;
    for (;;) {
      await this.until(() => this.queue.length < maxQueued);
      if (this.failure) return;
      const r = this.reader.nextRecord();
      const cp = this.reader.checkpoints;
      if (
        this.o.gate &&
        r?.inTail &&
        r.type === LibxlRecord.EMULATOR_CONTEXT &&
        r.length >= this.o.gate.pipeBytes &&
        this.gatedCheckpoint !== cp
      ) {
        // xl waits on a full pipe for the rest of this record: send all before it, and go on once
        // the backup has it
        this.gatedCheckpoint = cp;
        this.enqueue(this.checkpointer.cut());
        this.notify();
        const t0 = performance.now();
        await this.until(() => this.queue.length === 0 && this.acknowledged >= this.captures);
        this.counters.heldMs += performance.now() - t0;
      }
      const chunk = await this.input.read(Math.min(this.reader.need(), 1 << 20));
      if (chunk === null) {
        try {
          this.streamEnd = this.reader.end();
        } catch (err) {
          this.fail(asRwanError(err));
        }
        this.notify();
        return;
      }
      for (const c of this.checkpointer.push(this.reader.push(chunk))) {
        if (c.end === 'checkpoint') {
          this.counters.checkpoints++;
          if (this.gatedCheckpoint === c.index) {
            this.counters.gated++;
            this.heldCheckpoints.add(c.index);
          } else this.counters.ungated++;
        }
        this.enqueue(c);
      }
      this.notify();
    }
  }

  async capture(options: { full?: boolean } = {}): ReturnType<EpochSource['capture']> {
    if (options.full && this.captures > 0) {
      throw new RwanError(
        'RWAN_ERR_PEER',
        'the backup holds none of this stream’s epochs (was it restarted?): a Xen stream cannot be sent again from its start',
      );
    }
    const t0 = performance.now();
    await this.until(() => this.queue.length > 0);
    if (this.failure) throw this.failure;
    const s = this.queue.shift() as XenSegment;
    this.epochs.set(++this.captures, {
      checkpoint: s.checkpoint,
      last: s.last,
      guestPages: s.guestPages,
      bytes: s.pages.length,
    });
    this.notify();
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
