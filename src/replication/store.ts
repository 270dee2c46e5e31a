/**
 * The receiver's durable replica store (docs/replica-store.md): a directory that keeps a replica of
 * the sender's image which is always consistent at the last committed epoch, across crashes.
 *
 *   dir/ (0700)
 *     replica.img     the image, whole pages; holds every epoch up to committedEpoch (durably up to
 *                     appliedEpoch, the last checkpoint)
 *     journal.bin     append-only, one record per committed epoch since the last checkpoint
 *     journal.prev.bin  the journal a checkpoint retired, until its state file is installed
 *     state.bin       page size, session, image size, appliedEpoch, where the checkpoint's sidecar
 *                     is; replaced atomically (state.bin.tmp → rename)
 *     sidecar.{0,1}.bin  the checkpoints' sidecars, written in turn
 *
 *   beginEpoch ─ addPage… ─────────────────────────── commit ─────────────────────────────────────
 *                 │ staged in memory (≤ stagingBytes)    │ write what is staged + trailer, fdatasync
 *                 └ spill: a segment appended to the     │ (now durable: recovery replays it)
 *                   journal when the staging fills       └ apply to replica.img (pwrite whole pages)
 *
 *   checkpoint: write the sidecar into the other slot → journal.bin becomes journal.prev.bin, a
 *               fresh journal.bin ─ resolves: commits go on ─ (background) fdatasync replica and
 *               slot → state.bin.tmp, fsync → rename → fsync dir → remove journal.prev.bin
 *   open:       read state → scan journal.prev.bin, journal.bin → replay records after the checkpoint
 *               → cut a torn tail
 *
 * An epoch given a payload (setPayload: the epoch as its producer encoded it, e.g. compressed) is
 * journaled as that payload instead of its pages, unless its pages spilled; its pages wait in staging
 * until the record is durable. Replaying a payload record takes the producer's decoder: the
 * `replayer` option, built at open from the checkpoint's sidecar.
 *
 * A record counts only once its trailer (with a SHA-256 of the whole record) is on disk, and the
 * replica is only written after the record is durable, so a crash anywhere leaves either the epoch's
 * complete record (replayed at open) or an incomplete one (cut off at open) and a replica that the
 * replay brings back to the last committed epoch. Replaying is idempotent: whole pages at fixed
 * offsets, a full epoch first truncating the file.
 */
import { createHash } from 'node:crypto';
import { writevSync } from 'node:fs';
import { constants, type FileHandle, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { isRwanError, RwanError } from '../errors.js';
import { ImageDigest } from './image-digest.js';
import {
  BlockReader,
  encodeHeader,
  encodePayloadHead,
  encodeSegmentIndex,
  encodeTrailer,
  findRecordAfter,
  getU64,
  HEADER_BYTES,
  isPageSize,
  type JournalRecord,
  KIND_DATA,
  KIND_ZERO,
  MAX_SEGMENT_PAGES,
  PageList,
  pad8,
  putU64,
  RecordHash,
  type RecordHeader,
  readFully,
  readRecord,
  SESSION_BYTES,
  type SegmentInfo,
  TRAILER_BYTES,
} from './journal.js';

/** File name of the replica inside the store directory. */
export const REPLICA_FILE = 'replica.img';
/** File name of the journal. */
export const JOURNAL_FILE = 'journal.bin';
/**
 * File name a checkpoint gives the journal it retires: its records stay needed until the new state
 * file is in place, while new commits already go to a fresh {@link JOURNAL_FILE}.
 */
export const JOURNAL_PREV_FILE = 'journal.prev.bin';
/** File name of sidecar slot `slot` (0 or 1): checkpoints write their sidecar into the two in turn. */
export const sidecarFile = (slot: number): string => `sidecar.${slot}.bin`;
/** File name of the state file. */
export const STATE_FILE = 'state.bin';
/** File name the state is written to before it is renamed over {@link STATE_FILE}. */
export const STATE_TEMP_FILE = 'state.bin.tmp';

/** Default {@link StoreOptions.stagingBytes}: 64 MiB. */
export const DEFAULT_STAGING_BYTES = 64 * 2 ** 20;
/** Default {@link StoreOptions.checkpointBytes}: 256 MiB. */
export const DEFAULT_CHECKPOINT_BYTES = 256 * 2 ** 20;

/**
 * The named points where {@link StoreOptions.faults} is called, in the order an epoch and a
 * checkpoint pass them (docs/replica-store.md §6 says what is on disk at each).
 */
export const FAULT_POINTS = [
  'spill:before-write',
  'spill:after-write',
  'commit:before-write',
  'commit:after-write',
  'commit:after-fsync',
  'commit:mid-apply',
  'commit:after-apply',
  'checkpoint:before-sidecar-write',
  'checkpoint:after-sidecar-write',
  'checkpoint:after-rotate',
  'checkpoint:after-replica-fsync',
  'checkpoint:after-rename',
  'checkpoint:after-dir-fsync',
  'checkpoint:after-retire',
  'recovery:mid-apply',
] as const;

/** One of {@link FAULT_POINTS}. */
export type FaultPoint = (typeof FAULT_POINTS)[number];

/** How to open a store. */
export interface StoreOptions {
  /** The store directory; created (mode 0700) when missing. */
  dir: string;
  /** Bytes per page: a power of two from 512 to 65536, fixed when the store is created. */
  pageSize: number;
  /**
   * fdatasync/fsync where durability needs it (default true): the journal at each commit, the
   * replica and the state file at a checkpoint, the directory after a rename. False keeps crash
   * consistency against a process crash but not against a power loss.
   */
  fsync?: boolean;
  /**
   * Page bytes an open epoch keeps in memory before they spill into the journal (default 64 MiB; at
   * least one page).
   */
  stagingBytes?: number;
  /** {@link ReplicaStore.checkpointDue} turns true once the journal holds more (default 256 MiB). */
  checkpointBytes?: number;
  /**
   * Decodes the journal's payload records (epochs committed with {@link EpochWriter.setPayload}) at
   * recovery: called once, with the sidecar of the last checkpoint and its epoch, before the first
   * record after that checkpoint is replayed. Without it, a journal holding a payload record does
   * not open (`RWAN_ERR_STORE`).
   */
  replayer?: (sidecar: Buffer | null, sidecarEpoch: number | null) => Replayer;
  /**
   * Test only: called at each of {@link FAULT_POINTS}; when it throws, the operation fails there as
   * if the process had died at that point (nothing after it happens, the store refuses further work
   * until reopened).
   */
  faults?: (point: FaultPoint) => void;
}

/** How long the steps of a checkpoint took, ms (docs/replica-store.md §6). */
export interface CheckpointTimes {
  /** Writing the retained pages (0 when they stay in the sidecar). */
  retainedMs: number;
  /** Writing the sidecar into its slot file. */
  sidecarMs: number;
  /** Retiring the journal (or, for a checkpoint that runs whole, everything after the state). */
  rotateMs: number;
  /** The background half; null until it is over (and for a checkpoint that runs whole). */
  backgroundMs: number | null;
}

/** What the store holds. */
export interface StoreState {
  /** The sender session the replica follows (32 hex characters); null for an empty store. */
  sessionId: string | null;
  /** Replica size in bytes, a multiple of the page size. */
  imageBytes: number;
  /** The last epoch durably in the replica file, as of the last checkpoint. */
  appliedEpoch: number | null;
  /** The last durable epoch (in the journal or the replica); ≥ appliedEpoch. */
  committedEpoch: number | null;
}

/** An epoch the journal replays. */
export interface ReplayEpoch {
  epoch: number;
  full: boolean;
  imageBytes: number;
  sessionId: string;
}

/**
 * Brings the state a producer's payloads depend on (a decoder's page cache) forward through the
 * journal's epochs, in commit order: every record after the checkpoint gets one `begin`, then a page
 * record one `page` per page (in the order they were added), a payload record one `decode`.
 */
export interface Replayer {
  begin(e: ReplayEpoch): void;
  /** A page of a page record (`null`: a zero page); the bytes are valid during the call only. */
  page(pfn: number, page: Uint8Array | null): void;
  /**
   * Decode a payload record's payload, handing each page of the epoch to `out` (`null`: a zero page;
   * the bytes are copied during the call). Throws when the payload does not decode.
   */
  decode(payload: Buffer, out: (pfn: number, page: Uint8Array | null) => void): void;
  /**
   * The pages the sidecar holds, as of its checkpoint (non-zero pages; the bytes are copied during
   * the call). Called once, before the first `begin`, when that checkpoint left its retained pages
   * in the sidecar ({@link CheckpointOptions.retainedInSidecar}): they are written into the replica
   * first. Without it such a store does not open.
   */
  base?(): Iterable<{ pfn: number; page: Uint8Array }>;
}

/** Options of {@link ReplicaStore.beginCheckpoint}. */
export interface CheckpointOptions {
  /**
   * Leave the retained pages (§5.1) out of the replica: the sidecar holds their committed bytes (the
   * caller's page cache, which holds every retained page), and the replayer's `base` gives them back
   * at recovery. Saves writing them at each checkpoint; `replica.img` then lags behind for them until
   * a `flushRetained()`, a write-back or a checkpoint without this option.
   */
  retainedInSidecar?: boolean;
}

/** What {@link ReplicaStore.open} found and did. */
export interface RecoveryReport {
  /** Committed epochs found in the journal after the checkpoint and (re)applied to the replica. */
  replayedEpochs: number[];
  /** Bytes of a torn journal tail (a record without a valid trailer) that were cut off. */
  truncatedBytes: number;
  /** The blob saved by the last checkpoint, or null. */
  sidecar: Buffer | null;
  /** The epoch the sidecar belongs to (the appliedEpoch of that checkpoint); null without a sidecar. */
  sidecarEpoch: number | null;
}

/** Options of {@link ReplicaStore.beginEpoch}. */
export interface EpochOptions {
  /** The epoch carries every page of the image and defines the replica completely. */
  full: boolean;
  /** Image size in bytes (a multiple of the page size); a non-full epoch keeps the store's. */
  imageBytes: number;
  /** The sender session (32 hex characters). */
  sessionId: string;
  /**
   * `addPage` keeps a reference to each page instead of copying it into staging, and nothing
   * spills: the caller leaves the bytes unchanged until the commit or abort settles (the receiver
   * lends the decoder's cached copies when the whole epoch fits its page cache). Default false.
   */
  borrow?: boolean;
  /**
   * Write-back (with `borrow`, not for a full epoch): the commit does not write the epoch's data
   * pages to the replica; the store retains them and, when it must write them (a checkpoint,
   * {@link ReplicaStore.flushRetained}, {@link ReplicaStore.readPage}, {@link ReplicaStore.digest}),
   * reads their bytes through `retain(pfn)`. The caller keeps there the newest committed bytes of
   * every retained page and hands a page to {@link ReplicaStore.writeBack} before it drops it or
   * reuses its memory. It may change retained pages in place while it produces the next epoch (which
   * then retains or writes them); when that epoch is aborted after such changes, the replica is
   * behind them: close the store and open it again (recovery replays the journal). The journal
   * makes a retained page durable, as any committed page: the replica only lags behind it. A page
   * rewritten every epoch is then written once per checkpoint instead of once per epoch.
   */
  retain?: (pfn: number) => Uint8Array | undefined;
}

/** The open epoch: pages in, then commit or abort. */
export interface EpochWriter {
  /** The epoch number. */
  readonly epoch: number;
  /**
   * Add page `pfn` (`null`: an all-zero page). The bytes are copied now. Each pfn at most once per
   * epoch, and `pfn × pageSize < imageBytes`. May spill staged pages into the journal (a synchronous
   * buffered write, no fsync).
   */
  addPage(pfn: number, page: Uint8Array | null): void;
  /**
   * The epoch as its producer encoded it (the views are kept, not copied: leave them unchanged until
   * the commit settles). When the epoch's pages fit the staging memory (they did not spill), the
   * journal records this payload instead of the pages — far fewer bytes to write and sync when the
   * producer compresses — and recovery replays it through {@link StoreOptions.replayer}, which must
   * then yield exactly the pages added. Replaces an earlier payload.
   */
  setPayload(parts: Uint8Array[]): void;
  /** Make the epoch durable and apply it; when this resolves, `state.committedEpoch === epoch`. */
  commit(): Promise<void>;
  /** Drop the epoch; the journal is as before `beginEpoch`. */
  abort(): Promise<void>;
}

/** {@link StoreOptions} with the defaults filled in. */
interface ResolvedOptions {
  dir: string;
  pageSize: number;
  fsync: boolean;
  stagingBytes: number;
  checkpointBytes: number;
  replayer: StoreOptions['replayer'];
  faults: ((point: FaultPoint) => void) | undefined;
}

/** The state file's content (docs/replica-store.md §4). */
interface Persisted {
  pageSize: number;
  sessionId: string | null;
  imageBytes: number;
  appliedEpoch: number | null;
  /** Journal sequence number of the last record in the replica as of the checkpoint (0: none). */
  appliedSeq: number;
  sidecar: Buffer | null;
  /** The sidecar slot file the sidecar was read from; null for none or a version 1 state. */
  sidecarSlot: number | null;
  /**
   * The checkpoint left its retained pages out of the replica: their bytes as of appliedEpoch are
   * in the sidecar, which recovery writes back first (the replayer's `base`).
   */
  retainedInSidecar: boolean;
}

/** A state to write (version 2): the sidecar is in slot file `slot`, `bytes` long, with `digest`. */
interface StateRecord extends Omit<Persisted, 'sidecar' | 'sidecarSlot'> {
  sidecar: { slot: number; bytes: number; digest: Buffer } | null;
}

/** In-memory state: the persisted part, plus where the journal stands. */
interface Live {
  sessionId: string | null;
  imageBytes: number;
  appliedEpoch: number | null;
  appliedSeq: number;
  committedEpoch: number | null;
  /** Sequence number of the last committed record. */
  lastSeq: number;
  /** Bytes of committed records in the journal (where the next record starts). */
  journalEnd: number;
}

/** Where recovery's scan of the journals stands. */
interface Scan {
  replayedEpochs: number[];
  replayer: Replayer | undefined;
  /** Records skipped as covered by the checkpoint. */
  stale: number;
}

/** Consecutive replica pages written by one writev. */
interface WriteRun {
  pos: number;
  bufs: Uint8Array[];
}

/** Add page `pfn` to `runs` (pfns in increasing order): to the last run when it follows it. */
function pushRun(runs: WriteRun[], pfn: number, page: Uint8Array, pageSize: number): void {
  const run = runs[runs.length - 1];
  if (
    run !== undefined &&
    run.pos + run.bufs.length * pageSize === pfn * pageSize &&
    run.bufs.length < MAX_IOV
  ) {
    run.bufs.push(page);
  } else runs.push({ pos: pfn * pageSize, bufs: [page] });
}

/** The pages of an epoch to apply, wherever they are. */
interface EpochPages {
  full: boolean;
  imageBytes: number;
  pfns: Float64Array;
  kinds: Uint8Array;
  /** Segments whose data is in the journal file. */
  segments: SegmentInfo[];
  /** Retain the data pages instead of writing them ({@link EpochOptions.retain}). */
  retains?: boolean;
}

const STATE_MAGIC = Buffer.from('RWANSTAT', 'latin1');
const STATE_VERSION = 2;
const STATE_HEAD_BYTES = 72;
/** A version 2 state file: the head, the sidecar's digest, the file's digest. */
const STATE_V2_BYTES = 136;
const DIGEST_BYTES = 32;
const STATE_HAS_SESSION = 1;
const STATE_HAS_APPLIED = 2;
const STATE_HAS_SIDECAR = 4;
const STATE_RETAINED_IN_SIDECAR = 8;

/** Read block of the journal scan. */
const SCAN_BLOCK_BYTES = 2 ** 20;
/** Largest block of page data read back from the journal at once (within stagingBytes). */
const MAX_READ_BLOCK_BYTES = 8 * 2 ** 20;
/** Buffers per writev (Linux IOV_MAX). */
const MAX_IOV = 1024;
/** Pages sorted and grouped into writes at once (bounds the per-write bookkeeping). */
const WRITE_BATCH_PAGES = 8192;
/** Image pages up to which duplicate pfns are found with a bitmap (16 MiB) rather than a Set. */
const BITMAP_MAX_PAGES = 2 ** 27;
/** Pages of staging the buffer starts with. */
const STAGING_START_PAGES = 16;
/** Staging kept between epochs; a larger buffer is given back once its epoch settles. */
const STAGING_KEEP_BYTES = 4 * 2 ** 20;

const SESSION_RE = /^[0-9a-fA-F]{32}$/;

function invalid(message: string, details: Record<string, unknown> = {}): RwanError {
  return new RwanError('RWAN_ERR_INVALID_VALUE', message, { details });
}

function damaged(message: string, details: Record<string, unknown> = {}): RwanError {
  return new RwanError('RWAN_ERR_STORE', message, { details });
}

/** Our error as is; anything else (a file system error, a fault hook) as `RWAN_ERR_IO`. */
function ioError(err: unknown, op: string, path: string): RwanError {
  if (isRwanError(err)) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const msg = err instanceof Error ? err.message : String(err);
  return new RwanError('RWAN_ERR_IO', `${op} ${path}: ${msg}`, {
    cause: err,
    details: { path, op, ...(code === undefined ? {} : { errno: code }) },
  });
}

/** The views left after dropping the first `n` bytes of `bufs`. */
function dropPrefix(bufs: Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = n;
  for (const b of bufs) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}

const totalBytes = (bufs: readonly Uint8Array[]): number => bufs.reduce((n, b) => n + b.length, 0);

/** writev all of `bufs` at `pos` (retrying after a short write). */
async function writevAll(fh: FileHandle, bufs: Uint8Array[], pos: number): Promise<void> {
  const total = totalBytes(bufs);
  let done = 0;
  let rest = bufs;
  while (done < total) {
    const { bytesWritten } = await fh.writev(rest, pos + done);
    if (bytesWritten <= 0) throw new Error('writev wrote nothing');
    done += bytesWritten;
    rest = dropPrefix(rest, bytesWritten);
  }
}

/** {@link writevAll}, synchronously. */
function writevAllSync(fd: number, bufs: Uint8Array[], pos: number): void {
  const total = totalBytes(bufs);
  let done = 0;
  let rest = bufs;
  while (done < total) {
    const n = writevSync(fd, rest, pos + done);
    if (n <= 0) throw new Error('writev wrote nothing');
    done += n;
    rest = dropPrefix(rest, n);
  }
}

/** The state file's bytes (version 2). */
function encodeState(s: StateRecord): Buffer {
  const b = Buffer.alloc(STATE_V2_BYTES);
  STATE_MAGIC.copy(b, 0);
  b.writeUInt32LE(STATE_VERSION, 8);
  b.writeUInt32LE(s.pageSize, 12);
  const flags =
    (s.sessionId === null ? 0 : STATE_HAS_SESSION) |
    (s.appliedEpoch === null ? 0 : STATE_HAS_APPLIED) |
    (s.sidecar === null ? 0 : STATE_HAS_SIDECAR) |
    (s.retainedInSidecar ? STATE_RETAINED_IN_SIDECAR : 0);
  b.writeUInt32LE(flags, 16);
  b.writeUInt32LE(s.sidecar?.slot ?? 0, 20);
  if (s.sessionId !== null) b.write(s.sessionId, 24, SESSION_BYTES, 'hex');
  putU64(b, 40, s.imageBytes);
  putU64(b, 48, s.appliedEpoch ?? 0);
  putU64(b, 56, s.appliedSeq);
  putU64(b, 64, s.sidecar?.bytes ?? 0);
  s.sidecar?.digest.copy(b, STATE_HEAD_BYTES);
  createHash('sha256')
    .update(b.subarray(0, STATE_V2_BYTES - DIGEST_BYTES))
    .digest()
    .copy(b, STATE_V2_BYTES - DIGEST_BYTES);
  return b;
}

/** A decoded state file: a version 1 file holds its sidecar, a version 2 one names its slot file. */
type DecodedState = Omit<StateRecord, 'sidecar'> & {
  sidecar: Buffer | { slot: number; bytes: number; digest: Buffer } | null;
};

function decodeState(b: Buffer, path: string, pageSize: number): DecodedState {
  const bad = (why: string, details: Record<string, unknown> = {}) =>
    damaged(`state file ${path}: ${why}`, { path, ...details });
  if (b.length < STATE_HEAD_BYTES + DIGEST_BYTES || !b.subarray(0, 8).equals(STATE_MAGIC)) {
    throw bad('not a replica store state file');
  }
  const digest = createHash('sha256')
    .update(b.subarray(0, b.length - DIGEST_BYTES))
    .digest();
  if (!digest.equals(b.subarray(b.length - DIGEST_BYTES))) throw bad('checksum mismatch');
  const version = b.readUInt32LE(8);
  if (version !== 1 && version !== STATE_VERSION)
    throw bad(`version ${version} is not supported`, { version });
  const found = b.readUInt32LE(12);
  if (found !== pageSize) {
    throw bad(`the store was created with page size ${found}, not ${pageSize}`, {
      expected: pageSize,
      found,
    });
  }
  const flags = b.readUInt32LE(16);
  const slot = b.readUInt32LE(20);
  const imageBytes = getU64(b, 40);
  const appliedEpoch = getU64(b, 48);
  const appliedSeq = getU64(b, 56);
  const sidecarBytes = getU64(b, 64);
  const hasSidecar = (flags & STATE_HAS_SIDECAR) !== 0;
  if (
    (flags & ~(STATE_HAS_SESSION | STATE_HAS_APPLIED | STATE_HAS_SIDECAR | STATE_RETAINED_IN_SIDECAR)) !==
      0 ||
    ((flags & STATE_RETAINED_IN_SIDECAR) !== 0 && (version === 1 || !hasSidecar)) ||
    (version === 1 ? slot !== 0 : slot > 1 || b.length !== STATE_V2_BYTES) ||
    imageBytes < 0 ||
    imageBytes % pageSize !== 0 ||
    appliedEpoch < 0 ||
    appliedSeq < 0 ||
    sidecarBytes < 0 ||
    (version === 1 && sidecarBytes !== b.length - STATE_HEAD_BYTES - DIGEST_BYTES) ||
    (!hasSidecar && sidecarBytes !== 0)
  ) {
    throw bad('a field is out of range', { flags, imageBytes, appliedEpoch, appliedSeq, sidecarBytes });
  }
  let sidecar: DecodedState['sidecar'] = null;
  if (hasSidecar) {
    sidecar =
      version === 1
        ? Buffer.from(b.subarray(STATE_HEAD_BYTES, STATE_HEAD_BYTES + sidecarBytes))
        : {
            slot,
            bytes: sidecarBytes,
            digest: Buffer.from(b.subarray(STATE_HEAD_BYTES, STATE_HEAD_BYTES + DIGEST_BYTES)),
          };
  }
  return {
    pageSize,
    sessionId: (flags & STATE_HAS_SESSION) === 0 ? null : b.toString('hex', 24, 24 + SESSION_BYTES),
    imageBytes,
    appliedEpoch: (flags & STATE_HAS_APPLIED) === 0 ? null : appliedEpoch,
    appliedSeq,
    sidecar,
    retainedInSidecar: (flags & STATE_RETAINED_IN_SIDECAR) !== 0,
  };
}

/**
 * The digest of a sidecar (docs/replica-store.md §4): SHA-256 over its bytes cut into blocks of the
 * page size, each whole block entering as its 8-byte page hash, the last partial one as it is.
 * Fed part by part, wherever the parts' boundaries fall.
 */
class SidecarHash {
  private readonly hash: RecordHash;
  private readonly block: Buffer;
  private fill = 0;

  constructor(private readonly pageSize: number) {
    this.hash = new RecordHash(pageSize);
    this.block = Buffer.allocUnsafe(pageSize);
  }

  update(part: Uint8Array): this {
    const ps = this.pageSize;
    let at = 0;
    while (at < part.length) {
      if (this.fill === 0 && part.length - at >= ps) {
        const whole = part.length - at - ((part.length - at) % ps);
        this.hash.pages(part.subarray(at, at + whole));
        at += whole;
        continue;
      }
      const n = Math.min(ps - this.fill, part.length - at);
      this.block.set(part.subarray(at, at + n), this.fill);
      this.fill += n;
      at += n;
      if (this.fill === ps) {
        this.hash.pages(this.block);
        this.fill = 0;
      }
    }
    return this;
  }

  digest(): Buffer {
    if (this.fill > 0) this.hash.update(this.block.subarray(0, this.fill));
    return this.hash.digest();
  }
}

async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/**
 * Replace the state file atomically: temp file, fsync, rename, fsync the directory (the fsyncs only
 * when `fsync`). `fault` marks the steps for the crash tests.
 */
async function writeStateFile(
  dir: string,
  rec: StateRecord,
  fsync: boolean,
  fault: (p: FaultPoint) => void,
): Promise<void> {
  const tmp = join(dir, STATE_TEMP_FILE);
  const fh = await open(tmp, 'w', 0o600);
  try {
    await writevAll(fh, [encodeState(rec)], 0);
    if (fsync) await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, join(dir, STATE_FILE));
  fault('checkpoint:after-rename');
  if (fsync) await syncDir(dir);
  fault('checkpoint:after-dir-fsync');
}

/** A sidecar written into its slot file, not yet synced. */
interface WrittenSidecar {
  fh: FileHandle;
  /** The slot file did not exist before (its name needs a directory fsync). */
  created: boolean;
  slot: number;
  bytes: number;
  digest: Buffer;
}

/**
 * `path` open for reading and writing, made (mode 0600) when missing; `created` says whether it was
 * (its name then needs a directory fsync).
 */
async function openOrCreate(path: string): Promise<{ fh: FileHandle; created: boolean }> {
  try {
    return { fh: await open(path, constants.O_RDWR), created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return {
      fh: await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600),
      created: true,
    };
  }
}

/**
 * Write `parts` as the sidecar into slot file `slot` from byte 0, reusing the file (overwriting
 * allocated blocks costs the file system far less than filling a new file), cut to its length, and
 * hash it meanwhile. Not synced.
 */
async function writeSidecar(
  dir: string,
  slot: number,
  parts: readonly Uint8Array[],
  pageSize: number,
): Promise<WrittenSidecar> {
  const path = join(dir, sidecarFile(slot));
  const { fh, created } = await openOrCreate(path);
  try {
    const bytes = totalBytes(parts);
    const writing = writevAll(fh, [...parts], 0);
    writing.catch(() => {});
    const hash = new SidecarHash(pageSize);
    for (const part of parts) hash.update(part);
    const digest = hash.digest();
    await writing;
    if ((await fh.stat()).size > bytes) await fh.truncate(bytes);
    return { fh, created, slot, bytes, digest };
  } catch (err) {
    await fh.close().catch(() => {});
    throw err;
  }
}

/**
 * Zeros written from the end of `path` up to `bytes`; not synced. Creates the file when missing, and
 * says so (its name then needs a directory fsync).
 */
async function extendWithZeros(path: string, bytes: number): Promise<boolean> {
  const { fh, created } = await openOrCreate(path);
  try {
    const zeros = Buffer.alloc(Math.min(bytes, 2 ** 20));
    for (let at = (await fh.stat()).size; at < bytes; ) {
      const { bytesWritten } = await fh.write(zeros, 0, Math.min(zeros.length, bytes - at), at);
      at += bytesWritten;
    }
  } finally {
    await fh.close();
  }
  return created;
}

/** Read and verify the sidecar a version 2 state names. */
async function readSidecar(
  dir: string,
  ref: { slot: number; bytes: number; digest: Buffer },
  pageSize: number,
): Promise<Buffer> {
  const path = join(dir, sidecarFile(ref.slot));
  const bad = (why: string) => damaged(`sidecar file ${path}: ${why}`, { path, bytes: ref.bytes });
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw bad('missing');
    throw ioError(err, 'open', path);
  }
  try {
    const b = Buffer.allocUnsafe(ref.bytes);
    if ((await readFully(fh, b, ref.bytes, 0)) !== ref.bytes) throw bad('shorter than the state says');
    if (!new SidecarHash(pageSize).update(b).digest().equals(ref.digest)) throw bad('checksum mismatch');
    return b;
  } finally {
    await fh.close();
  }
}

/** Why epoch `epoch` cannot follow `st`, or null when it can (the beginEpoch rules). */
function epochProblem(
  st: Live,
  epoch: number,
  full: boolean,
  imageBytes: number,
  sessionId: string,
): string | null {
  const same = st.sessionId === sessionId;
  if (full && !same) return null;
  if (!same) {
    return st.sessionId === null
      ? `epoch ${epoch}: an empty store needs a full epoch first`
      : `epoch ${epoch} of session ${sessionId}: the store follows session ${st.sessionId} (only a full epoch starts a new session)`;
  }
  if (st.committedEpoch !== null && epoch <= st.committedEpoch) {
    return `epoch ${epoch} does not follow committed epoch ${st.committedEpoch}`;
  }
  if (!full && imageBytes !== st.imageBytes) {
    return `epoch ${epoch}: image size ${imageBytes} differs from the replica's ${st.imageBytes} (only a full epoch resizes it)`;
  }
  return null;
}

async function sizeOf(path: string): Promise<number | null> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw ioError(err, 'stat', path);
  }
}

/** An epoch between beginEpoch and the end of its commit or abort. */
class OpenEpoch {
  status: 'open' | 'committing' | 'closing' = 'open';
  readonly pages = new PageList();
  /** Segments already written to the journal. */
  readonly spilled: SegmentInfo[] = [];
  /** First page of the segment being staged. */
  segFirst = 0;
  /** Data pages staged (at the start of the staging buffer, or the last ones of `views`). */
  segData = 0;
  /** Data pages in segments already written. */
  dataSpilled = 0;
  /** The data pages added, when the epoch borrows them ({@link EpochOptions.borrow}). */
  views: Uint8Array[] | null = null;
  /** The commit retains the borrowed pages instead of writing them ({@link EpochOptions.retain}). */
  retains = false;
  /** Journal offset of the next byte of the record. */
  pos: number;
  headerWritten = false;
  payload: Uint8Array[] | null = null;
  readonly hash: RecordHash;

  constructor(
    readonly header: RecordHeader,
    readonly start: number,
  ) {
    this.pos = start;
    this.hash = new RecordHash(header.pageSize);
  }
}

/** A replica kept consistent at the last committed epoch, with its journal and state. */
export class ReplicaStore {
  private readonly dir: string;
  private readonly pageSize: number;
  private readonly fsync: boolean;
  private readonly stagingCap: number;
  private readonly checkpointBytes: number;
  private readonly faults: ((p: FaultPoint) => void) | undefined;
  private readonly replayer: StoreOptions['replayer'];
  private readonly live: Live;
  private readonly zeroPage: Buffer;
  private staging: Buffer;
  private seen: Uint8Array | Set<number> = new Set();
  private current: OpenEpoch | null = null;
  /** Committed pages not yet written to the replica, and where their bytes are (write-back). */
  private readonly retained = new Set<number>();
  private retainSource: ((pfn: number) => Uint8Array | undefined) | null = null;
  /** A commit, abort or checkpoint in progress (settles, never rejects). */
  private pending: Promise<void> | null = null;
  /**
   * The second half of a checkpoint, running while epochs are committed (settles, never rejects):
   * it syncs the replica, installs the state file and removes the retired journal.
   */
  private background: Promise<void> | null = null;
  /** The same, as it runs (rejects with its error), for {@link checkpoint} to wait on. */
  private backgroundWork: Promise<void> | null = null;
  /** {@link prepareSidecars} at work (settles, never rejects). */
  private preparing: Promise<void> | null = null;
  /** How long the steps of the last checkpoint took (null before the first one). */
  checkpointTimes: CheckpointTimes | null = null;
  /** The sidecar slot file the installed state names (null: none, or a version 1 state). */
  private sidecarSlot: number | null;
  private failure: unknown;
  private failed = false;
  private closed = false;

  private constructor(
    o: ResolvedOptions,
    private journal: FileHandle,
    private readonly replica: FileHandle,
    p: Persisted,
    /**
     * The retired journal ({@link JOURNAL_PREV_FILE}) while its records may still be needed: until
     * the checkpoint that retired it installs its state, or, found at open with records after the
     * checkpoint, until the next checkpoint.
     */
    private prev: FileHandle | null,
  ) {
    this.dir = o.dir;
    this.pageSize = o.pageSize;
    this.fsync = o.fsync;
    this.stagingCap = Math.floor(o.stagingBytes / o.pageSize) * o.pageSize;
    this.checkpointBytes = o.checkpointBytes;
    this.replayer = o.replayer;
    this.faults = o.faults;
    this.zeroPage = Buffer.alloc(o.pageSize);
    this.sidecarSlot = p.sidecarSlot;
    this.staging = Buffer.allocUnsafe(Math.min(this.stagingCap, STAGING_START_PAGES * o.pageSize));
    this.live = {
      sessionId: p.sessionId,
      imageBytes: p.imageBytes,
      appliedEpoch: p.appliedEpoch,
      appliedSeq: p.appliedSeq,
      committedEpoch: p.appliedEpoch,
      lastSeq: p.appliedSeq,
      journalEnd: 0,
    };
  }

  /**
   * Open (or create) the store in `options.dir` and recover it: validate the state file, replay the
   * journal's complete records after the last checkpoint onto the replica, cut a torn tail.
   *
   * Errors: `RWAN_ERR_INVALID_VALUE` (options), `RWAN_ERR_STORE` (another page size, a damaged state
   * file, a damaged journal record followed by more records, a missing replica), `RWAN_ERR_IO`.
   */
  static async open(options: StoreOptions): Promise<{ store: ReplicaStore; recovery: RecoveryReport }> {
    const { pageSize } = options;
    if (!isPageSize(pageSize)) {
      throw invalid(`page size ${pageSize}: expected a power of two from 512 to 65536`, { pageSize });
    }
    const stagingBytes = options.stagingBytes ?? DEFAULT_STAGING_BYTES;
    if (!Number.isSafeInteger(stagingBytes) || stagingBytes < pageSize) {
      throw invalid(`stagingBytes ${stagingBytes}: expected an integer of at least one page (${pageSize})`, {
        stagingBytes,
      });
    }
    const checkpointBytes = options.checkpointBytes ?? DEFAULT_CHECKPOINT_BYTES;
    if (!Number.isSafeInteger(checkpointBytes) || checkpointBytes < 0) {
      throw invalid(`checkpointBytes ${checkpointBytes}: expected a non-negative integer`, {
        checkpointBytes,
      });
    }
    const dir = resolve(options.dir);
    const o: ResolvedOptions = {
      dir,
      pageSize,
      fsync: options.fsync ?? true,
      stagingBytes,
      checkpointBytes,
      replayer: options.replayer,
      faults: options.faults,
    };
    const statePath = join(dir, STATE_FILE);
    const journalPath = join(dir, JOURNAL_FILE);
    const replicaPath = join(dir, REPLICA_FILE);
    try {
      const made = await mkdir(dir, { recursive: true, mode: 0o700 });
      if (made !== undefined && o.fsync) {
        // make the new directories' entries durable, innermost first
        for (let d = dir; ; d = dirname(d)) {
          await syncDir(dirname(d));
          if (d === made || dirname(d) === d) break;
        }
      }
      await rm(join(dir, STATE_TEMP_FILE), { force: true });
    } catch (err) {
      throw ioError(err, 'prepare', dir);
    }
    let bytes: Buffer | null;
    try {
      bytes = await readFile(statePath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(err, 'read', statePath);
      bytes = null;
    }
    const journalSize = await sizeOf(journalPath);
    const prevSize = await sizeOf(join(dir, JOURNAL_PREV_FILE));
    const replicaSize = await sizeOf(replicaPath);
    let p: Persisted;
    if (bytes === null) {
      if ((journalSize ?? 0) > 0 || (prevSize ?? 0) > 0 || (replicaSize ?? 0) > 0) {
        throw damaged(`store ${dir}: ${STATE_FILE} is missing but the journal or replica holds data`, {
          dir,
        });
      }
      const empty = { pageSize, sessionId: null, imageBytes: 0, appliedEpoch: null, appliedSeq: 0 };
      p = { ...empty, sidecar: null, sidecarSlot: null, retainedInSidecar: false };
      try {
        await writeStateFile(dir, { ...empty, sidecar: null, retainedInSidecar: false }, o.fsync, () => {});
      } catch (err) {
        throw ioError(err, 'create', statePath);
      }
    } else {
      const d = decodeState(bytes, statePath, pageSize);
      const ref = d.sidecar === null || Buffer.isBuffer(d.sidecar) ? null : d.sidecar;
      let sidecar: Buffer | null;
      try {
        sidecar = ref === null ? (d.sidecar as Buffer | null) : await readSidecar(dir, ref, pageSize);
      } catch (err) {
        throw ioError(err, 'read', join(dir, sidecarFile(ref?.slot ?? 0)));
      }
      p = { ...d, sidecar, sidecarSlot: ref?.slot ?? null };
      if (replicaSize === null && p.imageBytes > 0) {
        throw damaged(`store ${dir}: ${REPLICA_FILE} is missing`, { dir, imageBytes: p.imageBytes });
      }
    }
    const rw = constants.O_RDWR | constants.O_CREAT;
    let journal: FileHandle | undefined;
    let replica: FileHandle | undefined;
    let prev: FileHandle | null = null;
    try {
      journal = await open(journalPath, rw, 0o600);
      replica = await open(replicaPath, rw, 0o600);
      if (prevSize !== null) prev = await open(join(dir, JOURNAL_PREV_FILE), 'r');
      if (o.fsync && (journalSize === null || replicaSize === null)) await syncDir(dir);
    } catch (err) {
      await journal?.close().catch(() => {});
      await replica?.close().catch(() => {});
      await prev?.close().catch(() => {});
      throw ioError(err, 'open', dir);
    }
    const store = new ReplicaStore(o, journal, replica, p, prev);
    try {
      const recovery = await store.recover(p);
      return { store, recovery };
    } catch (err) {
      await store.closeFiles().catch(() => {});
      throw ioError(err, 'recover', journalPath);
    }
  }

  /** A snapshot of what the store holds. */
  get state(): StoreState {
    const s = this.live;
    return {
      sessionId: s.sessionId,
      imageBytes: s.imageBytes,
      appliedEpoch: s.appliedEpoch,
      committedEpoch: s.committedEpoch,
    };
  }

  /**
   * Time to call {@link beginCheckpoint}: the journal holds more than `checkpointBytes`, or open()
   * found a retired journal with epochs after the checkpoint. False while a checkpoint runs.
   */
  get checkpointDue(): boolean {
    if (this.pending !== null || this.background !== null) return false;
    return this.prev !== null || this.live.journalEnd > this.checkpointBytes;
  }

  /** Path of the replica file (for readers that want the whole image; write it only through the store). */
  get replicaPath(): string {
    return join(this.dir, REPLICA_FILE);
  }

  /**
   * Open epoch `epoch`. It needs `epoch > committedEpoch` and the store's session and image size,
   * except a full epoch of another session (a new sender session restarts the numbering). One epoch
   * at a time; not during a checkpoint. Errors: `RWAN_ERR_INVALID_VALUE`.
   */
  beginEpoch(epoch: number, o: EpochOptions): EpochWriter {
    this.usable();
    if (this.current !== null) throw invalid(`epoch ${this.current.header.epoch} is still open`);
    if (this.pending !== null) throw invalid('a checkpoint or the end of a commit is in progress');
    if (!Number.isSafeInteger(epoch) || epoch < 0) {
      throw invalid(`epoch ${epoch}: expected a safe integer ≥ 0`);
    }
    const { full, imageBytes } = o;
    if (!Number.isSafeInteger(imageBytes) || imageBytes < 0 || imageBytes % this.pageSize !== 0) {
      throw invalid(`image size ${imageBytes}: expected a multiple of the page size ${this.pageSize}`, {
        imageBytes,
      });
    }
    if (typeof o.sessionId !== 'string' || !SESSION_RE.test(o.sessionId)) {
      throw invalid(`session id ${String(o.sessionId)}: expected 32 hex characters`);
    }
    const sessionId = o.sessionId.toLowerCase();
    const problem = epochProblem(this.live, epoch, full, imageBytes, sessionId);
    if (problem !== null) throw invalid(problem, { epoch, sessionId, imageBytes, full });
    this.prepareSeen(imageBytes / this.pageSize);
    const e = new OpenEpoch(
      {
        seq: this.live.lastSeq + 1,
        epoch,
        full,
        payload: false,
        pageSize: this.pageSize,
        imageBytes,
        sessionId,
      },
      this.live.journalEnd,
    );
    if (o.borrow === true) e.views = [];
    if (o.borrow === true && o.retain !== undefined && !full) {
      e.retains = true;
      this.retainSource = o.retain;
    }
    this.current = e;
    return {
      epoch,
      addPage: (pfn, page) => this.addPage(e, pfn, page),
      setPayload: (parts) => {
        this.usable();
        if (e.status !== 'open') throw invalid(`epoch ${e.header.epoch} is no longer open`);
        e.payload = [...parts];
      },
      commit: () => this.commit(e),
      abort: () => this.abort(e),
    };
  }

  /** Committed pages that are not yet in the replica file ({@link EpochOptions.retain}). */
  get retainedPages(): number {
    return this.retained.size;
  }

  /**
   * The caller is about to drop or reuse retained page `pfn`, whose committed bytes are `page`:
   * write them to the replica now (nothing when the page is not retained). Synchronous.
   * Errors: `RWAN_ERR_IO` (the store is failed afterwards).
   */
  writeBack(pfn: number, page: Uint8Array): void {
    if (!this.retained.has(pfn)) return;
    this.usable();
    try {
      writevAllSync(this.replica.fd, [page], pfn * this.pageSize);
    } catch (err) {
      throw this.fail(err, 'write-back');
    }
    this.retained.delete(pfn);
  }

  /**
   * Write every retained page to the replica (synchronously, in pfn order): the replica file then
   * holds the last committed epoch (for a failover, or a reader of the file). Not while the caller
   * produces an epoch that changed retained pages. Errors: `RWAN_ERR_IO`.
   */
  flushRetained(): void {
    if (this.retained.size === 0) return;
    this.usable();
    try {
      this.writeRetained();
    } catch (err) {
      throw this.fail(err, 'write-back');
    }
  }

  /**
   * The image digest (image-digest.ts) of the replica as of the last committed epoch, retained pages
   * included, without writing them.
   */
  async digest(): Promise<string> {
    this.usable();
    if (this.pending !== null) await this.pending;
    this.usable();
    const ps = this.pageSize;
    const size = this.live.imageBytes;
    const d = new ImageDigest();
    const buf = Buffer.allocUnsafe(Math.min(size, MAX_READ_BLOCK_BYTES));
    const retained = Float64Array.from(this.retained).sort();
    let k = 0;
    try {
      for (let at = 0; at < size; ) {
        const n = Math.min(buf.length, size - at);
        const got = await readFully(this.replica, buf, n, at);
        buf.fill(0, got, n);
        for (; k < retained.length && (retained[k] as number) * ps < at + n; k++) {
          buf.set(this.retainedPage(retained[k] as number), (retained[k] as number) * ps - at);
        }
        d.update(buf.subarray(0, n));
        at += n;
      }
    } catch (err) {
      if (isRwanError(err)) throw err;
      throw ioError(err, 'read', this.replicaPath);
    }
    return d.hex();
  }

  /**
   * Make everything committed durable in the replica and start an empty journal: a whole
   * {@link beginCheckpoint}, both halves. Afterwards `appliedEpoch` is the `committedEpoch` of the
   * call (epochs committed meanwhile stay in the journal).
   */
  async checkpoint(
    sidecar: Uint8Array | readonly Uint8Array[] | null,
    o: CheckpointOptions = {},
  ): Promise<void> {
    await this.beginCheckpoint(sidecar, o);
    const rest = this.backgroundWork;
    if (rest !== null) await rest;
  }

  /**
   * Start a checkpoint at `committedEpoch` (docs/replica-store.md §6). Resolves once the retained
   * pages (unless `o.retainedInSidecar`) and `sidecar` (returned by the next {@link open} as one
   * buffer) are written (not synced) and the journal is retired (renamed, a fresh one opened): from
   * then on the sidecar's bytes may change and epochs may be committed. The rest (fsync the replica
   * and the sidecar, install the state file, remove the retired journal) runs in the background;
   * {@link checkpoint} waits for it, `close()` too, and a failure there fails the store (the next
   * call says so). `sidecar` is written as given, not copied: leave its bytes unchanged until this
   * resolves. Not while an epoch is open.
   */
  async beginCheckpoint(
    sidecar: Uint8Array | readonly Uint8Array[] | null,
    o: CheckpointOptions = {},
  ): Promise<void> {
    this.usable();
    if (this.current !== null) throw invalid(`epoch ${this.current.header.epoch} is open`);
    if (this.pending !== null) throw invalid('a checkpoint or the end of a commit is in progress');
    const keep = o.retainedInSidecar === true;
    if (keep && sidecar === null) throw invalid('retainedInSidecar needs a sidecar');
    const parts = sidecar === null ? null : sidecar instanceof Uint8Array ? [sidecar] : [...sidecar];
    await this.track(this.checkpointSteps(parts, keep));
  }

  /**
   * Page `pfn` of the replica as of `committedEpoch` into `into` (`pageSize` bytes); zeros past the
   * end of the image. Waits for a commit in progress.
   */
  async readPage(pfn: number, into: Uint8Array): Promise<void> {
    this.usable();
    if (!Number.isSafeInteger(pfn) || pfn < 0) throw invalid(`pfn ${pfn}: expected a safe integer ≥ 0`);
    if (into.length !== this.pageSize) {
      throw invalid(`page buffer of ${into.length} bytes: expected ${this.pageSize}`);
    }
    if (this.pending !== null) await this.pending;
    this.usable();
    const pos = pfn * this.pageSize;
    if (pos >= this.live.imageBytes) {
      into.fill(0);
      return;
    }
    if (this.retained.has(pfn)) {
      into.set(this.retainedPage(pfn));
      return;
    }
    let got: number;
    try {
      got = await readFully(this.replica, into, this.pageSize, pos);
    } catch (err) {
      throw ioError(err, 'read', this.replicaPath);
    }
    if (got < this.pageSize) into.fill(0, got);
  }

  /**
   * Close the files. An open epoch is dropped (as by abort), a commit in progress is waited for. Does
   * not checkpoint. Safe to call on a store whose last operation failed.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    const e = this.current;
    if (e !== null && e.status === 'open') await this.abort(e).catch(() => {});
    if (this.pending !== null) await this.pending;
    if (this.background !== null) await this.background;
    if (this.preparing !== null) await this.preparing;
    this.closed = true;
    await this.closeFiles();
  }

  /**
   * Extend both sidecar slot files to at least `bytes` (zeros written past their ends), in the
   * background: the first two checkpoints then overwrite allocated blocks rather than allocate them
   * (a 64 MiB sidecar: 82–101 ms against 151–395 ms, the stall of the epochs waiting behind it).
   * Only past a file's end, so an installed sidecar is never touched. A checkpoint waits for it;
   * a failure is ignored (the checkpoint then allocates as it writes). Resolves when done.
   */
  prepareSidecars(bytes: number): Promise<void> {
    this.usable();
    if (!Number.isSafeInteger(bytes) || bytes < 0)
      throw invalid(`sidecar bytes ${bytes}: expected an integer ≥ 0`);
    const previous = this.preparing ?? Promise.resolve();
    const work = previous.then(async () => {
      let created = false;
      for (const slot of [0, 1]) {
        if (await extendWithZeros(join(this.dir, sidecarFile(slot)), bytes)) created = true;
      }
      // a checkpoint that finds the file does not sync its name: this does
      if (created && this.fsync) await syncDir(this.dir);
    });
    this.preparing = work.catch(() => {});
    return this.preparing;
  }

  private async closeFiles(): Promise<void> {
    const files = [this.journal, this.replica, ...(this.prev === null ? [] : [this.prev])];
    const results = await Promise.allSettled(files.map((f) => f.close()));
    for (const r of results) if (r.status === 'rejected') throw ioError(r.reason, 'close', this.dir);
  }

  private usable(): void {
    if (this.closed) throw invalid('the replica store is closed');
    if (this.failed) {
      throw new RwanError(
        'RWAN_ERR_STORE',
        'an earlier write to the replica store failed: reopen it to recover',
        {
          cause: this.failure,
          details: { dir: this.dir },
        },
      );
    }
  }

  /** The committed bytes of retained page `pfn`, from the caller ({@link EpochOptions.retain}). */
  private retainedPage(pfn: number): Uint8Array {
    const page = this.retainSource?.(pfn);
    if (page === undefined || page.length !== this.pageSize) {
      throw new RwanError('RWAN_ERR_INTERNAL', `retained page ${pfn} is not available to write`, {
        details: { pfn },
      });
    }
    return page;
  }

  /** Write the retained pages to the replica, in pfn order, and retain none. */
  private writeRetained(): void {
    if (this.retained.size === 0) return;
    const runs: WriteRun[] = [];
    for (const pfn of Float64Array.from(this.retained).sort()) {
      pushRun(runs, pfn, this.retainedPage(pfn), this.pageSize);
    }
    for (const run of runs) writevAllSync(this.replica.fd, run.bufs, run.pos);
    this.retained.clear();
  }

  /** Record a failure (the store then refuses work until reopened) and return it as our error. */
  private fail(err: unknown, op: string): RwanError {
    if (!this.failed) {
      this.failed = true;
      this.failure = err;
    }
    return ioError(err, op, this.dir);
  }

  private fault(point: FaultPoint): void {
    this.faults?.(point);
  }

  /** Run `work` as the pending operation (readPage, close and beginEpoch wait for or refuse it). */
  private async track(work: Promise<void>): Promise<void> {
    const settled = work.then(
      () => {},
      () => {},
    );
    this.pending = settled;
    try {
      await work;
    } finally {
      if (this.pending === settled) this.pending = null;
    }
  }

  private prepareSeen(imagePages: number): void {
    if (imagePages <= BITMAP_MAX_PAGES) {
      const need = Math.ceil(imagePages / 8);
      if (!(this.seen instanceof Uint8Array) || this.seen.length < need) this.seen = new Uint8Array(need);
    } else if (!(this.seen instanceof Set)) {
      this.seen = new Set();
    }
  }

  /**
   * An epoch's commit or abort is over: forget its pfns and borrowed pages, and give back a staging
   * buffer that a large epoch grew (it would otherwise stay allocated for good).
   */
  private settle(e: OpenEpoch): void {
    this.clearSeen(e);
    e.views = null;
    this.current = null;
    const small = Math.min(this.stagingCap, STAGING_START_PAGES * this.pageSize);
    if (this.staging.length > Math.max(small, STAGING_KEEP_BYTES)) this.staging = Buffer.allocUnsafe(small);
  }

  private clearSeen(e: OpenEpoch): void {
    const seen = this.seen;
    if (seen instanceof Set) {
      seen.clear();
      return;
    }
    if (e.pages.count * 8 > seen.length) {
      seen.fill(0);
      return;
    }
    for (let i = 0; i < e.pages.count; i++) seen[Math.floor((e.pages.pfns[i] as number) / 8)] = 0;
  }

  private addPage(e: OpenEpoch, pfn: number, page: Uint8Array | null): void {
    this.usable();
    if (e.status !== 'open') throw invalid(`epoch ${e.header.epoch} is no longer open`);
    const ps = this.pageSize;
    if (!Number.isSafeInteger(pfn) || pfn < 0 || pfn * ps >= e.header.imageBytes) {
      throw invalid(`pfn ${pfn} is outside the image (${e.header.imageBytes / ps} pages)`, {
        pfn,
        imageBytes: e.header.imageBytes,
      });
    }
    if (page !== null && page.length !== ps) {
      throw invalid(`page of ${page.length} bytes: expected ${ps}`, { pfn, length: page.length });
    }
    const seen = this.seen;
    if (seen instanceof Set) {
      if (seen.has(pfn)) throw invalid(`pfn ${pfn} added twice in epoch ${e.header.epoch}`, { pfn });
      seen.add(pfn);
    } else {
      const byte = Math.floor(pfn / 8);
      const bit = 1 << (pfn % 8);
      if (((seen[byte] as number) & bit) !== 0) {
        throw invalid(`pfn ${pfn} added twice in epoch ${e.header.epoch}`, { pfn });
      }
      seen[byte] = (seen[byte] as number) | bit;
    }
    if (page !== null) {
      if (e.views !== null) e.views.push(page);
      else {
        if ((e.segData + 1) * ps > this.stagingCap) this.spill(e);
        this.growStaging((e.segData + 1) * ps);
        this.staging.set(page, e.segData * ps);
      }
      e.segData++;
    }
    e.pages.push(pfn, page === null ? KIND_ZERO : KIND_DATA);
    if (e.pages.count - e.segFirst >= MAX_SEGMENT_PAGES) this.spill(e);
  }

  /** Grow the staging buffer (keeping its content) to hold at least `bytes` (≤ stagingCap). */
  private growStaging(bytes: number): Buffer {
    if (this.staging.length < bytes) {
      const next = Buffer.allocUnsafe(Math.min(this.stagingCap, Math.max(bytes, 2 * this.staging.length)));
      this.staging.copy(next);
      this.staging = next;
    }
    return this.staging;
  }

  /**
   * The buffers that write what is staged: the header if not yet written, then the staged segment
   * (its index block and data slice). Feeds them to the record hash; the segment is recorded in
   * `spilled` with its data offset when `spilling`. Returns the buffers and the staged segment.
   */
  private stagedBuffers(e: OpenEpoch, spilling: boolean): { bufs: Uint8Array[]; staged: SegmentInfo | null } {
    const bufs: Uint8Array[] = [];
    let at = e.pos;
    if (!e.headerWritten) {
      const h = encodeHeader(e.header);
      e.hash.update(h);
      bufs.push(h);
      e.headerWritten = true;
      at += HEADER_BYTES;
    }
    const n = e.pages.count - e.segFirst;
    if (n === 0) return { bufs, staged: null };
    const index = encodeSegmentIndex(e.pages.pfns, e.pages.kinds, e.segFirst, e.pages.count, e.segData);
    e.hash.update(index);
    bufs.push(index);
    at += index.length;
    const staged = { first: e.segFirst, pages: n, dataPages: e.segData, dataOffset: at };
    if (e.views !== null) {
      for (const page of e.views.slice(e.dataSpilled, e.dataSpilled + e.segData)) {
        e.hash.pages(page);
        bufs.push(page);
      }
    } else if (e.segData > 0) {
      const data = this.staging.subarray(0, e.segData * this.pageSize);
      e.hash.pages(data);
      bufs.push(data);
    }
    if (spilling) {
      e.spilled.push(staged);
      e.segFirst = e.pages.count;
      e.dataSpilled += e.segData;
      e.segData = 0;
    }
    return { bufs, staged };
  }

  /**
   * The buffers of a payload record (header, payload head, the payload, padding), fed to the record
   * hash, and the staged pages as one segment to apply from memory (not written).
   */
  private payloadBuffers(
    e: OpenEpoch,
    payload: Uint8Array[],
  ): { bufs: Uint8Array[]; staged: SegmentInfo | null } {
    const length = totalBytes(payload);
    const h = encodeHeader(e.header);
    const head = encodePayloadHead(length);
    const pad = Buffer.alloc(pad8(length) - length);
    const bufs: Uint8Array[] = [h, head, ...payload, pad];
    e.headerWritten = true;
    e.hash.update(h).update(head);
    for (const part of payload) e.hash.update(part);
    e.hash.update(pad);
    const n = e.pages.count - e.segFirst;
    const staged = n === 0 ? null : { first: e.segFirst, pages: n, dataPages: e.segData, dataOffset: -1 };
    return { bufs, staged };
  }

  /** Append the staged segment to the journal now (synchronously: addPage is synchronous). */
  private spill(e: OpenEpoch): void {
    try {
      this.fault('spill:before-write');
      const { bufs } = this.stagedBuffers(e, true);
      writevAllSync(this.journal.fd, bufs, e.pos);
      e.pos += totalBytes(bufs);
      this.fault('spill:after-write');
    } catch (err) {
      throw this.fail(err, 'spill');
    }
  }

  private async commit(e: OpenEpoch): Promise<void> {
    this.usable();
    if (e.status !== 'open') throw invalid(`epoch ${e.header.epoch} is no longer open`);
    e.status = 'committing';
    await this.track(this.commitSteps(e));
  }

  private async commitSteps(e: OpenEpoch): Promise<void> {
    const h = e.header;
    try {
      this.fault('commit:before-write');
      // the payload stands for the pages unless some of them are in the journal already
      const payload = e.payload !== null && !e.headerWritten ? e.payload : null;
      h.payload = payload !== null;
      const { bufs, staged } =
        payload === null ? this.stagedBuffers(e, false) : this.payloadBuffers(e, payload);
      const end = e.pos + totalBytes(bufs) + TRAILER_BYTES;
      const segments = payload !== null ? 0 : e.spilled.length + (staged === null ? 0 : 1);
      const pageCount = payload !== null ? 0 : e.pages.count;
      bufs.push(encodeTrailer(segments, pageCount, end - e.start, h.seq, e.hash));
      await writevAll(this.journal, bufs, e.pos);
      e.pos = end;
      this.fault('commit:after-write');
      if (this.fsync) await this.journal.datasync();
      this.fault('commit:after-fsync');
      this.live.lastSeq = h.seq;
      this.live.journalEnd = end;
      const { pfns, kinds } = e.pages;
      const views = e.views;
      const ps = this.pageSize;
      const page =
        views !== null
          ? (d: number) => views[e.dataSpilled + d] as Uint8Array
          : (d: number) => this.staging.subarray(d * ps, (d + 1) * ps);
      await this.apply(
        {
          full: h.full,
          imageBytes: h.imageBytes,
          pfns,
          kinds,
          segments: payload === null ? e.spilled : [],
          retains: e.retains,
        },
        staged === null ? null : { seg: staged, page },
        'commit:mid-apply',
      );
      this.fault('commit:after-apply');
      this.live.committedEpoch = h.epoch;
      this.live.sessionId = h.sessionId;
      this.live.imageBytes = h.imageBytes;
    } catch (err) {
      throw this.fail(err, `commit of epoch ${h.epoch}`);
    } finally {
      this.settle(e);
    }
  }

  private async abort(e: OpenEpoch): Promise<void> {
    if (e.status !== 'open') throw invalid(`epoch ${e.header.epoch} is no longer open`);
    e.status = 'closing';
    const work = async (): Promise<void> => {
      try {
        if (e.headerWritten && !this.failed && !this.closed) await this.journal.truncate(e.start);
      } catch (err) {
        throw this.fail(err, `abort of epoch ${e.header.epoch}`);
      } finally {
        this.settle(e);
      }
    };
    await this.track(work());
  }

  private async checkpointSteps(sidecar: readonly Uint8Array[] | null, keep: boolean): Promise<void> {
    if (this.preparing !== null) await this.preparing;
    if (this.background !== null) await this.background;
    this.usable();
    const s = this.live;
    const dir = this.dir;
    const fault = (point: FaultPoint) => this.fault(point);
    const times: CheckpointTimes = { retainedMs: 0, sidecarMs: 0, rotateMs: 0, backgroundMs: null };
    this.checkpointTimes = times;
    let mark = performance.now();
    const lap = () => {
      const now = performance.now();
      const ms = now - mark;
      mark = now;
      return ms;
    };
    const target = { appliedEpoch: s.committedEpoch, appliedSeq: s.lastSeq };
    let written: WrittenSidecar | null = null;
    /** The rest of the checkpoint once its sidecar is written: sync, install the state. */
    const install = async (w: WrittenSidecar | null) => {
      try {
        if (this.fsync) {
          await this.replica.datasync();
          await w?.fh.sync();
        }
      } finally {
        await w?.fh.close();
      }
      if (w?.created && this.fsync) await syncDir(dir);
      fault('checkpoint:after-replica-fsync');
      const rec: StateRecord = {
        pageSize: this.pageSize,
        sessionId: s.sessionId,
        imageBytes: s.imageBytes,
        ...target,
        sidecar: w === null ? null : { slot: w.slot, bytes: w.bytes, digest: w.digest },
        retainedInSidecar: keep,
      };
      await writeStateFile(dir, rec, this.fsync, fault);
      s.appliedEpoch = target.appliedEpoch;
      s.appliedSeq = target.appliedSeq;
      this.sidecarSlot = w?.slot ?? null;
      await this.retirePrev();
    };
    try {
      if (!keep) this.writeRetained();
      times.retainedMs = lap();
      fault('checkpoint:before-sidecar-write');
      if (sidecar !== null) {
        // the slot the installed state does not name (its sidecar must survive until the new state)
        written = await writeSidecar(dir, this.sidecarSlot === 0 ? 1 : 0, sidecar, this.pageSize);
      }
      times.sidecarMs = lap();
      fault('checkpoint:after-sidecar-write');
      if (this.prev !== null) {
        // open() found a retired journal still needed: no second one can be retired, so this
        // checkpoint runs whole, then empties the journal as well
        const w = written;
        written = null; // install closes it
        await install(w);
        await this.journal.truncate(0);
        if (this.fsync) await this.journal.datasync();
        s.journalEnd = 0;
        times.rotateMs = lap();
        fault('checkpoint:after-retire');
        return;
      }
      // retire the journal: its records stay readable as the previous journal until the state
      // is installed; a fresh journal takes the next commits (its name made durable first)
      await rename(join(dir, JOURNAL_FILE), join(dir, JOURNAL_PREV_FILE));
      const fresh = await open(join(dir, JOURNAL_FILE), 'wx+', 0o600);
      this.prev = this.journal;
      this.journal = fresh;
      s.journalEnd = 0;
      if (this.fsync) await syncDir(dir);
      times.rotateMs = lap();
      fault('checkpoint:after-rotate');
    } catch (err) {
      await written?.fh.close().catch(() => {});
      throw this.fail(err, 'checkpoint');
    }
    const w = written;
    // the background half starts after this microtask, so the fields below are set when it ends
    const work = Promise.resolve().then(async () => {
      try {
        await install(w);
        times.backgroundMs = lap();
        fault('checkpoint:after-retire');
      } catch (err) {
        throw this.fail(err, 'checkpoint');
      } finally {
        this.background = null;
        this.backgroundWork = null;
      }
    });
    this.backgroundWork = work;
    this.background = work.then(
      () => {},
      () => {},
    );
  }

  /** Close and remove the retired journal (its records are all covered by the state file now). */
  private async retirePrev(): Promise<void> {
    const prev = this.prev;
    if (prev === null) return;
    this.prev = null;
    await prev.close();
    await rm(join(this.dir, JOURNAL_PREV_FILE), { force: true });
  }

  /**
   * Write an epoch's pages into the replica: a full epoch first empties the file and sizes it (its
   * zero pages and the pages it did not carry are then holes, read as zeros); the staged segment
   * comes from memory (`staged.page(d)`: its d-th data page), the spilled ones are read back from the
   * journal in blocks. Pages of one epoch are distinct, so the order of the writes does not matter.
   */
  private async apply(
    p: EpochPages,
    staged: { seg: SegmentInfo; page: (d: number) => Uint8Array } | null,
    point: FaultPoint,
    replayer?: Replayer,
    journal: FileHandle = this.journal,
  ): Promise<void> {
    let armed = true;
    const afterWrite = () => {
      if (armed) {
        armed = false;
        this.fault(point);
      }
    };
    if (p.full) await this.emptyReplica(p.imageBytes);
    const ps = this.pageSize;
    if (staged !== null) {
      await this.writePages(
        p,
        staged.seg.first,
        staged.seg.first + staged.seg.pages,
        staged.page,
        afterWrite,
      );
    }
    for (const seg of p.segments) {
      const want = Math.max(ps, Math.min(this.stagingCap, MAX_READ_BLOCK_BYTES, seg.dataPages * ps));
      const buf = this.growStaging(want).subarray(0, want);
      const cap = Math.floor(want / ps);
      const end = seg.first + seg.pages;
      let dataDone = 0;
      for (let i = seg.first; i < end; ) {
        let j = i;
        let k = 0;
        while (j < end) {
          if (p.kinds[j] === KIND_DATA) {
            if (k === cap) break;
            k++;
          }
          j++;
        }
        if (k > 0) {
          const want = k * ps;
          const got = await readFully(journal, buf, want, seg.dataOffset + dataDone * ps);
          if (got !== want)
            throw damaged('journal ends inside a record being applied', { offset: seg.dataOffset });
        }
        if (replayer !== undefined) {
          for (let x = i, d = 0; x < j; x++) {
            const isData = p.kinds[x] === KIND_DATA;
            replayer.page(p.pfns[x] as number, isData ? buf.subarray(d * ps, ++d * ps) : null);
          }
        }
        await this.writePages(p, i, j, (d) => buf.subarray(d * ps, (d + 1) * ps), afterWrite);
        dataDone += k;
        i = j;
      }
    }
  }

  /**
   * pwrite pages `from..to` of `p`, whose data pages are `data(0)`, `data(1)`… in order, in batches
   * of {@link WRITE_BATCH_PAGES}: sorted by pfn, consecutive pfns in one writev. A full epoch skips
   * its zero pages (the file was emptied).
   */
  private async writePages(
    p: EpochPages,
    from: number,
    to: number,
    data: (d: number) => Uint8Array,
    afterWrite: () => void,
  ): Promise<void> {
    const ps = this.pageSize;
    let d = 0; // data pages before the batch
    for (let lo = from; lo < to; lo += WRITE_BATCH_PAGES) {
      const hi = Math.min(to, lo + WRITE_BATCH_PAGES);
      const order: number[] = [];
      const dataAt = new Int32Array(hi - lo);
      let prev = -1;
      let sorted = true;
      for (let i = lo; i < hi; i++) {
        const isData = p.kinds[i] === KIND_DATA;
        dataAt[i - lo] = isData ? d++ : -1;
        if (!isData && p.full) continue;
        const pfn = p.pfns[i] as number;
        if (p.retains === true && isData) {
          this.retained.add(pfn);
          continue;
        }
        if (this.retained.size > 0) this.retained.delete(pfn);
        if (pfn <= prev) sorted = false;
        prev = pfn;
        order.push(i);
      }
      if (!sorted) order.sort((a, b) => (p.pfns[a] as number) - (p.pfns[b] as number));
      const runs: WriteRun[] = [];
      for (const i of order) {
        const at = dataAt[i - lo] as number;
        pushRun(runs, p.pfns[i] as number, at >= 0 ? data(at) : this.zeroPage, ps);
      }
      await this.runWrites(runs, afterWrite);
    }
  }

  /**
   * Write `runs` to the replica, in order; the first error stops the rest. Synchronous writes (a
   * page-cache copy each) in slices of a few milliseconds between which the event loop runs: one
   * async writev per run costs ~15× more (a thread-pool round trip for every run of pages).
   */
  private async runWrites(runs: WriteRun[], afterWrite: () => void): Promise<void> {
    let slice = performance.now();
    for (const run of runs) {
      writevAllSync(this.replica.fd, run.bufs, run.pos);
      afterWrite();
      if (performance.now() - slice > 5) {
        await new Promise((r) => setImmediate(r));
        slice = performance.now();
      }
    }
  }

  /**
   * Scan the retired journal (if any) and the journal, replay what the checkpoint does not hold,
   * cut a torn tail off the journal.
   */
  private async recover(p: Persisted): Promise<RecoveryReport> {
    const s = this.live;
    const scan: Scan = {
      replayedEpochs: [],
      replayer: this.replayer?.(p.sidecar, p.sidecar === null ? null : p.appliedEpoch),
      stale: 0,
    };
    if (p.retainedInSidecar) await this.writeBase(p, scan.replayer);
    if (this.prev !== null) {
      const before = scan.replayedEpochs.length;
      await this.scanJournal(this.prev, join(this.dir, JOURNAL_PREV_FILE), scan, false);
      // a retired journal whose records the state file covers is left over from a checkpoint
      // that did not get to remove it
      if (scan.replayedEpochs.length === before) await this.retirePrev();
    }
    const { end, truncatedBytes } = await this.scanJournal(
      this.journal,
      join(this.dir, JOURNAL_FILE),
      scan,
      true,
    );
    let pos = end;
    if (scan.replayedEpochs.length === 0 && scan.stale > 0 && pos > 0) {
      await this.journal.truncate(0);
      if (this.fsync) await this.journal.datasync();
      pos = 0;
    }
    s.journalEnd = pos;
    const replicaBytes = (await this.replica.stat()).size;
    if (replicaBytes !== s.imageBytes) {
      throw damaged(
        `store ${this.dir}: the replica holds ${replicaBytes} bytes, the image has ${s.imageBytes}`,
        {
          dir: this.dir,
          replicaBytes,
          imageBytes: s.imageBytes,
        },
      );
    }
    return {
      replayedEpochs: scan.replayedEpochs,
      truncatedBytes,
      sidecar: p.sidecar,
      sidecarEpoch: p.sidecar === null ? null : p.appliedEpoch,
    };
  }

  /**
   * The checkpoint left its retained pages in the sidecar: write the sidecar's pages (the
   * replayer's `base`) into the replica, so that it holds the checkpoint's epoch before the journal
   * replays on top.
   */
  private async writeBase(p: Persisted, replayer: Replayer | undefined): Promise<void> {
    const where = { dir: this.dir, appliedEpoch: p.appliedEpoch };
    if (replayer?.base === undefined) {
      throw damaged(
        `store ${this.dir}: the checkpoint of epoch ${p.appliedEpoch} left its retained pages in its sidecar, which the replayer cannot restore`,
        where,
      );
    }
    const ps = this.pageSize;
    const pages = [...replayer.base()].sort((a, b) => a.pfn - b.pfn);
    const runs: WriteRun[] = [];
    for (const { pfn, page } of pages) {
      if (!Number.isSafeInteger(pfn) || pfn < 0 || (pfn + 1) * ps > p.imageBytes || page.length !== ps) {
        throw damaged(`store ${this.dir}: the sidecar's page ${pfn} does not fit the image`, {
          ...where,
          pfn,
        });
      }
      pushRun(runs, pfn, page, ps);
    }
    await this.runWrites(runs, () => this.fault('recovery:mid-apply'));
  }

  /**
   * Replay the records of one journal file after the checkpoint (docs/replica-store.md §7, step 2),
   * continuing `scan`. A torn tail is cut off when `tornTail` allows one, else it is damage.
   */
  private async scanJournal(
    fh: FileHandle,
    path: string,
    scan: Scan,
    tornTail: boolean,
  ): Promise<{ end: number; truncatedBytes: number }> {
    const s = this.live;
    const ps = this.pageSize;
    const { replayedEpochs, replayer } = scan;
    const size = (await fh.stat()).size;
    const reader = new BlockReader(fh, size, SCAN_BLOCK_BYTES);
    let pos = 0;
    while (pos < size) {
      const r = await readRecord(reader, pos, ps);
      if (!r.ok) {
        if (r.trailerEnd !== undefined && r.trailerEnd < size) {
          throw damaged(
            `journal ${path}: the record at byte ${pos} is damaged (${r.reason}) and more data follows`,
            { path, offset: pos },
          );
        }
        const later = await findRecordAfter(fh, size, pos, s.lastSeq, ps, SCAN_BLOCK_BYTES);
        if (later !== null) {
          throw damaged(
            `journal ${path}: the record at byte ${pos} is damaged (${r.reason}) but a complete record follows at byte ${later}`,
            { path, offset: pos, next: later },
          );
        }
        if (!tornTail) {
          throw damaged(`journal ${path}: the record at byte ${pos} is damaged (${r.reason})`, {
            path,
            offset: pos,
          });
        }
        await fh.truncate(pos);
        if (this.fsync) await fh.datasync();
        return { end: pos, truncatedBytes: size - pos };
      }
      const rec = r.record;
      const where = { path, offset: pos, seq: rec.seq, epoch: rec.epoch };
      if (rec.seq <= s.appliedSeq) {
        // written before the checkpoint whose journal truncation did not happen
        if (replayedEpochs.length > 0)
          throw damaged(`journal ${path}: record ${rec.seq} is out of sequence`, where);
        scan.stale++;
        pos = rec.end;
        continue;
      }
      if (rec.seq !== s.lastSeq + 1) {
        throw damaged(`journal ${path}: record ${rec.seq} follows record ${s.lastSeq}`, where);
      }
      const problem = epochProblem(s, rec.epoch, rec.full, rec.imageBytes, rec.sessionId);
      if (problem !== null) throw damaged(`journal ${path}: ${problem}`, where);
      const { epoch, full, imageBytes, sessionId } = rec;
      replayer?.begin({ epoch, full, imageBytes, sessionId });
      if (rec.payloadAt === null) await this.apply(rec, null, 'recovery:mid-apply', replayer, fh);
      else if (replayer === undefined) {
        throw damaged(
          `journal ${path}: record ${rec.seq} holds an encoded payload and no replayer was given`,
          where,
        );
      } else await this.replayPayload(rec, rec.payloadAt, replayer, where, fh);
      s.lastSeq = rec.seq;
      s.committedEpoch = rec.epoch;
      s.sessionId = rec.sessionId;
      s.imageBytes = rec.imageBytes;
      replayedEpochs.push(rec.epoch);
      pos = rec.end;
    }
    return { end: pos, truncatedBytes: 0 };
  }

  /** A full epoch's start: the replica emptied and sized (pages it does not carry are holes). */
  private async emptyReplica(imageBytes: number): Promise<void> {
    this.retained.clear();
    await this.replica.truncate(0);
    await this.replica.truncate(imageBytes);
  }

  /**
   * Replay a payload record: read the payload, let the replayer decode it, write each page it yields
   * straight into the replica (recovery only, so one synchronous pwrite per page is fine). A full
   * epoch first empties the file and sizes it.
   */
  private async replayPayload(
    rec: JournalRecord,
    at: { offset: number; length: number },
    replayer: Replayer,
    where: Record<string, unknown>,
    journal: FileHandle,
  ): Promise<void> {
    const ps = this.pageSize;
    const payload = Buffer.allocUnsafe(at.length);
    if ((await readFully(journal, payload, at.length, at.offset)) !== at.length) {
      throw damaged('journal ends inside a payload being replayed', where);
    }
    if (rec.full) await this.emptyReplica(rec.imageBytes);
    let first = true;
    try {
      replayer.decode(payload, (pfn, page) => {
        if (!Number.isSafeInteger(pfn) || pfn < 0 || pfn * ps >= rec.imageBytes) {
          throw damaged(`journal record ${rec.seq}: its payload yields pfn ${pfn}, outside the image`, where);
        }
        if (page === null && rec.full) return; // a hole already
        const bytes = page ?? this.zeroPage;
        if (bytes.length !== ps)
          throw damaged(`journal record ${rec.seq}: a page of ${bytes.length} bytes`, where);
        writevAllSync(this.replica.fd, [bytes], pfn * ps);
        if (first) {
          first = false;
          this.fault('recovery:mid-apply');
        }
      });
    } catch (err) {
      if (isRwanError(err, 'RWAN_ERR_STORE') || !isRwanError(err)) throw err;
      throw damaged(
        `journal record ${rec.seq} (epoch ${rec.epoch}): its payload does not replay: ${err.message}`,
        {
          ...where,
          cause: err.code,
        },
      );
    }
  }
}
