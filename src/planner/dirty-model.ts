/**
 * D(T): unique pages a guest dirties in a window of T seconds, fitted from every measurement of the guest.
 * Pure.
 *
 * Measured windows (and exact trace windows) become points (T, mean pages, percentile pages). Between
 * points the curve is interpolated in log–log (a local power law); outside them it is extrapolated with
 * the power-law slope α of the nearest points, clamped to [0.3, 1]; with one window only it is linear
 * (D ∝ T) and says so. `hot-cold` fits H·(1 − e^(−T/τ)) + c·T instead. D never exceeds guest memory.
 */
import { logSpace } from '../units.js';
import { clamp, linearFit, mean, percentile } from './stats.js';
import { completeWindows, epochCounts } from './trace.js';
import type { DirtyModelInfo, GuestSpec } from './types.js';

/** Extrapolation exponents are kept in this range (planner-model.md §2.2). */
export const ALPHA_MIN = 0.3;
export const ALPHA_MAX = 1;

/** Windows per trace on the exact grid (log-spaced), besides the requested epochs. */
const TRACE_GRID_POINTS = 40;
/** The shortest window an exact trace grid starts at, seconds. */
const TRACE_MIN_WINDOW_S = 1e-3;

/** A fitted D(T). */
export interface DirtyCurve {
  info: DirtyModelInfo;
  /** Mean unique pages dirtied in a window of `windowS` seconds. */
  pagesAt(windowS: number): number;
  /** The configured percentile of the same (bursts), ≥ `pagesAt`. */
  peakPagesAt(windowS: number): number;
  /** Exact per-epoch page counts at `windowS` when the guest has traces covering it, else undefined. */
  epochSeries(windowS: number): Float64Array | undefined;
}

interface Point {
  windowS: number;
  mean: number;
  peak: number;
  samples: number;
}

/**
 * Fit D(T) for a guest.
 * @param percentileP percentile (0..100) used for `peakPagesAt`
 * @param exactWindowsS windows (seconds) at which traces are evaluated exactly, besides the grid
 */
export function fitDirtyCurve(
  guest: GuestSpec,
  percentileP: number,
  exactWindowsS: readonly number[],
): DirtyCurve {
  const notes: string[] = [];
  const points = collectPoints(guest, percentileP, exactWindowsS, notes);
  const capPages =
    guest.memoryBytes === undefined ? Number.POSITIVE_INFINITY : guest.memoryBytes / guest.pageSize;
  const hasTrace = guest.traces.length > 0;
  const windowsMs = points.map((p) => round3(p.windowS * 1000));
  const series = hasTrace ? traceSeries(guest) : () => undefined;

  let model = guest.model;
  if (model === 'auto') model = points.length >= 2 || hasTrace ? 'power-law' : 'linear';
  if (model === 'hot-cold' && points.length < 3) {
    notes.push(`hot-cold needs 3 or more windows, ${points.length} given: using a power law`);
    model = points.length >= 2 ? 'power-law' : 'linear';
  }
  if (model === 'power-law' && points.length < 2) {
    notes.push('only one window was measured: D(T) is taken as linear in T (no write coalescing assumed)');
    model = 'linear';
  }

  let fit: { mean: (t: number) => number; peak: (t: number) => number; info: Partial<DirtyModelInfo> };
  if (model === 'linear') fit = linearCurve(points, notes);
  else if (model === 'hot-cold') fit = hotColdCurve(points);
  else fit = powerLawCurve(points, notes);

  const cap = (pages: number) => Math.max(0, Math.min(capPages, pages));
  const info: DirtyModelInfo = {
    model: hasTrace && model === 'power-law' ? 'exact' : model,
    ...fit.info,
    windowsMs,
    notes,
  };
  if (hasTrace && info.model === 'exact') {
    notes.push(
      `exact at ${points.length} windows from the trace, log–log interpolated between them` +
        (guest.measurements.length > 0 ? '; other measurements merged at their windows' : ''),
    );
  }
  return {
    info,
    pagesAt: (t) => cap(fit.mean(t)),
    peakPagesAt: (t) => cap(Math.max(fit.mean(t), fit.peak(t))),
    epochSeries: series,
  };
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** Merge measurements and exact trace windows into points, one per distinct window. */
function collectPoints(
  guest: GuestSpec,
  p: number,
  exactWindowsS: readonly number[],
  notes: string[],
): Point[] {
  const byWindow = new Map<number, number[]>();
  const add = (windowS: number, values: ArrayLike<number>) => {
    const key = Math.round(windowS * 1e9) / 1e9;
    const list = byWindow.get(key) ?? [];
    for (let i = 0; i < values.length; i++) list.push(values[i] as number);
    byWindow.set(key, list);
  };
  for (const m of guest.measurements) add(m.windowS, m.pages);
  for (const trace of guest.traces) {
    const longest = trace.durationS;
    const shortest = Math.min(longest, Math.max(TRACE_MIN_WINDOW_S, longest / 1e5));
    const windows = new Set(shortest < longest ? logSpace(shortest, longest, TRACE_GRID_POINTS) : [longest]);
    for (const w of exactWindowsS) if (w <= longest) windows.add(w);
    const scratch = new Int32Array(trace.distinctPages);
    for (const w of windows) {
      if (completeWindows(trace, w) >= 1) add(w, epochCounts(trace, w, scratch));
    }
  }
  const points = [...byWindow.entries()]
    .filter(([, values]) => values.length > 0)
    .map(([windowS, values]) => ({
      windowS,
      mean: mean(values),
      peak: percentile(values, p),
      samples: values.length,
    }))
    .sort((a, b) => a.windowS - b.windowS);
  const nonZero = points.filter((pt) => pt.mean > 0);
  if (nonZero.length > 0 && nonZero.length < points.length) {
    notes.push(
      'windows that measured no dirty pages were left out (QEMU rounds small rates down to 0 MiB/s)',
    );
    return nonZero;
  }
  return points;
}

/** Per-epoch exact counts at a window, concatenated over the guest's traces that cover it. */
function traceSeries(guest: GuestSpec): (windowS: number) => Float64Array | undefined {
  return (windowS) => {
    const parts = guest.traces.map((t) => epochCounts(t, windowS)).filter((c) => c.length > 0);
    if (parts.length === 0) return undefined;
    const out = new Float64Array(parts.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of parts) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  };
}

/**
 * Make a point list usable as a D(T) curve: non-decreasing (more time never un-dirties a page) and
 * sublinear (D(2T) ≤ 2·D(T)). Noisy measurements that break either are adjusted forward, with a note.
 */
function monotoneSublinear(points: Point[], key: 'mean' | 'peak', notes: string[] | undefined): number[] {
  const out: number[] = [];
  for (let i = 0; i < points.length; i++) {
    const pt = points[i] as Point;
    let v = pt[key];
    if (i > 0) {
      const prev = points[i - 1] as Point;
      const before = out[i - 1] as number;
      const hi = before * (pt.windowS / prev.windowS);
      const adjusted = clamp(v, before, hi);
      if (notes && Math.abs(adjusted - v) > 0.05 * Math.max(v, 1)) {
        const ms = (s: number) => `${round3(s * 1000)} ms`;
        notes.push(
          v < before
            ? `fewer pages at ${ms(pt.windowS)} than at ${ms(prev.windowS)}: held at ${Math.round(before)} (noisy measurements)`
            : `pages grow faster than the window between ${ms(prev.windowS)} and ${ms(pt.windowS)}: limited to linear growth`,
        );
      }
      v = adjusted;
    }
    out.push(v);
  }
  return out;
}

/** Piecewise log–log interpolation with clamped power-law extrapolation. */
function powerLawCurve(points: Point[], notes: string[]) {
  const xs = points.map((p) => Math.log(p.windowS));
  const mk = (key: 'mean' | 'peak', n: string[] | undefined) => {
    const ys = monotoneSublinear(points, key, n).map((v) => Math.log(Math.max(v, 1e-9)));
    const edge = (from: number, to: number) => {
      const { b } = linearFit(xs.slice(from, to), ys.slice(from, to));
      return clamp(b, ALPHA_MIN, ALPHA_MAX);
    };
    const k = Math.min(3, xs.length);
    const loSlope = edge(0, k);
    const hiSlope = edge(xs.length - k, xs.length);
    return (t: number) => Math.exp(interpolate(xs, ys, Math.log(t), loSlope, hiSlope));
  };
  const all = linearFit(
    xs,
    points.map((p) => Math.log(Math.max(p.mean, 1e-9))),
  );
  const alpha = all.b;
  if (alpha < ALPHA_MIN || alpha > ALPHA_MAX) {
    notes.push(
      `fitted α = ${alpha.toFixed(3)} is outside [${ALPHA_MIN}, ${ALPHA_MAX}]; extrapolation uses the clamped value`,
    );
  }
  const meanFn = mk('mean', notes);
  const peakFn = mk('peak', undefined);
  return {
    mean: meanFn,
    peak: peakFn,
    info: { alpha: round3(alpha), fitError: round3(rmsRelError(points, meanFn)) },
  };
}

/** y at x on the polyline (xs, ys), extended with the given slopes beyond its ends. */
function interpolate(xs: number[], ys: number[], x: number, loSlope: number, hiSlope: number): number {
  const n = xs.length;
  const x0 = xs[0] as number;
  const xn = xs[n - 1] as number;
  if (x <= x0) return (ys[0] as number) + loSlope * (x - x0);
  if (x >= xn) return (ys[n - 1] as number) + hiSlope * (x - xn);
  let lo = 0;
  let hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if ((xs[mid] as number) <= x) lo = mid;
    else hi = mid;
  }
  const xa = xs[lo] as number;
  const xb = xs[hi] as number;
  const ya = ys[lo] as number;
  const yb = ys[hi] as number;
  return ya + ((yb - ya) * (x - xa)) / (xb - xa);
}

/**
 * Linear upper bound: the rate measured at the longest window ≤ T (the shortest window when T is below
 * all of them) times T. Correct when measured at T; conservative above it, optimistic below it.
 */
function linearCurve(points: Point[], notes: string[]) {
  const shortest = points[0];
  if (!shortest) return { mean: () => 0, peak: () => 0, info: {} };
  const rateAt = (t: number, key: 'mean' | 'peak') => {
    let chosen = shortest;
    for (const p of points) if (p.windowS <= t) chosen = p;
    return chosen[key] / chosen.windowS;
  };
  if (points.length === 1) {
    notes.push(
      `epochs shorter than the measured window (${round3(shortest.windowS * 1000)} ms) are scaled down linearly, ` +
        'which is optimistic for real guests: measure at the epoch you plan for',
    );
  }
  return {
    mean: (t: number) => rateAt(t, 'mean') * t,
    peak: (t: number) => rateAt(t, 'peak') * t,
    info: { alpha: 1, fitError: 0 },
  };
}

/**
 * Hot/cold working set: D(T) = H·(1 − e^(−T/τ)) + c·T, least squares in relative error; τ by a log grid
 * search, H and c ≥ 0 by a weighted 2×2 solve.
 */
function hotColdCurve(points: Point[]) {
  const ts = points.map((p) => p.windowS);
  const ds = points.map((p) => Math.max(p.mean, 1e-9));
  const tMin = ts[0] as number;
  const tMax = ts[ts.length - 1] as number;
  let best = { err: Number.POSITIVE_INFINITY, h: 0, tau: tMin, c: ds[0]! / tMin };
  for (const tau of logSpace(tMin / 20, tMax * 20, 200)) {
    const fit = solveHotCold(ts, ds, tau);
    if (fit.err < best.err) best = { ...fit, tau };
  }
  const { h, tau, c } = best;
  const meanFn = (t: number) => h * (1 - Math.exp(-t / tau)) + c * t;
  const scale = (t: number) => {
    // peak/mean of the nearest measured window, in log distance
    let nearest = points[0] as Point;
    for (const p of points) {
      if (Math.abs(Math.log(p.windowS / t)) < Math.abs(Math.log(nearest.windowS / t))) nearest = p;
    }
    return nearest.mean > 0 ? nearest.peak / nearest.mean : 1;
  };
  return {
    mean: meanFn,
    peak: (t: number) => meanFn(t) * scale(t),
    info: {
      hotPages: Math.round(h),
      hotTauMs: round3(tau * 1000),
      coldPagesPerSec: round3(c),
      fitError: round3(rmsRelError(points, meanFn)),
    },
  };
}

function solveHotCold(ts: number[], ds: number[], tau: number): { err: number; h: number; c: number } {
  // minimise Σ ((h·f + c·t − d)/d)²
  let a11 = 0;
  let a12 = 0;
  let a22 = 0;
  let b1 = 0;
  let b2 = 0;
  for (let i = 0; i < ts.length; i++) {
    const w = 1 / (ds[i]! * ds[i]!);
    const f = 1 - Math.exp(-ts[i]! / tau);
    const t = ts[i]!;
    a11 += w * f * f;
    a12 += w * f * t;
    a22 += w * t * t;
    b1 += w * f * ds[i]!;
    b2 += w * t * ds[i]!;
  }
  const det = a11 * a22 - a12 * a12;
  let h = det !== 0 ? (b1 * a22 - b2 * a12) / det : 0;
  let c = det !== 0 ? (a11 * b2 - a12 * b1) / det : 0;
  if (h < 0 || c < 0 || det === 0) {
    // one of the two components only
    const hOnly = a11 > 0 ? Math.max(0, b1 / a11) : 0;
    const cOnly = a22 > 0 ? Math.max(0, b2 / a22) : 0;
    const errH = sse(ts, ds, (t) => hOnly * (1 - Math.exp(-t / tau)));
    const errC = sse(ts, ds, (t) => cOnly * t);
    if (errH < errC) {
      h = hOnly;
      c = 0;
    } else {
      h = 0;
      c = cOnly;
    }
  }
  return { err: sse(ts, ds, (t) => h * (1 - Math.exp(-t / tau)) + c * t), h, c };
}

function sse(ts: number[], ds: number[], f: (t: number) => number): number {
  let s = 0;
  for (let i = 0; i < ts.length; i++) s += ((f(ts[i]!) - ds[i]!) / ds[i]!) ** 2;
  return s;
}

function rmsRelError(points: Point[], f: (t: number) => number): number {
  const rel = points.filter((p) => p.mean > 0).map((p) => ((f(p.windowS) - p.mean) / p.mean) ** 2);
  return rel.length === 0 ? 0 : Math.sqrt(mean(rel));
}
