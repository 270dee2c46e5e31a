import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { WriteTrace } from '../../src/measure/types.js';
import { completeWindows, epochCounts } from '../../src/planner/trace.js';

function trace(events: Array<[number, number]>, durationS: number): WriteTrace {
  const sorted = [...events].sort((a, b) => a[0] - b[0]);
  const ids = new Map<number, number>();
  for (const [, p] of sorted) if (!ids.has(p)) ids.set(p, ids.size);
  return {
    times: Float64Array.from(sorted.map((e) => e[0])),
    pageIds: Uint32Array.from(sorted.map((e) => ids.get(e[1]) as number)),
    distinctPages: ids.size,
    durationS,
    source: 'test',
  };
}

describe('epochCounts', () => {
  it('counts distinct pages per aligned window, by hand', () => {
    // window 1 s: [0,1) writes pages 1,2,1 → 2; [1,2) writes 1,1 → 1; [2,3) nothing → 0; [3,3.5) incomplete
    const t = trace(
      [
        [0, 1],
        [0.2, 2],
        [0.9, 1],
        [1.0, 1],
        [1.5, 1],
        [3.2, 7],
      ],
      3.5,
    );
    expect(completeWindows(t, 1)).toBe(3);
    expect([...epochCounts(t, 1)]).toEqual([2, 1, 0]);
    expect([...epochCounts(t, 2)]).toEqual([2]);
    expect([...epochCounts(t, 3.5)]).toEqual([3]);
    expect([...epochCounts(t, 4)]).toEqual([]);
  });
  it('equals a brute-force count for random traces and windows', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.double({ min: 0, max: 9.999, noNaN: true }), fc.integer({ min: 0, max: 50 })), {
          maxLength: 300,
        }),
        fc.double({ min: 0.05, max: 10, noNaN: true }),
        (events, windowS) => {
          const t = trace(events, 10);
          const n = Math.floor(10 / windowS + 1e-9);
          const brute = Array.from({ length: n }, (_, k) => {
            const set = new Set(
              events.filter(([time]) => Math.floor(time / windowS) === k).map(([, p]) => p),
            );
            return set.size;
          });
          expect([...epochCounts(t, windowS)]).toEqual(brute);
        },
      ),
    );
  });
});
