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
 *     remus-wan's per-epoch stats file is this shape; its `rawBytes`/`wireBytes` give the compression.
 *
 * A comment line `# duration: 10s` declares the trace length (default: the last write's time).
 */
import { RwanError } from '../errors.js';
import { parseDuration } from '../units.js';
import type { GuestMeasurements, Measurement, WriteTrace } from './types.js';

const TIME_KEYS: Readonly<Record<string, number>> = {
  t: 1,
  time: 1,
  ts: 1,
  timestamp: 1,
  t_s: 1,
  time_s: 1,
  t_ms: 1e-3,
  time_ms: 1e-3,
  ts_ms: 1e-3,
  timeMs: 1e-3,
  tMs: 1e-3,
  t_us: 1e-6,
  time_us: 1e-6,
  ts_us: 1e-6,
  t_ns: 1e-9,
  time_ns: 1e-9,
  ts_ns: 1e-9,
};
const PAGE_KEYS = ['pfn', 'gfn', 'page'];
const ADDR_KEYS = ['addr', 'address'];
const COUNT_KEYS = ['pages', 'dirty_pages', 'dirtyPages'];
const WINDOW_KEYS: Readonly<Record<string, number>> = {
  window_ms: 1e-3,
  windowMs: 1e-3,
  epochMs: 1e-3,
  epoch_ms: 1e-3,
  intervalMs: 1e-3,
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
  /** Calls `fn(get, line)` per data row; `get(key)` returns the raw field text or undefined. */
  each(fn: (get: (key: string) => string | undefined, line: number) => void): void;
  count: number;
}

function rowReader(text: string, source: string): Rows {
  const lines: Array<{ text: string; line: number }> = [];
  let at = 0;
  let n = 0;
  while (at <= text.length) {
    const end = text.indexOf('\n', at);
    const stop = end === -1 ? text.length : end;
    n++;
    const line = text.slice(at, stop);
    const trimmed = line.trim();
    if (trimmed !== '' && !trimmed.startsWith('#')) lines.push({ text: trimmed, line: n });
    if (end === -1) break;
    at = end + 1;
  }
  const bad = (line: number, why: string): never => {
    throw new RwanError('RWAN_ERR_INVALID_INPUT', `${source}:${line}: ${why}`, { details: { source, line } });
  };
  if (lines.length === 0) bad(1, 'the file is empty');
  if ((lines[0] as { text: string }).text.startsWith('{')) {
    const objects = lines.map((l) => {
      try {
        const v: unknown = JSON.parse(l.text);
        if (typeof v !== 'object' || v === null || Array.isArray(v))
          bad(l.line, 'expected a JSON object per line');
        return { v: v as Record<string, unknown>, line: l.line };
      } catch (cause) {
        if (cause instanceof RwanError) throw cause;
        return bad(l.line, 'not JSON');
      }
    });
    const keys = [...new Set(objects.flatMap((o) => Object.keys(o.v)))];
    return {
      keys,
      count: objects.length,
      each(fn) {
        for (const o of objects) {
          fn((k) => {
            const v = o.v[k];
            return v === undefined || v === null ? undefined : String(v);
          }, o.line);
        }
      },
    };
  }
  const header = (lines[0] as { text: string }).text.split(',').map((c) => c.trim());
  const data = lines.slice(1);
  return {
    keys: header,
    count: data.length,
    each(fn) {
      const index = new Map(header.map((h, i) => [h, i]));
      for (const l of data) {
        const fields = l.text.split(',');
        if (fields.length !== header.length)
          bad(l.line, `expected ${header.length} fields, found ${fields.length}`);
        fn((k) => {
          const i = index.get(k);
          return i === undefined ? undefined : fields[i]?.trim();
        }, l.line);
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
  const scale = TIME_KEYS[timeKey] as number;
  const times = new Float64Array(rows.count);
  const ids = new Uint32Array(rows.count);
  const dense = new Map<number, number>();
  let i = 0;
  let sorted = true;
  rows.each((get, line) => {
    const t = Number(get(timeKey)) * scale;
    const raw = get(pageKey) ?? '';
    let page = raw.startsWith('0x') || raw.startsWith('0X') ? Number.parseInt(raw, 16) : Number(raw);
    if (isAddress) page = Math.floor(page / pageSize);
    if (!Number.isFinite(t) || t < 0 || raw === '' || !Number.isSafeInteger(page) || page < 0) {
      throw new RwanError(
        'RWAN_ERR_INVALID_INPUT',
        `${source}:${line}: bad time or page (${get(timeKey)}, ${raw})`,
        {
          details: { source, line },
        },
      );
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
  const byWindow = new Map<number, number[]>();
  let raw = 0;
  let wire = 0;
  let epochs = 0;
  rows.each((get, line) => {
    const w = get(windowKey) ?? '';
    const windowS =
      windowKey === 'window'
        ? parseDuration(w, { what: `${source}:${line}` })
        : Number(w) * (WINDOW_KEYS[windowKey] as number);
    const pages = Number(get(countKey));
    if (!(windowS > 0) || !Number.isFinite(pages) || pages < 0) {
      throw new RwanError(
        'RWAN_ERR_INVALID_INPUT',
        `${source}:${line}: bad window or page count (${w}, ${get(countKey)})`,
        {
          details: { source, line },
        },
      );
    }
    const list = byWindow.get(windowS) ?? [];
    list.push(pages);
    byWindow.set(windowS, list);
    const r = Number(get('rawBytes'));
    const wb = Number(get('wireBytes'));
    if (Number.isFinite(r) && Number.isFinite(wb) && r > 0) {
      raw += r;
      wire += wb;
      epochs++;
    }
  });
  const isDaemon = rows.keys.includes('wireBytes');
  const measurements: Measurement[] = [...byWindow.entries()].map(([windowS, pages]) => ({
    windowS,
    pages,
    source: `${source} (${isDaemon ? 'remus-wan stats' : 'per-window counts'}, ${pages.length} samples)`,
    mode: isDaemon ? 'daemon' : 'counts',
  }));
  const guest: GuestMeasurements = { measurements, traces: [], notes: [] };
  if (epochs > 0 && raw > 0) {
    guest.compression = { ratio: wire / raw, source: `${source} (measured over ${epochs} epochs)` };
  }
  return guest;
}
