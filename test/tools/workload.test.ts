import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isRwanError } from '../../src/errors.js';
import { Workload } from '../../tools/workload/generator.js';
import {
  PAGE_LOG_MAGIC,
  type PageLogEpoch,
  PageLogReader,
  PageLogWriter,
  readPageLog,
  readPageLogHeader,
  writePageLog,
} from '../../tools/workload/page-log.js';
import { pageLogStats } from '../../tools/workload/page-log-stats.js';

const dir = mkdtempSync(join(tmpdir(), 'rwan-workload-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
const tmp = (): string => join(dir, `f${fileNo++}.pagelog`);

/** Runs a workload and returns, per epoch, the pfns and a copy of their pages. */
function record(w: Workload, epochs: number): { pfns: Uint32Array; pages: Buffer }[] {
  const out: { pfns: Uint32Array; pages: Buffer }[] = [];
  for (let i = 0; i < epochs; i++) {
    const e = w.nextEpoch();
    const pages = Buffer.alloc(e.pfns.length * w.pageSize);
    e.pfns.forEach((pfn, j) => {
      w.pageAt(pfn).copy(pages, j * w.pageSize);
    });
    out.push({ pfns: e.pfns, pages });
  }
  return out;
}

describe('Workload', () => {
  it('is deterministic for a seed and differs between seeds', () => {
    const o = { pages: 4096, dirtyPerEpoch: 200 };
    const a = new Workload({ ...o, seed: 7 });
    const b = new Workload({ ...o, seed: 7 });
    const c = new Workload({ ...o, seed: 8 });
    expect(a.memory.equals(b.memory)).toBe(true);
    expect(a.memory.equals(c.memory)).toBe(false);
    const ra = record(a, 10);
    const rb = record(b, 10);
    const rc = record(c, 10);
    for (let i = 0; i < 10; i++) {
      expect(ra[i]?.pfns).toEqual(rb[i]?.pfns);
      expect(ra[i]?.pages.equals(rb[i]?.pages as Buffer)).toBe(true);
    }
    expect(a.memory.equals(b.memory)).toBe(true);
    expect(ra.map((e) => [...e.pfns])).not.toEqual(rc.map((e) => [...e.pfns]));
  });

  it('pins the content of a seed (a change of the generator shows up here; update the digest on purpose)', () => {
    const w = new Workload({ pages: 512, dirtyPerEpoch: 40, seed: 1 });
    for (let i = 0; i < 5; i++) w.nextEpoch();
    // FNV-1a over the memory: cheap and stable.
    let h = 0x811c9dc5;
    for (const byte of w.memory) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
    expect(h.toString(16)).toBe('7df357cc');
  });

  it('returns sorted, unique pfns inside the guest, with their write counts', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3000 }),
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 2, noNaN: true }),
        (pages, seed, fraction, zipf) => {
          const w = new Workload({
            pages,
            seed,
            dirtyFraction: fraction,
            zipf,
            pageSize: 256,
            cluster: Math.min(4, pages),
          });
          for (let i = 0; i < 3; i++) {
            const e = w.nextEpoch();
            expect(e.epoch).toBe(i + 1);
            expect(e.writes.length).toBe(e.pfns.length);
            expect(e.pfns.length).toBeLessThanOrEqual(pages);
            for (let j = 0; j < e.pfns.length; j++) {
              expect(e.pfns[j]).toBeLessThan(pages);
              if (j > 0) expect(e.pfns[j]).toBeGreaterThan(e.pfns[j - 1] as number);
              expect(e.writes[j]).toBeGreaterThanOrEqual(1);
            }
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('dirties pages outside the returned set never', () => {
    const w = new Workload({ pages: 2048, dirtyPerEpoch: 100, seed: 3 });
    for (let i = 0; i < 20; i++) {
      const before = w.snapshot();
      const e = w.nextEpoch();
      const dirty = new Set(e.pfns);
      for (let pfn = 0; pfn < w.pages; pfn++) {
        if (dirty.has(pfn)) continue;
        const at = pfn * w.pageSize;
        expect(before.subarray(at, at + w.pageSize).equals(w.pageAt(pfn))).toBe(true);
      }
    }
  });

  it('dirties close to the requested mean per epoch', () => {
    for (const seed of [1, 2, 3]) {
      const w = new Workload({ pages: 16384, dirtyPerEpoch: 1000, seed, epochs: 200 });
      const sizes = [...w].map((e) => e.pfns.length);
      const mean = sizes.reduce((a, b) => a + b, 0) / sizes.length;
      expect(mean).toBeGreaterThan(950);
      expect(mean).toBeLessThan(1050);
      expect(Math.min(...sizes)).toBeGreaterThanOrEqual(750); // burst 0.25
      expect(Math.max(...sizes)).toBeLessThanOrEqual(1250);
    }
    const f = new Workload({ pages: 10000, dirtyFraction: 0.05, burst: 0, seed: 1 });
    expect(f.nextEpoch().pfns.length).toBe(500);
    const all = new Workload({ pages: 1000, dirtyFraction: 1, burst: 0, seed: 1 });
    expect(all.nextEpoch().pfns.length).toBe(1000);
  });

  it('skews writes to hot pages (Zipf): the top 1 % of pages take a large share', () => {
    const pages = 16384;
    const w = new Workload({ pages, dirtyPerEpoch: 1000, seed: 5, epochs: 50 });
    const writes = new Float64Array(pages);
    const appearances = new Float64Array(pages);
    for (const e of w) {
      e.pfns.forEach((pfn, i) => {
        writes[pfn] = (writes[pfn] as number) + (e.writes[i] as number);
        appearances[pfn] = (appearances[pfn] as number) + 1;
      });
    }
    const topShare = (a: Float64Array): number => {
      const s = [...a].sort((x, y) => y - x);
      const total = s.reduce((x, y) => x + y, 0);
      return s.slice(0, pages / 100).reduce((x, y) => x + y, 0) / total;
    };
    expect(topShare(writes)).toBeGreaterThan(0.4); // uniform would give 1 %
    expect(topShare(appearances)).toBeGreaterThan(0.05);
    const uniform = new Workload({ pages, dirtyPerEpoch: 1000, seed: 5, epochs: 50, zipf: 0 });
    writes.fill(0);
    for (const e of uniform) {
      e.pfns.forEach((pfn, i) => {
        writes[pfn] = (writes[pfn] as number) + (e.writes[i] as number);
      });
    }
    expect(topShare(writes)).toBeLessThan(0.03);
  });

  it('mostly changes few bytes of a dirty page (sparse XOR deltas)', () => {
    const w = new Workload({ pages: 4096, dirtyPerEpoch: 300, seed: 9 });
    w.nextEpoch();
    let small = 0;
    let n = 0;
    for (let i = 0; i < 10; i++) {
      const before = w.snapshot();
      const e = w.nextEpoch();
      for (const pfn of e.pfns) {
        const at = pfn * w.pageSize;
        let changed = 0;
        for (let j = 0; j < w.pageSize; j++) if (before[at + j] !== w.memory[at + j]) changed++;
        if (changed < 64) small++;
        n++;
      }
    }
    expect(small / n).toBeGreaterThan(0.5);
    expect(small / n).toBeLessThan(0.95);
  });

  it('honours the mutation and content mixes', () => {
    const zero = new Workload({ pages: 1024, content: { zero: 1 }, mix: { zero: 1 }, seed: 1 });
    expect(zero.memory.every((b) => b === 0)).toBe(true);
    zero.nextEpoch();
    expect(zero.memory.every((b) => b === 0)).toBe(true);
    const random = new Workload({ pages: 256, content: { random: 1 }, seed: 1 });
    const counts = new Uint32Array(256);
    for (const b of random.memory) counts[b] = (counts[b] as number) + 1;
    expect(Math.min(...counts)).toBeGreaterThan(0);
    const text = new Workload({ pages: 64, content: { text: 1 }, seed: 1 });
    expect(text.memory.every((b) => b === 10 || b === 13 || (b >= 32 && b < 127))).toBe(true);
  });

  it('rejects bad options with RWAN_ERR_INVALID_VALUE', () => {
    const bad = [
      { pages: 0 },
      { pages: 10, pageSize: 1000 },
      { pages: 10, dirtyPerEpoch: 11 },
      { pages: 10, dirtyPerEpoch: 1, dirtyFraction: 0.1 },
      { pages: 10, mix: { sparse: -1 } },
      { pages: 10, mix: { sparse: 0 } },
      { pages: 10, content: { purple: 1 } as never },
      { pages: 10, zipf: Number.NaN },
    ];
    for (const o of bad) {
      expect(() => new Workload(o), JSON.stringify(o)).toThrow(
        expect.objectContaining({ code: 'RWAN_ERR_INVALID_VALUE' }),
      );
    }
  });

  it('generates 100 epochs of 2 000 dirty pages on a 64 MiB guest quickly', () => {
    const t0 = performance.now();
    const w = new Workload({ pages: 16384, dirtyPerEpoch: 2000, seed: 1, epochs: 100 });
    let n = 0;
    for (const e of w) n += e.pfns.length;
    const ms = performance.now() - t0;
    expect(n).toBeGreaterThan(150_000);
    expect(ms).toBeLessThan(5000); // ~0.4 s on an idle machine; generous for shared CI
  });
});

describe('page log', () => {
  it('round-trips epochs (write → read gives identical epochs and header)', () => {
    const w = new Workload({ pages: 1024, dirtyPerEpoch: 50, seed: 11, epochs: 8 });
    const path = tmp();
    const writer = PageLogWriter.create(path, { pageSize: 4096, meta: { test: 'round trip', n: 1 } });
    const all = Uint32Array.from({ length: w.pages }, (_, i) => i);
    writer.writeEpochFromMemory(0, all, w.memory);
    const expected: PageLogEpoch[] = [{ epoch: 0, pfns: all, pages: w.snapshot() }];
    for (const e of w) {
      writer.writeEpochFromMemory(e.epoch, e.pfns, e.memory);
      const pages = Buffer.alloc(e.pfns.length * 4096);
      e.pfns.forEach((pfn, i) => {
        w.pageAt(pfn).copy(pages, i * 4096);
      });
      expected.push({ epoch: e.epoch, pfns: e.pfns, pages });
    }
    writer.writeEpoch(100, [], Buffer.alloc(0)); // an empty epoch is allowed
    expected.push({ epoch: 100, pfns: new Uint32Array(0), pages: Buffer.alloc(0) });
    const totals = writer.close();
    expect(totals.epochs).toBe(10);
    expect(readFileSync(path).length).toBe(totals.bytes);

    expect(readPageLogHeader(path)).toEqual({
      version: 1,
      pageSize: 4096,
      meta: { test: 'round trip', n: 1 },
    });
    const got = [...readPageLog(path)];
    expect(got.length).toBe(expected.length);
    got.forEach((e, i) => {
      const x = expected[i] as PageLogEpoch;
      expect(e.epoch).toBe(x.epoch);
      expect([...e.pfns]).toEqual([...x.pfns]);
      expect(e.pages.equals(x.pages)).toBe(true);
    });
  });

  it('round-trips arbitrary epochs (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uniqueArray(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { maxLength: 20 }), {
          maxLength: 6,
        }),
        fc.integer({ min: 0, max: 1000 }),
        (sets, seed) => {
          const ps = 64;
          const epochs = sets.map((s, i) => {
            const pfns = Uint32Array.from(s).sort();
            const pages = Buffer.alloc(pfns.length * ps, (seed + i) & 0xff);
            return { epoch: 2 ** 40 + i * 3, pfns, pages };
          });
          const path = tmp();
          writePageLog(path, { pageSize: ps }, epochs);
          const got = [...readPageLog(path)];
          rmSync(path);
          expect(got.map((e) => [e.epoch, [...e.pfns], e.pages.toString('hex')])).toEqual(
            epochs.map((e) => [e.epoch, [...e.pfns], e.pages.toString('hex')]),
          );
        },
      ),
      { numRuns: 40 },
    );
  });

  it('streams large logs epoch by epoch (records cross the read chunk)', () => {
    const path = tmp();
    const pfns = Uint32Array.from({ length: 3000 }, (_, i) => i * 2);
    const pages = Buffer.alloc(3000 * 4096);
    for (let i = 0; i < 3000; i++) pages.writeUInt32LE(i, i * 4096 + 100);
    writePageLog(path, { pageSize: 4096 }, [{ epoch: 1, pfns, pages }]);
    const [e] = [...readPageLog(path)];
    expect(e?.pages.equals(pages)).toBe(true);
    expect(e?.pfns).toEqual(pfns);
  });

  it('closes the file when a reader stops early', () => {
    const path = tmp();
    writePageLog(path, { pageSize: 64 }, [
      { epoch: 1, pfns: [1], pages: Buffer.alloc(64) },
      { epoch: 2, pfns: [2], pages: Buffer.alloc(64) },
    ]);
    const r = PageLogReader.open(path);
    for (const e of r) {
      expect(e.epoch).toBe(1);
      break;
    }
    expect(() => r.close()).not.toThrow();
  });

  describe('rejects a malformed log with RWAN_ERR_INVALID_INPUT, its offset and reason', () => {
    const good = (): Buffer => {
      const path = tmp();
      writePageLog(path, { pageSize: 64, meta: { a: 1 } }, [
        { epoch: 1, pfns: [3, 5], pages: Buffer.alloc(128, 7) },
        { epoch: 2, pfns: [4], pages: Buffer.alloc(64, 9) },
      ]);
      return readFileSync(path);
    };
    // header 20 + meta 7 ("{"a":1}") = 27; epoch 1 at 27: tag, epoch u64 at 31, count at 39, records at 43
    const metaEnd = 27;
    const edit =
      (f: (b: Buffer) => unknown) =>
      (b: Buffer): Buffer => {
        f(b);
        return b;
      };
    const HEADER_META = 20;
    const cases: [string, (b: Buffer) => Buffer, string, RegExp][] = [
      ['magic', (b) => Buffer.concat([Buffer.from('NOTALOG!'), b.subarray(8)]), 'magic', /not a page log/],
      ['empty file', () => Buffer.alloc(0), 'truncated', /ends inside the header/],
      ['short non-log', () => Buffer.from('garbage'), 'magic', /not a page log/],
      ['short log', (b) => b.subarray(0, 12), 'truncated', /ends inside the header/],
      ['version', edit((b) => b.writeUInt16LE(2, 8)), 'version', /version 2 is not supported/],
      ['page size', edit((b) => b.writeUInt32LE(100, 12)), 'page-size', /page size 100/],
      ['bad JSON', edit((b) => b.write('x', HEADER_META)), 'meta', /not valid JSON/],
      ['epoch tag', edit((b) => b.write('EPCX', metaEnd)), 'tag', /expected "EPCH" or "DONE"/],
      [
        'epoch order',
        edit((b) => b.writeUInt32LE(5, metaEnd + 4)),
        'epoch-order',
        /epoch 2 does not follow epoch 5/,
      ],
      [
        'pfn order',
        edit((b) => b.writeUInt32LE(9, metaEnd + 16)),
        'pfn-order',
        /pfn 5 does not follow pfn 9/,
      ],
      ['count', edit((b) => b.writeUInt32LE(99, metaEnd + 12)), 'truncated', /announces 99 pages/],
      ['truncated', (b) => b.subarray(0, b.length - 30), 'truncated', /epoch 2 announces 1 pages/],
      [
        'no trailer',
        (b) => b.subarray(0, b.length - 20),
        'truncated',
        /ends inside the epoch or trailer tag/,
      ],
      ['trailer totals', edit((b) => b.writeUInt32LE(7, b.length - 16)), 'trailer', /announces 7 epochs/],
      [
        'trailing bytes',
        (b) => Buffer.concat([b, Buffer.from([0])]),
        'trailing-bytes',
        /1 bytes after the trailer/,
      ],
    ];
    for (const [name, corrupt, reason, message] of cases) {
      it(name, () => {
        const path = tmp();
        writeFileSync(path, corrupt(good()));
        let err: unknown;
        try {
          for (const _ of readPageLog(path)) {
            /* drain */
          }
        } catch (e) {
          err = e;
        }
        expect(isRwanError(err, 'RWAN_ERR_INVALID_INPUT')).toBe(true);
        const e = err as { details: { reason: string; offset: number }; message: string };
        expect(e.details.reason).toBe(reason);
        expect(e.message).toMatch(message);
        expect(e.message).toContain(path);
        expect(typeof e.details.offset).toBe('number');
      });
    }

    it('a missing file is RWAN_ERR_IO', () => {
      expect(() => [...readPageLog(join(dir, 'nope'))]).toThrow(
        expect.objectContaining({ code: 'RWAN_ERR_IO' }),
      );
    });
  });

  it('the writer refuses unsorted pfns, decreasing epochs and wrong page lengths', () => {
    const w = PageLogWriter.create(tmp(), { pageSize: 64 });
    expect(() => w.writeEpoch(1, [2, 1], Buffer.alloc(128))).toThrow(/strictly increasing/);
    expect(() => w.writeEpoch(1, [1], Buffer.alloc(10))).toThrow(/need 64 bytes/);
    w.writeEpoch(1, [1], Buffer.alloc(64));
    expect(() => w.writeEpoch(1, [1], Buffer.alloc(64))).toThrow(/does not follow/);
    w.close();
    expect(() => w.close()).toThrow(/closed twice/);
  });

  it('starts with the documented magic', () => {
    const path = tmp();
    writePageLog(path, { pageSize: 4096 }, []);
    const b = readFileSync(path);
    expect(b.subarray(0, 8).equals(PAGE_LOG_MAGIC)).toBe(true);
    // header 20 + trailer 20, nothing else
    expect(b.toString('hex')).toBe(
      `${Buffer.from('RWPAGLOG').toString('hex')}0100000000100000` +
        `00000000${Buffer.from('DONE').toString('hex')}${'00'.repeat(16)}`,
    );
  });

  it('page-log-stats reads a generated log', () => {
    const w = new Workload({ pages: 2048, dirtyPerEpoch: 100, seed: 2, epochs: 5 });
    const path = tmp();
    const writer = PageLogWriter.create(path, { pageSize: 4096, meta: w.describe() });
    writer.writeEpochFromMemory(
      0,
      Uint32Array.from({ length: w.pages }, (_, i) => i),
      w.memory,
    );
    for (const e of w) writer.writeEpochFromMemory(e.epoch, e.pfns, e.memory);
    writer.close();
    const s = pageLogStats(path);
    expect(s.epochs).toBe(6);
    expect(s.initialPages).toBe(2048);
    expect(s.firstSeenShare).toBe(0);
    expect(s.dirtyPerEpoch.mean).toBeGreaterThan(70);
    expect(s.meta).toMatchObject({ generator: 'remus-wan workload', seed: 2 });
  });
});
