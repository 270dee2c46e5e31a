import { describe, expect, it } from 'vitest';
import { PageCache, ZERO_ENTRY_BYTES } from '../../src/codec/page-cache.js';

const page = (v: number, size = 512) => Buffer.alloc(size, v);

describe('PageCache', () => {
  it('keeps copies, not views, and answers zero pages with null', () => {
    const c = new PageCache(512, 4 * 512);
    const p = page(1);
    c.set(7, p);
    p.fill(9);
    expect(c.get(7)).toEqual(page(1));
    c.set(8, null);
    expect(c.get(8)).toBeNull();
    expect(c.get(9)).toBeUndefined();
    expect(c.stats()).toMatchObject({ hits: 2, misses: 1, entries: 2, bytes: 512 + ZERO_ENTRY_BYTES });
  });

  it('evicts the least recently sent page first, within the byte cap', () => {
    const c = new PageCache(512, 3 * 512);
    c.set(1, page(1));
    c.set(2, page(2));
    c.set(3, page(3));
    c.beginEpoch();
    c.set(1, page(11)); // 1 becomes most recent
    c.set(4, page(4)); // evicts 2
    expect(c.peek(2)).toBeUndefined();
    expect(c.peek(1)).toEqual(page(11));
    expect(c.peek(3)).toEqual(page(3));
    expect(c.peek(4)).toEqual(page(4));
    expect(c.stats().evictions).toBe(1);
    expect(c.stats().bytes).toBeLessThanOrEqual(3 * 512);
  });

  it('onEvict sees each evicted page and its bytes before the slot is reused; zero pages are not reported', () => {
    const c = new PageCache(512, 2 * 512 + ZERO_ENTRY_BYTES);
    const seen: Array<[number, number[]]> = [];
    c.onEvict = (pfn, bytes) => seen.push([pfn, [bytes[0] as number, bytes[511] as number]]);
    c.set(7, null);
    c.set(1, page(1));
    c.set(2, page(2));
    c.beginEpoch();
    c.set(3, page(3)); // evicts the zero page 7 (no report), then page 1
    c.set(4, page(4)); // evicts 2
    expect(seen).toEqual([
      [1, [page(1)[0], page(1)[511]]],
      [2, [page(2)[0], page(2)[511]]],
    ]);
    expect(c.stats().evictions).toBe(3);
  });

  it('never evicts a page of the current epoch: past the cap, new pages are not cached', () => {
    const c = new PageCache(512, 3 * 512);
    c.beginEpoch();
    for (const pfn of [1, 2, 3, 4, 5]) c.set(pfn, page(pfn)); // an epoch larger than the cache
    expect([1, 2, 3, 4, 5].map((pfn) => c.peek(pfn) !== undefined)).toEqual([true, true, true, false, false]);
    expect(c.touch(6, false)).toBe(-1);
    expect(c.stats().evictions).toBe(0);
    c.beginEpoch();
    c.set(2, page(22)); // sent again: a hit, kept
    c.set(7, page(7)); // evicts 1 (least recent, of the previous epoch)
    c.set(8, page(8)); // evicts 3
    c.set(9, page(9)); // all three are this epoch's: not cached
    expect([1, 2, 3, 7, 8, 9].map((pfn) => c.peek(pfn) !== undefined)).toEqual([
      false,
      true,
      false,
      true,
      true,
      false,
    ]);
    expect(c.stats().evictions).toBe(2);
  });

  it('zero pages count a small entry, and two caches fed the same operations stay identical', () => {
    const a = new PageCache(512, 2 * 512 + 2 * ZERO_ENTRY_BYTES);
    const b = new PageCache(512, 2 * 512 + 2 * ZERO_ENTRY_BYTES);
    const ops: Array<[number, number | null]> = [
      [1, 1],
      [2, null],
      [3, 3],
      [4, null],
      [5, 5],
      [2, 2],
      [6, null],
    ];
    for (const [pfn, v] of ops) {
      a.set(pfn, v === null ? null : page(v));
      b.set(pfn, v === null ? null : page(v));
    }
    for (let pfn = 1; pfn <= 6; pfn++) expect(a.peek(pfn)).toEqual(b.peek(pfn));
    expect(a.stats().bytes).toBeLessThanOrEqual(2 * 512 + 2 * ZERO_ENTRY_BYTES);
  });

  it('reset forgets everything; a cap below one page caches nothing', () => {
    const c = new PageCache(512, 2 * 512);
    c.set(1, page(1));
    c.reset();
    expect(c.peek(1)).toBeUndefined();
    expect(c.stats().bytes).toBe(0);
    const tiny = new PageCache(512, 100);
    tiny.set(1, page(1));
    expect(tiny.peek(1)).toBeUndefined();
  });
});

describe('PageCache snapshot and restore', () => {
  it('a restored cache has the same index and then behaves exactly like the original', () => {
    const cap = 5 * 512 + 3 * ZERO_ENTRY_BYTES;
    const a = new PageCache(512, cap);
    let x = 7;
    const rnd = (n: number) => {
      x = (x * 1103515245 + 12345) >>> 0;
      return x % n;
    };
    const step = (c: PageCache, pfn: number, v: number | null) => c.set(pfn, v === null ? null : page(v));
    const ops = Array.from({ length: 400 }, () => [rnd(12), rnd(5) === 0 ? null : rnd(250) + 1] as const);
    for (const [pfn, v] of ops.slice(0, 200)) step(a, pfn, v);
    const snap = a.snapshot();
    const b = new PageCache(512, cap);
    b.restore(snap);
    expect(b.snapshot()).toEqual(snap);
    for (const { pfn, page: slot } of b.cachedPages()) slot.set(a.peek(pfn) as Uint8Array);
    for (const [pfn, v] of ops.slice(200)) {
      step(a, pfn, v);
      step(b, pfn, v);
    }
    expect(b.snapshot()).toEqual(a.snapshot());
    for (let pfn = 0; pfn < 12; pfn++) expect(b.peek(pfn)).toEqual(a.peek(pfn));
  });

  it('touch() replays set() without the bytes', () => {
    const a = new PageCache(512, 3 * 512);
    const b = new PageCache(512, 3 * 512);
    for (const [pfn, v] of [
      [1, 1],
      [2, 0],
      [3, 3],
      [1, 4],
      [5, 5],
      [6, 0],
    ] as const) {
      a.set(pfn, v === 0 ? null : page(v));
      b.touch(pfn, v === 0);
    }
    expect(b.snapshot()).toEqual(a.snapshot());
  });

  it('refuses a snapshot of another geometry, a damaged one, or a non-empty cache', () => {
    const a = new PageCache(512, 4 * 512);
    a.set(1, page(1));
    const snap = a.snapshot();
    expect(() => new PageCache(1024, 4 * 512).restore(snap)).toThrow(/1024|512-byte pages/);
    expect(() => new PageCache(512, 8 * 512).restore(snap)).toThrow(/cap/);
    expect(() => new PageCache(512, 4 * 512).restore(snap.subarray(0, snap.length - 1))).toThrow(/entries/);
    expect(() => new PageCache(512, 4 * 512).restore(Buffer.from('nope'))).toThrow(/header/);
    expect(() => a.restore(snap)).toThrow(/not empty/);
  });
});
