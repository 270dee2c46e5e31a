/**
 * The "last sent" copy of pages, shared knowledge of sender and receiver. Pure.
 *
 * Both sides run one of these with the same page size and byte cap and apply the same operations in
 * the same order (the sender after encoding a page, the receiver after decoding it), so the sender
 * always knows exactly which bases the receiver holds: a delta never depends on something the receiver
 * does not have. Eviction is least-recently-sent first.
 *
 *   slab:  one Buffer of ⌊cap / pageSize⌋ page slots, handed out in order, then from a free list
 *   index: Map pfn → slot, in least-recently-sent order (Map keeps insertion order; a set re-inserts)
 *   zero pages take no slot (slot −1) and cost {@link ZERO_ENTRY_BYTES} of the cap
 */

/** Cap accounting for a cached zero page (the entry, no page copy). */
export const ZERO_ENTRY_BYTES = 64;

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

/** A byte-capped LRU of page copies keyed by pfn. */
export class PageCache {
  private readonly slab: Buffer;
  private readonly free: number[] = [];
  private readonly slots: number;
  private fresh = 0;
  private readonly index = new Map<number, number>();
  private used = 0;
  private readonly counters = { hits: 0, misses: 0, evictions: 0 };

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
    const slot = this.index.get(pfn);
    if (slot === undefined) {
      this.counters.misses++;
      return undefined;
    }
    this.counters.hits++;
    return slot < 0 ? null : this.slab.subarray(slot * this.pageSize, (slot + 1) * this.pageSize);
  }

  /** Like {@link get}, without counting a hit or a miss (for duplicate checks, not delta bases). */
  peek(pfn: number): Uint8Array | null | undefined {
    const slot = this.index.get(pfn);
    if (slot === undefined) return undefined;
    return slot < 0 ? null : this.slab.subarray(slot * this.pageSize, (slot + 1) * this.pageSize);
  }

  /**
   * Make the cached copy of `pfn` most recent and return it for writing in place (a decoder applies a
   * delta straight into it). Same effect on the cache as `set(pfn, newContent)` — no eviction, since
   * the page keeps its slot. Undefined when `pfn` is absent or cached as a zero page.
   */
  update(pfn: number): Uint8Array | undefined {
    const slot = this.index.get(pfn);
    if (slot === undefined || slot < 0) return undefined;
    this.counters.hits++;
    this.index.delete(pfn);
    this.index.set(pfn, slot);
    return this.slab.subarray(slot * this.pageSize, (slot + 1) * this.pageSize);
  }

  /** Record that `pfn` now holds `page` (copied), or is a zero page (`null`); it becomes most recent. */
  set(pfn: number, page: Uint8Array | null): void {
    const old = this.index.get(pfn);
    if (old !== undefined && old >= 0 && page !== null) {
      // the common case, a page sent again: same slot, most recent (no eviction can follow)
      this.index.delete(pfn);
      this.index.set(pfn, old);
      this.slab.set(page, old * this.pageSize);
      return;
    }
    if (old !== undefined) this.drop(pfn, old);
    if (page === null) {
      this.makeRoom(ZERO_ENTRY_BYTES, false);
      if (this.used + ZERO_ENTRY_BYTES > this.capBytes) return;
      this.index.set(pfn, -1);
      this.used += ZERO_ENTRY_BYTES;
      return;
    }
    this.makeRoom(this.pageSize, true);
    const slot = this.free.pop() ?? (this.fresh < this.slots ? this.fresh++ : undefined);
    if (slot === undefined) return; // a cap below one page: nothing is cached
    this.slab.set(page, slot * this.pageSize);
    this.index.set(pfn, slot);
    this.used += this.pageSize;
  }

  /** Forget everything (both sides do this when a session restarts from a full copy). */
  reset(): void {
    for (const [pfn, slot] of this.index) this.drop(pfn, slot);
  }

  /** A snapshot of the counters. */
  stats(): PageCacheStats {
    return { ...this.counters, entries: this.index.size, bytes: this.used };
  }

  private makeRoom(bytes: number, needSlot: boolean): void {
    const full = () =>
      this.used + bytes > this.capBytes || (needSlot && this.free.length === 0 && this.fresh === this.slots);
    if (!full()) return;
    const it = this.index.entries();
    while (
      this.used + bytes > this.capBytes ||
      (needSlot && this.free.length === 0 && this.fresh === this.slots)
    ) {
      const next = it.next();
      if (next.done) return;
      const [pfn, slot] = next.value;
      this.drop(pfn, slot);
      this.counters.evictions++;
    }
  }

  private drop(pfn: number, slot: number): void {
    this.index.delete(pfn);
    if (slot >= 0) {
      this.free.push(slot);
      this.used -= this.pageSize;
    } else {
      this.used -= ZERO_ENTRY_BYTES;
    }
  }
}
