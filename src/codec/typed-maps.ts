/**
 * Maps from numbers to small positive integers in typed arrays (open addressing, linear probing, at
 * most half full): the codec's per-page indexes, which as JS Maps cost a hash-table lookup through V8's
 * generic path per page and, at tens of thousands of entries, a large-object-space backing store that
 * only full collections reclaim.
 */

/**
 * A map from small non-negative integer keys (below 2^31) to non-negative int32 values, emptied in
 * O(1) ({@link clear}: a generation count, no sweep) and kept in typed arrays reused epoch after
 * epoch, for the per-epoch index of page hashes (a Map made per epoch grows through V8's large-object
 * space). Open addressing with linear probing, at most half full.
 */
export class IntIndex {
  private keys = new Int32Array(1024);
  private values = new Int32Array(1024);
  private stamps = new Uint32Array(1024);
  private gen = 1;
  private size = 0;

  /** Forget every entry. */
  clear(): void {
    this.size = 0;
    if (++this.gen === 0xffffffff) {
      this.stamps.fill(0);
      this.gen = 1;
    }
  }

  /** The value of `key`, or -1. */
  get(key: number): number {
    const mask = this.keys.length - 1;
    for (let i = Math.imul(key, 0x9e3779b1) & mask; this.stamps[i] === this.gen; i = (i + 1) & mask) {
      if (this.keys[i] === key) return this.values[i] as number;
    }
    return -1;
  }

  /** Set `key` to `value` (replacing an earlier value). */
  set(key: number, value: number): void {
    if (2 * (this.size + 1) > this.keys.length) this.grow();
    const mask = this.keys.length - 1;
    let i = Math.imul(key, 0x9e3779b1) & mask;
    for (; this.stamps[i] === this.gen; i = (i + 1) & mask) {
      if (this.keys[i] === key) {
        this.values[i] = value;
        return;
      }
    }
    this.stamps[i] = this.gen;
    this.keys[i] = key;
    this.values[i] = value;
    this.size++;
  }

  private grow(): void {
    const { keys, values, stamps, gen } = this;
    this.keys = new Int32Array(2 * keys.length);
    this.values = new Int32Array(2 * keys.length);
    this.stamps = new Uint32Array(2 * keys.length);
    this.gen = 1;
    this.size = 0;
    for (let i = 0; i < keys.length; i++) {
      if (stamps[i] === gen) this.set(keys[i] as number, values[i] as number);
    }
  }
}

/** Slot of `key` (a safe non-negative integer) in a table of `mask + 1` entries. */
function pfnHash(key: number, mask: number): number {
  const h = Math.imul((key >>> 0) ^ Math.imul((key / 0x1_0000_0000) | 0, 0x85ebca6b), 0x9e3779b1);
  return (h ^ (h >>> 15)) & mask;
}

/**
 * A map from pfns (safe non-negative integers) to ids (positive int32), with deletion: the page cache's
 * index. Get and set are one probe sequence; delete shifts the entries after it back (no tombstones).
 */
export class PfnIndex {
  private keys = new Float64Array(1024);
  /** 0: empty slot. */
  private ids = new Int32Array(1024);
  private n = 0;

  /** Entries. */
  get size(): number {
    return this.n;
  }

  /** The id of `key`, or 0. */
  get(key: number): number {
    const mask = this.ids.length - 1;
    for (let i = pfnHash(key, mask); ; i = (i + 1) & mask) {
      const id = this.ids[i] as number;
      if (id === 0 || this.keys[i] === key) return id;
    }
  }

  /** Set `key` to `id` (> 0), replacing an earlier id. */
  set(key: number, id: number): void {
    if (2 * (this.n + 1) > this.ids.length) this.grow();
    const mask = this.ids.length - 1;
    let i = pfnHash(key, mask);
    for (; this.ids[i] !== 0; i = (i + 1) & mask) {
      if (this.keys[i] === key) {
        this.ids[i] = id;
        return;
      }
    }
    this.keys[i] = key;
    this.ids[i] = id;
    this.n++;
  }

  /** Remove `key`; false when absent. */
  delete(key: number): boolean {
    const mask = this.ids.length - 1;
    let i = pfnHash(key, mask);
    for (; this.keys[i] !== key || this.ids[i] === 0; i = (i + 1) & mask) {
      if (this.ids[i] === 0) return false;
    }
    // shift back the entries of the run after i whose home slot is not in (i, j]
    for (let j = (i + 1) & mask; this.ids[j] !== 0; j = (j + 1) & mask) {
      const home = pfnHash(this.keys[j] as number, mask);
      if (i <= j ? home > i && home <= j : home > i || home <= j) continue;
      this.keys[i] = this.keys[j] as number;
      this.ids[i] = this.ids[j] as number;
      i = j;
    }
    this.ids[i] = 0;
    this.n--;
    return true;
  }

  /** Remove every entry. */
  clear(): void {
    this.ids.fill(0);
    this.n = 0;
  }

  private grow(): void {
    const { keys, ids } = this;
    this.keys = new Float64Array(2 * ids.length);
    this.ids = new Int32Array(2 * ids.length);
    this.n = 0;
    for (let i = 0; i < ids.length; i++) if (ids[i] !== 0) this.set(keys[i] as number, ids[i] as number);
  }
}
