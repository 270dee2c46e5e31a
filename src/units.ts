/**
 * Units the way operators write them, parsed strictly. Pure: no I/O.
 *
 * Internal units everywhere in the project: seconds for time, bytes for sizes, bytes per second for
 * rates, fractions (0..1) for ratios. Output converts to ms and decimal Mbit/s at the edge.
 *
 * Anything that is not an exact match is a {@link RwanError} with code `RWAN_ERR_INVALID_UNIT` (or
 * `RWAN_ERR_INVALID_VALUE` for a number out of range) — never a NaN that travels on.
 */
import { RwanError } from './errors.js';

const NUMBER = String.raw`([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)`;

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ns: 1e-9,
  us: 1e-6,
  µs: 1e-6,
  μs: 1e-6,
  ms: 1e-3,
  s: 1,
  sec: 1,
  secs: 1,
  second: 1,
  seconds: 1,
  m: 60,
  min: 60,
  mins: 60,
  minute: 60,
  minutes: 60,
  h: 3600,
  hour: 3600,
  hours: 3600,
};

const DECIMAL_PREFIX: Readonly<Record<string, number>> = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12 };
const BINARY_PREFIX: Readonly<Record<string, number>> = {
  ki: 2 ** 10,
  mi: 2 ** 20,
  gi: 2 ** 30,
  ti: 2 ** 40,
};

/** Options shared by the parsers. */
export interface ParseOptions {
  /** What the value is, for the error message (`--rtt`, `link.bandwidth`). */
  what?: string;
  /** Accept 0 (default: only strictly positive values). */
  allowZero?: boolean;
}

function fail(
  code: 'RWAN_ERR_INVALID_UNIT' | 'RWAN_ERR_INVALID_VALUE',
  text: string,
  expected: string,
  o: ParseOptions,
): never {
  const what = o.what ? `${o.what}: ` : '';
  throw new RwanError(code, `${what}cannot use ${JSON.stringify(text)}: expected ${expected}`, {
    details: { value: text, expected, ...(o.what ? { what: o.what } : {}) },
  });
}

function checkRange(value: number, text: string, expected: string, o: ParseOptions): number {
  if (!Number.isFinite(value)) fail('RWAN_ERR_INVALID_VALUE', text, `a finite ${expected}`, o);
  if (value < 0 || (value === 0 && !o.allowZero)) {
    fail('RWAN_ERR_INVALID_VALUE', text, `a ${o.allowZero ? 'non-negative' : 'positive'} ${expected}`, o);
  }
  return value;
}

function split(text: string): { num: number; unit: string } | undefined {
  const m = new RegExp(`^\\s*${NUMBER}\\s*([^\\s\\d].*?)?\\s*$`).exec(text);
  if (!m) return undefined;
  return { num: Number(m[1]), unit: m[2] ?? '' };
}

/**
 * A duration: `25ms`, `1s`, `0.5 s`, `250us`, `2min`. A bare number is refused (is it ms or s?).
 * @returns seconds
 */
export function parseDuration(text: string, o: ParseOptions = {}): number {
  const expected = 'a duration with a unit (ns, us, ms, s, min, h), e.g. 25ms';
  const p = split(text);
  const factor = p ? DURATION_UNITS[p.unit] : undefined;
  if (!p || factor === undefined) fail('RWAN_ERR_INVALID_UNIT', text, expected, o);
  return checkRange(p.num * factor, text, 'duration', o);
}

function prefixFactor(prefix: string): number | undefined {
  const lower = prefix.toLowerCase();
  return BINARY_PREFIX[lower] ?? DECIMAL_PREFIX[lower];
}

/**
 * A size: `4KiB`, `4096`, `4 KB`, `1.5GiB`, `4096B`. A bare number is bytes. `KB` is 1000, `KiB` 1024.
 * @returns bytes
 */
export function parseBytes(text: string, o: ParseOptions = {}): number {
  const expected = 'a size such as 4096, 4KiB, 1.5GB';
  const p = split(text);
  if (!p) fail('RWAN_ERR_INVALID_UNIT', text, expected, o);
  let factor: number | undefined;
  if (p.unit === '') factor = 1;
  else {
    const m = /^(|[kKmMgGtT]i?)(B|bytes?)$/.exec(p.unit);
    if (m) factor = prefixFactor(m[1] ?? '');
  }
  if (factor === undefined) fail('RWAN_ERR_INVALID_UNIT', text, expected, o);
  return checkRange(p.num * factor, text, 'size', o);
}

/**
 * A rate in bits or bytes per second: `100Mbit/s`, `1Gbps`, `100mbit` (tc style), `12MiB/s`, `12MB/s`,
 * `10MBps`. `b`/`bit` is bits, `B`/`byte` is bytes; `k M G T` are decimal, `Ki Mi Gi Ti` binary.
 * @returns bytes per second
 */
export function parseRate(text: string, o: ParseOptions = {}): number {
  const expected = 'a rate such as 100Mbit/s, 1Gbps, 12MiB/s, 500KB/s';
  const p = split(text);
  if (!p) fail('RWAN_ERR_INVALID_UNIT', text, expected, o);
  const m = /^([kKmMgGtT]i?)?(b|bits?|B|bytes?|bps|Bps)(\/s|\/sec|ps)?$/.exec(p.unit.replace(/\s+/g, ''));
  if (!m) fail('RWAN_ERR_INVALID_UNIT', text, expected, o);
  const prefix = prefixFactor(m[1] ?? '');
  const unit = m[2] ?? '';
  const perSecond = m[3] !== undefined || unit === 'bps' || unit === 'Bps';
  // A bare "b"/"B" needs "/s" or "ps": "100MB" is a size, not a rate. "100mbit" (tc) is accepted.
  if (prefix === undefined || (!perSecond && (unit === 'b' || unit === 'B'))) {
    fail('RWAN_ERR_INVALID_UNIT', text, expected, o);
  }
  const bits = unit === 'b' || unit.startsWith('bit') || unit === 'bps';
  return checkRange((p.num * prefix) / (bits ? 8 : 1), text, 'rate', o);
}

/**
 * A fraction: `0.1%`, `5%`, or a bare number in [0, 1] (`0.001`).
 * @returns a fraction in [0, 1]
 */
export function parseFraction(text: string, o: ParseOptions = {}): number {
  const expected = 'a percentage such as 0.1% or a fraction in [0, 1]';
  const p = split(text);
  if (!p || (p.unit !== '' && p.unit !== '%')) fail('RWAN_ERR_INVALID_UNIT', text, expected, o);
  const value = p.unit === '%' ? p.num / 100 : p.num;
  if (value > 1) fail('RWAN_ERR_INVALID_VALUE', text, expected, o);
  return checkRange(value, text, 'fraction', { allowZero: true, ...o });
}

/**
 * A positive ratio such as a compression factor (wire/raw): `0.25`, `25%`, or `4:1` (meaning 0.25).
 * @returns the ratio as a number > 0
 */
export function parseRatio(text: string, o: ParseOptions = {}): number {
  const expected = 'a ratio such as 0.3, 30% or 4:1';
  const colon = /^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$/.exec(text);
  if (colon) return checkRange(Number(colon[2]) / Number(colon[1]), text, 'ratio', o);
  const p = split(text);
  if (!p || (p.unit !== '' && p.unit !== '%')) fail('RWAN_ERR_INVALID_UNIT', text, expected, o);
  return checkRange(p.unit === '%' ? p.num / 100 : p.num, text, 'ratio', o);
}

/**
 * A distance: `1000km`, `1000 km`, `600mi`, `2500` (bare numbers are kilometres).
 * @returns kilometres
 */
export function parseDistanceKm(text: string, o: ParseOptions = {}): number {
  const expected = 'a distance such as 1200km or 750mi';
  const p = split(text);
  const factor = p ? ({ '': 1, km: 1, m: 1e-3, mi: 1.609344 } as Record<string, number>)[p.unit] : undefined;
  if (!p || factor === undefined) fail('RWAN_ERR_INVALID_UNIT', text, expected, o);
  return checkRange(p.num * factor, text, 'distance', o);
}

/** A count: a whole number (`512`, `1e6`, `2k` is refused). */
export function parseCount(text: string, o: ParseOptions = {}): number {
  const p = split(text);
  if (!p || p.unit !== '' || !Number.isInteger(p.num))
    fail('RWAN_ERR_INVALID_UNIT', text, 'a whole number', o);
  return checkRange(p.num, text, 'count', o);
}

/** Split `VALUE@WINDOW` (`12MiB/s@100ms`) at its last `@`. */
export function splitAt(text: string, o: ParseOptions = {}): { value: string; window: string } {
  const at = text.lastIndexOf('@');
  if (at <= 0 || at === text.length - 1) {
    fail('RWAN_ERR_INVALID_UNIT', text, 'VALUE@WINDOW, e.g. 12MiB/s@100ms', o);
  }
  return { value: text.slice(0, at), window: text.slice(at + 1) };
}

/**
 * Epochs to plan for: one (`100ms`), a list (`50ms,100ms,200ms`), or a log-spaced sweep
 * (`10ms..1s`, 25 points by default, or `10ms..1s:40` for 40 points).
 * @returns ascending, distinct epoch lengths in seconds
 */
export function parseEpochs(text: string, o: ParseOptions = {}, defaultSteps = 25): number[] {
  const what = { ...o, what: o.what ?? '--epoch' };
  const range = /^(.+?)\.\.(.+?)(?::(\d+))?$/.exec(text.trim());
  if (range) {
    const lo = parseDuration(range[1] ?? '', what);
    const hi = parseDuration(range[2] ?? '', what);
    const steps = range[3] === undefined ? defaultSteps : Number(range[3]);
    if (hi <= lo) fail('RWAN_ERR_INVALID_VALUE', text, 'a range whose end is above its start', what);
    if (steps < 2 || steps > 10_000) fail('RWAN_ERR_INVALID_VALUE', text, 'between 2 and 10000 steps', what);
    return logSpace(lo, hi, steps);
  }
  const list = text.split(',').map((part) => parseDuration(part.trim(), what));
  return [...new Set(list)].sort((a, b) => a - b);
}

/** `n` points from `lo` to `hi` (both included), evenly spaced in log scale, rounded to 1 µs. */
export function logSpace(lo: number, hi: number, n: number): number[] {
  const out: number[] = [];
  const ratio = Math.log(hi / lo);
  for (let i = 0; i < n; i++) out.push(Math.round(lo * Math.exp((ratio * i) / (n - 1)) * 1e6) / 1e6);
  return [...new Set(out)];
}
