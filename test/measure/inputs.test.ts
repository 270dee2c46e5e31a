/** Every input format, read from files as an operator would pass them, and every way they can be wrong. */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { detectFormat, loadInput, parseInput } from '../../src/measure/inputs.js';
import { epochCounts } from '../../src/planner/trace.js';
import { codeOfAsync } from '../helpers.js';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
const MiB = 2 ** 20;

describe('QEMU query-dirty-rate replies', () => {
  it('QEMU 7.2: calc-time in seconds, no unit field', async () => {
    const [g] = await loadInput(fixture('qemu/qemu-7.2-seconds.json'), 4096);
    expect(g?.measurements).toHaveLength(1);
    expect(g?.measurements[0]?.windowS).toBe(10);
    expect(g?.measurements[0]?.pages[0]).toBeCloseTo((108 * MiB * 10) / 4096, 6);
    expect(g?.measurements[0]?.mode).toBe('page-sampling');
  });
  it('QEMU 8.2+: one reply per line, millisecond and second units, bare DirtyRateInfo', async () => {
    const [g] = await loadInput(fixture('qemu/qemu-8.2-ms.ndjson'), 4096);
    expect(g?.measurements.map((m) => m.windowS)).toEqual([0.1, 1, 2]);
    expect(g?.measurements.map((m) => m.mode)).toEqual(['page-sampling', 'dirty-bitmap', 'dirty-ring']);
    expect(g?.measurements[0]?.pages[0]).toBeCloseTo((40 * MiB * 0.1) / 4096, 6);
  });
  it('a QMP transcript: skips commands, empty returns, events and unfinished results', async () => {
    const [g] = await loadInput(fixture('qemu/transcript.txt'), 4096);
    expect(g?.measurements).toHaveLength(1);
    expect(g?.measurements[0]?.windowS).toBe(0.5);
    expect(g?.measurements[0]?.pages[0]).toBeCloseTo((64 * MiB * 0.5) / 4096, 6);
  });
  it('HMP info dirty_rate text', async () => {
    const [g] = await loadInput(fixture('qemu/hmp.txt'), 4096);
    expect(g?.measurements.map((m) => [m.windowS, m.mode])).toEqual([
      [10, 'dirty-bitmap'],
      [1, 'page-sampling'],
    ]);
    expect(g?.measurements[1]?.pages[0]).toBeCloseTo((6 * MiB) / 4096, 6);
  });
  it('page size changes the page count', async () => {
    const [g] = await loadInput(fixture('qemu/qemu-7.2-seconds.json'), 65536);
    expect(g?.measurements[0]?.pages[0]).toBeCloseTo((108 * MiB * 10) / 65536, 6);
  });
  it('refuses files without a finished result, unknown units, negative rates', async () => {
    expect(await codeOfAsync(loadInput(fixture('qemu/measuring-only.json'), 4096))).toBe(
      'RWAN_ERR_MISSING_FIELD',
    );
    expect(await codeOfAsync(loadInput(fixture('qemu/bad-unit.json'), 4096))).toBe('RWAN_ERR_INVALID_INPUT');
    expect(await codeOfAsync(loadInput(fixture('qemu/negative-rate.json'), 4096))).toBe(
      'RWAN_ERR_INVALID_INPUT',
    );
  });
});

describe('virsh domstats --dirtyrate', () => {
  it('one guest per measured domain; unfinished domains are left out', async () => {
    const guests = await loadInput(fixture('libvirt/domstats.txt'), 4096);
    expect(guests.map((g) => g.name)).toEqual(['vm1', 'vm2']);
    expect(guests[0]?.measurements[0]?.windowS).toBe(1);
    expect(guests[0]?.measurements[0]?.pages[0]).toBe((4 * MiB) / 4096);
    expect(guests[0]?.measurements[0]?.mode).toBe('dirty-ring');
    expect(guests[1]?.measurements[0]?.pages[0]).toBe((10 * MiB * 5) / 4096);
  });
  it('refuses a non-numeric rate', async () => {
    expect(await codeOfAsync(loadInput(fixture('libvirt/bad-rate.txt'), 4096))).toBe(
      'RWAN_ERR_INVALID_INPUT',
    );
  });
});

describe('traces', () => {
  it('CSV writes with a ms time column, hex pfns and a declared duration', async () => {
    const [g] = await loadInput(fixture('trace/writes.csv'), 4096);
    const t = g?.traces[0];
    expect(t?.durationS).toBe(1);
    expect(t?.distinctPages).toBe(4);
    expect([...epochCounts(t!, 0.5)]).toEqual([2, 2]);
    expect([...epochCounts(t!, 0.25)]).toEqual([2, 0, 1, 1]);
  });
  it('NDJSON writes in seconds; duration = last write', async () => {
    const [g] = await loadInput(fixture('trace/writes.ndjson'), 4096);
    expect(g?.traces[0]?.durationS).toBe(1);
    expect([...epochCounts(g!.traces[0]!, 0.5)]).toEqual([2, 1]);
  });
  it('byte addresses become pages; unsorted rows are sorted', async () => {
    const [g] = await loadInput(fixture('trace/addr-unsorted.csv'), 4096);
    const t = g!.traces[0]!;
    expect([...t.times]).toEqual([0, 0.1, 0.5]);
    expect(t.distinctPages).toBe(3);
  });
  it('per-window counts become samples', async () => {
    const [g] = await loadInput(fixture('trace/counts.csv'), 4096);
    expect(g?.measurements.map((m) => [m.windowS, m.pages])).toEqual([
      [0.1, [120, 80, 100]],
      [1, [600]],
    ]);
  });
  it('remus-wan per-epoch stats: pages per epoch and the measured compression', async () => {
    const [g] = await loadInput(fixture('trace/remus-wan-stats.jsonl'), 4096);
    expect(g?.measurements[0]?.pages).toEqual([300, 500]);
    expect(g?.measurements[0]?.mode).toBe('daemon');
    expect(g?.compression?.ratio).toBeCloseTo(0.25, 9);
  });
  it('remus-wan stats as the daemon writes them: jittered epoch lengths are one window, full copies left out', () => {
    const rows = [
      { epoch: 1, full: true, epochMs: 0, dirtyPages: 8192, rawBytes: 33554432, wireBytes: 9e6 },
      { epoch: 2, full: false, epochMs: 99.2, dirtyPages: 300, rawBytes: 1228800, wireBytes: 61440 },
      { epoch: 3, full: false, epochMs: 100.4, dirtyPages: 320, rawBytes: 1310720, wireBytes: 65536 },
      { epoch: 4, full: false, epochMs: 101.1, dirtyPages: 310, rawBytes: 1269760, wireBytes: 63488 },
      { epoch: 5, full: false, epochMs: 250, dirtyPages: 700, rawBytes: 2867200, wireBytes: 143360 },
    ];
    const [g] = parseInput(rows.map((r) => JSON.stringify(r)).join('\n'), 4096, 'stats.jsonl');
    expect(g?.measurements.map((m) => [m.windowS, m.pages])).toEqual([
      [0.1004, [300, 320, 310]],
      [0.25, [700]],
    ]);
    expect(g?.notes.join()).toMatch(/1 full-copy epoch/);
    expect(g?.compression?.ratio).toBeCloseTo(0.05, 9); // the full copy is not in the ratio either
  });
  it('remus-wan stats: the encoding time per page (over all pages, full copies left out) for the ack latency', () => {
    const rows = [
      { epoch: 1, full: true, epochMs: 0, dirtyPages: 8192, wireBytes: 9e6, encodeMs: 900 },
      { epoch: 2, full: false, epochMs: 100, dirtyPages: 200, wireBytes: 6e4, encodeMs: 1 },
      { epoch: 3, full: false, epochMs: 100, dirtyPages: 400, wireBytes: 6e4, encodeMs: 1.6 },
      { epoch: 4, full: false, epochMs: 100, dirtyPages: 100, wireBytes: 6e4, encodeMs: 0.8 },
    ];
    const [g] = parseInput(rows.map((r) => JSON.stringify(r)).join('\n'), 4096, 'stats.jsonl');
    // 3.4 ms for 700 pages: the mean an epoch's processing carries (its epochs took 5, 4 and 8 µs a page)
    expect(g?.processing?.perPageS).toBeCloseTo(3.4e-3 / 700, 12);
    expect(g?.processing?.source).toMatch(/encodeMs per page, over 3 epochs/);
    const [plain] = parseInput('pages,window_ms\n300,100\n', 4096, 'counts.csv');
    expect(plain?.processing).toBeUndefined();
  });
  it("a remus-wan receiver's stats: the backup's decoding and committing per page, nothing else", () => {
    const rows = [
      {
        epoch: 1,
        full: true,
        pages: 8192,
        chunks: 9,
        wireBytes: 9e6,
        decodeMs: 800,
        commitMs: 90,
        ackMs: 900,
      },
      { epoch: 2, full: false, pages: 200, chunks: 1, wireBytes: 6e4, decodeMs: 1, commitMs: 0.5, ackMs: 3 },
      { epoch: 3, full: false, pages: 300, chunks: 1, wireBytes: 6e4, decodeMs: 2, commitMs: 1.5, ackMs: 4 },
    ];
    const [g] = parseInput(rows.map((r) => JSON.stringify(r)).join('\n'), 4096, 'recv.jsonl');
    expect(g?.backupProcessing?.perPageS).toBeCloseTo(5e-3 / 500, 12);
    expect(g?.backupProcessing?.source).toMatch(
      /recv\.jsonl \(decodeMs \+ commitMs per page, over 2 epochs\)/,
    );
    expect(g?.measurements).toEqual([]);
    expect(g?.processing).toBeUndefined();
  });
  it('remus-wan stats: the hedged share, over the wire bytes of the epochs sent once (copied ones left out)', () => {
    const row = (epoch: number, wireBytes: number, copyBytes: number, hedgedBytes: number) => ({
      epoch,
      full: false,
      epochMs: 100,
      dirtyPages: 300,
      rawBytes: 1228800,
      wireBytes,
      copyBytes,
      hedgedBytes,
    });
    const rows = [row(1, 1e5, 0, 0), row(2, 3e5, 6e4, 6e4), row(3, 1e5, 1e5, 0), row(4, 2e5, 1.2e5, 2e4)];
    const [g] = parseInput(rows.map((r) => JSON.stringify(r)).join('\n'), 4096, 'stats.jsonl');
    // epochs 1 and 2 were sent once (their copies are all hedges): 6e4 of 4e5; 3 and 4 were copied
    expect(g?.hedging?.share).toBeCloseTo(0.15, 12);
    expect(g?.hedging?.source).toMatch(/hedgedBytes/);
    // stats of a daemon that does not hedge, and per-window counts: no share
    const old = rows.map(({ hedgedBytes: _, ...r }) => JSON.stringify(r)).join('\n');
    expect(parseInput(old, 4096, 'stats.jsonl')[0]?.hedging).toBeUndefined();
    expect(parseInput('pages,window_ms\n300,100\n', 4096, 'counts.csv')[0]?.hedging).toBeUndefined();
  });
  it('remus-wan stats: the sending share, sendMs less encodeMs over epochMs, averaged over the epochs', () => {
    const row = (epoch: number, epochMs: number, encodeMs: number, sendMs: number) => ({
      epoch,
      full: false,
      epochMs,
      dirtyPages: 300,
      rawBytes: 1228800,
      wireBytes: 1e5,
      encodeMs,
      sendMs,
    });
    // shares 0.5, 0.1 and 0 (sent while it was encoded); the full copy is left out
    const rows = [
      { ...row(1, 0, 900, 5000), full: true },
      row(2, 100, 10, 60),
      row(3, 200, 30, 50),
      row(4, 100, 8, 8),
    ];
    const [g] = parseInput(rows.map((r) => JSON.stringify(r)).join('\n'), 4096, 'stats.jsonl');
    expect(g?.sending?.share).toBeCloseTo(0.2, 12);
    expect(g?.sending?.source).toMatch(/mean of 3 epochs\)/);
    // with a steady stream after them, epochs 2 and 3 are the full copy's catch-up (3 took two
    // epochs); an epoch queued behind a resend (20 epochs' wait) is far out: left out of the mean
    const steady = Array.from({ length: 12 }, (_, i) => row(i + 5, 100, 10, 40 + 10 * (i % 3)));
    const [h] = parseInput(
      [...rows, row(99, 100, 10, 2010), ...steady].map((r) => JSON.stringify(r)).join('\n'),
      4096,
      'stats.jsonl',
    );
    expect(h?.sending?.share).toBeCloseTo((0 + 4 * (0.3 + 0.4 + 0.5)) / 13, 12);
    expect(h?.sending?.source).toMatch(/mean of 13 epochs; 1 far out left out/);
    const old = rows.map(({ sendMs: _, ...r }) => JSON.stringify(r)).join('\n');
    expect(parseInput(old, 4096, 'stats.jsonl')[0]?.sending).toBeUndefined();
  });
  it("remus-wan stats: a full copy's catch-up counts for D(T), not for the compression, hedging, sending or processing", () => {
    const row = (epoch: number, epochMs: number, dirtyPages: number, wireBytes: number) => ({
      epoch,
      full: false,
      epochMs,
      dirtyPages,
      rawBytes: dirtyPages * 4096,
      wireBytes,
      copyBytes: 0,
      hedgedBytes: wireBytes / 10,
      encodeMs: dirtyPages / 100,
      sendMs: dirtyPages / 100 + epochMs / 2,
    });
    // the backlog: stretched epochs, more pages, a worse ratio, no hedges, long waits to leave
    const backlog = [row(2, 400, 900, 2e5), row(3, 100, 300, 9e4), row(4, 2000, 3000, 8e5)].map((r) => ({
      ...r,
      hedgedBytes: 0,
      sendMs: r.encodeMs + 1.5 * r.epochMs,
    }));
    // a steady stream: 100 ms epochs (one at 108), 300 pages, ratio 1/20
    const steady = [100, 100, 108, 100, 100, 100].map((ms, i) => row(5 + i, ms, 300, 61440));
    const full = { epoch: 1, full: true, epochMs: 0, dirtyPages: 8192, rawBytes: 33554432, wireBytes: 9e6 };
    const lines = (rs: object[]) => rs.map((r) => JSON.stringify(r)).join('\n');
    const [g] = parseInput(lines([full, ...backlog, ...steady]), 4096, 'stats.jsonl');
    expect(g?.measurements.map((m) => m.windowS)).toEqual([0.1, 0.4, 2]);
    expect(g?.compression?.ratio).toBeCloseTo(0.05, 12);
    expect(g?.compression?.source).toMatch(/over 6 epochs/);
    expect(g?.hedging?.share).toBeCloseTo(0.1, 12);
    expect(g?.sending?.share).toBeCloseTo(0.5, 12);
    expect(g?.processing?.perPageS).toBeCloseTo(1e-5, 15);
    expect(g?.notes.join()).toMatch(/the 3 epoch\(s\) of a full copy's catch-up/);
    // a resync later in the file starts another catch-up
    const again = [{ ...full, epoch: 11 }, ...backlog.map((r) => ({ ...r, epoch: r.epoch + 10 }))];
    const [h] = parseInput(lines([full, ...backlog, ...steady, ...again, ...steady]), 4096, 'stats.jsonl');
    expect(h?.compression?.source).toMatch(/over 12 epochs/);
    // a stream that never settles keeps every epoch
    const [k] = parseInput(lines([full, ...backlog, ...steady.slice(0, 4)]), 4096, 'stats.jsonl');
    expect(k?.compression?.source).toMatch(/over 7 epochs/);
    expect(k?.notes.join()).not.toMatch(/catch-up/);
  });
  it('refuses bad rows, short rows, empty traces and missing columns', async () => {
    expect(await codeOfAsync(loadInput(fixture('trace/bad-row.csv'), 4096))).toBe('RWAN_ERR_INVALID_INPUT');
    expect(await codeOfAsync(loadInput(fixture('trace/short-row.csv'), 4096))).toBe('RWAN_ERR_INVALID_INPUT');
    expect(await codeOfAsync(loadInput(fixture('trace/header-only.csv'), 4096))).toBe(
      'RWAN_ERR_MISSING_FIELD',
    );
    expect(await codeOfAsync(loadInput(fixture('trace/no-page-column.csv'), 4096))).toBe(
      'RWAN_ERR_INVALID_INPUT',
    );
  });
});

describe('measurement files and format detection', () => {
  it('reads what measure qmp writes', async () => {
    const [g] = await loadInput(fixture('measurements.json'), 4096);
    expect(g?.name).toBe('vm9');
    expect(g?.memoryBytes).toBe(536870912);
    expect(g?.measurements.map((m) => [m.windowS, m.pages[0]])).toEqual([
      [1, 10752],
      [2, 7168],
    ]);
  });
  it('names an unknown format, a missing file, and a fleet passed as a measurement', async () => {
    expect(await codeOfAsync(loadInput(fixture('unknown.txt'), 4096))).toBe('RWAN_ERR_INVALID_INPUT');
    expect(await codeOfAsync(loadInput(fixture('nope.json'), 4096))).toBe('RWAN_ERR_IO');
    expect(await codeOfAsync(loadInput(fixture('fleet/ok.json'), 4096))).toBe('RWAN_ERR_USAGE');
    expect(detectFormat('{"guests": []}', 'x')).toBe('fleet');
  });
});
