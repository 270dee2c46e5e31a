import { type ChildProcess, execSync, spawn, spawnSync } from 'node:child_process';
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  DIRTY_LOG_HEADER_BYTES,
  DIRTY_LOG_MAX_PFN,
  DirtyLogReader,
  DirtyLogWriter,
  dirtyLogHeader,
  sortUnique,
} from '../../src/replication/dirty-log.js';
import { pauseProcess } from '../../src/replication/process-pause.js';
import { Workload } from '../../tools/workload/generator.js';
import { codeOf, codeOfAsync } from '../helpers.js';

const ROOT = join(import.meta.dirname, '..', '..');
const WRITER_JS = join(ROOT, 'dist', 'tools', 'workload', 'writer.js');

const dir = mkdtempSync(join(tmpdir(), 'rwan-dirty-log-test-'));
let fileNo = 0;
const tmp = (ext = 'dlog'): string => join(dir, `f${fileNo++}.${ext}`);

const open: { close(): unknown }[] = [];
function track<T extends { close(): unknown }>(x: T): T {
  open.push(x);
  return x;
}
afterEach(async () => {
  for (const x of open.splice(0)) await x.close();
});

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
      c.kill('SIGCONT');
      c.kill('SIGKILL');
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

/** One record's 8 bytes, as a producer in another language would write them. */
function record(pfn: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(pfn % 2 ** 32, 0);
  b.writeUInt32LE((0x8000_0000 | Math.floor(pfn / 2 ** 32)) >>> 0, 4);
  return b;
}

describe('DirtyLogWriter / DirtyLogReader', () => {
  it('round-trips pfns: sorted, distinct, only those appended since the last read', async () => {
    const path = tmp();
    const w = track(DirtyLogWriter.create(path, 4096));
    w.log(5);
    w.logMany([3, 5, DIRTY_LOG_MAX_PFN, 0, 4096, 2 ** 32 + 7]);
    expect(statSync(path).size).toBe(DIRTY_LOG_HEADER_BYTES + 7 * 8);
    const r = track(await DirtyLogReader.open(path, 4096));
    expect([...(await r.read())]).toEqual([0, 3, 5, 4096, 2 ** 32 + 7, DIRTY_LOG_MAX_PFN]);
    expect(r.recordsRead).toBe(7);
    expect((await r.read()).length).toBe(0);
    w.log(7);
    w.logMany([]);
    w.logMany([9, 1]);
    expect([...(await r.read())]).toEqual([1, 7, 9]);
    expect(r.recordsRead).toBe(10);
  });

  it('names the last batch of each read when the producer marks batches', async () => {
    const path = tmp();
    const w = track(DirtyLogWriter.create(path, 4096));
    const r = track(await DirtyLogReader.open(path, 4096));
    expect(r.batchMarks).toBe(true);
    expect(await r.read()).toEqual(new Float64Array(0));
    expect(r.lastBatch).toBeUndefined();
    w.logMany([8, 3]);
    w.log(5);
    w.logMany([2 ** 40, 9, 1, 9]);
    expect([...(await r.read())]).toEqual([1, 3, 5, 8, 9, 2 ** 40]);
    expect([...(r.lastBatch ?? [])]).toEqual([1, 9, 2 ** 40]);
    w.log(4);
    expect([...(await r.read())]).toEqual([4]);
    expect([...(r.lastBatch ?? [])]).toEqual([4]);
    // a batch read in two parts (a reader that does not pause the producer): the second part has no
    // batch start, so the batch is not known
    appendFileSync(path, record(6));
    expect([...(await r.read())]).toEqual([6]);
    expect(r.lastBatch).toBeUndefined();
    // a batch larger than one read block
    const big = Array.from({ length: 70_000 }, (_, i) => 70_000 - i);
    w.log(0);
    w.logMany(big);
    expect((await r.read()).length).toBe(70_001);
    expect(r.lastBatch?.length).toBe(70_000);
    expect(r.lastBatch?.[0]).toBe(1);
    // without marks there is no batch to name
    const path2 = tmp();
    const w2 = track(DirtyLogWriter.create(path2, 4096, { batchMarks: false }));
    w2.logMany([1, 2]);
    const r2 = track(await DirtyLogReader.open(path2, 4096));
    expect(r2.batchMarks).toBe(false);
    expect([...(await r2.read())]).toEqual([1, 2]);
    expect(r2.lastBatch).toBeUndefined();
  });

  it('deduplicates a read of many records (compaction and growth of the accumulator)', async () => {
    const path = tmp();
    const w = track(DirtyLogWriter.create(path, 4096));
    const expected = new Set<number>();
    let x = 12345;
    const batch: number[] = [];
    for (let i = 0; i < 150_000; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      // mostly a hot range of 3 000 pages, sometimes a wide one
      const pfn = i % 10 === 0 ? x * 1000 : x % 3000;
      batch.push(pfn);
      expected.add(pfn);
      if (batch.length === 10_000) w.logMany(batch.splice(0));
    }
    const r = track(await DirtyLogReader.open(path, 4096));
    const got = await r.read();
    expect(r.recordsRead).toBe(150_000);
    expect([...got]).toEqual([...expected].sort((a, b) => a - b));
  });

  it('leaves a partial record at the end for the next read', async () => {
    const path = tmp();
    const w = track(DirtyLogWriter.create(path, 4096));
    w.log(11);
    const rec = record(2 ** 40 + 3);
    appendFileSync(path, rec.subarray(0, 5));
    const r = track(await DirtyLogReader.open(path, 4096));
    expect([...(await r.read())]).toEqual([11]);
    expect([...(await r.read())]).toEqual([]);
    appendFileSync(path, rec.subarray(5));
    expect([...(await r.read())]).toEqual([2 ** 40 + 3]);
  });

  it('reset truncates to the header; an O_APPEND producer goes on at the new end', async () => {
    const path = tmp();
    const w = track(DirtyLogWriter.create(path, 4096));
    const r = track(await DirtyLogReader.open(path, 4096));
    w.logMany([1, 2, 3]);
    expect([...(await r.read())]).toEqual([1, 2, 3]);
    await r.reset();
    expect(statSync(path).size).toBe(DIRTY_LOG_HEADER_BYTES);
    w.log(42);
    expect(statSync(path).size).toBe(DIRTY_LOG_HEADER_BYTES + 8);
    expect([...(await r.read())]).toEqual([42]);

    // bytes not read yet survive a reset: a whole record, and a partial one completed afterwards
    w.log(43);
    const rec = record(99);
    appendFileSync(path, rec.subarray(0, 3));
    await r.reset();
    expect(statSync(path).size).toBe(DIRTY_LOG_HEADER_BYTES + 11);
    appendFileSync(path, rec.subarray(3));
    expect([...(await r.read())]).toEqual([43, 99]);
    await r.reset();
    expect(statSync(path).size).toBe(DIRTY_LOG_HEADER_BYTES);
    expect([...(await r.read())]).toEqual([]);
  });

  it('refuses the hole a producer without O_APPEND leaves after a reset', async () => {
    const path = tmp();
    writeFileSync(path, dirtyLogHeader(4096));
    const fd = openSync(path, 'r+'); // positional writes, no O_APPEND
    try {
      let at = DIRTY_LOG_HEADER_BYTES;
      for (const pfn of [4, 5, 6]) at += writeSync(fd, record(pfn), 0, 8, at);
      const r = track(await DirtyLogReader.open(path, 4096));
      expect([...(await r.read())]).toEqual([4, 5, 6]);
      await r.reset();
      writeSync(fd, record(7), 0, 8, at); // lands past the end: zeros before it
      expect(await codeOfAsync(r.read())).toBe('RWAN_ERR_SOURCE');
    } finally {
      closeSync(fd);
    }
  });

  it('rejects malformed logs with RWAN_ERR_SOURCE', async () => {
    const good = dirtyLogHeader(4096);
    const variant = (edit: (h: Buffer) => Buffer): string => {
      const path = tmp();
      writeFileSync(path, edit(Buffer.from(good)));
      return path;
    };
    const cases = [
      join(dir, 'missing.dlog'),
      variant((h) => h.subarray(0, 10)),
      variant(() => Buffer.alloc(0)),
      variant((h) => {
        h.write('XXDIRLOG', 0, 'latin1');
        return h;
      }),
      variant((h) => {
        h.writeUInt16LE(2, 8);
        return h;
      }),
      variant((h) => {
        h.writeUInt16LE(2, 10); // a flag this version does not know
        return h;
      }),
      variant((h) => {
        h.writeUInt32LE(8192, 12);
        return h;
      }),
    ];
    for (const path of cases)
      expect(await codeOfAsync(DirtyLogReader.open(path, 4096)), path).toBe('RWAN_ERR_SOURCE');

    // reserved bits in a record, and a log truncated behind the reader's back
    const path = tmp();
    const w = track(DirtyLogWriter.create(path, 4096));
    const bad = record(8);
    bad.writeUInt32LE((0x8000_0000 | 0x0020_0000) >>> 0, 4);
    appendFileSync(path, bad);
    const r = track(await DirtyLogReader.open(path, 4096));
    expect(await codeOfAsync(r.read())).toBe('RWAN_ERR_SOURCE');
    // a batch mark in a log whose header does not announce them
    const unmarked = tmp();
    track(DirtyLogWriter.create(unmarked, 4096, { batchMarks: false }));
    const marked = record(8);
    marked.writeUInt32LE((0x8000_0000 | 0x4000_0000) >>> 0, 4);
    appendFileSync(unmarked, marked);
    const ru = track(await DirtyLogReader.open(unmarked, 4096));
    expect(await codeOfAsync(ru.read())).toBe('RWAN_ERR_SOURCE');
    const path2 = tmp();
    const w2 = track(DirtyLogWriter.create(path2, 4096));
    w2.logMany([1, 2]);
    const r2 = track(await DirtyLogReader.open(path2, 4096));
    await r2.read();
    writeFileSync(path2, dirtyLogHeader(4096));
    expect(await codeOfAsync(r2.read())).toBe('RWAN_ERR_SOURCE');
    w.close();
  });

  it('rejects bad arguments with RWAN_ERR_INVALID_VALUE', async () => {
    expect(codeOf(() => DirtyLogWriter.create(tmp(), 1000))).toBe('RWAN_ERR_INVALID_VALUE');
    expect(await codeOfAsync(DirtyLogReader.open(tmp(), 32))).toBe('RWAN_ERR_INVALID_VALUE');
    const w = track(DirtyLogWriter.create(tmp(), 4096));
    for (const pfn of [-1, 1.5, 2 ** 53, Number.NaN]) {
      expect(codeOf(() => w.log(pfn))).toBe('RWAN_ERR_INVALID_VALUE');
    }
    expect(codeOf(() => w.logMany([1, -1]))).toBe('RWAN_ERR_INVALID_VALUE');
    expect(statSync(w.path).size).toBe(DIRTY_LOG_HEADER_BYTES); // nothing of the bad batch was written
    expect(codeOf(() => DirtyLogWriter.create(join(dir, 'no-such-dir', 'x.dlog'), 4096))).toBe('RWAN_ERR_IO');
    w.close();
    expect(codeOf(() => w.log(1))).toBe('RWAN_ERR_INVALID_VALUE');
  });

  it('sortUnique sorts and deduplicates a prefix in place', () => {
    const a = Float64Array.of(5, 1, 5, 3, 1, 9, 100);
    expect(sortUnique(a, 6)).toBe(4);
    expect([...a.subarray(0, 4)]).toEqual([1, 3, 5, 9]);
    expect(a[6]).toBe(100);
    expect(sortUnique(a, 0)).toBe(0);
  });
});

describe('reset while a writer process appends (O_APPEND)', () => {
  beforeAll(() => {
    if (!existsSync(WRITER_JS)) execSync('npm run build', { cwd: ROOT, stdio: 'ignore' });
  });

  it.each([
    ['map', 'epoch'],
    ['map', 'page'],
    ['pwrite', 'page'],
    ['map', '7'],
    ['pwrite', '7'],
  ])(
    "the writer (--io %s, --log-batch %s) leaves the generator's memory in the image and every dirty pfn in the log",
    async (io, batch) => {
      const image = tmp('img');
      const logPath = tmp();
      const o = { pages: 300, seed: 5, dirtyPerEpoch: 25, pageSize: 1024 };
      const run = spawnSync(
        process.execPath,
        [WRITER_JS, '--image', image, '--pages', '300', '--seed', '5', '--dirty-per-epoch', '25'].concat([
          '--page-size',
          '1024',
          '--epochs',
          '6',
          '--dirty-log',
          logPath,
          '--io',
          io,
          '--log-batch',
          batch,
        ]),
        { encoding: 'latin1' },
      );
      expect(run.status).toBe(0);
      const w = new Workload(o);
      const dirty = new Set<number>();
      let pages = 0;
      for (let i = 0; i < 6; i++) {
        const e = w.nextEpoch();
        for (const pfn of e.pfns) dirty.add(pfn);
        pages += e.pfns.length;
      }
      expect(run.stdout).toMatch(new RegExp(`^ready \\d+\ndone 6 ${pages}\n$`));
      expect(readFileSync(image).equals(w.memory)).toBe(true);
      const r = track(await DirtyLogReader.open(logPath, 1024));
      expect([...(await r.read())]).toEqual([...dirty].sort((a, b) => a - b));
      expect(r.recordsRead).toBe(pages);
      // batches marked: the last one is the last epoch's pages, or at most N of them
      const last = r.lastBatch?.length ?? 0;
      if (batch === 'epoch') expect(last).toBeGreaterThan(7);
      else expect(last).toBeGreaterThanOrEqual(1);
      expect(last).toBeLessThanOrEqual(batch === 'epoch' ? 25 * 2 : batch === 'page' ? 1 : Number(batch));

      const bad = spawnSync(process.execPath, [WRITER_JS, '--image', image, '--pages', 'x'], {
        encoding: 'latin1',
      });
      expect(bad.status).toBe(2);
      expect(bad.stderr).toContain('--pages');
      const badBatch = spawnSync(
        process.execPath,
        [WRITER_JS, '--image', image, '--pages', '4', '--log-batch', '0'],
        { encoding: 'latin1' },
      );
      expect(badBatch.status).toBe(2);
      expect(badBatch.stderr).toContain('--log-batch');
      const badSize = spawnSync(
        process.execPath,
        [WRITER_JS, '--image', image, '--pages', '4', '--page-size', '1000'],
        {
          encoding: 'latin1',
        },
      );
      expect(badSize.status).toBe(2);
      expect(badSize.stderr).toContain('RWAN_ERR_INVALID_VALUE');
    },
  );

  it('loses no record and reads no garbage over 40 pause / read / reset / resume rounds that find records', async () => {
    const image = tmp('img');
    const logPath = tmp();
    const pages = 512;
    const child = spawn(
      process.execPath,
      [WRITER_JS, '--image', image, '--pages', String(pages), '--seed', '3', '--dirty-log', logPath].concat([
        '--log-batch',
        'page',
        '--dirty-per-epoch',
        '40',
        '--rate',
        '40000',
      ]),
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(child);
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
    expect((await lines.next()).value).toBe(`ready ${child.pid}`);
    const r = track(await DirtyLogReader.open(logPath, 4096));
    let nonEmpty = 0;
    // rounds go on until 40 of them found records (a loaded machine may leave the writer no time
    // between two rounds: such a round proves nothing), at most 400
    for (let round = 0; nonEmpty < 40 && round < 400; round++) {
      await sleep(3);
      const resume = await pauseProcess(child.pid as number);
      try {
        const pfns = await r.read();
        if (pfns.length > 0) nonEmpty++;
        for (const pfn of pfns) expect(pfn).toBeLessThan(pages);
        await r.reset();
        expect(statSync(logPath).size).toBe(DIRTY_LOG_HEADER_BYTES); // whole records only: each is one write
      } finally {
        resume();
      }
    }
    child.kill('SIGTERM');
    const done = (await lines.next()).value as string;
    await new Promise((resolve) => child.once('exit', resolve));
    expect(child.exitCode).toBe(0);
    const m = /^done (\d+) (\d+)$/.exec(done);
    expect(m).not.toBeNull();
    await r.read();
    // with one record per page write, every record written was read exactly once
    expect(r.recordsRead).toBe(Number(m?.[2]));
    expect(nonEmpty).toBe(40);
  });
});
