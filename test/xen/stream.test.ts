/**
 * The Xen stream reader and writer (src/xen): the spec's first bytes reproduced; generated HVM and
 * PV streams, both byte orders, Remus and migration endings, read and written back byte for byte;
 * every split point of a stream into two chunks, and one byte at a time; every malformation the
 * reader checks, each with its typed error; random corruption never escapes as anything else.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RwanError } from '../../src/errors.js';
import { XenStreamStats } from '../../src/measure/xen-stream.js';
import { joinCheckpoint, type XenCheckpoint, XenCheckpointer } from '../../src/xen/checkpoint.js';
import {
  LibxcRecord,
  LibxlRecord,
  optionalType,
  PageType,
  type XenItem,
  type XenRecord,
} from '../../src/xen/format.js';
import { type GenerateOptions, generateXenStream } from '../../src/xen/generate.js';
import { buildPageData, parsePageData } from '../../src/xen/page-data.js';
import { readXenStream, XenStreamReader } from '../../src/xen/reader.js';
import { writeXenStream, XenStreamWriter } from '../../src/xen/writer.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const records = (items: XenItem[]) => items.filter((i): i is XenRecord => i.kind.endsWith('-record'));
/** Items with every buffer as its SHA-1 (deep equality on megabytes of bytes is slow). */
const shape = (items: XenItem[]) =>
  items.map((i) =>
    Object.fromEntries(
      Object.entries(i).map(([k, v]) => [
        k,
        Buffer.isBuffer(v) ? createHash('sha1').update(v).digest('hex') : v,
      ]),
    ),
  );
const small: GenerateOptions = { guest: 'hvm', pages: 6, checkpoints: 2, dirtyPages: 3, batch: 4 };

/** The code of what `f` throws (a non-RwanError fails the test). */
function codeOf(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (err) {
    if (!(err instanceof RwanError)) throw err;
    return err.code;
  }
}

describe('the bytes of docs/xen-stream §2.8', () => {
  it('xl header, libxl header, LIBXC_CONTEXT, libxc headers, PAGE_DATA, CHECKPOINT, CHECKPOINT_END', () => {
    const config = Buffer.from('{"c_info":{}}');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(config.length);
    const w = new XenStreamWriter();
    const page = Buffer.alloc(4096, 0x5a);
    const bytes = [
      w.encode({
        kind: 'xl-header',
        endian: 'le',
        mandatoryFlags: 3,
        optionalFlags: 0,
        optionalData: Buffer.concat([len, config]),
      }),
      w.encode({ kind: 'libxl-header', version: 2, options: 0 }),
      w.encode({
        kind: 'libxl-record',
        type: LibxlRecord.LIBXC_CONTEXT,
        body: Buffer.alloc(0),
        checkpoint: 0,
      }),
      w.encode({
        kind: 'libxc-header',
        version: 3,
        options: 0,
        domainType: 2,
        pageShift: 12,
        xenMajor: 4,
        xenMinor: 21,
      }),
      w.encode({
        kind: 'libxc-record',
        type: LibxcRecord.PAGE_DATA,
        body: buildPageData([0x100, 0x200], [PageType.NOTAB, PageType.XTAB], page, 'le'),
        checkpoint: 0,
      }),
    ];
    expect(bytes[0]).toEqual(
      hex(`58 65 6e 20 73 61 76 65 64 20 64 6f 6d 61 69 6e 2c 20 78 6c 20 66 6f 72 6d 61 74 0a 20 00 20 0d
           04 03 02 01  03 00 00 00  00 00 00 00  11 00 00 00
           0d 00 00 00  7b 22 63 5f 69 6e 66 6f 22 3a 7b 7d 7d`),
    );
    expect(bytes[1]).toEqual(hex('4c 69 62 78 6c 46 6d 74  00 00 00 02  00 00 00 00'));
    expect(bytes[2]).toEqual(hex('01 00 00 00 00 00 00 00'));
    expect(bytes[3]).toEqual(
      hex(`ff ff ff ff ff ff ff ff  58 45 4e 46  00 00 00 03  00 00 00 00 00 00 00 00
           02 00 00 00  0c 00  00 00  04 00 00 00  15 00 00 00`),
    );
    expect(bytes[4]?.subarray(0, 32)).toEqual(
      hex(
        '01 00 00 00 18 10 00 00  02 00 00 00 00 00 00 00  00 01 00 00 00 00 00 00  00 02 00 00 00 00 00 f0',
      ),
    );
    expect(bytes[4]?.subarray(32)).toEqual(page);
    const rec = (type: number, kind: XenRecord['kind']) =>
      w.encode({ kind, type, body: Buffer.alloc(0), checkpoint: 0 });
    expect(rec(LibxcRecord.CHECKPOINT, 'libxc-record')).toEqual(hex('0e 00 00 00 00 00 00 00'));
    expect(rec(LibxlRecord.CHECKPOINT_END, 'libxl-record')).toEqual(hex('04 00 00 00 00 00 00 00'));
  });
});

describe('round trip', () => {
  const cases: Array<[string, GenerateOptions]> = [
    ['HVM, little-endian, Remus', { guest: 'hvm', pages: 300, checkpoints: 5, dirtyPages: 40, seed: 3 }],
    ['HVM, big-endian', { guest: 'hvm', pages: 200, checkpoints: 3, dirtyPages: 25, endian: 'be', seed: 4 }],
    ['PV, little-endian', { guest: 'pv', pages: 1100, checkpoints: 4, dirtyPages: 90, seed: 5 }],
    [
      'PV, big-endian, no optional records',
      { guest: 'pv', pages: 64, checkpoints: 2, dirtyPages: 8, endian: 'be', optionalRecords: false },
    ],
    [
      'HVM migration (no checkpoint)',
      { guest: 'hvm', pages: 260, checkpoints: 0, dirtyPages: 0, end: 'migration' },
    ],
  ];
  for (const [name, o] of cases) {
    it(`${name}: read, written back byte for byte`, () => {
      const items = [...generateXenStream(o)];
      const bytes = writeXenStream(items);
      const { items: read, end } = readXenStream(bytes);
      expect(shape(read)).toEqual(shape(items));
      expect(writeXenStream(read).equals(bytes)).toBe(true);
      expect(end).toEqual(
        o.end === 'migration'
          ? { at: 'finished', checkpoints: 0 }
          : { at: 'checkpoint', checkpoints: o.checkpoints + 1 },
      );
      // per checkpoint: the first pass has every pfn, then each checkpoint its dirty pages
      const pfnsOf = (cp: number) =>
        records(read)
          .filter((r) => r.kind === 'libxc-record' && r.type === LibxcRecord.PAGE_DATA && r.checkpoint === cp)
          .flatMap((r) => parsePageData(r.body, o.endian ?? 'le', 4096).pfns);
      expect(pfnsOf(0)).toEqual(Array.from({ length: o.pages }, (_, i) => i));
      for (let cp = 1; cp <= o.checkpoints; cp++) {
        const pfns = pfnsOf(cp);
        expect(pfns).toHaveLength(o.dirtyPages);
        expect(new Set(pfns).size).toBe(o.dirtyPages);
      }
      // every PAGE_DATA batch within Xen's 1024 pfns
      for (const r of records(read).filter(
        (x) => x.kind === 'libxc-record' && x.type === LibxcRecord.PAGE_DATA,
      )) {
        expect(parsePageData(r.body, o.endian ?? 'le', 4096).pfns.length).toBeLessThanOrEqual(1024);
      }
    });
  }

  it('a plain migration’s closing bytes after libxl END come back as a trailer', () => {
    const bytes = writeXenStream(generateXenStream({ ...small, checkpoints: 0, end: 'migration' }));
    const tail = Buffer.from('domain is yours, you are cleared to unpause\0');
    const { items, end } = readXenStream(Buffer.concat([bytes, tail]));
    expect(items.at(-1)).toEqual({ kind: 'trailer', bytes: tail });
    expect(end.at).toBe('finished');
    expect(writeXenStream(items).equals(Buffer.concat([bytes, tail]))).toBe(true);
  });

  it('splits at every offset into two chunks, and one byte at a time, give the same items', () => {
    const items = [...generateXenStream(small)];
    const bytes = writeXenStream(items);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const r = new XenStreamReader();
      const got = [...r.push(bytes.subarray(0, cut)), ...r.push(bytes.subarray(cut))];
      if (got.length !== items.length) throw new Error(`cut at ${cut}: ${got.length} items`);
      expect(r.end().at).toBe('checkpoint');
    }
    const r = new XenStreamReader();
    const got: XenItem[] = [];
    for (let i = 0; i < bytes.length; i++) got.push(...r.push(bytes.subarray(i, i + 1)));
    expect(shape(got)).toEqual(shape(items));
  });

  it('where a stream stops: inside a checkpoint (partial), at its end (checkpoint), inside a record (truncated)', () => {
    const items = [...generateXenStream(small)];
    const w = new XenStreamWriter();
    const ends: number[] = [];
    const parts = items.map((i) => {
      const b = w.encode(i);
      ends.push(w.position);
      return b;
    });
    const bytes = Buffer.concat(parts);
    const lastEnd = items.findIndex(
      (i) => i.kind === 'libxl-record' && i.type === LibxlRecord.CHECKPOINT_END && i.checkpoint === 1,
    );
    expect(readXenStream(bytes.subarray(0, ends[lastEnd])).end).toEqual({ at: 'checkpoint', checkpoints: 2 });
    expect(readXenStream(bytes.subarray(0, ends[lastEnd + 1])).end).toEqual({
      at: 'partial',
      checkpoints: 2,
    });
    expect(codeOf(() => readXenStream(bytes.subarray(0, (ends[lastEnd + 1] as number) + 5)))).toBe(
      'RWAN_ERR_XEN_TRUNCATED',
    );
  });
});

describe('malformed streams: typed errors', () => {
  const bytes = writeXenStream(generateXenStream(small));
  const items = [...generateXenStream(small)];
  /** The stream with `edit` applied to a copy. */
  const edited = (edit: (b: Buffer) => void) => {
    const b = Buffer.from(bytes);
    edit(b);
    return b;
  };
  /** The stream written from items changed by `edit`. */
  const rewritten = (edit: (items: XenItem[]) => XenItem[]) =>
    writeXenStream(edit(items.map((i) => ({ ...i }))));
  const libxcStart = 48 + (items[0] as { optionalData: Buffer }).optionalData.length + 16 + 8;
  const firstRecord = libxcStart + 40;

  it.each([
    ['a bad xl magic', 'RWAN_ERR_XEN_HEADER', () => edited((b) => b.write('Q', 0))],
    ['a bad xl byte order', 'RWAN_ERR_XEN_HEADER', () => edited((b) => b.writeUInt32LE(0x01020305, 32))],
    [
      'a legacy stream (no STREAMv2 flag)',
      'RWAN_ERR_XEN_HEADER',
      () => edited((b) => b.writeUInt32LE(1, 36)),
    ],
    ['a bad libxl ident', 'RWAN_ERR_XEN_HEADER', () => edited((b) => b.write('X', libxcStart - 24))],
    ['a libxl version 3', 'RWAN_ERR_XEN_HEADER', () => edited((b) => b.writeUInt32BE(3, libxcStart - 16))],
    ['a legacy libxc marker', 'RWAN_ERR_XEN_HEADER', () => edited((b) => b.writeUInt8(0, libxcStart))],
    [
      'a bad libxc id',
      'RWAN_ERR_XEN_HEADER',
      () => edited((b) => b.writeUInt32BE(0x58454e47, libxcStart + 8)),
    ],
    ['a libxc version 4', 'RWAN_ERR_XEN_HEADER', () => edited((b) => b.writeUInt32BE(4, libxcStart + 12))],
    ['libxc reserved bytes', 'RWAN_ERR_XEN_HEADER', () => edited((b) => b.writeUInt8(1, libxcStart + 23))],
    [
      'an unknown mandatory libxc record',
      'RWAN_ERR_XEN_RECORD',
      () => edited((b) => b.writeUInt32LE(0x13, firstRecord)),
    ],
    [
      'a record over 128 MiB',
      'RWAN_ERR_XEN_RECORD',
      () => edited((b) => b.writeUInt32LE(128 * 2 ** 20 + 1, firstRecord + 4)),
    ],
    [
      'non-zero padding',
      'RWAN_ERR_XEN_RECORD',
      () => {
        // the xenstore data record's body is not a multiple of 8: its padding follows it
        const w = new XenStreamWriter();
        for (const i of items) {
          const start = w.position;
          const b = w.encode(i);
          if (
            i.kind === 'libxl-record' &&
            i.type === LibxlRecord.EMULATOR_XENSTORE_DATA &&
            i.body.length % 8
          ) {
            return edited((x) => x.writeUInt8(1, start + b.length - 1));
          }
        }
        throw new Error('no padded record');
      },
    ],
    [
      'an unknown mandatory libxl record',
      'RWAN_ERR_XEN_RECORD',
      () =>
        rewritten((x) =>
          x.map((i) =>
            i.kind === 'libxl-record' && i.type === LibxlRecord.CHECKPOINT_END ? { ...i, type: 6 } : i,
          ),
        ),
    ],
    [
      'a CHECKPOINT with a body',
      'RWAN_ERR_XEN_RECORD',
      () =>
        rewritten((x) =>
          x.map((i) =>
            i.kind === 'libxc-record' && i.type === LibxcRecord.CHECKPOINT
              ? { ...i, body: Buffer.alloc(8) }
              : i,
          ),
        ),
    ],
    [
      'CHECKPOINT_END before any CHECKPOINT',
      'RWAN_ERR_XEN_RECORD',
      () =>
        rewritten((x) => {
          x.splice(2, 0, {
            kind: 'libxl-record',
            type: LibxlRecord.CHECKPOINT_END,
            body: Buffer.alloc(0),
            checkpoint: 0,
          });
          return x;
        }),
    ],
    [
      'PAGE_DATA with a reserved page type',
      'RWAN_ERR_XEN_PAGE_DATA',
      () =>
        rewritten((x) =>
          x.map((i) =>
            i.kind === 'libxc-record' && i.type === LibxcRecord.PAGE_DATA
              ? { ...i, body: buildPageData([1], [0x5], Buffer.alloc(4096), 'le') }
              : i,
          ),
        ),
    ],
    [
      'PAGE_DATA one page short',
      'RWAN_ERR_XEN_PAGE_DATA',
      () =>
        rewritten((x) =>
          x.map((i) =>
            i.kind === 'libxc-record' && i.type === LibxcRecord.PAGE_DATA
              ? { ...i, body: i.body.subarray(0, i.body.length - 4096) }
              : i,
          ),
        ),
    ],
    [
      'PAGE_DATA with no pfn',
      'RWAN_ERR_XEN_PAGE_DATA',
      () =>
        rewritten((x) =>
          x.map((i) =>
            i.kind === 'libxc-record' && i.type === LibxcRecord.PAGE_DATA
              ? { ...i, body: Buffer.alloc(8) }
              : i,
          ),
        ),
    ],
  ])('%s: %s', (_name, code, make) => {
    expect(codeOf(() => readXenStream(make()))).toBe(code);
  });

  it('an optional record of any type is read and kept; LIBXC_CONTEXT twice is refused', () => {
    const extra = rewritten((x) => {
      const at = x.findIndex((i) => i.kind === 'libxc-record' && i.type === LibxcRecord.STATIC_DATA_END);
      x.splice(at, 0, {
        kind: 'libxc-record',
        type: optionalType(0x7fff0000),
        body: Buffer.from('skip me'),
        checkpoint: 0,
      });
      return x;
    });
    expect(records(readXenStream(extra).items).some((r) => r.type === optionalType(0x7fff0000))).toBe(true);
    const twice = rewritten((x) => {
      const end = x.findIndex((i) => i.kind === 'libxc-record' && i.type === LibxcRecord.CHECKPOINT);
      x.splice(end + 1, 0, {
        kind: 'libxl-record',
        type: LibxlRecord.LIBXC_CONTEXT,
        body: Buffer.alloc(0),
        checkpoint: 0,
      });
      return x;
    });
    expect(codeOf(() => readXenStream(twice))).toBe('RWAN_ERR_XEN_RECORD');
  });

  it('random corruption: the stream reads, or fails with a typed Xen error, never anything else', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(bytes.length - 1), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.nat(bytes.length),
        (edits, cut) => {
          const b = Buffer.from(bytes.subarray(0, cut));
          for (const [at, v] of edits) if (at < b.length) b[at] = v;
          const code = codeOf(() => readXenStream(b));
          if (code !== undefined) expect(code).toMatch(/^RWAN_ERR_XEN_/);
        },
      ),
      { numRuns: 3000 },
    );
  });
});

describe('the generator', () => {
  it('dirties a Zipf set: the hottest pages come back in most checkpoints; a page rewritten changes a few words', () => {
    const o: GenerateOptions = {
      guest: 'hvm',
      pages: 2000,
      checkpoints: 20,
      dirtyPages: 100,
      zipf: 1.1,
      seed: 9,
    };
    const items = [...generateXenStream(o)];
    const count = new Map<number, number>();
    const latest = new Map<number, Buffer>();
    let words = 0;
    let compared = 0;
    for (const r of records(items)) {
      if (r.kind !== 'libxc-record' || r.type !== LibxcRecord.PAGE_DATA) continue;
      const b = parsePageData(r.body, 'le', 4096);
      b.pfns.forEach((pfn, i) => {
        const page = b.data.subarray(4096 * (b.slot[i] as number), 4096 * ((b.slot[i] as number) + 1));
        const before = latest.get(pfn);
        if (r.checkpoint > 0) {
          count.set(pfn, (count.get(pfn) ?? 0) + 1);
          if (before) {
            let d = 0;
            for (let o4 = 0; o4 < 4096; o4 += 4) if (page.readUInt32LE(o4) !== before.readUInt32LE(o4)) d++;
            words = Math.max(words, d);
            compared++;
          }
        }
        latest.set(pfn, Buffer.from(page));
      });
    }
    const hottest = Math.max(...count.values());
    expect(hottest).toBeGreaterThanOrEqual(18); // in (nearly) every checkpoint
    expect(count.size).toBeLessThan(2000 * 0.6); // most dirties land on a minority of pages
    expect(compared).toBeGreaterThan(1000);
    expect(words).toBeLessThanOrEqual(2 * 64 + 1024); // a zero page written whole, or a few words
  });

  it('the same seed gives the same bytes; another seed, other bytes', () => {
    const a = writeXenStream(generateXenStream({ ...small, seed: 7 }));
    expect(writeXenStream(generateXenStream({ ...small, seed: 7 })).equals(a)).toBe(true);
    expect(writeXenStream(generateXenStream({ ...small, seed: 8 })).equals(a)).toBe(false);
  });
});

describe('checkpoints: pages for the codec, the rest opaque, joined back byte for byte', () => {
  it.each<[string, GenerateOptions]>([
    ['HVM', { guest: 'hvm', pages: 1500, checkpoints: 6, dirtyPages: 120, seed: 21 }],
    ['PV big-endian', { guest: 'pv', pages: 1300, checkpoints: 4, dirtyPages: 70, endian: 'be', seed: 22 }],
    [
      'a migration with closing bytes',
      { guest: 'hvm', pages: 400, checkpoints: 0, dirtyPages: 0, end: 'migration' },
    ],
  ])('%s', (_name, o) => {
    const tail =
      o.end === 'migration' ? Buffer.from('domain is yours, you are cleared to unpause\0') : Buffer.alloc(0);
    const bytes = Buffer.concat([writeXenStream(generateXenStream(o)), tail]);
    const cp = new XenCheckpointer();
    const got: XenCheckpoint[] = [];
    // fed as a capture would come: in uneven chunks
    const r = new XenStreamReader();
    for (let at = 0; at < bytes.length; at += 65_536 + 7)
      got.push(...cp.push(r.push(bytes.subarray(at, at + 65_536 + 7))));
    expect(got.map((c) => c.end)).toEqual(
      o.end === 'migration'
        ? ['migration', 'trailer']
        : Array.from({ length: o.checkpoints + 1 }, () => 'checkpoint'),
    );
    expect(Buffer.concat(got.map((c) => joinCheckpoint(c))).equals(bytes)).toBe(true);
    for (const c of got) {
      expect(c.pages.length).toBe(4096 * c.pfns.length);
      expect(c.cuts.reduce((s, x) => s + x.pages, 0)).toBe(c.pfns.length);
    }
    // the pages with data, as the per-checkpoint statistics count them
    const stats = new XenStreamStats(100);
    for (const item of readXenStream(bytes).items) stats.add(item);
    expect(got.filter((c) => c.end !== 'trailer').map((c) => c.pfns.length)).toEqual(
      [...stats.rows, ...(o.end === 'migration' ? [stats.pending] : [])].map((x) => x.dirtyPages),
    );
    for (const c of got.slice(1).filter((x) => x.end === 'checkpoint')) {
      expect(c.pfns).toHaveLength(o.dirtyPages);
      // what is not pages is small: pfn lists, vCPU and device state
      expect(c.skeleton.length).toBeLessThan(40_000);
    }
  });
});
