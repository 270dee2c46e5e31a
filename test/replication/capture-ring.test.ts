import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CaptureRing } from '../../src/replication/capture-ring.js';

const PS = 64;

/** A released range of a ring's memory, in pages. */
interface Range {
  buffer: ArrayBufferLike;
  from: number;
  to: number;
}

/**
 * A ring whose releases are recorded: `released` the buffers released whole, `ranges` every range
 * released (the memory they name is zeroed, as madvise would).
 */
function ring(): { r: CaptureRing; released: ArrayBufferLike[]; ranges: Range[] } {
  const released: ArrayBufferLike[] = [];
  const ranges: Range[] = [];
  const r = new CaptureRing({
    pageSize: PS,
    release: (v) => {
      ranges.push({ buffer: v.buffer, from: v.byteOffset / PS, to: (v.byteOffset + v.byteLength) / PS });
      if (v.byteOffset === 0 && v.byteLength === v.buffer.byteLength) released.push(v.buffer);
      v.fill(0);
    },
  });
  return { r, released, ranges };
}

describe('CaptureRing', () => {
  it('reuses the memory given back, and places two captures in flight at opposite ends', () => {
    const { r, released, ranges } = ring();
    const a = r.take(8 * PS);
    expect(a.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(a.byteOffset).toBe(0);
    expect(r.capacity).toBe(10 * PS); // a quarter more than in flight
    expect(r.give(a)).toBe(true);
    expect(r.give(a)).toBe(false); // already back
    const b = r.take(6 * PS);
    expect(b.buffer).toBe(a.buffer);
    expect(b.byteOffset).toBe(0);
    // b out: c does not fit beside it, so a larger buffer holds both epochs' worth from now on
    const c = r.take(6 * PS);
    expect(c.buffer).not.toBe(a.buffer);
    expect(c.byteOffset).toBe(0);
    expect(r.capacity).toBe(10 * PS + 15 * PS);
    expect(released).toEqual([]);
    // the old buffer keeps only b: the rest of its memory went back when it was retired
    expect(ranges).toEqual([{ buffer: a.buffer, from: 6, to: 10 }]);
    expect(r.give(b)).toBe(true); // the old buffer's last region: its memory goes back at once
    expect(released).toEqual([a.buffer]);
    expect(r.capacity).toBe(15 * PS);
    const d = r.take(6 * PS); // c still out at the start: d goes at the end
    expect(d.buffer).toBe(c.buffer);
    expect(d.byteOffset).toBe(9 * PS);
    r.give(c);
    const e = r.take(8 * PS); // only d out: e takes the start c left
    expect(e.buffer).toBe(c.buffer);
    expect(e.byteOffset).toBe(0);
    r.give(d);
    const f = r.take(7 * PS); // and f the end d left
    expect(f.buffer).toBe(c.buffer);
    expect(f.byteOffset).toBe(8 * PS);
    r.give(f);
    expect(r.take(2 * PS).byteOffset).toBe(13 * PS); // e out at [0, 8): the end again
    const g = r.take(2 * PS); // a gap between regions fills from its start
    expect(g.byteOffset).toBe(8 * PS);
    expect(r.regionsOut).toBe(3);
  });

  it('ignores views it did not make, and views of other bytes of its memory', () => {
    const { r } = ring();
    const a = r.take(4 * PS);
    expect(r.give(new Uint8Array(4 * PS))).toBe(false);
    expect(r.give(new Uint8Array(a.buffer, 0, PS))).toBe(false);
    expect(r.give(new Uint8Array(a.buffer, PS, 3 * PS))).toBe(false);
    expect(r.give(new Uint8Array(a.buffer, 0, 4 * PS))).toBe(true); // another view of the same bytes
  });

  it('replaces an empty ring far larger than the recent captures need, and one too small', () => {
    const { r, released } = ring();
    const big = r.take(100 * PS);
    r.give(big);
    for (let i = 0; i < 8; i++) r.give(r.take(10 * PS)); // the big one leaves the recent takes
    expect(released).toContain(big.buffer);
    expect(r.capacity).toBe(13 * PS);
    const huge = r.take(40 * PS);
    expect(huge.byteLength).toBe(40 * PS);
    expect(r.capacity).toBe(50 * PS);
  });

  it('replaces an empty ring more than 1.5 times the size a new one would have', () => {
    const { r, released } = ring();
    const grown = r.take(18 * PS); // a ring of 23 pages
    r.give(grown);
    for (let i = 0; i < 8; i++) r.give(r.take(10 * PS)); // a new one would have 13: 23 > 19.5
    expect(released).toContain(grown.buffer);
    expect(r.capacity).toBe(13 * PS);
    const kept = r.take(14 * PS); // 18 pages (1.25 × 14) wanted: 13 is too small, a new ring of 18
    r.give(kept);
    r.give(r.take(13 * PS)); // 14 is still a recent take: a new ring would have 18 pages too, so kept
    expect(r.capacity).toBe(18 * PS);
  });

  it('moves on from a buffer grown in a backlog while a region of it is still out', () => {
    const { r, released, ranges } = ring();
    const big = r.take(100 * PS);
    r.give(big);
    for (let i = 0; i < 6; i++) r.give(r.take(10 * PS));
    const out = r.take(10 * PS); // still in the big buffer
    expect(out.buffer).toBe(big.buffer);
    const at = out.byteOffset / PS;
    const next = r.take(10 * PS); // the big one leaves the recent takes: 20 pages in flight at most
    expect(next.buffer).not.toBe(big.buffer);
    expect(r.capacity).toBe(125 * PS + 25 * PS);
    expect(r.heldBytes).toBe(10 * PS + 25 * PS); // of the big buffer, only the region out
    expect(released).toEqual([]);
    // all of the big buffer but the region out went back at once
    const back = ranges.filter((g) => g.buffer === big.buffer);
    expect(back.reduce((n, g) => n + g.to - g.from, 0)).toBe(125 - 10);
    expect(back.every((g) => g.to <= at || g.from >= at + 10)).toBe(true);
    r.give(out);
    expect(released).toEqual([big.buffer]);
    expect(r.capacity).toBe(25 * PS);
  });

  it('rejects sizes that are not whole pages', () => {
    const { r } = ring();
    expect(() => r.take(PS + 1)).toThrow(RangeError);
    expect(() => r.take(-PS)).toThrow(RangeError);
    expect(r.take(0).byteLength).toBe(0);
  });

  it('an empty capture between two regions does not open a gap over them', () => {
    const { r } = ring();
    const a = r.take(37 * PS);
    const b = r.take(10 * PS);
    r.take(0);
    const c = r.take(PS);
    for (const [x, y] of [
      [a, c],
      [b, c],
    ] as const) {
      const apart =
        x.buffer !== y.buffer ||
        x.byteOffset + x.byteLength <= y.byteOffset ||
        y.byteOffset + y.byteLength <= x.byteOffset;
      expect(apart).toBe(true);
    }
  });

  it('never hands out bytes still out, whatever the order regions come back in', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ pages: fc.integer({ min: 0, max: 40 }), give: fc.nat(3), order: fc.nat() }), {
          minLength: 1,
          maxLength: 60,
        }),
        (steps) => {
          const { r, ranges } = ring();
          const out: { view: Uint8Array; mark: number }[] = [];
          let mark = 0;
          let peak = 0;
          for (const s of steps) {
            const view = r.take(s.pages * PS);
            expect(view.byteLength).toBe(s.pages * PS);
            mark = (mark % 250) + 1;
            view.fill(mark);
            out.push({ view, mark });
            peak = Math.max(
              peak,
              out.reduce((n, o) => n + o.view.byteLength, 0),
            );
            // give back up to `give` regions, mostly the oldest, sometimes another
            for (let k = 0; k < s.give && out.length > 0; k++) {
              const at = s.order % 4 === 0 ? s.order % out.length : 0;
              const [g] = out.splice(at, 1);
              if (g === undefined) continue;
              // nothing taken meanwhile wrote into it, and its memory was not released
              expect(g.view.every((b) => b === g.mark)).toBe(true);
              expect(r.give(g.view)).toBe(true);
            }
            // no memory released under a region still out
            for (const o of out) {
              const from = o.view.byteOffset / PS;
              const to = from + o.view.byteLength / PS;
              const hit = ranges.some((g) => g.buffer === o.view.buffer && g.from < to && from < g.to);
              expect(hit && o.view.byteLength > 0).toBe(false);
            }
            // a ring is no larger than a quarter more than the most ever in flight, and only rings
            // with regions out are kept besides the current one
            const rings = new Set(out.map((o) => o.view.buffer)).size;
            expect(r.capacity).toBeLessThanOrEqual((rings + 1) * (1.25 * peak + PS));
          }
          for (const o of out) expect(o.view.every((b) => b === o.mark)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});
