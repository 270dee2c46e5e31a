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
    c.set(1, page(11)); // 1 becomes most recent
    c.set(4, page(4)); // evicts 2
    expect(c.peek(2)).toBeUndefined();
    expect(c.peek(1)).toEqual(page(11));
    expect(c.peek(3)).toEqual(page(3));
    expect(c.peek(4)).toEqual(page(4));
    expect(c.stats().evictions).toBe(1);
    expect(c.stats().bytes).toBeLessThanOrEqual(3 * 512);
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
