/**
 * Dirty-page traces, CSV or NDJSON. Pure: text in, trace/measurements out.
 *
 * Two shapes, told apart by their columns (CSV header / NDJSON keys):
 *
 * - writes: one row per page write, `time` + `page`. Exact D(T) comes from it for every window.
 *     time: `t`, `time`, `ts` or `timestamp` in seconds, or with a unit suffix `_s`, `_ms`, `_us`, `_ns`
 *     page: `pfn`, `gfn` or `page` (decimal or 0x hex), or `addr`/`address` (bytes, divided by the page size)
 * - counts: one row per measured window, `pages` (or `dirty_pages`/`dirtyPages`) + the window:
 *     `window` (a duration string such as `100ms`) or `window_ms`/`windowMs`/`window_s`/`epochMs`.
 *     remus-wan's per-epoch stats file is this shape; its `rawBytes`/`wireBytes` give the compression,
 *     and its full-copy rows (`full: true`: every page, at session start or a resync) are left out.
 *     The epochs of a full copy's catch-up (the backlog shipped after it, until the stream settles:
 *     `catchUps`) count for D(T) but not for what the link and the daemons did (compression,
 *     hedging, sending, processing).
 *     An `encodeMs` column (the daemon's) gives the per-page processing time (planner: ack latency),
 *     and with it a `sendMs` column the share of the epoch a checkpoint took to leave the primary.
 *     A remus-wan receiver's stats file (`pages`, `decodeMs`, `commitMs`, no window) gives the backup's
 *     processing per page only: pass it with the sender's.
 *     A `deviceStateBytes` column (`remus-plan measure xen-stream`) gives the state each checkpoint
 *     carries besides memory: its median over the dirty-rate rows.
 *
 * A comment line `# duration: 10s` declares the trace length (default: the last write's time).
 */
import { RwanError } from '../errors.js';
import { parseDuration } from '../units.js';
import type { GuestMeasurements, Measurement, WriteTrace } from './types.js';

/** Time columns and the number of their units in a second (division keeps 100000 µs = 0.1 s exact). */
const TIME_KEYS: Readonly<Record<string, number>> = {
  t: 1,
  time: 1,
  ts: 1,
  timestamp: 1,
  t_s: 1,
  time_s: 1,
  t_ms: 1e3,
  time_ms: 1e3,
  ts_ms: 1e3,
  timeMs: 1e3,
  tMs: 1e3,
  t_us: 1e6,
  time_us: 1e6,
  ts_us: 1e6,
  t_ns: 1e9,
  time_ns: 1e9,
  ts_ns: 1e9,
};
const PAGE_KEYS = ['pfn', 'gfn', 'page'];
const ADDR_KEYS = ['addr', 'address'];
const COUNT_KEYS = ['pages', 'dirty_pages', 'dirtyPages'];
/** Window columns and the number of their units in a second. */
const WINDOW_KEYS: Readonly<Record<string, number>> = {
  window_ms: 1e3,
  windowMs: 1e3,
  epochMs: 1e3,
  epoch_ms: 1e3,
  intervalMs: 1e3,
  window_s: 1,
  windowS: 1,
};

/** What a trace file held. */
export type TraceContent =
  | { kind: 'writes'; trace: WriteTrace }
  | { kind: 'counts'; guest: GuestMeasurements };

/** True when the text is a CSV with a header we understand, or NDJSON with trace keys. */
export function looksLikeTrace(text: string): boolean {
  const first = firstDataLine(text);
  if (first === undefined) return false;
  if (first.startsWith('{')) {
    return /"(pfn|gfn|page|addr|address|pages|dirty_pages|dirtyPages)"\s*:/.test(first);
  }
  const cols = first.split(',').map((c) => c.trim());
  return cols.some((c) => [...PAGE_KEYS, ...ADDR_KEYS, ...COUNT_KEYS].includes(c));
}

function firstDataLine(text: string): string | undefined {
  let at = 0;
  while (at < text.length) {
    const end = text.indexOf('\n', at);
    const line = text.slice(at, end === -1 ? text.length : end).trim();
    if (line !== '' && !line.startsWith('#')) return line;
    if (end === -1) break;
    at = end + 1;
  }
  return undefined;
}

/** Parse a trace file (CSV with a header, or NDJSON). */
export function parseTrace(text: string, pageSize: number, source: string): TraceContent {
  const declared = /^#\s*duration\s*[:=]\s*(\S+)/m.exec(text);
  const durationS = declared
    ? parseDuration(declared[1] ?? '', { what: `${source}: # duration` })
    : undefined;
  const rows = rowReader(text, source);
  const keys = rows.keys;
  const timeKey = keys.find((k) => k in TIME_KEYS);
  const pageKey = keys.find((k) => PAGE_KEYS.includes(k));
  const addrKey = keys.find((k) => ADDR_KEYS.includes(k));
  const countKey = keys.find((k) => COUNT_KEYS.includes(k));
  if (countKey && !keys.some((k) => k in WINDOW_KEYS || k === 'window') && keys.includes('decodeMs')) {
    return { kind: 'counts', guest: parseBackupStats(rows, countKey, source) };
  }
  if (countKey) return { kind: 'counts', guest: parseCounts(rows, countKey, source) };
  if (!timeKey || !(pageKey || addrKey)) {
    throw new RwanError(
      'RWAN_ERR_MISSING_FIELD',
      `${source}: a trace needs a time column (t, time, ts, t_ms, …) and a page column (pfn, gfn, page, addr), or a pages column for per-window counts`,
      { details: { source, columns: keys } },
    );
  }
  return {
    kind: 'writes',
    trace: parseWrites(rows, timeKey, (pageKey ?? addrKey) as string, !pageKey, pageSize, durationS, source),
  };
}

interface Rows {
  keys: string[];
  count: number;
  /**
   * Calls `fn(field, num, line)` per data row: `field(col)` is the trimmed text of column `col` (an
   * index into `keys`) or undefined, `num(col)` the same read as a number (decimal, or hex with 0x;
   * NaN when it is not one). The accessors are shared by all rows: nothing is allocated per row.
   */
  each(
    fn: (field: (col: number) => string | undefined, num: (col: number) => number, line: number) => void,
  ): void;
}

function badRow(source: string, line: number, why: string): never {
  throw new RwanError('RWAN_ERR_INVALID_INPUT', `${source}:${line}: ${why}`, { details: { source, line } });
}

/** Start of the next line after `at` that is neither blank nor a `#` comment, and its line number. */
function nextDataLine(
  text: string,
  at: number,
  line: number,
): { at: number; end: number; line: number } | undefined {
  let p = at;
  let n = line;
  while (p < text.length) {
    let end = text.indexOf('\n', p);
    if (end === -1) end = text.length;
    n++;
    let a = p;
    let b = end;
    while (a < b && text.charCodeAt(a) <= 32) a++;
    while (b > a && text.charCodeAt(b - 1) <= 32) b--;
    if (a < b && text.charCodeAt(a) !== 35 /* # */) return { at: a, end: b, line: n };
    p = end + 1;
  }
  return undefined;
}

function rowReader(text: string, source: string): Rows {
  const first = nextDataLine(text, 0, 0);
  if (!first) return badRow(source, 1, 'the file is empty');
  return text.charCodeAt(first.at) === 123 /* { */ ? ndjsonRows(text, source) : csvRows(text, source, first);
}

function ndjsonRows(text: string, source: string): Rows {
  const objects: Array<Record<string, unknown>> = [];
  const lines: number[] = [];
  for (let l = nextDataLine(text, 0, 0); l; l = nextDataLine(text, l.end + 1, l.line)) {
    let v: unknown;
    try {
      v = JSON.parse(text.slice(l.at, l.end));
    } catch {
      return badRow(source, l.line, 'not JSON');
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v))
      badRow(source, l.line, 'expected a JSON object per line');
    objects.push(v as Record<string, unknown>);
    lines.push(l.line);
  }
  const keys = [...new Set(objects.flatMap((o) => Object.keys(o)))];
  return {
    keys,
    count: objects.length,
    each(fn) {
      let row: Record<string, unknown> = {};
      const field = (col: number) => {
        const v = row[keys[col] as string];
        return v === undefined || v === null ? undefined : String(v);
      };
      const num = (col: number) => toNumber(field(col) ?? '');
      objects.forEach((o, i) => {
        row = o;
        fn(field, num, lines[i] as number);
      });
    },
  };
}

/** A number from text: decimal, exponent, or hex with a 0x prefix; NaN otherwise. */
function toNumber(raw: string): number {
  if (raw === '') return Number.NaN;
  if (raw.startsWith('0x') || raw.startsWith('0X'))
    return /^0[xX][0-9a-fA-F]+$/.test(raw) ? Number.parseInt(raw, 16) : Number.NaN;
  return Number(raw);
}

function csvRows(text: string, source: string, header: { at: number; end: number; line: number }): Rows {
  const keys = text
    .slice(header.at, header.end)
    .split(',')
    .map((c) => c.trim());
  let count = 0;
  for (let l = nextDataLine(text, header.end + 1, header.line); l; l = nextDataLine(text, l.end + 1, l.line))
    count++;
  return {
    keys,
    count,
    each(fn) {
      const n = keys.length;
      const starts = new Int32Array(n);
      const ends = new Int32Array(n);
      const field = (col: number) =>
        col >= 0 && col < n ? text.slice(starts[col], ends[col]).trim() : undefined;
      // Plain non-negative integers (the common case: µs times, pfns) are read without slicing.
      const num = (col: number) => {
        if (col < 0 || col >= n) return Number.NaN;
        let a = starts[col] as number;
        let b = ends[col] as number;
        while (a < b && text.charCodeAt(a) <= 32) a++;
        while (b > a && text.charCodeAt(b - 1) <= 32) b--;
        if (a === b || b - a > 15) return toNumber(text.slice(a, b));
        let v = 0;
        for (let q = a; q < b; q++) {
          const d = text.charCodeAt(q) - 48;
          if (d < 0 || d > 9) return toNumber(text.slice(a, b));
          v = v * 10 + d;
        }
        return v;
      };
      for (
        let l = nextDataLine(text, header.end + 1, header.line);
        l;
        l = nextDataLine(text, l.end + 1, l.line)
      ) {
        let f = 0;
        let start = l.at;
        for (let q = l.at; q <= l.end; q++) {
          if (q === l.end || text.charCodeAt(q) === 44 /* , */) {
            if (f < n) {
              starts[f] = start;
              ends[f] = q;
            }
            f++;
            start = q + 1;
          }
        }
        if (f !== n) badRow(source, l.line, `expected ${n} fields, found ${f}`);
        fn(field, num, l.line);
      }
    },
  };
}

function parseWrites(
  rows: Rows,
  timeKey: string,
  pageKey: string,
  isAddress: boolean,
  pageSize: number,
  declaredS: number | undefined,
  source: string,
): WriteTrace {
  const perSecond = TIME_KEYS[timeKey] as number;
  const timeCol = rows.keys.indexOf(timeKey);
  const pageCol = rows.keys.indexOf(pageKey);
  const times = new Float64Array(rows.count);
  const ids = new Uint32Array(rows.count);
  const dense = new Map<number, number>();
  let i = 0;
  let sorted = true;
  rows.each((field, num, line) => {
    const t = num(timeCol) / perSecond;
    let page = num(pageCol);
    if (isAddress) page = Math.floor(page / pageSize);
    if (!(t >= 0) || !Number.isFinite(t) || !Number.isSafeInteger(page) || page < 0) {
      badRow(source, line, `bad time or page (${field(timeCol)}, ${field(pageCol)})`);
    }
    let id = dense.get(page);
    if (id === undefined) {
      id = dense.size;
      dense.set(page, id);
    }
    if (i > 0 && t < (times[i - 1] as number)) sorted = false;
    times[i] = t;
    ids[i] = id;
    i++;
  });
  if (rows.count === 0) {
    throw new RwanError('RWAN_ERR_MISSING_FIELD', `${source}: the trace has a header but no writes`, {
      details: { source },
    });
  }
  const order = sorted
    ? undefined
    : [...times.keys()].sort((a, b) => (times[a] as number) - (times[b] as number));
  const t0 = sorted ? (times[0] as number) : (times[order?.[0] as number] as number);
  const outTimes = new Float64Array(rows.count);
  const outIds = new Uint32Array(rows.count);
  for (let k = 0; k < rows.count; k++) {
    const from = order ? (order[k] as number) : k;
    outTimes[k] = (times[from] as number) - t0;
    outIds[k] = ids[from] as number;
  }
  const last = outTimes[rows.count - 1] as number;
  const durationS = declaredS ?? last;
  if (!(durationS > 0)) {
    throw new RwanError(
      'RWAN_ERR_INVALID_VALUE',
      `${source}: the trace spans no time (add "# duration: 10s")`,
      {
        details: { source },
      },
    );
  }
  return { times: outTimes, pageIds: outIds, distinctPages: dense.size, durationS, source };
}

function parseCounts(rows: Rows, countKey: string, source: string): GuestMeasurements {
  const windowKey = rows.keys.find((k) => k in WINDOW_KEYS || k === 'window');
  if (!windowKey) {
    throw new RwanError(
      'RWAN_ERR_MISSING_FIELD',
      `${source}: per-window counts need a window column (window, window_ms, epochMs)`,
      {
        details: { source, columns: rows.keys },
      },
    );
  }
  const col = (key: string) => rows.keys.indexOf(key);
  const [windowCol, countCol, rawCol, wireCol] = [
    col(windowKey),
    col(countKey),
    col('rawBytes'),
    col('wireBytes'),
  ];
  const fullCol = col('full');
  const [stateCol, encodeCol, sendCol, copyCol, hedgedCol] = [
    col('deviceStateBytes'),
    col('encodeMs'),
    col('sendMs'),
    col('copyBytes'),
    col('hedgedBytes'),
  ];
  const epochs: CountRow[] = [];
  let skippedFull = 0;
  rows.each((field, num, line) => {
    // a daemon's full copy (session start, resync) is every page, not what the guest dirtied
    if (fullCol >= 0 && field(fullCol) === 'true') {
      skippedFull++;
      epochs.push(FULL_COPY);
      return;
    }
    const w = field(windowCol) ?? '';
    const windowS =
      windowKey === 'window'
        ? parseDuration(w, { what: `${source}:${line}` })
        : num(windowCol) / (WINDOW_KEYS[windowKey] as number);
    const pages = num(countCol);
    if (!(windowS > 0) || !Number.isFinite(pages) || pages < 0) {
      throw new RwanError(
        'RWAN_ERR_INVALID_INPUT',
        `${source}:${line}: bad window or page count (${w}, ${field(countCol)})`,
        {
          details: { source, line },
        },
      );
    }
    const opt = (c: number) => (c < 0 ? Number.NaN : num(c));
    epochs.push({
      full: false,
      windowS,
      pages,
      raw: opt(rawCol),
      wire: opt(wireCol),
      encodeMs: opt(encodeCol),
      sendMs: opt(sendCol),
      copy: opt(copyCol),
      hedged: opt(hedgedCol),
      state: opt(stateCol),
    });
  });
  const catchUp = catchUps(epochs);
  const byWindow = new Map<number, number[]>();
  let raw = 0;
  let wire = 0;
  let ratioEpochs = 0;
  const states: number[] = [];
  // the share of each epoch its checkpoint took, beyond encoding, to leave the primary
  const sendShares: number[] = [];
  // the epochs sent once (no copies besides the hedges): their wire bytes and hedged bytes
  let onceWire = 0;
  let hedged = 0;
  // the processing time per page: over all the epochs' pages (the mean an epoch's ack carries)
  const encoded = { ms: 0, pages: 0, epochs: 0 };
  epochs.forEach((e, i) => {
    if (e.full) return;
    // every epoch is a sample of D(T), a full copy's catch-up too (its longer windows among them)
    const list = byWindow.get(e.windowS) ?? [];
    list.push(e.pages);
    byWindow.set(e.windowS, list);
    if (Number.isFinite(e.state) && e.state >= 0) states.push(e.state);
    // what the link and the daemons did: from the steady stream only
    if (catchUp[i]) return;
    if (Number.isFinite(e.encodeMs) && e.encodeMs >= 0 && e.pages > 0) tally(encoded, e.encodeMs, e.pages);
    if (Number.isFinite(e.sendMs) && e.sendMs >= 0 && e.encodeMs >= 0) {
      sendShares.push(Math.max(0, e.sendMs - e.encodeMs) / 1000 / e.windowS);
    }
    if (Number.isFinite(e.raw) && Number.isFinite(e.wire) && e.raw > 0) {
      raw += e.raw;
      wire += e.wire;
      ratioEpochs++;
      if (Number.isFinite(e.hedged) && e.hedged >= 0 && (copyCol < 0 || e.copy <= e.hedged)) {
        onceWire += e.wire;
        hedged += e.hedged;
      }
    }
  });
  const isDaemon = rows.keys.includes('wireBytes');
  const caughtUp = isDaemon ? catchUp.filter(Boolean).length : 0;
  // a daemon measures each epoch's real length, which jitters around the configured interval: epochs
  // within 10 % of each other are samples of one window (their median length), not windows of their own
  const windows = isDaemon ? clusterWindows(byWindow, 0.1) : byWindow;
  const measurements: Measurement[] = [...windows.entries()].map(([windowS, pages]) => ({
    windowS,
    pages,
    source: `${source} (${isDaemon ? 'remus-wan stats' : 'per-window counts'}, ${pages.length} samples)`,
    mode: isDaemon ? 'daemon' : 'counts',
  }));
  const guest: GuestMeasurements = {
    measurements,
    traces: [],
    notes: [
      ...(skippedFull > 0
        ? [`${source}: ${skippedFull} full-copy epoch(s) left out (not a dirty-rate sample)`]
        : []),
      ...(caughtUp > 0
        ? [
            `${source}: the ${caughtUp} epoch(s) of a full copy's catch-up (until ${SETTLED_RUN} in a row took at most ${SETTLED_WITHIN} × the median epoch) left out of the compression, hedging, sending and processing`,
          ]
        : []),
    ],
  };
  if (ratioEpochs > 0 && raw > 0) {
    guest.compression = { ratio: wire / raw, source: `${source} (measured over ${ratioEpochs} epochs)` };
  }
  if (onceWire > 0) {
    guest.hedging = {
      share: hedged / onceWire,
      source: `${source} (hedgedBytes over the wire bytes of the epochs sent once)`,
    };
  }
  if (sendShares.length > 0) {
    const { mean, kept } = fencedMean(sendShares);
    const out = sendShares.length - kept;
    guest.sending = {
      share: mean,
      source: `${source} (sendMs less encodeMs over epochMs, mean of ${kept} epochs${out > 0 ? `; ${out} far out left out` : ''})`,
    };
  }
  if (encoded.pages > 0) guest.processing = perPage(encoded, `${source} (encodeMs`);
  if (states.length > 0) {
    // the state besides memory each checkpoint carries (a Xen stream's vCPU and device-model records)
    guest.deviceStateBytes = [...states].sort((a, b) => a - b)[Math.floor(states.length / 2)] as number;
  }
  return guest;
}

/** One row of a per-window counts file (NaN: the column is not there). */
interface CountRow {
  full: boolean;
  windowS: number;
  pages: number;
  raw: number;
  wire: number;
  encodeMs: number;
  sendMs: number;
  copy: number;
  hedged: number;
  state: number;
}

/** A full copy's row: only its place in the file counts. */
const FULL_COPY: CountRow = {
  full: true,
  windowS: 0,
  pages: 0,
  raw: Number.NaN,
  wire: Number.NaN,
  encodeMs: Number.NaN,
  sendMs: Number.NaN,
  copy: Number.NaN,
  hedged: Number.NaN,
  state: Number.NaN,
};

/** Epochs in a row, each at most SETTLED_WITHIN × the median epoch, that end a full copy's catch-up. */
const SETTLED_RUN = 5;
const SETTLED_WITHIN = 1.2;

/**
 * Which rows are a full copy's catch-up: after a full copy (session start, resync) the sender ships
 * its backlog, in epochs stretched to seconds and larger than the guest's steady ones, while its
 * window waits on the full copy's ack. Such epochs compress, hedge and queue unlike the steady
 * stream. The catch-up ends where SETTLED_RUN epochs in a row took at most SETTLED_WITHIN × the
 * median epoch (the setting, as far as the file says). A stream that never settles after a full
 * copy keeps all its epochs: that is its steady behaviour.
 */
function catchUps(rows: readonly CountRow[]): boolean[] {
  const out = rows.map(() => false);
  const windows = rows.filter((r) => !r.full).map((r) => r.windowS);
  if (windows.length === 0) return out;
  const sorted = [...windows].sort((a, b) => a - b);
  const limit = SETTLED_WITHIN * (sorted[Math.floor(sorted.length / 2)] as number);
  let from = -1; // the first row after the last full copy, while it is catching up
  let run = 0;
  rows.forEach((r, i) => {
    if (r.full) {
      from = i + 1;
      run = 0;
      return;
    }
    if (from < 0) return;
    run = r.windowS <= limit ? run + 1 : 0;
    if (run === SETTLED_RUN) {
      for (let j = from; j <= i - SETTLED_RUN; j++) out[j] = true;
      from = -1;
    }
  });
  return out;
}

/**
 * The mean of `xs` without its far-out values (Tukey: above Q3 + 3·IQR), and how many it kept. The
 * checkpoints captured while a full copy or a resend was still leaving wait behind it for many epochs:
 * a transient, not what the link does once the stream is steady. Fewer than 4 values: the plain mean.
 */
function fencedMean(xs: readonly number[]): { mean: number; kept: number } {
  const sorted = [...xs].sort((a, b) => a - b);
  const q = (p: number) => {
    const h = (sorted.length - 1) * p;
    const lo = Math.floor(h);
    const a = sorted[lo] as number;
    return a + (h - lo) * ((sorted[Math.min(lo + 1, sorted.length - 1)] as number) - a);
  };
  const fence = sorted.length < 4 ? Number.POSITIVE_INFINITY : q(0.75) + 3 * (q(0.75) - q(0.25));
  let sum = 0;
  let kept = 0;
  for (const x of sorted) {
    if (x > fence) break;
    sum += x;
    kept++;
  }
  return { mean: sum / kept, kept };
}

/** Milliseconds of processing and the pages they processed, summed over epochs. */
interface Tally {
  ms: number;
  pages: number;
  epochs: number;
}

function tally(t: Tally, ms: number, pages: number): void {
  t.ms += ms;
  t.pages += pages;
  t.epochs++;
}

/** Seconds per page over a tally, and where it came from (`what` opens the parenthesis). */
function perPage(t: Tally, what: string): { perPageS: number; source: string } {
  return { perPageS: t.ms / 1000 / t.pages, source: `${what} per page, over ${t.epochs} epochs)` };
}

/**
 * A remus-wan receiver's stats file (`pages`, `decodeMs`, `commitMs` per committed epoch, no window):
 * the backup's processing per page, decoding and committing, over its epochs (full copies left out).
 */
function parseBackupStats(rows: Rows, countKey: string, source: string): GuestMeasurements {
  const col = (key: string) => rows.keys.indexOf(key);
  const [countCol, fullCol, decodeCol, commitCol] = [
    col(countKey),
    col('full'),
    col('decodeMs'),
    col('commitMs'),
  ];
  const done: Tally = { ms: 0, pages: 0, epochs: 0 };
  rows.each((field, num, line) => {
    if (fullCol >= 0 && field(fullCol) === 'true') return;
    const pages = num(countCol);
    const ms = num(decodeCol) + (commitCol < 0 ? 0 : num(commitCol));
    if (!(pages >= 0) || !(ms >= 0)) badRow(source, line, `bad page count or times (${field(countCol)})`);
    if (pages > 0) tally(done, ms, pages);
  });
  const guest: GuestMeasurements = { measurements: [], traces: [], notes: [] };
  if (done.pages > 0) guest.backupProcessing = perPage(done, `${source} (decodeMs + commitMs`);
  return guest;
}

/**
 * Merge windows (seconds → page counts) that lie within `tolerance` of the first window of their
 * group, in increasing order; each group becomes one window, its samples' median length.
 */
export function clusterWindows(byWindow: Map<number, number[]>, tolerance: number): Map<number, number[]> {
  const sorted = [...byWindow.entries()].sort((a, b) => a[0] - b[0]);
  const out = new Map<number, number[]>();
  let group: Array<[number, number[]]> = [];
  const flush = () => {
    if (group.length === 0) return;
    const lengths = group.flatMap(([w, pages]) => pages.map(() => w)).sort((a, b) => a - b);
    const median = lengths[Math.floor(lengths.length / 2)] as number;
    out.set(median, [...(out.get(median) ?? []), ...group.flatMap(([, pages]) => pages)]);
    group = [];
  };
  for (const entry of sorted) {
    const first = group[0];
    if (first && entry[0] > first[0] * (1 + tolerance)) flush();
    group.push(entry);
  }
  flush();
  return out;
}
