/**
 * The capture side of the sender: at each epoch, the pages of the replicated file (a guest RAM file, a
 * disk image, a program's state file) that changed since the previous capture, read at one point in
 * time. How dirty pages are found and why the result is consistent: docs/dirty-log.md.
 *
 *   pause the writer (SIGSTOP, process-pause.ts) ─┐
 *   'hash': read the whole file in 8 MiB blocks,   ├─▶ pfns (ascending) + their pages ─▶ resume
 *           hash each page, keep those whose       │   (+ the image digest, `verify`)
 *           64-bit hash changed                    │
 *   'log':  read the dirty log (dirty-log.ts),     │
 *           read the pages it names + the pages    │
 *           named at the previous capture, ────────┘
 *           truncate the log
 *
 * The first capture, a capture asked to be full, a capture after the file changed size and a capture
 * after a failed one read every page. The image is the file rounded up to whole pages: the bytes of the last page past the end of
 * the file read as zeros.
 *
 * 'hash' keeps two 32-bit words per page (the hash of the content last returned) and costs a read and
 * hash of the whole file per capture; 'log' reads only the pages the producer announced, plus one
 * stat and the log. Memory: the returned pages are the only allocation proportional to the dirty set
 * (besides the pfn arrays); the two 8 MiB block buffers and the hash table are reused. Whole-file
 * passes read the next block while hashing the current one. The pages of an incremental capture are
 * read into a region of a shared buffer (capture-ring.ts) that the caller gives back
 * ({@link ImageSource.recycle}) once it has encoded them: the next captures read into it again instead
 * of faulting in fresh memory every epoch.
 */
import { constants as bufferConstants } from 'node:buffer';
import { fstatSync, readFileSync, type Stats } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { hot, readPagesAsync, releaseMemory } from '../codec/hot-loops.js';
import { RwanError } from '../errors.js';
import { CaptureRing } from './capture-ring.js';
import { checkPageSize, DirtyLogReader } from './dirty-log.js';
import { ImageDigest } from './image-digest.js';
import { checkPausable, pauseProcess } from './process-pause.js';

/** Bytes read (and hashed) per block when a capture reads the whole file. */
export const CAPTURE_BLOCK_BYTES = 8 * 2 ** 20;

/** The sysfs file that holds a block device's size in 512-byte sectors (`rdev` as glibc's makedev). */
function sysfsSizePath(rdev: number): string {
  const lo = rdev % 0x1_0000_0000;
  const hi = Math.floor(rdev / 0x1_0000_0000);
  const major = ((lo >>> 8) & 0xfff) | (hi & 0xfffff000);
  const minor = (lo & 0xff) | ((lo >>> 12) & 0xfff00) | ((hi & 0xfff) << 20);
  return `/sys/dev/block/${major >>> 0}:${minor >>> 0}/size`;
}

/**
 * Bytes of the image: a regular file's size, or a block device's (which `stat` reports as 0), read
 * from sysfs.
 * @throws RwanError `RWAN_ERR_SOURCE` when a block device's size cannot be read
 */
function imageSizeOf(path: string, st: Stats): number {
  if (!st.isBlockDevice()) return st.size;
  const sysfs = sysfsSizePath(st.rdev);
  try {
    const sectors = Number(readFileSync(sysfs, 'latin1').trim());
    if (!Number.isSafeInteger(sectors) || sectors < 0) throw new Error(`not a sector count`);
    return sectors * 512;
  } catch (err) {
    throw new RwanError(
      'RWAN_ERR_SOURCE',
      `image ${path}: the size of the block device cannot be read from ${sysfs}: ${(err as Error).message}`,
      { cause: err, details: { path, sysfs } },
    );
  }
}

/** How a capture finds the pages that changed. */
export type DirtySource = { kind: 'hash' } | { kind: 'log'; path: string };

/** Options of {@link ImageSource.open}. */
export interface ImageSourceOptions {
  /** The replicated file. */
  path: string;
  /** Bytes per page: a power of two in [64, 65536]. */
  pageSize: number;
  /** 'hash': compare per-page hashes of the whole file; 'log': the producer's dirty log at `path`. */
  dirty: DirtySource;
  /** The process that writes the file: stopped during each capture so it is one point in time. */
  pausePid?: number;
  /** Compute the image digest at each capture (a full read of the file: for tests and checks). */
  verify?: boolean;
}

/** Options of {@link ImageSource.capture}. */
export interface CaptureOptions {
  /** Return every page of the image (as the first capture does). */
  full?: boolean;
}

/** One capture: the pages that changed since the previous one. */
export interface CapturedEpoch {
  /** Every page of the image is in this capture (first capture, asked for, or a change of size). */
  full: boolean;
  /** The pages of the capture, ascending, distinct. */
  pfns: Float64Array;
  /** `pfns.length × pageSize` bytes: the content of each page of `pfns`, in the same order. */
  pages: Buffer;
  /** Size of the image at the capture: the file's size rounded up to whole pages. */
  imageBytes: number;
  /**
   * The memory under `pages` is the caller's until it gives it back with {@link ImageSource.recycle}:
   * for a full capture an ArrayBuffer of its own, which may be handed over whole (to a worker thread);
   * for an incremental capture a region of a SharedArrayBuffer that later captures use too, to be read
   * in place (by any thread) and never transferred.
   */
  ownsBuffer: true;
  /** Time the capture took, in milliseconds. */
  captureMs: number;
  /** Time the writing process was stopped, in milliseconds (0 without `pausePid`). */
  pausedMs: number;
  /**
   * With `verify`: the image digest (image-digest.ts) of the whole image at the capture point, taken
   * while the writer was still stopped: the file's bytes followed by zeros up to `imageBytes` (which is
   * `digestFile(path)` when the file's size is a multiple of the page size).
   */
  digest?: string;
}

/** Union of two ascending, distinct arrays (ascending, distinct). */
function unionSorted(a: Float64Array, b: Float64Array): Float64Array {
  if (b.length === 0) return a;
  if (a.length === 0) return b;
  const out = new Float64Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < a.length && j < b.length) {
    const x = a[i] as number;
    const y = b[j] as number;
    if (x < y) {
      out[n++] = x;
      i++;
    } else if (y < x) {
      out[n++] = y;
      j++;
    } else {
      out[n++] = x;
      i++;
      j++;
    }
  }
  while (i < a.length) out[n++] = a[i++] as number;
  while (j < b.length) out[n++] = b[j++] as number;
  return n === out.length ? out : out.slice(0, n);
}

/** The prefix of an ascending array below `limit`. */
function below(a: Float64Array, limit: number): Float64Array {
  let n = a.length;
  while (n > 0 && (a[n - 1] as number) >= limit) n--;
  return n === a.length ? a : a.subarray(0, n);
}

function ioError(path: string, err: unknown): RwanError {
  return new RwanError('RWAN_ERR_IO', `image ${path}: ${(err as Error).message ?? String(err)}`, {
    cause: err,
    details: { path },
  });
}

/** Captures of at least this many pages are read on the thread pool (see ImageSource.readPages). */
export const ASYNC_READ_PAGES = 256;

/**
 * Captures the changed pages of a file, epoch by epoch. One capture at a time; not shared between
 * senders. Linux (the pause reads /proc).
 */
export class ImageSource {
  private bytes: number;
  private captures = 0;
  private busy = false;
  /** The last capture failed: the next one is full. */
  private failed = false;
  private closed = false;
  /** A read of a capture's pages on the thread pool, while one runs. */
  private reading: Promise<void> | undefined;
  /** The two reused read buffers of whole-file passes, allocated on first use. */
  private blocks: [Buffer, Buffer] | undefined;
  /** 'hash': page hashes of the content last returned, 2 words per page (hi, lo). */
  private hashes = new Uint32Array(0);
  /** 'hash': the hashes of one block. */
  private blockHashes = new Uint32Array(0);
  /** 'hash': pfns whose hash changed, collected during a pass (reused). */
  private changed: Float64Array = new Float64Array(1024);
  /** 'log': pfns announced before the previous capture whose writes may land after it. */
  private straddle: Float64Array = new Float64Array(0);
  /** The memory incremental captures read pages into (capture-ring.ts), reused epoch after epoch. */
  private readonly ring: CaptureRing;
  /** The byte lengths of full captures' buffers not given back yet, with their counts. */
  private readonly fullOut = new Map<number, number>();

  private constructor(
    private readonly fh: FileHandle,
    private readonly o: ImageSourceOptions,
    private readonly log: DirtyLogReader | undefined,
    size: number,
  ) {
    this.bytes = Math.ceil(size / o.pageSize) * o.pageSize;
    this.ring = new CaptureRing({ pageSize: o.pageSize, release: (v) => releaseMemory(v) });
  }

  /**
   * Opens the image (and the dirty log) and checks the process to pause. Nothing is captured yet.
   * @throws RwanError `RWAN_ERR_INVALID_VALUE` for a bad page size or pid; `RWAN_ERR_SOURCE` when the
   *   image is missing, neither a regular file nor a block device (or its size cannot be read), or
   *   cannot be opened, the dirty log is unusable
   *   (DirtyLogReader.open), or the process does not exist or cannot be signalled
   */
  static async open(o: ImageSourceOptions): Promise<ImageSource> {
    checkPageSize(o.pageSize);
    if (o.pausePid !== undefined) checkPausable(o.pausePid);
    let fh: FileHandle;
    try {
      fh = await open(o.path, 'r');
    } catch (err) {
      throw new RwanError('RWAN_ERR_SOURCE', `image ${o.path} cannot be opened: ${(err as Error).message}`, {
        cause: err,
        details: { path: o.path },
      });
    }
    try {
      const st = await fh.stat();
      if (!st.isFile() && !st.isBlockDevice()) {
        throw new RwanError(
          'RWAN_ERR_SOURCE',
          `image ${o.path} is neither a regular file nor a block device`,
          {
            details: { path: o.path },
          },
        );
      }
      const size = imageSizeOf(o.path, st);
      const log = o.dirty.kind === 'log' ? await DirtyLogReader.open(o.dirty.path, o.pageSize) : undefined;
      return new ImageSource(fh, { ...o, dirty: { ...o.dirty } }, log, size);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /** Size of the image in bytes (whole pages) at the last capture, or at open before the first. */
  get imageBytes(): number {
    return this.bytes;
  }

  /**
   * Captures the pages that changed since the previous capture (all pages the first time, when
   * `full`, or when the file changed size). With `pausePid` the writer is stopped from before the
   * log and the file are read until after they are, and resumed on every path.
   * @throws RwanError `RWAN_ERR_SOURCE` (the process to pause is gone, a malformed dirty log, an image
   *   larger than a Buffer can hold, a closed source); `RWAN_ERR_IO` (a read failed);
   *   `RWAN_ERR_INVALID_VALUE` when another capture is in progress
   */
  async capture(options: CaptureOptions = {}): Promise<CapturedEpoch> {
    if (this.closed) throw new RwanError('RWAN_ERR_SOURCE', `image ${this.o.path}: the source is closed`);
    if (this.busy) {
      throw new RwanError('RWAN_ERR_INVALID_VALUE', `image ${this.o.path}: a capture is already in progress`);
    }
    this.busy = true;
    const t0 = performance.now();
    let tPause = t0;
    let resume: (() => void) | undefined;
    let pausedMs = 0;
    try {
      if (this.o.pausePid !== undefined) {
        tPause = performance.now();
        resume = await pauseProcess(this.o.pausePid);
      }
      // After a failed capture the log's records may be consumed and the hash table half updated:
      // the next capture reads everything.
      const full = options.full === true || this.failed;
      this.failed = true;
      const epoch = await this.captureLocked(full);
      this.failed = false;
      if (resume !== undefined) {
        resume();
        pausedMs = performance.now() - tPause;
      }
      this.captures++;
      return { ...epoch, captureMs: performance.now() - t0, pausedMs };
    } finally {
      resume?.();
      this.busy = false;
    }
  }

  /** Bytes of the memory incremental captures read pages into and hold (capture-ring.ts heldBytes). */
  get captureMemoryBytes(): number {
    return this.ring.heldBytes;
  }

  /**
   * Gives back the `pages` of an earlier capture once nothing uses them (nor any view of their
   * ArrayBuffer): a later capture reads into that memory again. The memory of a full capture's
   * (image-sized) buffer is given back to the system at once, so a resync does not keep the image's
   * size resident; anything this source did not make is left alone.
   */
  recycle(pages: Uint8Array): void {
    const ab = pages.buffer;
    if (ab instanceof SharedArrayBuffer) {
      this.ring.give(pages);
      return;
    }
    // a full capture's buffer (it may come back as another object over the same memory): not
    // reused, and given back to the system now rather than when the collector gets to it
    const count = this.fullOut.get(ab.byteLength);
    if (count === undefined) return;
    if (count > 1) this.fullOut.set(ab.byteLength, count - 1);
    else this.fullOut.delete(ab.byteLength);
    releaseMemory(new Uint8Array(ab));
  }

  /** Closes the image and the dirty log (idempotent). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.reading?.catch(() => undefined); // a read on the thread pool uses the descriptor
    try {
      await this.fh.close();
    } finally {
      await this.log?.close();
    }
  }

  // -------------------------------------------------------------------------------------------------

  /** The capture proper, the writer stopped (when there is one). */
  private async captureLocked(askedFull: boolean): Promise<Omit<CapturedEpoch, 'captureMs' | 'pausedMs'>> {
    const ps = this.o.pageSize;
    let st: Stats;
    try {
      // synchronous: one system call, cheaper than a thread-pool round trip (the writer is stopped)
      st = fstatSync(this.fh.fd);
    } catch (err) {
      throw ioError(this.o.path, err);
    }
    // a block device can be resized too (a logical volume): its size is read again at each capture
    const size = imageSizeOf(this.o.path, st);
    const bytes = Math.ceil(size / ps) * ps;
    if (bytes > bufferConstants.MAX_LENGTH) {
      throw new RwanError(
        'RWAN_ERR_SOURCE',
        `image ${this.o.path}: ${bytes} bytes exceed the largest Buffer (${bufferConstants.MAX_LENGTH})`,
        { details: { path: this.o.path, bytes } },
      );
    }
    const full = this.captures === 0 || askedFull || bytes !== this.bytes;
    this.bytes = bytes;
    const pageCount = bytes / ps;

    // 'log': the pages announced since the previous capture; those announced before it may still land.
    const logged = this.log === undefined ? new Float64Array(0) : await this.log.read();
    const straddle = this.straddle;
    // A producer that announced nothing new may not have run since the previous capture: its pending
    // writes are still pending, so the previous straddle set is kept. Otherwise they are those of its
    // last batch: with batch marks, that batch alone (or, when it began before the previous read, the
    // previous set and all the new records); without, everything announced since the previous capture.
    // (Updated before the pages are read: after a failure the next capture is full, and the straddle
    // set must still be right.)
    if (logged.length > 0 && this.log !== undefined) {
      this.straddle = this.log.lastBatch ?? (this.log.batchMarks ? unionSorted(logged, straddle) : logged);
    }

    let pfns: Float64Array;
    let pages: Buffer;
    let digest: string | undefined;
    if (full) {
      ({ pages, digest } = await this.readAll(size, bytes));
      pfns = new Float64Array(pageCount);
      for (let i = 0; i < pageCount; i++) pfns[i] = i;
    } else if (this.log === undefined) {
      ({ pfns, digest } = await this.hashPass(size, bytes));
      pages = await this.readPages(pfns, size);
      for (let i = 0; i < pfns.length; i++) {
        hot.hashPageInto(pages.subarray(i * ps, (i + 1) * ps), this.hashes, pfns[i] as number);
      }
    } else {
      pfns = unionSorted(below(logged, pageCount), below(straddle, pageCount));
      pages = await this.readPages(pfns, size);
      if (this.o.verify === true) digest = await this.digestPass(size, bytes);
    }

    if (this.log !== undefined) {
      // Truncating races with the producer's appends unless it is stopped: without a pause the log
      // is only read, never truncated.
      if (this.o.pausePid !== undefined) await this.log.reset();
    }
    return digest === undefined
      ? { full, pfns, pages, imageBytes: bytes, ownsBuffer: true }
      : { full, pfns, pages, imageBytes: bytes, ownsBuffer: true, digest };
  }

  /**
   * Reads the image `[0, bytes)` block by block and calls `each` on every block in order. The next
   * block is read (in the thread pool) while `each` hashes the current one, so a whole-file pass costs
   * about max(read, hash) rather than their sum. `into`: read straight into this image-sized buffer
   * (a full capture) instead of the two reused block buffers.
   */
  private async scan(
    size: number,
    bytes: number,
    each: (view: Buffer, offset: number) => void,
    into?: Buffer,
  ): Promise<void> {
    if (into === undefined && this.blocks === undefined) {
      this.blocks = [Buffer.allocUnsafe(CAPTURE_BLOCK_BYTES), Buffer.allocUnsafe(CAPTURE_BLOCK_BYTES)];
    }
    const load = async (offset: number, k: number): Promise<Buffer> => {
      const len = Math.min(CAPTURE_BLOCK_BYTES, bytes - offset);
      const buf = into ?? (this.blocks?.[k % 2] as Buffer);
      const at = into === undefined ? 0 : offset;
      await this.readAt(buf, at, len, offset, size);
      return buf.subarray(at, at + len);
    };
    let next = bytes > 0 ? load(0, 0) : undefined;
    try {
      for (let offset = 0, k = 0; next !== undefined; offset += CAPTURE_BLOCK_BYTES, k++) {
        const view = await next;
        next = offset + CAPTURE_BLOCK_BYTES < bytes ? load(offset + CAPTURE_BLOCK_BYTES, k + 1) : undefined;
        each(view, offset);
      }
    } finally {
      await next?.catch(() => undefined); // a read still in flight when `each` threw
    }
  }

  /**
   * Reads `buf[at .. at + len)` from file offset `position`; bytes past the end of the file (`size`)
   * are zeros.
   */
  private async readAt(buf: Buffer, at: number, len: number, position: number, size: number): Promise<void> {
    const avail = Math.max(0, Math.min(len, size - position));
    let got = 0;
    try {
      while (got < avail) {
        const { bytesRead } = await this.fh.read(buf, at + got, avail - got, position + got);
        if (bytesRead === 0) break; // shrank meanwhile (no pause): the next capture sees the new size
        got += bytesRead;
      }
    } catch (err) {
      throw ioError(this.o.path, err);
    }
    if (got < len) buf.fill(0, at + got, at + len);
  }

  /** Every page, straight into the result; in 'hash' mode the hash table is rebuilt on the way. */
  private async readAll(size: number, bytes: number): Promise<{ pages: Buffer; digest?: string }> {
    const ps = this.o.pageSize;
    // its own ArrayBuffer, never a slice of Buffer's shared pool (the caller may hand it over whole)
    const pages = Buffer.allocUnsafeSlow(bytes);
    this.fullOut.set(bytes, (this.fullOut.get(bytes) ?? 0) + 1);
    const d = this.o.verify === true ? new ImageDigest() : undefined;
    const hashing = this.log === undefined;
    if (hashing && this.hashes.length !== (2 * bytes) / ps) this.hashes = new Uint32Array((2 * bytes) / ps);
    await this.scan(
      size,
      bytes,
      (view, offset) => {
        if (hashing) hot.hashPages(view, ps, this.hashes.subarray((2 * offset) / ps));
        d?.update(view);
      },
      pages,
    );
    return d === undefined ? { pages } : { pages, digest: d.hex() };
  }

  /** 'hash': reads and hashes the whole file; the pages whose hash differs from the table's. */
  private async hashPass(size: number, bytes: number): Promise<{ pfns: Float64Array; digest?: string }> {
    const ps = this.o.pageSize;
    if (this.blockHashes.length === 0) this.blockHashes = new Uint32Array((2 * CAPTURE_BLOCK_BYTES) / ps);
    const bh = this.blockHashes;
    const old = this.hashes;
    const d = this.o.verify === true ? new ImageDigest() : undefined;
    let n = 0;
    await this.scan(size, bytes, (view, offset) => {
      d?.update(view);
      hot.hashPages(view, ps, bh);
      const first = offset / ps;
      for (let k = 0, w = 2 * first; k < view.length / ps; k++, w += 2) {
        if (bh[2 * k] !== old[w] || bh[2 * k + 1] !== old[w + 1]) {
          if (n === this.changed.length) {
            const grown = new Float64Array(2 * n);
            grown.set(this.changed);
            this.changed = grown;
          }
          this.changed[n++] = first + k;
        }
      }
    });
    const pfns = this.changed.slice(0, n);
    return d === undefined ? { pfns } : { pfns, digest: d.hex() };
  }

  /** The image digest from a whole-file pass with the block buffers. */
  private async digestPass(size: number, bytes: number): Promise<string> {
    const d = new ImageDigest();
    await this.scan(size, bytes, (view) => {
      d.update(view);
    });
    return d.hex();
  }

  /**
   * The pages `pfns` (ascending) into a buffer of their own, one positional read per run of
   * consecutive pages (hot-loops readPages: one native call for all of them); zeros past the end of
   * the file. From {@link ASYNC_READ_PAGES} pages on, on the thread pool (the addon's readPagesAsync):
   * a capture of thousands of pages takes milliseconds (1.4 µs a page from the page cache here), which
   * the event loop spends meanwhile on sending and, with the pool encoder, on encoding the previous
   * epoch; fewer are read synchronously, quicker than a round trip through the pool. The writer is
   * stopped either way. The buffer is a region of the capture memory (capture-ring.ts), shared memory
   * that earlier captures faulted in already (a fresh buffer costs a page fault, and the kernel's
   * zeroing, per 4 KiB the reads then copy into) and that an encoder thread reads in place.
   */
  private async readPages(pfns: Float64Array, size: number): Promise<Buffer> {
    // closed during the capture's earlier awaits: say so, rather than fail on the closed descriptor
    if (this.closed) throw new RwanError('RWAN_ERR_SOURCE', `image ${this.o.path}: the source is closed`);
    const region = this.ring.take(pfns.length * this.o.pageSize);
    const pages = Buffer.from(region.buffer, region.byteOffset, region.byteLength);
    const args = [this.fh.fd, pfns, 0, pfns.length, this.o.pageSize, size, pages] as const;
    try {
      if (readPagesAsync !== undefined && pfns.length >= ASYNC_READ_PAGES) {
        // close() waits for this read: the descriptor must stay open under it
        this.reading = readPagesAsync(...args);
        await this.reading;
      } else {
        hot.readPages(...args);
      }
    } catch (err) {
      this.ring.give(region);
      throw ioError(this.o.path, err);
    } finally {
      this.reading = undefined;
    }
    return pages;
  }
}
