/**
 * The workload generator's epoch loop in C (native/workload.c) against the TypeScript one: the same
 * pfns, write counts and memory, epoch after epoch, for every mutation and content kind, page sizes
 * and hook modes.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { workloadNative } from '../../src/codec/hot-loops.js';
import { type EpochHooks, Workload, type WorkloadOptions } from '../../tools/workload/generator.js';
import { paceRun } from '../../tools/workload/writer.js';

const digest = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Runs `epochs` epochs on both implementations and compares them after each. */
function same(options: WorkloadOptions, epochs: number, hooks?: () => EpochHooks): void {
  const c = new Workload(options);
  const ts = new Workload(options, undefined, { native: false });
  expect(c.isNative).toBe(true);
  expect(ts.isNative).toBe(false);
  expect(digest(c.memory)).toBe(digest(ts.memory));
  for (let e = 1; e <= epochs; e++) {
    const a = c.nextEpoch(hooks?.());
    const b = ts.nextEpoch(hooks?.());
    expect(a.pfns, `pfns of epoch ${e}`).toEqual(b.pfns);
    expect(a.writes, `writes of epoch ${e}`).toEqual(b.writes);
    if (!c.memory.equals(ts.memory)) {
      const at = c.memory.findIndex((v, i) => v !== ts.memory[i]);
      throw new Error(`epoch ${e}: memory differs first at byte ${at} (page ${Math.floor(at / c.pageSize)})`);
    }
  }
}

describe.skipIf(workloadNative === undefined)('native workload loop', () => {
  it('matches the TypeScript generator on the default workload', () => {
    same({ pages: 4096, seed: 7 }, 60);
  });

  it('matches for every mutation kind alone and every content kind', () => {
    const mixes = [
      { sparse: 1, append: 0, rewrite: 0, zero: 0, copy: 0 },
      { sparse: 0, append: 1, rewrite: 0, zero: 0, copy: 0 },
      { sparse: 0, append: 0, rewrite: 1, zero: 0, copy: 0 },
      { sparse: 0, append: 0, rewrite: 0, zero: 1, copy: 0 },
      { sparse: 0, append: 0, rewrite: 0, zero: 0, copy: 1 },
    ];
    const contents = [
      { zero: 0.5, text: 0.5, structured: 0, random: 0 },
      { zero: 0, text: 0, structured: 1, random: 0 },
      { zero: 0.2, text: 0, structured: 0, random: 0.8 },
      { zero: 1, text: 0, structured: 0, random: 0 },
    ];
    let seed = 100;
    for (const mix of mixes) {
      for (const content of contents) same({ pages: 512, seed: seed++, mix, content, dirtyPerEpoch: 200 }, 8);
    }
  });

  it('matches for other page sizes, hot spots, bursts and seeds', () => {
    same({ pages: 3000, pageSize: 64, seed: 1, dirtyPerEpoch: 900 }, 20);
    same({ pages: 700, pageSize: 512, seed: 2, burst: 0.9 }, 30);
    same({ pages: 300, pageSize: 16384, seed: 3, zipf: 1.4, dirtyPerEpoch: 250 }, 20);
    same({ pages: 1000, seed: 4, zipf: 0, dirtyPerEpoch: 1000 }, 5); // every page, through the sweep
  });

  it('writes the same whatever the hooks (per page, in runs, none), and runs that cover the epoch', () => {
    const options = { pages: 2048, seed: 9 };
    same(options, 10, () => ({ beforeWrite() {} }));
    same(options, 10, () => ({ beforeRun() {}, run: 7 }));
    // runs of at most `run` pages that together are the epoch's pages, in draw order
    const w = new Workload(options);
    const runs: number[][] = [];
    const e = w.nextEpoch({ run: 5, beforeRun: (pfns) => runs.push([...pfns]) });
    expect(runs.every((r) => r.length >= 1 && r.length <= 5)).toBe(true);
    expect(runs.slice(0, -1).every((r) => r.length === 5)).toBe(true);
    expect(runs.flat().sort((a, b) => a - b)).toEqual([...e.pfns]);
  });
});

describe.skipIf(workloadNative === undefined)('native workload context', () => {
  it('refuses arrays of the wrong type or size, and pool lines outside the pool', () => {
    const n = workloadNative as NonNullable<typeof workloadNative>;
    const pages = 4;
    const args = () =>
      [
        new Uint8Array(pages * 4096),
        new Uint32Array(1),
        new Uint8Array(pages),
        new Uint32Array(pages),
        new Uint32Array(pages),
        new Uint32Array(pages),
        new Uint32Array(pages),
        new Float64Array(pages),
        new Uint32Array(pages),
        new Uint32Array(pages),
        new Float64Array(5),
        new Float64Array(4),
        new Uint8Array(10),
        new Uint32Array(4096),
        new Uint32Array(4096),
        new Uint32Array(4096),
        Float64Array.of(4096, 0, 0, 0, 0),
      ] as Parameters<typeof n.context>;
    expect(typeof n.context(...args())).toBe('object');
    const wrongType = args();
    wrongType[3] = new Float64Array(pages) as unknown as Uint32Array;
    expect(() => n.context(...wrongType)).toThrow(/wrong type or too short/);
    const short = args();
    short[0] = new Uint8Array(pages * 4096 - 1);
    expect(() => n.context(...short)).toThrow(/wrong type or too short/);
    const outside = args();
    (outside[14] as Uint32Array)[7] = 11; // line 7: 11 bytes of a 10-byte pool
    expect(() => n.context(...outside)).toThrow(/outside the pool/);
  });
});

describe("the writer's runs of page writes", () => {
  it('never span two dirty-log batches, and are at most 16 pages', () => {
    expect(paceRun('epoch')).toBe(16);
    expect(paceRun('page')).toBe(1);
    for (let n = 1; n <= 300; n++) {
      const run = paceRun(n);
      expect(run >= 1 && run <= 16 && n % run === 0, `batches of ${n}: runs of ${run}`).toBe(true);
    }
    expect(paceRun(16)).toBe(16);
    expect(paceRun(40)).toBe(10);
    expect(paceRun(151)).toBe(1);
  });
});
