/**
 * The end-to-end digest of an epoch (docs/codec.md §5): SHA-256 over, for every page in record order,
 * `pfn:u64 hashHi:u32 hashLo:u32` (the page hash of §3), truncated to 16 bytes. Both sides compute it,
 * the sender from the pages it read, the receiver from the pages it decoded. Pure.
 */
import { createHash, type Hash } from 'node:crypto';

/** Bytes of the digest carried in EPOCH_END. */
export const DIGEST_BYTES = 16;

const ENTRY = 16;
const BATCH = 4096;

/** Accumulates page entries and hashes them in batches. */
export class EpochDigest {
  private hash: Hash = createHash('sha256');
  private readonly batch = Buffer.alloc(ENTRY * BATCH);
  private readonly view = new DataView(this.batch.buffer, this.batch.byteOffset, this.batch.byteLength);
  private n = 0;

  /** Add one page: its pfn and the two halves of its page hash. */
  add(pfn: number, hi: number, lo: number): void {
    const at = this.n * ENTRY;
    const v = this.view;
    v.setUint32(at, pfn % 4294967296, true);
    v.setUint32(at + 4, Math.floor(pfn / 4294967296), true);
    v.setUint32(at + 8, hi, true);
    v.setUint32(at + 12, lo, true);
    if (++this.n === BATCH) this.flush();
  }

  /** The digest of everything added since the last `finish`; starts a new one. */
  finish(): Buffer {
    this.flush();
    const out = this.hash.digest().subarray(0, DIGEST_BYTES);
    this.hash = createHash('sha256');
    return out;
  }

  private flush(): void {
    if (this.n > 0) this.hash.update(this.batch.subarray(0, this.n * ENTRY));
    this.n = 0;
  }
}
