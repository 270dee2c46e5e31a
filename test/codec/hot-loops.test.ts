/**
 * Differential test of the hot loops: the native addon (native/remus_native.c) against the TypeScript
 * reference (src/codec/xor-rle.ts) — same delta bytes, same -1 points, same faults on broken deltas,
 * same hashes, same fused encodePage — across page sizes 1..8192 and unaligned byteOffsets. CI builds the addon, so a missing
 * addon FAILS this file (build it with `node tools/build-native.mjs`).
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { faultOf, type HotLoops } from '../../src/codec/hot-loops.js';

type HotLoopsModule = typeof import('../../src/codec/hot-loops.js');

/** The module as loaded with `REMUS_WAN_NATIVE` set to `value` (undefined: unset). */
async function loadWith(value: string | undefined): Promise<HotLoopsModule> {
  vi.stubEnv('REMUS_WAN_NATIVE', value);
  vi.resetModules();
  try {
    return await import('../../src/codec/hot-loops.js');
  } finally {
    vi.unstubAllEnvs();
  }
}

let mod: HotLoopsModule;
let N: HotLoops; // native
let T: HotLoops; // fallback (TypeScript)

beforeAll(async () => {
  // this file needs the addon even when the rest of the suite runs with REMUS_WAN_NATIVE=0
  mod = await loadWith(undefined);
  T = mod.fallback;
  N = mod.native ?? missingAddon(mod.nativeLoadError);
});

/** Stands in for a missing addon so that every test FAILS with the reason (CI builds the addon). */
function missingAddon(reason: string | undefined): HotLoops {
  const fail = (): never => {
    throw new Error(`native addon not loaded: ${reason} (CI builds it at npm ci: a failure, not a skip)`);
  };
  return {
    kind: 'native',
    encodeDelta: fail,
    applyDelta: fail,
    applyDeltaHash: fail,
    applyDeltasHash: fail,
    isZeroPage: fail,
    hashPage: fail,
    hashPageInto: fail,
    hashPages: fail,
    classifyPage: fail,
    encodePage: fail,
    readPages: fail,
  };
}

afterEach(() => {
  vi.unstubAllEnvs();
});

// ---------------------------------------------------------------------------------------------
// helpers

/** xorshift32: fast deterministic bytes for pages (fast-check picks the seed). */
function prng(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

let padding = 0;

/**
 * A copy of `bytes` at byteOffset `offset` inside a bigger buffer, surrounded by a fill byte that
 * changes on every call, so a loop reading past its view sees two different pages and shows it.
 */
function at(bytes: Uint8Array, offset: number): Uint8Array {
  padding = (padding + 0x35) & 0xff;
  const backing = new Uint8Array(bytes.length + 16).fill(padding);
  const view = backing.subarray(offset, offset + bytes.length);
  view.set(bytes);
  return view;
}

const MODES = ['sparse', 'dense', 'gaps', 'equal', 'different', 'zero', 'to-zero', 'edges'] as const;
type Mode = (typeof MODES)[number];

/** An (old, now) pair of `size` bytes whose differences follow `mode`. */
function pagePair(size: number, mode: Mode, seed: number): { old: Uint8Array; now: Uint8Array } {
  const r = prng(seed);
  const old = new Uint8Array(size);
  for (let i = 0; i < size; i++) old[i] = r() & 0xff;
  if (mode === 'zero') old.fill(0);
  const now = old.slice();
  const flip = (i: number) => {
    now[i] = (old[i] as number) ^ (1 + (r() % 255));
  };
  switch (mode) {
    case 'sparse': {
      // a few 1..8-byte words changed, some of them partly
      const k = 1 + (r() % 6);
      for (let j = 0; j < k; j++) {
        const start = r() % size;
        const len = 1 + (r() % 8);
        for (let i = start; i < Math.min(size, start + len); i++) if (r() % 4 !== 0) flip(i);
      }
      break;
    }
    case 'dense': {
      const p = [5, 30, 50, 90, 99][r() % 5] as number;
      for (let i = 0; i < size; i++) if (r() % 100 < p) flip(i);
      break;
    }
    case 'gaps': {
      // changes separated by unchanged runs of 1, 2 or 3 bytes: literals that keep or end on a gap
      let i = r() % 3;
      while (i < size) {
        const run = 1 + (r() % 5);
        for (let j = 0; j < run && i < size; j++, i++) flip(i);
        i += 1 + (r() % 3);
      }
      break;
    }
    case 'equal':
    case 'zero':
      break;
    case 'different':
      for (let i = 0; i < size; i++) flip(i);
      break;
    case 'to-zero':
      now.fill(0);
      break;
    case 'edges':
      // the first and last bytes, and the bytes next to them
      for (const i of [0, 1, size - 2, size - 1]) if (i >= 0 && r() % 2 === 0) flip(i);
      break;
  }
  return { old, now };
}

/**
 * An upper bound on the delta of an `n`-byte page: n bytes of literal, 2 header bytes for a first
 * pair at 0, and at most 1 extra header byte per 130 bytes (a 2-byte lit needs ≥ 128 + a 2-byte gap).
 */
function worstCase(n: number): number {
  return n + 4 + Math.ceil(n / 64);
}

const SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 4095, 4096, 4097, 8191, 8192];
const sizeArb = fc.oneof(fc.constantFrom(...SIZES), fc.integer({ min: 1, max: 8192 }));
const offsetArb = fc.integer({ min: 0, max: 7 });

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

// ---------------------------------------------------------------------------------------------

describe('loading', () => {
  it('loads the native addon (CI builds it)', () => {
    expect(mod.native?.kind, `native addon not loaded: ${mod.nativeLoadError}`).toBe('native');
    expect(mod.nativeLoadError).toBeUndefined();
    expect(mod.hot.kind).toBe('native');
    expect(mod.fallback.kind).toBe('fallback');
  });

  it('REMUS_WAN_NATIVE=0 selects the TypeScript fallback', async () => {
    const off = await loadWith('0');
    expect(off.hot.kind).toBe('fallback');
    expect(off.hot).toBe(off.fallback);
    expect(off.native).toBeUndefined();
    expect(off.nativeLoadError).toMatch(/REMUS_WAN_NATIVE=0/);
  });
});

describe('encodeDelta', () => {
  it('gives the documented example (docs/codec.md §2) in both', () => {
    const old = new Uint8Array(4096);
    const now = new Uint8Array(4096);
    old.set([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 0x68, 0, 0, 0x6b, 0, 0x6d], 1001);
    now.set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0x68, 0, 0, 0x67, 0, 0x69], 1001);
    const want = [0xe9, 0x07, 0x0f, 4, 4, 4, 12, 12, 12, 12, 4, 4, 4, 4, 28, 28, 28, 28, 3, 3, 12, 0, 4];
    for (const loops of [N, T]) {
      const out = new Uint8Array(4096);
      expect(loops.encodeDelta(old, now, out, 4096)).toBe(23);
      expect([...out.subarray(0, 23)]).toEqual(want);
    }
  });

  it('is byte-identical, with the same -1 points, and round-trips through both decoders', () => {
    fc.assert(
      fc.property(
        sizeArb,
        fc.constantFrom(...MODES),
        fc.integer(),
        offsetArb,
        offsetArb,
        offsetArb,
        (size, mode, seed, oOld, oNow, oOut) => {
          const pair = pagePair(size, mode, seed);
          const old = at(pair.old, oOld);
          const now = at(pair.now, oNow);
          const cap = worstCase(size);
          const outN = at(new Uint8Array(cap).fill(0xa5), oOut);
          const outT = at(new Uint8Array(cap).fill(0xa5), (oOut + 3) % 8);
          const len = N.encodeDelta(old, now, outN, cap);
          expect(T.encodeDelta(old, now, outT, cap)).toBe(len);
          expect(len).toBeGreaterThanOrEqual(0);
          expect(equalBytes(outN, outT)).toBe(true);
          const delta = outN.slice(0, len);

          // round trip through both decoders, into unaligned copies of old
          for (const dec of [N, T]) {
            const page = at(pair.old, (oOld + 5) % 8);
            expect(dec.applyDelta(page, at(delta, oOut))).toBeUndefined();
            expect(equalBytes(page, pair.now)).toBe(true);
          }

          // limits around the exact length, and ones that give up early, midway or at once
          const r = prng(seed ^ 0x5bd1e995);
          const limits = [
            len,
            len - 1,
            len + 1,
            Math.floor(len / 2),
            r() % (len + 1),
            3,
            2,
            1,
            0,
            -1,
            -7.5,
            0.5,
          ];
          if (len > 4) limits.push(len - 2, len - 3, size);
          for (const limit of limits) {
            if (limit > cap) continue;
            const a = at(new Uint8Array(cap).fill(0x3c), 1);
            const b = at(new Uint8Array(cap).fill(0x3c), 6);
            const got = N.encodeDelta(old, now, a, limit);
            expect(T.encodeDelta(old, now, b, limit), `limit ${limit}`).toBe(got);
            expect(got).toBe(len <= limit || len === 0 ? len : -1);
            // after -1 the content of out is unspecified (the native encoder may give up earlier)
            if (got >= 0) expect(equalBytes(a, b), `out bytes, limit ${limit}`).toBe(true);
          }
        },
      ),
      { numRuns: 600 },
    );
  });

  it('handles all sizes 1..300 for every mode (dense coverage of the word loops’ tails)', () => {
    for (let size = 1; size <= 300; size++) {
      for (const mode of MODES) {
        const { old, now } = pagePair(size, mode, size * 31 + mode.length);
        const cap = worstCase(size);
        const a = new Uint8Array(cap);
        const b = new Uint8Array(cap);
        const len = N.encodeDelta(at(old, size % 8), at(now, (size + 3) % 8), a, cap);
        expect(T.encodeDelta(old, now, b, cap), `size ${size} ${mode}`).toBe(len);
        expect(equalBytes(a, b), `size ${size} ${mode}`).toBe(true);
      }
    }
  });

  it('never gives up on a delta that fits exactly (the native early give-up is a strict bound)', () => {
    // dense and gappy pages make the native encoder take its counting pass; a limit of exactly the
    // delta length must still give the delta, one byte less must give -1
    for (let seed = 1; seed <= 400; seed++) {
      const r = prng(seed);
      const size = [4096, 4097, 1000, 333, 8192][seed % 5] as number;
      const mode = (['dense', 'gaps', 'different'] as const)[seed % 3] as Mode;
      const { old, now } = pagePair(size, mode, seed);
      if (r() % 2 === 0) {
        const from = r() % size; // an unchanged stretch
        now.set(old.subarray(from, from + (r() % size)), from);
      }
      const cap = worstCase(size);
      const len = T.encodeDelta(old, now, new Uint8Array(cap), cap);
      for (const limit of [len, len - 1, len + 1]) {
        if (limit < 0) continue;
        const a = new Uint8Array(cap);
        const b = new Uint8Array(cap);
        const got = N.encodeDelta(at(old, seed % 8), now, a, limit);
        expect(got, `seed ${seed} ${mode} size ${size} limit ${limit}`).toBe(len <= limit ? len : -1);
        expect(T.encodeDelta(old, now, b, limit)).toBe(got);
        if (got >= 0) expect(equalBytes(a, b)).toBe(true);
      }
    }
  });

  it('throws the same errors on misuse', () => {
    const p = new Uint8Array(16);
    const cases: [string, (l: HotLoops) => unknown, ErrorConstructor][] = [
      ['length mismatch', (l) => l.encodeDelta(p, new Uint8Array(15), new Uint8Array(64), 64), RangeError],
      ['out shorter than limit', (l) => l.encodeDelta(p, p, new Uint8Array(8), 9), RangeError],
      ['limit NaN', (l) => l.encodeDelta(p, p, new Uint8Array(8), Number.NaN), TypeError],
      [
        'limit not a number',
        (l) => l.encodeDelta(p, p, new Uint8Array(8), '4' as unknown as number),
        TypeError,
      ],
      ['index out of room', (l) => l.hashPageInto(p, new Uint32Array(2), 1), RangeError],
      ['index negative', (l) => l.hashPageInto(p, new Uint32Array(2), -1), RangeError],
      ['classify index out of room', (l) => l.classifyPage(p, new Uint32Array(3), 1), RangeError],
      ['classify index negative', (l) => l.classifyPage(p, new Uint32Array(2), -1), RangeError],
      ['classify index fractional', (l) => l.classifyPage(p, new Uint32Array(4), 0.5), RangeError],
      ['pageSize 0', (l) => l.hashPages(p, 0, new Uint32Array(2)), RangeError],
      ['pageSize not dividing', (l) => l.hashPages(p, 5, new Uint32Array(8)), RangeError],
      ['out too small', (l) => l.hashPages(p, 4, new Uint32Array(7)), RangeError],
    ];
    for (const [name, call, type] of cases) {
      expect(() => call(N), `native: ${name}`).toThrow(type);
      expect(() => call(T), `fallback: ${name}`).toThrow(type);
    }
    expect(() => N.encodeDelta([] as unknown as Uint8Array, p, p, 0)).toThrow(TypeError);
    expect(() => N.classifyPage(p, new Uint16Array(4) as unknown as Uint32Array, 0)).toThrow(TypeError);
  });
});

describe('applyDelta', () => {
  /** Both decoders on copies of `old`: same fault, same (possibly partly written) page. */
  function same(old: Uint8Array, delta: Uint8Array, offset = 0): string | undefined {
    const a = at(old, offset);
    const b = at(old, (offset + 3) % 8);
    const fault = N.applyDelta(a, at(delta, (offset + 1) % 8));
    expect(T.applyDelta(b, delta)).toBe(fault);
    expect(equalBytes(a, b)).toBe(true);
    // the decoder's fused call: the same fault and page, and on success the hash of the result
    const c = at(old, (offset + 5) % 8);
    const d = old.slice();
    const hc = new Uint32Array(2);
    const hd = new Uint32Array(2);
    expect(N.applyDeltaHash(c, at(delta, (offset + 2) % 8), hc)).toBe(fault);
    expect(T.applyDeltaHash(d, delta, hd)).toBe(fault);
    expect(equalBytes(c, a) && equalBytes(d, a)).toBe(true);
    if (fault === undefined) {
      const h = T.hashPage(a);
      expect([hc[0], hc[1], hd[0], hd[1]]).toEqual([h.hi, h.lo, h.hi, h.lo]);
    }
    // the decoder's batch call, with the page in slot 2 of a slab and the delta 5 bytes into a stream
    if (old.length > 0) {
      for (const loops of [N, T]) {
        const slab = new Uint8Array(3 * old.length).fill(0xa5);
        slab.set(old, 2 * old.length);
        const stream = new Uint8Array(5 + delta.length).fill(0x5a);
        stream.set(delta, 5);
        const hashes = new Uint32Array(4);
        const applied = loops.applyDeltasHash(
          slab,
          old.length,
          stream,
          Int32Array.of(2, 5, delta.length),
          1,
          hashes,
        );
        expect(applied).toBe(fault === undefined ? 1 : 0);
        expect(equalBytes(slab.subarray(2 * old.length), a)).toBe(true);
        expect(slab.subarray(0, 2 * old.length).every((v) => v === 0xa5)).toBe(true);
        if (fault === undefined) expect([hashes[0], hashes[1]]).toEqual([hc[0], hc[1]]);
        else expect(faultOf(hashes[0] as number)).toBe(fault);
      }
    }
    return fault;
  }

  it('applies a batch in order and stops at the first fault, in both', () => {
    const ps = 64;
    const old = [0, 1, 2].map((k) => new Uint8Array(ps).map((_, i) => (i * (k + 3)) & 0xff));
    const now = old.map((p, k) => p.map((v, i) => (i % (k + 5) === 0 ? v ^ 0x3c : v)));
    const deltas = old.map((p, k) => {
      const out = new Uint8Array(ps);
      return out.slice(0, T.encodeDelta(p, now[k] as Uint8Array, out, ps));
    });
    const bad = Uint8Array.of(0x00, 0x00); // an empty literal
    const stream = new Uint8Array([...(deltas[0] as Uint8Array), ...bad, ...(deltas[2] as Uint8Array)]);
    const l0 = (deltas[0] as Uint8Array).length;
    const results = [N, T].map((loops) => {
      const slab = new Uint8Array(3 * ps);
      old.forEach((p, k) => {
        slab.set(p, (2 - k) * ps); // page k in slot 2 − k
      });
      const ops = Int32Array.of(2, 0, l0, 0, l0 + 2, (deltas[2] as Uint8Array).length);
      const hashes = new Uint32Array(6);
      const two = loops.applyDeltasHash(slab, ps, stream, ops, 2, hashes); // both fine
      const fresh = slab.slice();
      fresh.set(old[0] as Uint8Array, 2 * ps);
      const withBad = Int32Array.of(2, 0, l0, 1, l0, 2, 0, l0 + 2, 1);
      const h2 = new Uint32Array(8);
      const stopped = loops.applyDeltasHash(fresh, ps, stream, withBad, 3, h2);
      return { two, slab, hashes, stopped, fault: faultOf(h2[2] as number), fresh };
    });
    for (const r of results) {
      expect(r.two).toBe(2);
      expect(equalBytes(r.slab.subarray(2 * ps), now[0] as Uint8Array)).toBe(true);
      expect(equalBytes(r.slab.subarray(0, ps), now[2] as Uint8Array)).toBe(true);
      expect(r.stopped).toBe(1);
      expect(r.fault).toBe('empty-literal');
    }
    expect(results[0]?.hashes).toEqual(results[1]?.hashes);
    expect(equalBytes(results[0]?.fresh as Uint8Array, results[1]?.fresh as Uint8Array)).toBe(true);
  });

  it('refuses out-of-range batches before writing anything, in both', () => {
    for (const loops of [N, T]) {
      const slab = new Uint8Array(128);
      const stream = Uint8Array.of(0, 1, 7);
      const h = new Uint32Array(4);
      const call =
        (ops: number[], count = 1, hashes = h) =>
        () =>
          loops.applyDeltasHash(slab, 64, stream, Int32Array.from(ops), count, hashes);
      expect(call([2, 0, 3])).toThrow(/slot lies outside/);
      expect(call([-1, 0, 3])).toThrow(/slot lies outside/);
      expect(call([0, 1, 3])).toThrow(/delta lies outside/);
      expect(call([0, 0, -1])).toThrow(/delta lies outside/);
      expect(call([0, 0, 3], 2)).toThrow(/3 words per record/);
      expect(call([0, 0, 3], 1, new Uint32Array(3))).toThrow(/2 words per record/);
      expect(call([0, 0, 3, 5, 0, 0], 2, new Uint32Array(6))).toThrow(RangeError);
      expect(slab.every((v) => v === 0)).toBe(true); // the second record was out of range: nothing applied
    }
  });

  it('classifies hand-made faults alike', () => {
    const page = new Uint8Array(64).map((_, i) => i);
    const cases: [number[], string | undefined][] = [
      [[], undefined],
      [[0, 1, 0xff], undefined],
      [[0x80], 'truncated'],
      [[0], 'truncated'],
      [[0, 0x80], 'truncated'],
      [[0, 3, 1, 2], 'truncated'],
      [[0, 0], 'empty-literal'],
      [[0, 1, 9, 0, 1, 9], 'zero-run'],
      [[0, 1, 9, 0, 0], 'empty-literal'],
      [[63, 2, 1, 1], 'overrun'],
      [[64, 1, 1], 'overrun'],
      [[63, 1, 1], undefined],
      [[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0], 'truncated'], // 9-byte uleb
      [[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0, 1, 5], 'truncated'], // 9-byte zrun 0
      [[0, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0, 5], 'truncated'], // 9-byte lit 1
      [[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0, 1, 5], undefined], // 8-byte zrun 0
      [[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 1], 'overrun'], // zrun 2^56 - 1
      [[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 1, 1], 'overrun'], // zrun 2^49
      [[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], 'overrun'], // lit 2^56 - 1
      [[0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0], 'empty-literal'], // long zero lit
      [[0, 1, 5, 0x80, 0x80, 0], 'truncated'],
      [[2, 0x81, 0x00], 'truncated'], // lit 1 spelled in 2 bytes, then no byte
      [[2, 0x81, 0x00, 7, 3, 1, 5], undefined],
      [[2, 0x81, 0x00, 7, 3, 0x82], 'truncated'],
    ];
    for (const [bytes, want] of cases) {
      expect(same(page, Uint8Array.from(bytes)), JSON.stringify(bytes)).toBe(want);
    }
  });

  it('gives the same fault and page for random deltas', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 300 }),
        fc.uint8Array({ maxLength: 80 }),
        offsetArb,
        (size, delta, offset) => {
          same(
            new Uint8Array(size).map((_, i) => i * 13),
            delta,
            offset,
          );
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('gives the same fault and page for mutated valid deltas', () => {
    fc.assert(
      fc.property(
        sizeArb,
        fc.constantFrom(...MODES),
        fc.integer(),
        fc.array(
          fc.record({
            op: fc.constantFrom('flip', 'set', 'cut', 'insert', 'delete', 'grow'),
            pos: fc.nat(),
            byte: fc.constantFrom(0, 1, 2, 0x7f, 0x80, 0x81, 0xff),
          }),
          { minLength: 1, maxLength: 4 },
        ),
        offsetArb,
        (size, mode, seed, edits, offset) => {
          const { old, now } = pagePair(size, mode, seed);
          const out = new Uint8Array(worstCase(size));
          let delta = Array.from(out.subarray(0, T.encodeDelta(old, now, out, out.length)));
          for (const { op, pos, byte } of edits) {
            const i = delta.length === 0 ? 0 : pos % delta.length;
            if (op === 'flip' && delta.length > 0) delta[i] = (delta[i] as number) ^ (1 << (pos % 8));
            else if (op === 'set' && delta.length > 0) delta[i] = byte;
            else if (op === 'cut') delta = delta.slice(0, i);
            else if (op === 'insert') delta.splice(i, 0, byte);
            else if (op === 'delete') delta.splice(i, 1);
            else if (op === 'grow') delta.push(byte, 1, byte);
          }
          same(old, Uint8Array.from(delta), offset);
        },
      ),
      { numRuns: 1500 },
    );
  });
});

describe('encodePage', () => {
  /**
   * One encodePage call by `loops` on fresh unaligned copies of (old, now), checked against the
   * separate loops of the TypeScript reference: the hash always, -2 (nothing touched) for a zero page,
   * -1 without a base, else encodeDelta's result and bytes with the base holding the page afterwards.
   * @returns the result and the bytes of `out` (for comparing the implementations)
   */
  function check(
    loops: HotLoops,
    old: Uint8Array | null,
    now: Uint8Array,
    limit: number,
    cap: number,
    offsets: [number, number, number],
    what: string,
  ): { n: number; out: Uint8Array } {
    const page = at(now, offsets[0]);
    const base = old === null ? null : at(old, offsets[1]);
    const out = at(new Uint8Array(cap).fill(0xa5), offsets[2]);
    const hashOut = new Uint32Array(4).fill(7);
    const n = loops.encodePage(page, base, out, limit, hashOut);
    const want = T.hashPage(now);
    expect([...hashOut], `${what}: hash`).toEqual([want.hi, want.lo, 7, 7]);
    expect(equalBytes(page, now), `${what}: page untouched`).toBe(true);
    if (now.every((b) => b === 0)) {
      expect(n, what).toBe(-2);
      expect(
        out.every((b) => b === 0xa5),
        `${what}: out untouched`,
      ).toBe(true);
      if (old !== null) expect(equalBytes(base as Uint8Array, old), `${what}: base untouched`).toBe(true);
    } else if (old === null) {
      expect(n, what).toBe(-1);
    } else {
      const ref = new Uint8Array(cap).fill(0xa5);
      expect(n, what).toBe(T.encodeDelta(old, now, ref, limit));
      if (n >= 0) expect(equalBytes(out.subarray(0, n), ref.subarray(0, n)), `${what}: delta`).toBe(true);
      expect(equalBytes(base as Uint8Array, now), `${what}: base updated`).toBe(true);
    }
    return { n, out };
  }

  it('is encodeDelta plus the hash and the base update, identical in both', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.constant(0), sizeArb),
        fc.constantFrom(...MODES),
        fc.integer(),
        fc.boolean(),
        offsetArb,
        offsetArb,
        offsetArb,
        (size, mode, seed, withBase, oPage, oBase, oOut) => {
          const { old, now } =
            size === 0 ? { old: new Uint8Array(0), now: new Uint8Array(0) } : pagePair(size, mode, seed);
          const cap = worstCase(size);
          const len = T.encodeDelta(old, now, new Uint8Array(cap), cap);
          const r = prng(seed ^ 0x27d4eb2f);
          const limits = [cap, len, len - 1, len + 1, r() % (len + 2), 2, 0, -1, 0.5, size - 4];
          for (const limit of limits) {
            if (limit > cap) continue;
            const what = `size ${size} ${mode} limit ${limit}${withBase ? '' : ' no base'}`;
            const offsets: [number, number, number] = [oPage, oBase, oOut];
            const a = check(N, withBase ? old : null, now, limit, cap, offsets, `native ${what}`);
            const b = check(
              T,
              withBase ? old : null,
              now,
              limit,
              cap,
              [oBase, oOut, oPage],
              `fallback ${what}`,
            );
            expect(b.n).toBe(a.n);
            if (a.n >= 0) expect(equalBytes(a.out.subarray(0, a.n), b.out.subarray(0, b.n))).toBe(true);
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it('handles all sizes 0..70, a single nonzero byte anywhere, with and without a base', () => {
    for (let size = 0; size <= 70; size++) {
      for (let pos = -1; pos < size; pos++) {
        const now = new Uint8Array(size);
        if (pos >= 0) now[pos] = 0x80;
        const old = new Uint8Array(size).map((_, i) => (i * 37) & 0xff);
        const cap = worstCase(size);
        for (const base of [old, null, new Uint8Array(size)]) {
          for (const loops of [N, T]) {
            check(loops, base, now, cap, cap, [size % 8, (size + 3) % 8, pos & 7], `size ${size} pos ${pos}`);
          }
        }
      }
    }
  });

  it('finds changes anywhere around 16-byte stripes and 1 KiB words (the native changed-stripe map)', () => {
    // the native encodePage maps which 16-byte stripes differ (64 to a word) while it hashes, for
    // pages up to 64 KiB; a change missed in the map would vanish from the delta
    for (const size of [
      16, 17, 31, 1000, 1008, 1009, 1016, 1023, 1024, 1025, 1040, 2047, 4095, 4096, 4097, 65536, 65537,
    ]) {
      const r = prng(size);
      const old = new Uint8Array(size).map(() => r() & 0xff);
      const spots = [0, 15, 16, 1023, 1024, 1039, 4080, size - 17, size - 16, size - 2, size - 1];
      const sets = [...spots.map((i) => [i]), spots, [size - 1, 3], [16, 17, 18, 20, 1050]];
      for (const set of sets) {
        const now = old.slice();
        for (const i of set) if (i >= 0 && i < size) now[i] = (old[i] as number) ^ 0x41;
        const cap = worstCase(size);
        for (const loops of [N, T]) {
          check(loops, old, now, cap, cap, [size % 8, 1, 2], `size ${size} changes at ${set}`);
        }
      }
    }
  });

  it('gives up (-1) on a dense page and still leaves the page in the base', () => {
    const size = 4096;
    for (let seed = 1; seed <= 40; seed++) {
      const { old, now } = pagePair(size, seed % 2 ? 'different' : 'dense', seed);
      for (const loops of [N, T]) {
        const { n } = check(
          loops,
          old,
          now,
          size - 4,
          size,
          [seed % 8, (seed + 1) % 8, (seed + 2) % 8],
          `seed ${seed}`,
        );
        if (seed % 2) expect(n).toBe(-1);
      }
    }
  });

  it('accepts the page itself as its base (unchanged: the empty delta)', () => {
    for (const loops of [N, T]) {
      const page = at(pagePair(4096, 'sparse', 3).now, 3);
      const copy = page.slice();
      const h = new Uint32Array(2);
      expect(loops.encodePage(page, page, new Uint8Array(16), 16, h)).toBe(0);
      expect(equalBytes(page, copy)).toBe(true);
      expect(loops.encodePage(new Uint8Array(64), null, new Uint8Array(0), 0, h)).toBe(-2);
    }
  });

  it('throws the same errors on misuse', () => {
    const p = new Uint8Array(16).fill(1);
    const h = new Uint32Array(2);
    const cases: [string, (l: HotLoops) => unknown, ErrorConstructor][] = [
      ['length mismatch', (l) => l.encodePage(p, new Uint8Array(15), new Uint8Array(64), 64, h), RangeError],
      ['out shorter than limit', (l) => l.encodePage(p, p.slice(), new Uint8Array(8), 9, h), RangeError],
      ['out shorter than limit, no base', (l) => l.encodePage(p, null, new Uint8Array(8), 9, h), RangeError],
      ['limit NaN', (l) => l.encodePage(p, p.slice(), new Uint8Array(8), Number.NaN, h), TypeError],
      ['limit not a number', (l) => l.encodePage(p, null, p, '4' as unknown as number, h), TypeError],
      [
        'hashOut too short',
        (l) => l.encodePage(p, p.slice(), new Uint8Array(8), 8, new Uint32Array(1)),
        RangeError,
      ],
    ];
    for (const [name, call, type] of cases) {
      expect(() => call(N), `native: ${name}`).toThrow(type);
      expect(() => call(T), `fallback: ${name}`).toThrow(type);
    }
    expect(() => N.encodePage([] as unknown as Uint8Array, null, p, 0, h)).toThrow(TypeError);
    expect(() => N.encodePage(p, [] as unknown as Uint8Array, p, 0, h)).toThrow(TypeError);
    expect(() => N.encodePage(p, undefined as unknown as null, p, 0, h)).toThrow(TypeError);
    expect(() => N.encodePage(p, null, p, 0, new Uint16Array(4) as unknown as Uint32Array)).toThrow(
      TypeError,
    );
  });
});

describe('isZeroPage', () => {
  it('agrees on zero pages and pages with one nonzero byte anywhere', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 8192 }),
        fc.nat(),
        fc.boolean(),
        offsetArb,
        (size, pos, dirty, offset) => {
          const page = new Uint8Array(size);
          if (dirty && size > 0) page[pos % size] = 1 + (pos % 255);
          const view = at(page, offset);
          expect(N.isZeroPage(view)).toBe(!dirty || size === 0);
          expect(T.isZeroPage(view)).toBe(N.isZeroPage(view));
        },
      ),
      { numRuns: 1000 },
    );
    for (let size = 0; size <= 130; size++) {
      for (let pos = 0; pos < size; pos++) {
        const page = new Uint8Array(size);
        page[pos] = 0x80;
        expect(N.isZeroPage(at(page, size % 8)), `size ${size} pos ${pos}`).toBe(false);
      }
      expect(N.isZeroPage(at(new Uint8Array(size), size % 8))).toBe(true);
    }
  });
});

/**
 * docs/codec.md §3 written out as plainly as possible (BigInt lanes, a zero-padded copy read through a
 * DataView), independent of the reference's word loop, to pin the definition itself.
 */
function specHash(page: Uint8Array): { hi: number; lo: number } {
  const M = 0xffffffffffffffffn;
  const P1 = 0x9e3779b185ebca87n;
  const P2 = 0xc2b2ae3d27d4eb4fn;
  const P3 = 0x165667b19e3779f9n;
  const P4 = 0x85ebca77c2b2ae63n;
  const rotl = (x: bigint, r: bigint) => ((x << r) | (x >> (64n - r))) & M;
  const round = (acc: bigint, w: bigint) => (rotl((acc + w * P2) & M, 31n) * P1) & M;
  const len = BigInt(page.length);
  const padded = new Uint8Array(Math.ceil(page.length / 32) * 32);
  padded.set(page);
  const view = new DataView(padded.buffer);
  const v = [(len + P1 + P2) & M, (len + P2) & M, len, (len - P1) & M];
  for (let j = 0; j < padded.length; j += 32) {
    for (let k = 0; k < 4; k++) v[k] = round(v[k] as bigint, view.getBigUint64(j + 8 * k, true));
  }
  const [v1, v2, v3, v4] = v as [bigint, bigint, bigint, bigint];
  let h = (rotl(v1, 1n) + rotl(v2, 7n) + rotl(v3, 12n) + rotl(v4, 18n)) & M;
  for (const vk of v) h = (((h ^ round(0n, vk)) * P1) & M) + P4;
  h = (h + len) & M;
  h ^= h >> 33n;
  h = (h * P2) & M;
  h ^= h >> 29n;
  h = (h * P3) & M;
  h ^= h >> 32n;
  return { hi: Number(h >> 32n), lo: Number(h & 0xffffffffn) };
}

describe('hashes', () => {
  it('follow the written definition (docs/codec.md §3) in both', () => {
    const sizes = [...Array.from({ length: 70 }, (_, i) => i), 95, 96, 97, 127, 128, 129, 4095, 4096, 4097];
    for (const size of sizes) {
      const r = prng(size + 1);
      const page = at(
        new Uint8Array(size).map(() => r() & 0xff),
        size % 8,
      );
      const want = specHash(page);
      expect(T.hashPage(page), `size ${size}`).toEqual(want);
      expect(N.hashPage(page), `size ${size}`).toEqual(want);
    }
    // zero pages of different lengths differ, and so do pages differing in one bit anywhere
    const seen = new Set<string>();
    for (const size of [0, 1, 15, 16, 17, 31, 32, 33, 4096])
      seen.add(JSON.stringify(N.hashPage(new Uint8Array(size))));
    expect(seen.size).toBe(9);
    const base = new Uint8Array(256);
    const h0 = JSON.stringify(N.hashPage(base));
    for (let bit = 0; bit < 256 * 8; bit += 7) {
      const page = base.slice();
      page[bit >> 3] = 1 << (bit & 7);
      expect(JSON.stringify(N.hashPage(page))).not.toBe(h0);
    }
  });

  it('is XXH64 with seed len on pages a nonzero multiple of 32 bytes long (libxxhash 0.8.1 vectors)', () => {
    // bytes from the LCG s = s * 1103515245 + 12345 (mod 2^32), s0 = 12345, byte = (s >>> 16) & 0xff;
    // want = XXH64(page, len, len) from libxxhash 0.8.1, where §3 and XXH64 coincide
    const buf = new Uint8Array(4096);
    let s = 12345;
    for (let i = 0; i < buf.length; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      buf[i] = (s >>> 16) & 0xff;
    }
    const vectors: [number, string][] = [
      [32, '3f5ca4805f48dedd'],
      [64, '19920bac0b68a286'],
      [96, 'bb98dd6cfefbeda0'],
      [4096, '40daec63cd43ffe9'],
    ];
    const hex = ({ hi, lo }: { hi: number; lo: number }) =>
      hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
    for (const [size, want] of vectors) {
      const page = at(buf.subarray(0, size), size % 8);
      expect(hex(specHash(page)), `spec, size ${size}`).toBe(want);
      expect(hex(T.hashPage(page)), `fallback, size ${size}`).toBe(want);
      expect(hex(N.hashPage(page)), `native, size ${size}`).toBe(want);
    }
  });

  it('hashPage and hashPageInto give the same bits in both', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 8192 }), fc.integer(), offsetArb, (size, seed, offset) => {
        const r = prng(seed);
        const page = at(
          new Uint8Array(size).map(() => r() & 0xff),
          offset,
        );
        const want = T.hashPage(page);
        expect(N.hashPage(page)).toEqual(want);
        for (const loops of [N, T]) {
          const out = new Uint32Array(6);
          loops.hashPageInto(page, out, 1);
          expect([out[2], out[3]]).toEqual([want.hi, want.lo]);
          expect([out[0], out[1], out[4], out[5]]).toEqual([0, 0, 0, 0]);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('classifyPage gives the zero test and hashPageInto’s bits in both', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 8192 }),
        fc.constantFrom('zero', 'one', 'random'),
        fc.nat(),
        offsetArb,
        (size, kind, seed, offset) => {
          const r = prng(seed);
          const bytes = new Uint8Array(size);
          if (kind === 'random') for (let i = 0; i < size; i++) bytes[i] = r() & 0xff;
          if (kind === 'one' && size > 0) bytes[seed % size] = 1 << (seed % 8);
          const page = at(bytes, offset);
          const zero = bytes.every((b) => b === 0);
          const want = T.hashPage(page);
          for (const loops of [N, T]) {
            const out = new Uint32Array(6).fill(7);
            expect(loops.classifyPage(page, out, 2)).toBe(zero);
            expect([...out]).toEqual([7, 7, 7, 7, want.hi, want.lo]);
          }
        },
      ),
      { numRuns: 600 },
    );
    for (let size = 0; size <= 70; size++) {
      for (let pos = -1; pos < size; pos++) {
        const page = new Uint8Array(size);
        if (pos >= 0) page[pos] = 0x80;
        const a = new Uint32Array(2);
        const b = new Uint32Array(2);
        const view = at(page, (size + pos + 8) % 8);
        expect(N.classifyPage(view, a, 0), `size ${size} pos ${pos}`).toBe(pos < 0);
        expect(T.classifyPage(view, b, 0), `size ${size} pos ${pos}`).toBe(pos < 0);
        expect([...a]).toEqual([...b]);
      }
    }
  });

  it('hashPages equals hashPage of each page', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 3, 4, 7, 64, 4096),
        fc.integer({ min: 0, max: 9 }),
        fc.integer(),
        offsetArb,
        (pageSize, pages, seed, offset) => {
          const r = prng(seed);
          const buf = at(
            new Uint8Array(pageSize * pages).map(() => (r() % 3 === 0 ? 0 : r() & 0xff)),
            offset,
          );
          const a = new Uint32Array(2 * pages + 2);
          const b = new Uint32Array(2 * pages + 2);
          N.hashPages(buf, pageSize, a);
          T.hashPages(buf, pageSize, b);
          expect([...a]).toEqual([...b]);
          for (let k = 0; k < pages; k++) {
            const h = T.hashPage(buf.subarray(k * pageSize, (k + 1) * pageSize));
            expect([a[2 * k], a[2 * k + 1]]).toEqual([h.hi, h.lo]);
          }
          expect([a[2 * pages], a[2 * pages + 1]]).toEqual([0, 0]);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('readPages', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rwan-readpages-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let files = 0;

  /** A file of `bytes` seeded bytes (a partial last page when not a page multiple), open read-only. */
  function file(bytes: number, seed: number): { fd: number; content: Uint8Array } {
    const r = prng(seed);
    const content = new Uint8Array(bytes).map(() => r() & 0xff);
    const path = join(dir, `f${files++}`);
    writeFileSync(path, content);
    return { fd: openSync(path, 'r'), content };
  }

  /** What readPages must give: each page of pfns[from, to) from `content`, zeros past `fileSize`. */
  function expected(
    content: Uint8Array,
    pfns: Float64Array,
    from: number,
    to: number,
    ps: number,
    size: number,
  ) {
    const out = new Uint8Array(to * ps);
    for (let k = from; k < to; k++) {
      for (let b = 0; b < ps; b++) {
        const at = (pfns[k] as number) * ps + b;
        out[k * ps + b] = at < size && at < content.length ? (content[at] as number) : 0;
      }
    }
    return out;
  }

  it('reads runs and scattered pages alike, with zeros past the size, in both', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(64, 512, 4096),
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 0, max: 4095 }),
        fc.integer(),
        fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 60 }),
        fc.integer({ min: -3, max: 3 }),
        (ps, wholePages, tail, seed, picks, sizeShift) => {
          const bytes = wholePages * ps + (tail % ps);
          const { fd, content } = file(bytes, seed);
          try {
            // ascending and distinct as a capture's, or as given (runs are found either way)
            const sorted = (seed & 1) === 0;
            const list = sorted ? [...new Set(picks)].sort((a, b) => a - b) : picks;
            const pfns = Float64Array.from(list);
            const from = Math.min(pfns.length, seed >>> 28);
            // the size the caller saw may differ from the file's (it grew or shrank meanwhile)
            const size = Math.max(0, bytes + sizeShift * 97);
            const want = expected(content, pfns, from, pfns.length, ps, size);
            for (const loops of [N, T]) {
              const out = new Uint8Array(pfns.length * ps + 3).fill(0xa5);
              loops.readPages(fd, pfns, from, pfns.length, ps, size, out);
              expect(out.subarray(from * ps, pfns.length * ps), loops.kind).toEqual(want.subarray(from * ps));
              expect(out.subarray(0, from * ps).every((v) => v === 0xa5)).toBe(true);
              expect([...out.subarray(pfns.length * ps)]).toEqual([0xa5, 0xa5, 0xa5]);
            }
          } finally {
            closeSync(fd);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('reads into a view at any byteOffset', () => {
    const { fd, content } = file(5 * 4096, 11);
    try {
      const pfns = Float64Array.of(1, 2, 4);
      for (const loops of [N, T]) {
        const out = at(new Uint8Array(3 * 4096), 5);
        loops.readPages(fd, pfns, 0, 3, 4096, content.length, out);
        expect(out).toEqual(expected(content, pfns, 0, 3, 4096, content.length));
      }
    } finally {
      closeSync(fd);
    }
  });

  it('throws the same errors on misuse, before reading', () => {
    const { fd } = file(4096, 3);
    try {
      const out = new Uint8Array(2 * 4096);
      const two = Float64Array.of(0, 1);
      const cases: [string, (l: HotLoops) => unknown, ErrorConstructor][] = [
        ['negative fd', (l) => l.readPages(-1, two, 0, 2, 4096, 4096, out), RangeError],
        [
          'pfns not a Float64Array',
          (l) => l.readPages(fd, [0, 1] as unknown as Float64Array, 0, 2, 4096, 4096, out),
          TypeError,
        ],
        ['to past pfns', (l) => l.readPages(fd, two, 0, 3, 4096, 4096, out), RangeError],
        ['from after to', (l) => l.readPages(fd, two, 2, 1, 4096, 4096, out), RangeError],
        ['page size 0', (l) => l.readPages(fd, two, 0, 2, 0, 4096, out), RangeError],
        ['fractional size', (l) => l.readPages(fd, two, 0, 2, 4096, 1.5, out), RangeError],
        [
          'out not bytes',
          (l) => l.readPages(fd, two, 0, 2, 4096, 4096, new Uint16Array(8192) as unknown as Uint8Array),
          TypeError,
        ],
        ['out too short', (l) => l.readPages(fd, two, 0, 2, 4096, 4096, out.subarray(1)), RangeError],
        ['negative pfn', (l) => l.readPages(fd, Float64Array.of(0, -1), 0, 2, 4096, 4096, out), RangeError],
        [
          'fractional pfn',
          (l) => l.readPages(fd, Float64Array.of(0.5, 1), 0, 2, 4096, 4096, out),
          RangeError,
        ],
        [
          'pfn past 2^53 bytes',
          (l) => l.readPages(fd, Float64Array.of(0, 2 ** 41), 0, 2, 4096, 4096, out),
          RangeError,
        ],
      ];
      for (const [name, call, type] of cases) {
        out.fill(7);
        expect(() => call(N), `native: ${name}`).toThrow(type);
        expect(() => call(T), `fallback: ${name}`).toThrow(type);
        expect(out.every((v) => v === 7)).toBe(true);
      }
    } finally {
      closeSync(fd);
    }
  });

  it('throws the failed read’s error with its code, errno and syscall, in both', () => {
    const { fd } = file(4096, 5);
    closeSync(fd); // a closed descriptor: EBADF
    for (const loops of [N, T]) {
      let err: unknown;
      try {
        loops.readPages(fd, Float64Array.of(0), 0, 1, 4096, 4096, new Uint8Array(4096));
      } catch (e) {
        err = e;
      }
      expect(err, loops.kind).toBeInstanceOf(Error);
      expect(err).toMatchObject({ code: 'EBADF', errno: -9, syscall: 'read' });
      expect((err as Error).message).toMatch(/^EBADF: /);
    }
  });

  it('reads the same on the thread pool (readPagesAsync), checks first, rejects a failed read', async () => {
    const read = mod.readPagesAsync;
    if (read === undefined) throw new Error(`no readPagesAsync: ${mod.nativeLoadError}`);
    for (const [bytes, seed] of [
      [300 * 4096 + 77, 1],
      [4096, 2],
      [0, 3],
    ] as const) {
      const { fd, content } = file(bytes, seed);
      try {
        const pfns = Float64Array.from([0, 1, 2, 7, 8, 150, 151, 299, 300, 301]);
        const out = new Uint8Array(pfns.length * 4096).fill(0xa5);
        await read(fd, pfns, 2, pfns.length, 4096, bytes, out);
        const want = expected(content, pfns, 2, pfns.length, 4096, bytes);
        expect(out.subarray(2 * 4096)).toEqual(want.subarray(2 * 4096));
        expect(out.subarray(0, 2 * 4096).every((v) => v === 0xa5)).toBe(true);
      } finally {
        closeSync(fd);
      }
    }
    const out = new Uint8Array(4096).fill(7);
    expect(() => read(0, Float64Array.of(-1), 0, 1, 4096, 4096, out)).toThrow(RangeError);
    expect(() => read(0, Float64Array.of(0), 0, 1, 4096, 4096, out.subarray(1))).toThrow(RangeError);
    expect(out.every((v) => v === 7)).toBe(true);
    const { fd } = file(4096, 5);
    closeSync(fd); // a closed descriptor: EBADF
    await expect(read(fd, Float64Array.of(0), 0, 1, 4096, 4096, out)).rejects.toMatchObject({
      code: 'EBADF',
      syscall: 'read',
    });
  });

  it('reads nothing for an empty range, and pages wholly past the size as zeros', () => {
    const { fd } = file(4096, 9);
    try {
      for (const loops of [N, T]) {
        const out = new Uint8Array(2 * 4096).fill(1);
        loops.readPages(fd, Float64Array.of(5, 6), 1, 1, 4096, 4096, out);
        expect(out.every((v) => v === 1)).toBe(true);
        loops.readPages(fd, Float64Array.of(5, 6), 0, 2, 4096, 4096, out);
        expect(out.every((v) => v === 0)).toBe(true);
      }
    } finally {
      closeSync(fd);
    }
  });
});

describe('mapFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rwan-mapfile-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('maps a file shared both ways; unmap empties every view and is idempotent', () => {
    const map = mod.mapFile;
    if (map === undefined) throw new Error(`the addon cannot map files: ${mod.nativeLoadError}`);
    const path = join(dir, 'shared');
    writeFileSync(path, Buffer.alloc(8192, 3));
    const fd = openSync(path, 'r+');
    try {
      const m = map(fd, 8192, true);
      expect(m.bytes.length).toBe(8192);
      expect(m.bytes[8191]).toBe(3);
      m.bytes.fill(9, 4096, 4100);
      const back = Buffer.alloc(6);
      readSync(fd, back, 0, 6, 4094);
      expect([...back]).toEqual([3, 3, 9, 9, 9, 9]);
      writeSync(fd, Buffer.of(7), 0, 1, 0);
      expect(m.bytes[0]).toBe(7);
      const view = m.bytes.subarray(4096);
      m.unmap();
      expect(m.bytes.length).toBe(0);
      expect(view.length).toBe(0);
      m.unmap();
      const ro = map(fd, 4096, false);
      expect(ro.bytes[0]).toBe(7);
      ro.unmap();
    } finally {
      closeSync(fd);
    }
  });

  it('reports a failed mmap as fs would, and checks its arguments', () => {
    const map = mod.mapFile;
    if (map === undefined) throw new Error(`the addon cannot map files: ${mod.nativeLoadError}`);
    const path = join(dir, 'ro');
    writeFileSync(path, Buffer.alloc(4096));
    const fd = openSync(path, 'r');
    try {
      expect(() => map(fd, 4096, true)).toThrow(expect.objectContaining({ code: 'EACCES', syscall: 'mmap' }));
      expect(() => map(fd, 0, false)).toThrow(RangeError);
      expect(() => map(-1, 4096, false)).toThrow(RangeError);
    } finally {
      closeSync(fd);
    }
  });
});

describe('releaseMemory', () => {
  it('zeroes the whole pages inside the view (their memory given back) and leaves the edges', () => {
    const sab = new SharedArrayBuffer(5 * 4096);
    const all = new Uint8Array(sab).fill(7);
    const view = all.subarray(100, 4 * 4096 + 50);
    const released = mod.releaseMemory(view);
    if (process.platform !== 'linux') return expect(released).toBe(0);
    // the view's whole pages (the memory need not start on a page boundary): two or three of them
    expect(released % 4096).toBe(0);
    expect(released).toBeGreaterThanOrEqual(2 * 4096);
    const zeros = all.reduce((n, v) => n + (v === 0 ? 1 : 0), 0);
    expect(zeros).toBe(released);
    expect(all[100]).toBe(7);
    expect(all[4 * 4096 + 49]).toBe(7);
    expect(mod.releaseMemory(new Uint8Array(0))).toBe(0);
    expect(() => mod.releaseMemory([1, 2] as unknown as Uint8Array)).toThrow(TypeError);
  });
});

describe('fixMmapThreshold', () => {
  it('sets glibc’s threshold on Linux with glibc, and refuses sizes out of range', () => {
    const glibc =
      (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header
        ?.glibcVersionRuntime !== undefined;
    expect(mod.fixMmapThreshold(128 * 1024)).toBe(glibc);
    expect(() => mod.fixMmapThreshold(1024)).toThrow(RangeError);
    expect(() => mod.fixMmapThreshold(64 * 2 ** 20)).toThrow(RangeError);
    expect(() => mod.fixMmapThreshold('big' as unknown as number)).toThrow(TypeError);
  });
});
