/**
 * The "last sent" copy of pages, shared knowledge of sender and receiver. Pure.
 *
 * Both sides run one of these with the same page size and byte cap and apply the same operations in
 * the same order (the sender after encoding a page, the receiver after decoding it), so the sender
 * always knows exactly which bases the receiver holds: a delta never depends on something the receiver
 * does not have. Eviction is least-recently-sent first.
 *
 *   slab:  one Buffer of ⌊cap / pageSize⌋ page slots, handed out in order, then from a free list
 *   index: pfn → entry (typed-maps.ts PfnIndex); entries in a doubly linked list by recency (typed
 *          arrays, so using a page costs one index probe and a few array writes)
 *   zero pages take no slot (slot −1) and cost {@link ZERO_ENTRY_BYTES} of the cap
 */

import { RwanError } from '../errors.js';
import { PfnIndex } from './typed-maps.js';

/** Cap accounting for a cached zero page (the entry, no page copy). */
export const ZERO_ENTRY_BYTES = 64;

/** Snapshot layout (docs/codec.md §6): magic, version, page size, cap, entry count, then the entries. */
const SNAPSHOT_MAGIC = 'RWPC';
const SNAPSHOT_VERSION = 1;
const SNAPSHOT_HEADER = 24;

/** Counters for measuring how well the cache works. */
export interface PageCacheStats {
  /** Lookups that found the pfn. */
  hits: number;
  /** Lookups that did not. */
  misses: number;
  /** Entries dropped to stay under the cap. */
  evictions: number;
  /** Pages (including zero pages) held now. */
  entries: number;
  /** Bytes of the cap in use now. */
  bytes: number;
}

/**
 * A byte-capped LRU of page copies keyed by pfn, which never evicts a page of the current epoch
 * ({@link beginEpoch}): once every cached page was sent in the current epoch, a new page is simply
 * not cached. Plain LRU would let an epoch with more dirty pages than the cache holds push out each
 * page before the next epoch sends it again — no delta at all, exactly when deltas matter most;
 * this way the pages cached first keep their copies, and deltas resume as soon as epochs shrink.
 */
export class PageCache {
  private readonly slab: Buffer;
  private readonly free: number[] = [];
  private readonly slots: number;
  private fresh = 0;
  /** pfn → entry id. Entries form a circular list through entry 0 (a sentinel): next[0] is the least
   * recently sent, prev[0] the most recent. Moving an entry touches only these arrays, not the Map. */
  private readonly index = new PfnIndex();
  private prev = new Int32Array(64);
  private next = new Int32Array(64);
  /** Slot of each entry (−1 for a zero page), and its pfn. */
  private slotOf = new Int32Array(64);
  private pfnOf = new Float64Array(64);
  private readonly freeIds: number[] = [];
  private nextId = 1;
  private used = 0;
  /** The current epoch's number, and per entry the epoch it was last sent in. */
  private era = 0;
  private eraOf = new Int32Array(64);
  private readonly counters = { hits: 0, misses: 0, evictions: 0 };
  /** Called with each evicted non-zero page (its pfn and copy), before the slot is reused. */
  onEvict: ((pfn: number, page: Uint8Array) => void) | undefined;

  /**
   * @param pageSize bytes per page
   * @param capBytes bytes the cache may hold (page copies; zero pages count {@link ZERO_ENTRY_BYTES})
   */
  constructor(
    readonly pageSize: number,
    readonly capBytes: number,
  ) {
    this.slots = Math.max(0, Math.floor(capBytes / pageSize));
    // not zero-filled: a slot is only read after `set` wrote it (and the OS commits pages on first use)
    this.slab = Buffer.allocUnsafeSlow(this.slots * pageSize);
  }

  /**
   * The cached copy of `pfn`: a view into the cache (valid until the next `set`/`reset`), `null` for a
   * cached zero page, `undefined` when absent.
   */
  get(pfn: number): Uint8Array | null | undefined {
    const id = this.index.get(pfn);
    if (id === 0) {
      this.counters.misses++;
      return undefined;
    }
    this.counters.hits++;
    return this.view(id);
  }

  /** Like {@link get}, without counting a hit or a miss (for duplicate checks, not delta bases). */
  peek(pfn: number): Uint8Array | null | undefined {
    const id = this.index.get(pfn);
    return id === 0 ? undefined : this.view(id);
  }

  /**
   * Make the cached copy of `pfn` most recent and return it for writing in place (a decoder applies a
   * delta straight into it). Same effect on the cache as `set(pfn, newContent)` — no eviction, since
   * the page keeps its slot. Undefined when `pfn` is absent or cached as a zero page.
   */
  update(pfn: number): Uint8Array | undefined {
    const slot = this.updateSlot(pfn);
    return slot < 0 ? undefined : this.slab.subarray(slot * this.pageSize, (slot + 1) * this.pageSize);
  }

  /**
   * {@link update} without the view: the slot of `pfn`'s copy (bytes `slot × pageSize` on in
   * {@link pages}), or −1 when `pfn` is absent or cached as a zero page.
   */
  updateSlot(pfn: number): number {
    const id = this.index.get(pfn);
    if (id === 0) return -1;
    const slot = this.slotOf[id] as number;
    if (slot < 0) return -1;
    this.counters.hits++;
    this.toMostRecent(id);
    return slot;
  }

  /** The slab of page slots (for batch work on slots from {@link updateSlot}). */
  get pages(): Buffer {
    return this.slab;
  }

  /**
   * Record that `pfn` now holds `page` (copied), or is a zero page (`null`); it becomes most recent.
   * @returns the slot the copy is in (bytes `slot × pageSize` on in {@link pages}), −1 for a zero
   *   page or a page not cached
   */
  set(pfn: number, page: Uint8Array | null): number {
    const slot = this.touch(pfn, page === null);
    if (slot >= 0 && page !== null) this.slab.set(page, slot * this.pageSize);
    return slot;
  }

  /**
   * What {@link set} does to the index, without the bytes: `pfn` becomes most recent, as a zero page or
   * as a page whose content the caller writes into the returned slot (bytes `slot × pageSize` on in
   * {@link pages}); −1 for a zero page or when nothing could be cached. Rebuilding a cache replays
   * `touch` and fills the slots afterwards.
   */
  touch(pfn: number, zero: boolean): number {
    const old = this.index.get(pfn);
    if (old !== 0 && (this.slotOf[old] as number) >= 0 && !zero) {
      // the common case, a page sent again: same slot, most recent (no eviction can follow)
      this.toMostRecent(old);
      return this.slotOf[old] as number;
    }
    if (old !== 0) this.drop(old);
    if (zero) {
      this.makeRoom(ZERO_ENTRY_BYTES, false);
      if (this.used + ZERO_ENTRY_BYTES > this.capBytes) return -1;
      this.add(pfn, -1);
      this.used += ZERO_ENTRY_BYTES;
      return -1;
    }
    if (!this.makeRoom(this.pageSize, true)) return -1; // the cache is all this epoch's: not cached
    const slot = this.free.pop() ?? (this.fresh < this.slots ? this.fresh++ : undefined);
    if (slot === undefined) return -1; // a cap below one page: nothing is cached
    this.add(pfn, slot);
    this.used += this.pageSize;
    return slot;
  }

  /**
   * The index as bytes (docs/codec.md §6): which pfns are cached, in recency order (least recent
   * first), and which of them as zero pages — not their content. {@link restore} on an empty cache of
   * the same page size and cap replays it; the pages' content then comes from elsewhere (a receiver
   * reads them from its replica, which holds exactly the last version sent of every page).
   */
  snapshot(): Buffer {
    const out = Buffer.alloc(SNAPSHOT_HEADER + 8 * this.index.size);
    out.write(SNAPSHOT_MAGIC, 0, 'latin1');
    out.writeUInt16LE(SNAPSHOT_VERSION, 4);
    out.writeUInt32LE(this.pageSize, 8);
    out.writeDoubleLE(this.capBytes, 12);
    out.writeUInt32LE(this.index.size, 20);
    let at = SNAPSHOT_HEADER;
    for (let id = this.next[0] as number; id !== 0; id = this.next[id] as number) {
      const pfn = this.pfnOf[id] as number;
      out.writeUInt32LE(pfn % 2 ** 32, at);
      out.writeUInt32LE(
        Math.floor(pfn / 2 ** 32) + ((this.slotOf[id] as number) < 0 ? 0x8000_0000 : 0),
        at + 4,
      );
      at += 8;
    }
    return out;
  }

  /**
   * Replay a {@link snapshot} into this cache, which must be empty and have the same page size and
   * cap. The slots of non-zero pages hold no content yet: fill them (see {@link cachedPages}).
   */
  restore(snapshot: Uint8Array): void {
    const b = Buffer.from(snapshot.buffer, snapshot.byteOffset, snapshot.byteLength);
    const bad = (why: string): never => {
      throw new RwanError('RWAN_ERR_INVALID_INPUT', `page cache snapshot: ${why}`, {
        details: { bytes: b.length },
      });
    };
    if (this.index.size !== 0) bad('the cache is not empty');
    if (b.length < SNAPSHOT_HEADER || b.toString('latin1', 0, 4) !== SNAPSHOT_MAGIC)
      bad('no snapshot header');
    if (b.readUInt16LE(4) !== SNAPSHOT_VERSION) bad(`version ${b.readUInt16LE(4)}`);
    if (b.readUInt32LE(8) !== this.pageSize || b.readDoubleLE(12) !== this.capBytes) {
      bad(`made for ${b.readUInt32LE(8)}-byte pages and a ${b.readDoubleLE(12)}-byte cap`);
    }
    const count = b.readUInt32LE(20);
    if (b.length !== SNAPSHOT_HEADER + 8 * count) bad(`${b.length} bytes for ${count} entries`);
    for (let k = 0, at = SNAPSHOT_HEADER; k < count; k++, at += 8) {
      const hi = b.readUInt32LE(at + 4);
      this.touch((hi & 0x7fff_ffff) * 2 ** 32 + b.readUInt32LE(at), hi >= 0x8000_0000);
    }
  }

  /** The byte cap a {@link snapshot} was made with, or undefined when it is not one. */
  static snapshotCap(snapshot: Uint8Array): number | undefined {
    const b = Buffer.from(snapshot.buffer, snapshot.byteOffset, snapshot.byteLength);
    if (b.length < SNAPSHOT_HEADER || b.toString('latin1', 0, 4) !== SNAPSHOT_MAGIC) return undefined;
    return b.readDoubleLE(12);
  }

  /** Every cached non-zero page: its pfn and a view of its slot (to fill after {@link restore}). */
  cachedPages(): Array<{ pfn: number; page: Uint8Array }> {
    const out: Array<{ pfn: number; page: Uint8Array }> = [];
    for (let id = this.next[0] as number; id !== 0; id = this.next[id] as number) {
      const page = this.view(id);
      if (page) out.push({ pfn: this.pfnOf[id] as number, page });
    }
    return out;
  }

  /**
   * A new epoch starts: the pages sent from now on cannot be evicted until the next one (both sides
   * call it at the same points: the encoder's and the decoder's begin, and between the epochs a
   * restart replays).
   */
  beginEpoch(): void {
    this.era = (this.era + 1) | 0;
  }

  /** Forget everything (both sides do this when a session restarts from a full copy). */
  reset(): void {
    while (this.next[0] !== 0) this.drop(this.next[0] as number);
  }

  /** A snapshot of the counters. */
  stats(): PageCacheStats {
    return { ...this.counters, entries: this.index.size, bytes: this.used };
  }

  private view(id: number): Uint8Array | null {
    const slot = this.slotOf[id] as number;
    return slot < 0 ? null : this.slab.subarray(slot * this.pageSize, (slot + 1) * this.pageSize);
  }

  /** A new most-recent entry. */
  private add(pfn: number, slot: number): void {
    let id = this.freeIds.pop();
    if (id === undefined) {
      id = this.nextId++;
      if (id >= this.prev.length) this.grow();
    }
    this.slotOf[id] = slot;
    this.pfnOf[id] = pfn;
    this.index.set(pfn, id);
    this.link(id);
  }

  private grow(): void {
    const n = this.prev.length * 2;
    const bigger = <T extends Int32Array | Float64Array>(a: T, make: new (n: number) => T): T => {
      const b = new make(n);
      b.set(a);
      return b;
    };
    this.prev = bigger(this.prev, Int32Array);
    this.next = bigger(this.next, Int32Array);
    this.slotOf = bigger(this.slotOf, Int32Array);
    this.eraOf = bigger(this.eraOf, Int32Array);
    this.pfnOf = bigger(this.pfnOf, Float64Array);
  }

  /** Insert `id` as the most recent entry (sent in the current epoch). */
  private link(id: number): void {
    this.eraOf[id] = this.era;
    const last = this.prev[0] as number;
    this.next[last] = id;
    this.prev[id] = last;
    this.next[id] = 0;
    this.prev[0] = id;
  }

  private unlink(id: number): void {
    const p = this.prev[id] as number;
    const n = this.next[id] as number;
    this.next[p] = n;
    this.prev[n] = p;
  }

  private toMostRecent(id: number): void {
    this.eraOf[id] = this.era;
    if (this.prev[0] === id) return;
    this.unlink(id);
    this.link(id);
  }

  /**
   * Evict least recently sent entries until `bytes` (and a slot) fit; false when that would evict a
   * page of the current epoch (pages sent in it are the most recent, so then all the rest are too).
   */
  private makeRoom(bytes: number, needSlot: boolean): boolean {
    while (
      this.used + bytes > this.capBytes ||
      (needSlot && this.free.length === 0 && this.fresh === this.slots)
    ) {
      const oldest = this.next[0] as number;
      if (oldest === 0) return true;
      if (this.eraOf[oldest] === this.era) return false;
      const page = this.onEvict === undefined ? null : this.view(oldest);
      if (page !== null) this.onEvict?.(this.pfnOf[oldest] as number, page);
      this.drop(oldest);
      this.counters.evictions++;
    }
    return true;
  }

  private drop(id: number): void {
    this.unlink(id);
    this.index.delete(this.pfnOf[id] as number);
    this.freeIds.push(id);
    const slot = this.slotOf[id] as number;
    if (slot >= 0) {
      this.free.push(slot);
      this.used -= this.pageSize;
    } else {
      this.used -= ZERO_ENTRY_BYTES;
    }
  }
}
