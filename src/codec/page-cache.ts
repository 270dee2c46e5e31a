/**
 * The "last sent" copy of pages, shared knowledge of sender and receiver. Pure.
 *
 * Both sides run one of these with the same page size and byte cap and apply the same operations in
 * the same order (the sender after encoding a page, the receiver after decoding it), so the sender
 * always knows exactly which bases the receiver holds: a delta never depends on something the receiver
 * does not have. Eviction is least-recently-sent first.
 *
 *   slab:  one Buffer of ⌊cap / pageSize⌋ page slots, handed out in order, then from a free list
 *   index: Map pfn → entry; entries in a doubly linked list by recency (typed arrays, so using a page
 *          costs one Map lookup and a few array writes)
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
  /** pfn → entry id. Entries form a circular list through entry 0 (a sentinel): next[0] is the least
   * recently sent, prev[0] the most recent. Moving an entry touches only these arrays, not the Map. */
  private readonly index = new Map<number, number>();
  private prev = new Int32Array(64);
  private next = new Int32Array(64);
  /** Slot of each entry (−1 for a zero page), and its pfn. */
  private slotOf = new Int32Array(64);
  private pfnOf = new Float64Array(64);
  private readonly freeIds: number[] = [];
  private nextId = 1;
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
    const id = this.index.get(pfn);
    if (id === undefined) {
      this.counters.misses++;
      return undefined;
    }
    this.counters.hits++;
    return this.view(id);
  }

  /** Like {@link get}, without counting a hit or a miss (for duplicate checks, not delta bases). */
  peek(pfn: number): Uint8Array | null | undefined {
    const id = this.index.get(pfn);
    return id === undefined ? undefined : this.view(id);
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
    if (id === undefined) return -1;
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

  /** Record that `pfn` now holds `page` (copied), or is a zero page (`null`); it becomes most recent. */
  set(pfn: number, page: Uint8Array | null): void {
    const old = this.index.get(pfn);
    if (old !== undefined && (this.slotOf[old] as number) >= 0 && page !== null) {
      // the common case, a page sent again: same slot, most recent (no eviction can follow)
      this.toMostRecent(old);
      this.slab.set(page, (this.slotOf[old] as number) * this.pageSize);
      return;
    }
    if (old !== undefined) this.drop(old);
    if (page === null) {
      this.makeRoom(ZERO_ENTRY_BYTES, false);
      if (this.used + ZERO_ENTRY_BYTES > this.capBytes) return;
      this.add(pfn, -1);
      this.used += ZERO_ENTRY_BYTES;
      return;
    }
    this.makeRoom(this.pageSize, true);
    const slot = this.free.pop() ?? (this.fresh < this.slots ? this.fresh++ : undefined);
    if (slot === undefined) return; // a cap below one page: nothing is cached
    this.slab.set(page, slot * this.pageSize);
    this.add(pfn, slot);
    this.used += this.pageSize;
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
    this.pfnOf = bigger(this.pfnOf, Float64Array);
  }

  /** Insert `id` as the most recent entry. */
  private link(id: number): void {
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
    if (this.prev[0] === id) return;
    this.unlink(id);
    this.link(id);
  }

  private makeRoom(bytes: number, needSlot: boolean): void {
    while (
      this.used + bytes > this.capBytes ||
      (needSlot && this.free.length === 0 && this.fresh === this.slots)
    ) {
      const oldest = this.next[0] as number;
      if (oldest === 0) return;
      this.drop(oldest);
      this.counters.evictions++;
    }
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
