import { type ChildProcess, execSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DIRTY_LOG_HEADER_BYTES, DirtyLogWriter } from '../../src/replication/dirty-log.js';
import { digestFile, ImageDigest } from '../../src/replication/image-digest.js';
import { pauseProcess } from '../../src/replication/process-pause.js';
import {
  ASYNC_READ_PAGES,
  CAPTURE_BLOCK_BYTES,
  type CapturedEpoch,
  ImageSource,
} from '../../src/replication/source-image.js';
import { codeOfAsync } from '../helpers.js';

const ROOT = join(import.meta.dirname, '..', '..');
const WRITER_JS = join(ROOT, 'dist', 'tools', 'workload', 'writer.js');
const PS = 4096;

const dir = mkdtempSync(join(tmpdir(), 'rwan-source-image-test-'));
let fileNo = 0;
const tmp = (ext: string): string => join(dir, `f${fileNo++}.${ext}`);

const sources: ImageSource[] = [];
async function openSource(o: Parameters<typeof ImageSource.open>[0]): Promise<ImageSource> {
  const s = await ImageSource.open(o);
  sources.push(s);
  return s;
}
afterEach(async () => {
  for (const s of sources.splice(0)) await s.close();
});

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGCONT');
      c.kill('SIGKILL');
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

/** Starts a child and registers it for cleanup. */
function start(args: string[]): ChildProcess {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return child;
}

/** A running tools/workload/writer.js: its pid once the image exists, and a way to stop it. */
async function startWriter(args: string[]): Promise<{ pid: number; stop: () => Promise<string> }> {
  const child = start([WRITER_JS, ...args]);
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
  const first = (await lines.next()).value as string;
  expect(first).toBe(`ready ${child.pid}`);
  return {
    pid: child.pid as number,
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      const done = (await lines.next()).value as string;
      await exited;
      expect(child.exitCode).toBe(0);
      return done;
    },
  };
}

/** Seeded pseudo-random integers (xorshift32). */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

/** The file's content rounded up to whole pages (zeros past its end). */
function imageOf(path: string): Buffer {
  const b = readFileSync(path);
  const padded = Buffer.alloc(Math.ceil(b.length / PS) * PS);
  b.copy(padded);
  return padded;
}

/** The pages of `img` at `pfns`, concatenated. */
function pagesOf(img: Buffer, pfns: Iterable<number>): Buffer {
  return Buffer.concat([...pfns].map((p) => img.subarray(p * PS, (p + 1) * PS)));
}

/** Writes `pfns` of the file with content that differs from what they hold. */
function scribble(path: string, pfns: Iterable<number>): void {
  const fd = openSync(path, 'r+');
  try {
    for (const pfn of pfns) writeSync(fd, randomBytes(PS), 0, PS, pfn * PS);
  } finally {
    closeSync(fd);
  }
}

const digestOf = (b: Buffer): string => new ImageDigest().update(b).hex();

beforeAll(() => {
  if (!existsSync(WRITER_JS)) execSync('npm run build', { cwd: ROOT, stdio: 'ignore' });
});

describe("ImageSource, 'hash'", () => {
  // more than one 8 MiB block, and not a whole number of blocks
  const PAGES = CAPTURE_BLOCK_BYTES / PS + 500;

  it('captures exactly the pages that changed, with their content', async () => {
    const path = tmp('img');
    writeFileSync(path, randomBytes(PAGES * PS));
    const src = await openSource({ path, pageSize: PS, dirty: { kind: 'hash' }, verify: true });
    expect(src.imageBytes).toBe(PAGES * PS);

    const first = await src.capture();
    expect(first.full).toBe(true);
    expect(first.pfns.length).toBe(PAGES);
    expect(first.pfns.every((p, i) => p === i)).toBe(true);
    expect(first.pages.equals(readFileSync(path))).toBe(true);
    expect(first.digest).toBe(await digestFile(path));
    expect(first.pausedMs).toBe(0);
    expect(first.captureMs).toBeGreaterThan(0);

    const none = await src.capture();
    expect(none.full).toBe(false);
    expect(none.pfns.length).toBe(0);
    expect(none.pages.length).toBe(0);

    const next = rng(7);
    for (let round = 0; round < 4; round++) {
      const dirty = new Set<number>([0, PAGES - 1, CAPTURE_BLOCK_BYTES / PS - 1, CAPTURE_BLOCK_BYTES / PS]);
      // rounds 2 and 3 read their pages on the thread pool (ASYNC_READ_PAGES)
      while (dirty.size < (round < 2 ? 60 : ASYNC_READ_PAGES + 100)) dirty.add(next(PAGES));
      scribble(path, dirty);
      // a page rewritten with the content it already holds is not a change
      const same = next(PAGES);
      if (!dirty.has(same)) {
        const fd = openSync(path, 'r+');
        writeSync(fd, readFileSync(path).subarray(same * PS, (same + 1) * PS), 0, PS, same * PS);
        closeSync(fd);
      }
      const e = await src.capture();
      const want = [...dirty].sort((a, b) => a - b);
      expect(e.full).toBe(false);
      expect([...e.pfns]).toEqual(want);
      expect(e.pages.equals(pagesOf(readFileSync(path), want))).toBe(true);
      expect(e.digest).toBe(await digestFile(path));
      expect(e.imageBytes).toBe(PAGES * PS);
    }

    const forced = await src.capture({ full: true });
    expect(forced.full).toBe(true);
    expect(forced.pages.equals(readFileSync(path))).toBe(true);
    expect((await src.capture()).pfns.length).toBe(0);
  });

  it('follows a file that grows or shrinks: whole pages, zeros past the end, a full capture', async () => {
    const path = tmp('img');
    writeFileSync(path, randomBytes(100 * PS));
    const src = await openSource({ path, pageSize: PS, dirty: { kind: 'hash' }, verify: true });
    await src.capture();

    appendFileSync(path, randomBytes(PS + PS / 2)); // 101.5 pages
    const grown = await src.capture();
    expect(grown.full).toBe(true);
    expect(grown.imageBytes).toBe(102 * PS);
    expect(src.imageBytes).toBe(102 * PS);
    expect(grown.pfns.length).toBe(102);
    expect(grown.pages.equals(imageOf(path))).toBe(true);
    expect(grown.pages.subarray(101 * PS + PS / 2).every((b) => b === 0)).toBe(true);
    expect(grown.digest).toBe(digestOf(imageOf(path)));

    // a change in the partial last page is seen; the rest of it still reads as zeros
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.from('changed'), 0, 7, 101 * PS + 10);
    closeSync(fd);
    const tail = await src.capture();
    expect([...tail.pfns]).toEqual([101]);
    expect(tail.pages.equals(imageOf(path).subarray(101 * PS))).toBe(true);

    truncateSync(path, 40 * PS);
    const shrunk = await src.capture();
    expect(shrunk.full).toBe(true);
    expect(shrunk.imageBytes).toBe(40 * PS);
    expect(shrunk.pages.equals(readFileSync(path))).toBe(true);
    expect(shrunk.digest).toBe(await digestFile(path));
    scribble(path, [39]);
    expect([...(await src.capture()).pfns]).toEqual([39]);

    truncateSync(path, 0);
    const empty = await src.capture();
    expect(empty.full).toBe(true);
    expect(empty.imageBytes).toBe(0);
    expect(empty.pfns.length).toBe(0);
  });
});

describe("ImageSource, 'log'", () => {
  for (const batchMarks of [true, false]) {
    it(`reads the pages logged since the last capture plus those that may be pending (${batchMarks ? 'the last batch' : 'no batch marks: all logged before'})`, async () => {
      const path = tmp('img');
      const logPath = tmp('dlog');
      writeFileSync(path, randomBytes(64 * PS));
      const log = DirtyLogWriter.create(logPath, PS, { batchMarks });
      try {
        const src = await openSource({
          path,
          pageSize: PS,
          dirty: { kind: 'log', path: logPath },
          verify: true,
        });
        log.logMany([1, 2]); // before the first capture: full anyway, but they straddle it
        const first = await src.capture();
        expect(first.full).toBe(true);
        expect(first.pages.equals(readFileSync(path))).toBe(true);

        const step = async (logged: number[], written: number[], want: number[]): Promise<void> => {
          if (logged.length > 0) log.logMany(logged);
          scribble(path, written);
          const e = await src.capture();
          expect(e.full).toBe(false);
          expect([...e.pfns]).toEqual(want);
          expect(e.pages.equals(pagesOf(readFileSync(path), want))).toBe(true);
          expect(e.digest).toBe(await digestFile(path));
        };
        await step([5, 3], [3, 5], [1, 2, 3, 5]);
        await step([10, 100], [10], [3, 5, 10]); // 100 is past the end of the image: ignored
        // nothing logged: the producer may not have run, the pages logged before are read again
        await step(
          [],
          [],
          [10, 100].filter((p) => p < 64),
        );
        await step([], [], [10]);
        await step([7], [7], [7, 10]);
        await step([7], [7], [7]);
        // two batches: only the last one's writes may be pending at the capture
        log.logMany([20, 21]);
        await step([22], [20, 21, 22], [7, 20, 21, 22]);
        await step([], [], batchMarks ? [22] : [20, 21, 22]);
        // without a pause the log is never truncated (it would race with the producer)
        expect(statSync(logPath).size).toBe(DIRTY_LOG_HEADER_BYTES + 11 * 8);
      } finally {
        log.close();
      }
    });
  }

  it('closes during a capture: its reads on the thread pool end before the image is closed', async () => {
    const path = tmp('img');
    const pages = ASYNC_READ_PAGES * 4;
    writeFileSync(path, randomBytes(pages * PS));
    const outcomes = new Set<unknown>();
    for (let attempt = 0; attempt < 8; attempt++) {
      const logPath = tmp('dlog');
      const log = DirtyLogWriter.create(logPath, PS);
      try {
        const src = await openSource({ path, pageSize: PS, dirty: { kind: 'log', path: logPath } });
        await src.capture();
        const dirty = Array.from({ length: ASYNC_READ_PAGES * 2 }, (_, i) => i * 2);
        log.logMany(dirty);
        const capturing = src.capture().then(
          (e) => (e.pages.equals(pagesOf(readFileSync(path), dirty)) ? 'read' : 'wrong bytes'),
          (err: { code?: string }) => err.code,
        );
        // at a different point of the capture each time: the log's read, the pages' reads, or after
        for (let i = 0; i < attempt; i++) await new Promise((r) => setImmediate(r));
        await src.close();
        outcomes.add(await capturing);
        console.log('GOT', attempt, [...outcomes]);
      } finally {
        log.close();
      }
    }
    // refused before the reads (closed), or read whole: never a read of a closed descriptor
    expect([...outcomes].every((o) => o === 'read' || o === 'RWAN_ERR_SOURCE')).toBe(true);
    expect(outcomes.has('read')).toBe(true);
  });

  it('reads the next captures into the pages given back (recycle), and keeps no image-sized buffer', async () => {
    const path = tmp('img');
    const logPath = tmp('dlog');
    writeFileSync(path, randomBytes(64 * PS));
    const log = DirtyLogWriter.create(logPath, PS);
    try {
      const src = await openSource({ path, pageSize: PS, dirty: { kind: 'log', path: logPath } });
      const full = await src.capture();
      expect(full.ownsBuffer).toBe(true);
      expect(full.pages.buffer.byteLength).toBe(64 * PS);
      src.recycle(full.pages); // the image's size: far more than the captures need, not kept
      const capture = async (pfns: number[]): Promise<CapturedEpoch> => {
        log.logMany(pfns);
        scribble(path, pfns);
        return src.capture();
      };
      const a = await capture([4, 5, 6, 7, 8, 9, 10, 11]);
      expect(a.pages.buffer).toBeInstanceOf(SharedArrayBuffer);
      expect(a.pages.buffer).not.toBe(full.pages.buffer);
      expect(a.pages.byteOffset).toBe(0);
      expect(a.pages.buffer.byteLength).toBeGreaterThan(a.pages.length); // room for the next ones
      expect(src.captureMemoryBytes).toBe(a.pages.buffer.byteLength); // the full capture's is not counted
      expect(a.pages.equals(pagesOf(readFileSync(path), [...a.pfns]))).toBe(true);
      const memory = a.pages.buffer;
      src.recycle(a.pages);
      const b = await capture([]); // the pages logged before the last capture, read again
      expect(b.pages.buffer).toBe(memory);
      expect(b.pages.byteOffset).toBe(0);
      expect([...b.pfns]).toEqual([...a.pfns]);
      expect(b.pages.equals(pagesOf(readFileSync(path), [...b.pfns]))).toBe(true);
      // what the source did not make, or a view of other bytes, is ignored
      src.recycle(Buffer.alloc(16 * PS));
      src.recycle(Buffer.from(memory, 0, PS));
      // b still out: the next capture reads into other memory, and b's bytes stay as they were
      const bBytes = Buffer.from(b.pages);
      const c = await capture([30, 31]);
      expect(c.pages.equals(pagesOf(readFileSync(path), [...c.pfns]))).toBe(true);
      expect(b.pages.equals(bBytes)).toBe(true);
      src.recycle(b.pages);
      src.recycle(c.pages);
      src.recycle(c.pages); // twice counts once
      const d = await capture([32]);
      const e = await capture([33]);
      expect(d.pages.buffer).toBe(c.pages.buffer);
      expect(e.pages.buffer).toBe(c.pages.buffer); // d is out, e goes after it
      expect(e.pages.byteOffset).toBeGreaterThanOrEqual(d.pages.byteOffset + d.pages.length);
      expect(d.pages.equals(pagesOf(readFileSync(path), [...d.pfns]))).toBe(true);
      expect(e.pages.equals(pagesOf(readFileSync(path), [...e.pfns]))).toBe(true);
    } finally {
      log.close();
    }
  });

  it('truncates the log at each capture when the producer is paused', async () => {
    const path = tmp('img');
    const logPath = tmp('dlog');
    writeFileSync(path, randomBytes(32 * PS));
    const log = DirtyLogWriter.create(logPath, PS);
    // a stand-in producer process to stop (this test writes the file itself)
    const idle = start(['-e', 'setInterval(() => {}, 1000)']);
    try {
      const src = await openSource({
        path,
        pageSize: PS,
        dirty: { kind: 'log', path: logPath },
        pausePid: idle.pid as number,
      });
      log.logMany([4, 5]);
      const first = await src.capture();
      expect(first.full).toBe(true);
      expect(first.pausedMs).toBeGreaterThan(0);
      expect(first.pausedMs).toBeLessThanOrEqual(first.captureMs);
      expect(statSync(logPath).size).toBe(DIRTY_LOG_HEADER_BYTES);
      log.log(9);
      scribble(path, [9]);
      const e = await src.capture();
      expect([...e.pfns]).toEqual([4, 5, 9]);
      expect(e.pages.equals(pagesOf(readFileSync(path), [4, 5, 9]))).toBe(true);
      expect(statSync(logPath).size).toBe(DIRTY_LOG_HEADER_BYTES);
      expect((await src.capture()).pfns).toEqual(Float64Array.of(9));

      idle.kill('SIGKILL');
      await new Promise((resolve) => idle.once('exit', resolve));
      expect(await codeOfAsync(src.capture())).toBe('RWAN_ERR_SOURCE');
    } finally {
      log.close();
    }
  });
});

describe('ImageSource errors', () => {
  it('reports an unusable image, log or process as RWAN_ERR_SOURCE', async () => {
    const path = tmp('img');
    writeFileSync(path, Buffer.alloc(4 * PS));
    const hash = { kind: 'hash' } as const;
    expect(
      await codeOfAsync(ImageSource.open({ path: join(dir, 'nope.img'), pageSize: PS, dirty: hash })),
    ).toBe('RWAN_ERR_SOURCE');
    expect(await codeOfAsync(ImageSource.open({ path: dir, pageSize: PS, dirty: hash }))).toBe(
      'RWAN_ERR_SOURCE',
    );
    // a character device
    expect(await codeOfAsync(ImageSource.open({ path: '/dev/null', pageSize: PS, dirty: hash }))).toBe(
      'RWAN_ERR_SOURCE',
    );
    expect(
      await codeOfAsync(
        ImageSource.open({ path, pageSize: PS, dirty: { kind: 'log', path: join(dir, 'nope') } }),
      ),
    ).toBe('RWAN_ERR_SOURCE');
    const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'latin1'));
    expect(await codeOfAsync(ImageSource.open({ path, pageSize: PS, dirty: hash, pausePid: pidMax }))).toBe(
      'RWAN_ERR_SOURCE',
    );
    expect(await codeOfAsync(ImageSource.open({ path, pageSize: 1000, dirty: hash }))).toBe(
      'RWAN_ERR_INVALID_VALUE',
    );
    expect(await codeOfAsync(ImageSource.open({ path, pageSize: PS, dirty: hash, pausePid: 0 }))).toBe(
      'RWAN_ERR_INVALID_VALUE',
    );

    const src = await ImageSource.open({ path, pageSize: PS, dirty: hash });
    const a = src.capture();
    expect(await codeOfAsync(src.capture())).toBe('RWAN_ERR_INVALID_VALUE'); // one at a time
    expect((await a).full).toBe(true);
    await src.close();
    await src.close();
    expect(await codeOfAsync(src.capture())).toBe('RWAN_ERR_SOURCE');
  });

  // a loop device needs root (losetup); CI runs as root
  it.skipIf(process.getuid?.() !== 0)(
    'replicates a block device: its size from sysfs, its pages by either mode',
    async () => {
      const backing = tmp('img');
      // 1 MiB and half a page: the device ends inside its last page, which reads as zeros past the end
      writeFileSync(backing, randomBytes(256 * PS + PS / 2));
      const dev = execSync(`losetup --find --show ${backing}`, { encoding: 'latin1' }).trim();
      try {
        expect(statSync(dev).isBlockDevice()).toBe(true);
        const logPath = tmp('dlog');
        const log = DirtyLogWriter.create(logPath, PS);
        const byHash = await openSource({ path: dev, pageSize: PS, dirty: { kind: 'hash' }, verify: true });
        const byLog = await openSource({ path: dev, pageSize: PS, dirty: { kind: 'log', path: logPath } });
        const full = await byHash.capture();
        expect(full.full).toBe(true);
        expect(full.imageBytes).toBe(257 * PS);
        const expected = imageOf(backing);
        expect(full.pages.equals(expected)).toBe(true);
        expect(full.digest).toBe(digestOf(expected));
        expect((await byLog.capture()).pages.equals(expected)).toBe(true);
        // writes through the device node (the backing file is not coherent with the device's cache)
        log.logMany([3, 200]);
        scribble(dev, [3, 200]);
        const now = readFileSync(dev);
        expect(now.length).toBe(256 * PS + PS / 2);
        const img = Buffer.concat([now, Buffer.alloc(PS / 2)]);
        const h = await byHash.capture();
        expect([...h.pfns]).toEqual([3, 200]);
        expect(h.pages.equals(pagesOf(img, [3, 200]))).toBe(true);
        expect(h.digest).toBe(digestOf(img));
        const l = await byLog.capture();
        expect([...l.pfns]).toEqual([3, 200]);
        expect(l.pages.equals(pagesOf(img, [3, 200]))).toBe(true);
        log.close();
      } finally {
        execSync(`losetup -d ${dev}`);
      }
    },
  );
});

describe('pauseProcess', () => {
  it('rejects a pid that does not exist, is not a pid, or is this process', async () => {
    const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'latin1'));
    expect(await codeOfAsync(pauseProcess(pidMax))).toBe('RWAN_ERR_SOURCE'); // pids are below pid_max
    const gone = start(['-e', '0']);
    await new Promise((resolve) => gone.once('exit', resolve));
    expect(await codeOfAsync(pauseProcess(gone.pid as number))).toBe('RWAN_ERR_SOURCE');
    expect(await codeOfAsync(pauseProcess(process.pid))).toBe('RWAN_ERR_SOURCE');
    for (const pid of [0, -1, 1.5, Number.NaN]) {
      expect(await codeOfAsync(pauseProcess(pid))).toBe('RWAN_ERR_INVALID_VALUE');
    }
  });

  it('really stops the process: every thread stopped on return, its file frozen until resumed', async () => {
    const image = tmp('img');
    const w = await startWriter([
      '--image',
      image,
      '--pages',
      '256',
      '--dirty-per-epoch',
      '20',
      '--rate',
      '0',
    ]);
    /** The scheduler state of each thread of the writer. */
    const states = (): string[] =>
      readdirSync(`/proc/${w.pid}/task`).flatMap((tid) => {
        try {
          const stat = readFileSync(`/proc/${w.pid}/task/${tid}/stat`, 'latin1');
          return [stat.charAt(stat.lastIndexOf(')') + 2)];
        } catch {
          return []; // the thread ended meanwhile
        }
      });
    for (let round = 0; round < 20; round++) {
      await sleep(2);
      const resume = await pauseProcess(w.pid);
      try {
        expect(states().every((s) => s === 'T')).toBe(true); // checked before anything else runs
      } finally {
        resume();
      }
    }
    await sleep(20);
    const resume = await pauseProcess(w.pid);
    let during: string[];
    try {
      during = [await digestFile(image)];
      await sleep(150);
      during.push(await digestFile(image));
    } finally {
      resume();
      resume(); // idempotent
    }
    expect(during[1]).toBe(during[0]);
    await sleep(50);
    expect(states().some((s) => s !== 'T')).toBe(true);
    expect(await digestFile(image)).not.toBe(during[0]);
    expect(await w.stop()).toMatch(/^done \d+ \d+$/);
  });
});

/**
 * The consistency proof: captures taken while a real writer process runs, applied to a shadow copy
 * that starts from the full capture, must equal the image as it was at each capture point (its digest,
 * taken while the writer was stopped).
 */
async function shadowRun(
  dirty: 'hash' | 'log',
  captures: number,
  writerFlags: string[] = [],
): Promise<CapturedEpoch[]> {
  const image = tmp('img');
  const logPath = tmp('dlog');
  const pages = 2048;
  const w = await startWriter(
    [
      '--image',
      image,
      '--pages',
      String(pages),
      '--seed',
      '11',
      '--dirty-per-epoch',
      '150',
      '--rate',
      '60000',
    ].concat(dirty === 'log' ? ['--dirty-log', logPath, ...writerFlags] : []),
  );
  const src = await openSource({
    path: image,
    pageSize: PS,
    dirty: dirty === 'log' ? { kind: 'log', path: logPath } : { kind: 'hash' },
    pausePid: w.pid,
    verify: true,
  });
  const out: CapturedEpoch[] = [];
  let shadow = Buffer.alloc(0);
  for (let i = 0; i < captures; i++) {
    const e = await src.capture();
    if (e.full) shadow = Buffer.from(e.pages);
    else {
      expect(e.imageBytes).toBe(shadow.length);
      for (let k = 0; k < e.pfns.length; k++) {
        e.pages.copy(shadow, (e.pfns[k] as number) * PS, k * PS, (k + 1) * PS);
      }
    }
    expect(digestOf(shadow), `capture ${i} (${e.pfns.length} pages)`).toBe(e.digest);
    out.push({ ...e, pages: Buffer.alloc(0) });
    await sleep(4);
  }
  await w.stop();
  return out;
}

describe('consistency against a running writer, paused at each capture', () => {
  const modes = [
    ['log', []], // batch marks: the last batch is re-read
    ['log', ['--no-batch-marks']], // everything logged before the previous capture is re-read
    ['log', ['--log-batch', 'page']], // batches of one page
    ['log', ['--log-batch', '16']], // batches of 16 pages, as the transport benchmark's writer
    ['log', ['--log-batch', '40']], // batches the writer's runs of page writes must not span
    ['hash', []],
  ] as const;
  for (const [dirty, flags] of modes) {
    const name = `'${dirty}'${flags.length > 0 ? ` (writer ${flags.join(' ')})` : ''}`;
    it(`${name}: a shadow image built from the captures equals the image at every capture`, async () => {
      const epochs = await shadowRun(dirty, 32, [...flags]);
      expect(epochs[0]?.full).toBe(true);
      expect(epochs.slice(1).every((e) => !e.full)).toBe(true);
      // the writer really ran between captures: most captures carry pages and the image kept changing
      expect(epochs.filter((e) => e.pfns.length > 0).length).toBeGreaterThan(24);
      expect(new Set(epochs.map((e) => e.digest)).size).toBeGreaterThan(24);
      expect(epochs.every((e) => e.pausedMs > 0 && e.pausedMs <= e.captureMs)).toBe(true);
    });
  }
});
