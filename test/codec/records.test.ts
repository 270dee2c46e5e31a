import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EpochPfns } from '../../src/codec/records.js';
import { IntIndex, PfnIndex } from '../../src/codec/typed-maps.js';

type MapOp = 'clear' | { set: number; value: number } | { get: number } | { del: number };

/** Replays `ops` on `index` and on a Map; every answer agrees (`absent`: the index's "no value"). */
function agreesWithMap(
  index: {
    get(k: number): number;
    set(k: number, v: number): void;
    clear(): void;
    delete?(k: number): boolean;
  },
  ops: readonly MapOp[],
  absent: number,
): void {
  const model = new Map<number, number>();
  for (const o of ops) {
    if (o === 'clear') {
      index.clear();
      model.clear();
    } else if ('set' in o) {
      index.set(o.set, o.value);
      model.set(o.set, o.value);
    } else if ('del' in o) expect(index.delete?.(o.del)).toBe(model.delete(o.del));
    else expect(index.get(o.get)).toBe(model.get(o.get) ?? absent);
    if (index instanceof PfnIndex) expect(index.size).toBe(model.size);
  }
  for (const [k, v] of model) expect(index.get(k)).toBe(v);
}

describe('EpochPfns', () => {
  it('keeps pfns in order, refuses one twice (also after a step back), and starts over on reset', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.nat(5000), { maxLength: 3000, size: 'max' }), { maxLength: 4 }),
        (epochs) => {
          const p = new EpochPfns();
          for (const pfns of epochs) {
            p.reset();
            const seen = new Set<number>();
            const list: number[] = [];
            for (const pfn of pfns) {
              expect(p.add(pfn)).toBe(!seen.has(pfn));
              if (!seen.has(pfn)) list.push(pfn);
              seen.add(pfn);
            }
            expect(p.length).toBe(list.length);
            expect(Array.from({ length: p.length }, (_, i) => p.at(i))).toEqual(list);
          }
        },
      ),
      { numRuns: 30 },
    );
  });

  it('grows past its first thousands of pfns', () => {
    const p = new EpochPfns();
    for (let i = 0; i < 20_000; i++) expect(p.add(2 * i)).toBe(true);
    expect(p.add(7)).toBe(true); // a step back: the Set takes over with the 20 000 already there
    expect(p.add(39_998)).toBe(false);
    expect(p.add(0)).toBe(false);
    expect(p.length).toBe(20_001);
    expect([p.at(0), p.at(19_999), p.at(20_000)]).toEqual([0, 39_998, 7]);
    p.reset();
    expect(p.length).toBe(0);
    expect(p.add(0)).toBe(true);
  });
});

describe('IntIndex', () => {
  it('grows, and forgets everything on clear', () => {
    const index = new IntIndex();
    for (let k = 0; k < 50_000; k++) index.set(k * 7919, k);
    for (let k = 0; k < 50_000; k++) expect(index.get(k * 7919)).toBe(k);
    expect(index.get(1)).toBe(-1);
    index.clear();
    for (let k = 0; k < 50_000; k += 97) expect(index.get(k * 7919)).toBe(-1);
    index.set(7919, 3);
    expect(index.get(7919)).toBe(3);
  });

  it('agrees with a Map over sets, gets and clears (model)', () => {
    const op = fc.oneof(
      fc.record({ set: fc.integer({ min: 0, max: 2 ** 31 - 1 }), value: fc.nat(2 ** 31 - 1) }),
      fc.record({ set: fc.nat(300), value: fc.nat(100) }), // small keys: many collisions and repeats
      fc.record({ get: fc.nat(300) }),
      fc.constant('clear' as const),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 4000, size: 'max' }), (ops) =>
        agreesWithMap(new IntIndex(), ops, -1),
      ),
      { numRuns: 100 },
    );
  });
});

describe('PfnIndex', () => {
  it('agrees with a Map over sets, gets, deletes and clears (model)', () => {
    const key = fc.oneof(fc.nat(200), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.nat(2 ** 33));
    const op = fc.oneof(
      fc.record({ set: key, value: fc.integer({ min: 1, max: 2 ** 31 - 1 }) }),
      fc.record({ get: key }),
      fc.record({ del: key }),
      fc.constant('clear' as const),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 3000, size: 'max' }), (ops) =>
        agreesWithMap(new PfnIndex(), ops, 0),
      ),
      { numRuns: 60 },
    );
  });

  it('keeps every entry through growth and deletions in long probe runs', () => {
    const index = new PfnIndex();
    const model = new Map<number, number>();
    for (let k = 0; k < 40_000; k++) {
      const pfn = (k * 2654435761) % 100_003; // many collisions within the same runs
      index.set(pfn, k + 1);
      model.set(pfn, k + 1);
      if (k % 3 === 0) {
        const gone = (k * 40503) % 100_003;
        expect(index.delete(gone)).toBe(model.delete(gone));
      }
    }
    expect(index.size).toBe(model.size);
    for (const [k, v] of model) expect(index.get(k)).toBe(v);
  });
});
