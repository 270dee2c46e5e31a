/**
 * A process that plays the seeded workload (generator.ts, docs/workload.md) onto a real file: the
 * writer side of capture tests and benchmarks (src/replication/source-image.ts).
 *
 *   node dist/tools/workload/writer.js --image FILE --pages N [--seed S] [--dirty-log FILE]
 *        [--rate PAGES_PER_S] [--epochs N] [--dirty-per-epoch N] [--page-size B] [--mix …] [--content …]
 *        [--io map|pwrite]
 *
 * It creates the image (pages × page size, the generator's initial memory), prints `ready <pid>` on
 * standard output, then for each generator epoch appends the epoch's pfns to the dirty log in one
 * write (with --dirty-log; docs/dirty-log.md §3: a batch is logged before its first page write, and
 * its pages are written before the next batch is logged) and writes each dirty page, paced at --rate
 * pages per second (0: as fast as possible). It stops after --epochs epochs or on SIGTERM / SIGINT
 * (exit status 0, no fsync), printing `done <epochs> <pages written>`.
 *
 * How pages are written (--io): `map` (the default when the native addon is loaded) maps the image
 * (MAP_SHARED) and the generator mutates the mapping in place, as a guest writes its RAM: a page write
 * costs its mutation only. `pwrite` mutates a private copy and pwrite()s each dirty page (a system
 * call and a 4 KiB copy per page: about half of the writer's time).
 */
import { closeSync, constants, ftruncateSync, openSync, writeSync } from 'node:fs';
import { setTimeout as sleep, setImmediate as yieldNow } from 'node:timers/promises';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { type FileMapping, mapFile } from '../../src/codec/hot-loops.js';
import { isRwanError, RwanError } from '../../src/errors.js';
import { DirtyLogWriter } from '../../src/replication/dirty-log.js';
import {
  type ContentMix,
  type EpochHooks,
  type MutationMix,
  resolveWorkloadOptions,
  Workload,
  type WorkloadOptions,
} from './generator.js';

/** How the writer writes pages (see the header). */
export type WriterIo = 'map' | 'pwrite';

/** Most pages written between two looks at the clock with --io map. */
const PACE_RUN = 16;

/**
 * Pages per run of page writes with --io map: at most {@link PACE_RUN}, and a divisor of a log batch
 * of N pages, so that a run never spans two batches (runs and batches both start at an epoch's first
 * page). A batch's pages must all be written before the next batch is logged (docs/dirty-log.md §3):
 * a capture re-reads only the last batch, so a page of the batch before, written after it, would be
 * missed.
 */
export function paceRun(logBatch: 'epoch' | 'page' | number): number {
  if (logBatch === 'epoch') return PACE_RUN;
  if (logBatch === 'page') return 1;
  for (let run = Math.min(PACE_RUN, logBatch); run > 1; run--) if (logBatch % run === 0) return run;
  return 1;
}

/** The writer's default {@link WriterIo}: `map` when the addon can map files. */
export const DEFAULT_IO: WriterIo = mapFile === undefined ? 'pwrite' : 'map';

/** Options of {@link runWriter}. */
export interface WriterOptions {
  /** The image file to create and write. */
  image: string;
  /** Image size in pages. */
  pages: number;
  /** Bytes per page (default 4096). */
  pageSize?: number;
  /** Workload seed (default 1). */
  seed?: number;
  /** Mean dirty pages per generator epoch (default: the generator's, 2 % of the pages). */
  dirtyPerEpoch?: number;
  /** Mutation mix (generator.ts). */
  mix?: MutationMix;
  /** Initial content mix (generator.ts). */
  content?: ContentMix;
  /** The dirty log to create and append to. */
  dirtyLog?: string;
  /**
   * 'epoch' (default): one append per generator epoch; 'page': one append before each page write; a
   * number N: one append per N pages, before the first of them is written.
   */
  logBatch?: 'epoch' | 'page' | number;
  /** Mark the first record of each batch in the log (default true; docs/dirty-log.md §2). */
  batchMarks?: boolean;
  /** Page writes per second; 0 (default): as fast as possible. */
  rate?: number;
  /** Stop after this many generator epochs (default: until stopped). */
  epochs?: number;
  /** How pages are written (default {@link DEFAULT_IO}). */
  io?: WriterIo;
}

/** What {@link runWriter} did. */
export interface WriterTotals {
  /** Generator epochs started (the last one may be partly written when stopped). */
  epochs: number;
  /** Pages written after the initial image. */
  pages: number;
}

/** Writes all of `buf` at `position`. */
function pwriteAll(fd: number, buf: Buffer, position: number): void {
  for (let at = 0; at < buf.length; ) at += writeSync(fd, buf, at, buf.length - at, position + at);
}

/**
 * Creates the image, calls `onReady`, then writes epochs until `shouldStop()` or `epochs`.
 * @throws RwanError `RWAN_ERR_INVALID_VALUE` (bad workload options), `RWAN_ERR_IO` (the image or the
 *   log cannot be written)
 */
export async function runWriter(
  o: WriterOptions,
  onReady: () => void,
  shouldStop: () => boolean,
): Promise<WriterTotals> {
  const wo: WorkloadOptions = { pages: o.pages };
  if (o.pageSize !== undefined) wo.pageSize = o.pageSize;
  if (o.seed !== undefined) wo.seed = o.seed;
  if (o.dirtyPerEpoch !== undefined) wo.dirtyPerEpoch = o.dirtyPerEpoch;
  if (o.mix !== undefined) wo.mix = o.mix;
  if (o.content !== undefined) wo.content = o.content;
  const rate = o.rate ?? 0;
  if (!Number.isFinite(rate) || rate < 0) {
    throw new RwanError('RWAN_ERR_INVALID_VALUE', `writer: rate must be ≥ 0 pages/s, got ${rate}`);
  }
  const io = o.io ?? DEFAULT_IO;
  if (io === 'map' && mapFile === undefined) {
    throw new RwanError(
      'RWAN_ERR_INVALID_VALUE',
      'writer: --io map needs the native addon (see --io pwrite)',
    );
  }
  const { pages, pageSize } = resolveWorkloadOptions(wo); // checks the options before a file is made
  const bytes = pages * pageSize;
  let fd: number;
  try {
    fd = openSync(o.image, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o644);
  } catch (err) {
    throw new RwanError('RWAN_ERR_IO', `writer: cannot create ${o.image}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const totals: WriterTotals = { epochs: 0, pages: 0 };
  let mapping: FileMapping | undefined;
  let log: DirtyLogWriter | undefined;
  try {
    log =
      o.dirtyLog === undefined
        ? undefined
        : DirtyLogWriter.create(o.dirtyLog, pageSize, { batchMarks: o.batchMarks ?? true });
    let w: Workload;
    if (io === 'map' && mapFile !== undefined) {
      ftruncateSync(fd, bytes);
      mapping = mapFile(fd, bytes, true);
      w = new Workload(wo, mapping.bytes);
    } else {
      w = new Workload(wo);
      pwriteAll(fd, w.memory, 0);
    }
    onReady();
    const logged = batchLogger(log, o.logBatch ?? 'epoch');
    const pace = pacer(rate);
    const more = () => !shouldStop() && (o.epochs === undefined || totals.epochs < o.epochs);
    if (mapping !== undefined) {
      // the mutation is the write: log first (the hooks run before each run of page mutations, paced
      // as a whole; a run never spans two log batches: see paceRun)
      const sleeper = new Int32Array(new SharedArrayBuffer(4));
      const hooks: EpochHooks = {
        picked: (pfns) => logged.epoch(pfns),
        run: paceRun(o.logBatch ?? 'epoch'),
        beforeRun: (pfns) => {
          logged.pages(pfns.length);
          totals.pages += pfns.length;
          const ahead = pace(totals.pages);
          if (ahead >= 1) Atomics.wait(sleeper, 0, 0, ahead);
        },
      };
      while (more()) {
        w.nextEpoch(hooks);
        totals.epochs++;
        await yieldNow(); // lets a SIGTERM handler run
      }
    } else {
      let sinceYield = 0;
      while (more()) {
        const e = w.nextEpoch();
        totals.epochs++;
        logged.epoch(e.pfns);
        for (const pfn of e.pfns) {
          logged.pages(1);
          pwriteAll(fd, w.memory.subarray(pfn * pageSize, (pfn + 1) * pageSize), pfn * pageSize);
          const ahead = pace(++totals.pages);
          if (ahead >= 1) {
            await sleep(ahead);
            sinceYield = 0;
          }
          if (++sinceYield >= 256) {
            await yieldNow(); // lets a SIGTERM handler run
            sinceYield = 0;
          }
          if (shouldStop()) break;
        }
      }
    }
  } catch (err) {
    if (err instanceof RwanError) throw err;
    throw new RwanError('RWAN_ERR_IO', `writer: cannot write ${o.image}: ${(err as Error).message}`, {
      cause: err,
    });
  } finally {
    mapping?.unmap();
    closeSync(fd);
    log?.close();
  }
  return totals;
}

/** For `rate` pages/s (0: unpaced), how many ms the writer is ahead after its `pages`-th page. */
function pacer(rate: number): (pages: number) => number {
  if (rate === 0) return () => 0;
  const t0 = performance.now();
  return (pages) => t0 + (pages * 1000) / rate - performance.now();
}

function count(flag: string, min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min) {
      throw new InvalidArgumentError(`${flag} takes a whole number ≥ ${min}, got "${v}"`);
    }
    return n;
  };
}

function number(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0) {
      throw new InvalidArgumentError(`${flag} takes a number ≥ 0, got "${v}"`);
    }
    return n;
  };
}

function weights(flag: string) {
  return (v: string): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const part of v.split(',')) {
      const [k, x, extra] = part.split('=');
      const n = Number(x);
      if (!k || x === undefined || extra !== undefined || x.trim() === '' || !Number.isFinite(n)) {
        throw new InvalidArgumentError(`${flag} takes key=weight pairs separated by commas, got "${part}"`);
      }
      out[k.trim()] = n;
    }
    return out;
  };
}

/**
 * The dirty log's appends for one epoch's page writes, in the order they are written: `epoch(pfns)`
 * before the first, `pages(k)` before the next k are written. 'epoch' appends all of them at once; a
 * batch of N pages ('page' is 1) appends the next N before the first of them is written.
 */
function batchLogger(
  log: DirtyLogWriter | undefined,
  batch: 'epoch' | 'page' | number,
): { epoch(pfns: ArrayLike<number>): void; pages(count: number): void } {
  if (log === undefined) return { epoch() {}, pages() {} };
  if (batch === 'epoch') return { epoch: (pfns) => log.logMany(pfns), pages() {} };
  const n = batch === 'page' ? 1 : batch;
  const records = new Float64Array(n);
  let pfns: ArrayLike<number> = [];
  let next = 0;
  return {
    epoch(p) {
      pfns = p;
      next = 0;
    },
    pages(count) {
      for (const end = next + count; next < end; next++) {
        if (next % n !== 0) continue;
        const m = Math.min(n, pfns.length - next);
        for (let k = 0; k < m; k++) records[k] = pfns[next + k] as number;
        log.logMany(records.subarray(0, m));
      }
    },
  };
}

interface CliOptions {
  io: WriterIo;
  image: string;
  pages: number;
  seed: number;
  pageSize: number;
  dirtyLog?: string;
  logBatch: 'epoch' | 'page' | number;
  batchMarks: boolean;
  rate: number;
  epochs?: number;
  dirtyPerEpoch?: number;
  mix?: MutationMix;
  content?: ContentMix;
}

/** The writer's command line. */
export function createProgram(): Command {
  return new Command('writer')
    .description(
      'Play the seeded workload onto a file: create the image, print "ready <pid>", then write the dirty ' +
        'pages of each generator epoch (logging them first with --dirty-log) until --epochs or SIGTERM/SIGINT.',
    )
    .requiredOption('--image <file>', 'image file to create (overwritten) and write')
    .requiredOption('--pages <n>', 'image size in pages', count('--pages', 1))
    .addOption(
      new Option('--seed <n>', 'workload seed (unsigned 32-bit)').default(1).argParser(count('--seed', 0)),
    )
    .addOption(
      new Option('--page-size <bytes>', 'bytes per page, a power of two in [64, 65536]')
        .default(4096)
        .argParser(count('--page-size', 1)),
    )
    .addOption(
      new Option(
        '--dirty-per-epoch <n>',
        'mean dirty pages per generator epoch (default: 2 % of --pages)',
      ).argParser(number('--dirty-per-epoch')),
    )
    .addOption(
      new Option('--dirty-log <file>', 'dirty log to create: each page is logged before it is written'),
    )
    .addOption(
      new Option(
        '--log-batch <unit>',
        'one log append per generator epoch ("epoch"), per page ("page"), or per N pages',
      )
        .default('epoch')
        .argParser((v: string) => (v === 'epoch' || v === 'page' ? v : count('--log-batch', 1)(v))),
    )
    .addOption(
      new Option(
        '--no-batch-marks',
        "leave the log's batches unmarked (a capture then re-reads every page logged before the previous one)",
      ),
    )
    .addOption(
      new Option('--rate <pages/s>', 'page writes per second; 0 = as fast as possible')
        .default(0)
        .argParser(number('--rate')),
    )
    .addOption(
      new Option('--io <how>', 'map: mutate a shared mapping of the image; pwrite: one pwrite per page')
        .choices(['map', 'pwrite'])
        .default(DEFAULT_IO),
    )
    .addOption(
      new Option('--epochs <n>', 'stop after this many generator epochs').argParser(count('--epochs', 0)),
    )
    .addOption(
      new Option(
        '--mix <weights>',
        'mutation mix, e.g. sparse=0.7,append=0.22,rewrite=0.04,zero=0.03,copy=0.01',
      ).argParser(weights('--mix')),
    )
    .addOption(
      new Option(
        '--content <weights>',
        'initial content mix, e.g. text=0.2,structured=0.3,random=0.1,zero=0.4',
      ).argParser(weights('--content')),
    )
    .addHelpText(
      'after',
      `
Output: "ready <pid>" once the image exists (start capturing then), "done <epochs> <pages>" at the end.
Example: writer --image /tmp/ram.img --pages 4096 --seed 7 --dirty-log /tmp/ram.dlog --rate 20000`,
    );
}

/** Runs the writer; returns the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  const program = createProgram().exitOverride();
  let o: CliOptions;
  try {
    program.parse(argv, { from: 'user' });
    o = program.opts<CliOptions>();
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2; // commander printed it
    throw err;
  }
  let stop = false;
  const onSignal = (): void => {
    stop = true;
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    const wo: WriterOptions = {
      image: o.image,
      pages: o.pages,
      pageSize: o.pageSize,
      seed: o.seed,
      logBatch: o.logBatch,
      batchMarks: o.batchMarks,
      rate: o.rate,
      io: o.io,
    };
    if (o.dirtyLog !== undefined) wo.dirtyLog = o.dirtyLog;
    if (o.epochs !== undefined) wo.epochs = o.epochs;
    if (o.dirtyPerEpoch !== undefined) wo.dirtyPerEpoch = o.dirtyPerEpoch;
    if (o.mix !== undefined) wo.mix = o.mix;
    if (o.content !== undefined) wo.content = o.content;
    const totals = await runWriter(
      wo,
      () => process.stdout.write(`ready ${process.pid}\n`),
      () => stop,
    );
    process.stdout.write(`done ${totals.epochs} ${totals.pages}\n`);
    return 0;
  } catch (err) {
    if (isRwanError(err)) {
      process.stderr.write(`writer: ${err.message} [${err.code}]\n`);
      return err.exitCode;
    }
    throw err;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}

if (process.argv[1]?.endsWith('workload/writer.js')) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
