/**
 * Renders a {@link PlanResult} as a standalone SVG chart: a Vega-Lite spec compiled to Vega and drawn
 * headless by Vega's SVG string renderer (no canvas, no DOM, no network, no fonts to fetch).
 *
 *   PlanResult ──buildSpec()──▶ Vega-Lite spec (data inline) ──compile()──▶ Vega ──View.toSVG()──▶ SVG
 *
 * Layout (two panels, one shared log x axis "epoch (ms)"):
 *
 *   ┌ bandwidth (Mbit/s) ─────────────────────────────┐
 *   │ ── mean  - - peak, one colour per guest         │  ── link / usable link rules
 *   ├ added client latency (ms) ──────────────────────┤
 *   │ ── mean  - - max, one colour per guest          │  ── budget rule (when set)
 *   └──────────────────────── epoch (ms), log ────────┘
 *
 * Points sit on the mean series: filled circles are feasible plans, hollow (white) circles infeasible
 * ones, and a large hollow diamond marks each guest's recommended epoch.
 */

import * as vega from 'vega';
import type { TopLevelSpec } from 'vega-lite';
import { compile } from 'vega-lite';
import type { Encoding } from 'vega-lite/types_unstable/encoding.js';
import type { ExprRef } from 'vega-lite/types_unstable/expr.js';
import type { Legend } from 'vega-lite/types_unstable/legend.js';
import type { LayerSpec } from 'vega-lite/types_unstable/spec/layer.js';
import type { PlanResult } from '../planner/types.js';

/** Options of {@link renderSvg}. */
export interface RenderSvgOptions {
  /** Width of each panel's plotting area, px (default 640). Axes, legends and titles add to it. */
  width?: number;
  /** Height of each panel's plotting area, px (default 240). The SVG holds two panels plus titles. */
  height?: number;
  /** Chart title (default "remus-plan: bandwidth and latency against epoch"). */
  title?: string;
}

/** Default chart title. */
export const DEFAULT_SVG_TITLE = 'remus-plan: bandwidth and latency against epoch';

/** Guests named in the colour legend at most; the others keep their colour but get no entry. */
export const MAX_LEGEND_GUESTS = 20;

/** A value axis switches to a log scale when its positive values span more than this ratio (2 decades). */
const LOG_SPAN = 100;

type YDef = NonNullable<Encoding<string>['y']>;

/** One point of a series: a guest's statistic at one configured epoch. */
interface SeriesRow {
  guest: string;
  /** Configured epoch, ms. */
  epochMs: number;
  /** Series name, e.g. "mean" or "peak (p99)". */
  stat: string;
  /** Mbit/s (bandwidth panel) or ms (latency panel), clamped to the axis floor on a log axis. */
  value: number;
  plan: 'feasible' | 'infeasible';
  /** The guest has a single epoch to show, so its lines are points. */
  lone: boolean;
}

/** The recommended plan of a guest, drawn as a larger marker. */
interface MarkerRow {
  guest: string;
  epochMs: number;
  value: number;
}

/** A labelled horizontal reference line. */
interface RuleRow {
  kind: 'link' | 'usable' | 'budget';
  label: string;
  value: number;
  /** Whether the label goes above (true) or below the line. */
  above: boolean;
}

/** How a value axis is drawn. */
interface ValueAxis {
  log: boolean;
  /** Smallest value drawn; zeros and negatives are raised to it on a log axis (0 on a linear one). */
  floor: number;
  /** Tick values on a log axis (undefined: let Vega choose). */
  ticks: number[] | undefined;
}

/**
 * Draws the plans of every guest against the epoch, as an SVG document.
 *
 * Bandwidth panel: mean wire bandwidth (solid line and points) and peak bandwidth (dashed) per guest,
 * with horizontal rules at the raw link bandwidth ("link") and at the capacity the planner may use
 * ("usable link"). Latency panel: mean (solid, points) and max (dashed) added client latency per guest,
 * with a rule at the latency budget ("budget") when one is set. The x axis (configured epoch, ms) is
 * always logarithmic. Each value axis is logarithmic when its positive values (rules included) span
 * more than two decades, otherwise linear from zero; on a log axis values ≤ 0 (a zero bandwidth, a zero
 * budget) are drawn at a floor, the power of ten one decade below the smallest positive value, while
 * labels keep the true number. Non-finite values and epochs ≤ 0 are left out.
 *
 * Feasible plans are filled circles, infeasible ones hollow circles; the recommended plan of each
 * guest is a large hollow diamond (on the mean bandwidth, and on the latency statistic the budget
 * applies to). One colour per guest; the colour legend names the first {@link MAX_LEGEND_GUESTS}
 * guests only (the subtitle says so). Numbers in labels are rounded: integers from 100 up, else
 * 3 significant digits. A guest with a single epoch gets its peak/max as a small dot (no line).
 *
 * Rendering is CPU-bound on the calling thread: about 1.5–2 s for 100 guests × 100 plans.
 *
 * @param result the planner's output (link rates in decimal Mbit/s, times in ms)
 * @param options panel size (px) and title
 * @returns a standalone SVG document (`<svg xmlns=…>…</svg>`)
 */
export async function renderSvg(result: PlanResult, options: RenderSvgOptions = {}): Promise<string> {
  const spec = buildSpec(result, options);
  const silent = vega.logger(vega.None);
  const compiled = compile(spec, { logger: silent }).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', logLevel: vega.None });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * The Vega-Lite spec {@link renderSvg} draws. Exposed for tests and for anyone who wants the chart
 * in another renderer (e.g. the Vega editor).
 *
 * @param result the planner's output
 * @param options panel size (px) and title
 */
export function buildSpec(result: PlanResult, options: RenderSvgOptions = {}): TopLevelSpec {
  const width = options.width ?? 640;
  const height = options.height ?? 240;
  const title = options.title ?? DEFAULT_SVG_TITLE;
  const { link, policy } = result;
  const peakStat = `peak (p${fmt(policy.percentile)})`;
  const budget = policy.latencyBudgetMs;

  const bwRulesRaw: RuleRow[] = [
    { kind: 'link', label: `link ${fmt(link.bandwidthMbps)} Mbit/s`, value: link.bandwidthMbps, above: true },
    {
      kind: 'usable',
      label: `usable link ${fmt(link.usableMbps)} Mbit/s`,
      value: link.usableMbps,
      above: false,
    },
  ];
  const latRulesRaw: RuleRow[] =
    budget === null
      ? []
      : [
          {
            kind: 'budget',
            label: `budget ${fmt(budget)} ms (${policy.budgetStat})`,
            value: budget,
            above: true,
          },
        ];

  const bwRaw: SeriesRow[] = [];
  const latRaw: SeriesRow[] = [];
  const bwRecRaw: MarkerRow[] = [];
  const latRecRaw: MarkerRow[] = [];
  const guestNames: string[] = [];
  let mostPlans = 0;
  for (const guest of result.guests) {
    guestNames.push(guest.name);
    const plans = guest.plans.filter((p) => p.epochMs > 0 && Number.isFinite(p.epochMs));
    mostPlans = Math.max(mostPlans, plans.length);
    const lone = new Set(plans.map((p) => p.epochMs)).size === 1;
    for (const p of plans) {
      const plan = p.feasible ? 'feasible' : 'infeasible';
      const base = { guest: guest.name, epochMs: p.epochMs, plan, lone } as const;
      bwRaw.push({ ...base, stat: 'mean', value: p.bandwidthMbps });
      if (p.peakBandwidthMbps !== null) bwRaw.push({ ...base, stat: peakStat, value: p.peakBandwidthMbps });
      latRaw.push({ ...base, stat: 'mean', value: p.latencyMeanMs });
      latRaw.push({ ...base, stat: 'max', value: p.latencyMaxMs });
    }
    const rec = guest.recommended;
    if (rec !== null && rec.epochMs > 0 && Number.isFinite(rec.epochMs)) {
      bwRecRaw.push({ guest: guest.name, epochMs: rec.epochMs, value: rec.plan.bandwidthMbps });
      const lat = policy.budgetStat === 'max' ? rec.plan.latencyMaxMs : rec.plan.latencyMeanMs;
      latRecRaw.push({ guest: guest.name, epochMs: rec.epochMs, value: lat });
    }
  }

  const bwAxis = chooseAxis([...bwRaw, ...bwRecRaw, ...bwRulesRaw].map((r) => r.value));
  const latAxis = chooseAxis([...latRaw, ...latRecRaw, ...latRulesRaw].map((r) => r.value));
  let minEpoch = Number.POSITIVE_INFINITY;
  let maxEpoch = 0;
  for (const r of [...bwRaw, ...bwRecRaw]) {
    minEpoch = Math.min(minEpoch, r.epochMs);
    maxEpoch = Math.max(maxEpoch, r.epochMs);
  }
  const epochTicks = maxEpoch === 0 ? undefined : logTicks(minEpoch, maxEpoch);

  const protectable = result.guests.filter((g) => g.recommended !== null).length;
  const total = result.guests.length;
  const legendGuests = [...new Set(guestNames)].slice(0, MAX_LEGEND_GUESTS);
  const subtitle = [
    `mode ${policy.mode} · link ${fmt(link.bandwidthMbps)} Mbit/s, usable ${fmt(link.usableMbps)} Mbit/s · ` +
      `RTT ${fmt(link.rttMs)} ms · budget ${budget === null ? 'none' : `${fmt(budget)} ms (${policy.budgetStat})`}`,
    total === 0
      ? 'no guests'
      : protectable === 0
        ? `no feasible plan for ${total === 1 ? 'the guest' : `any of the ${total} guests`}`
        : `${protectable} of ${total} ${total === 1 ? 'guest has' : 'guests have'} a feasible plan`,
  ];
  if (guestNames.length > MAX_LEGEND_GUESTS) {
    subtitle.push(`legend lists the first ${legendGuests.length} of ${guestNames.length} guests`);
  }

  const x: NonNullable<Encoding<string>['x']> = {
    field: 'epochMs',
    type: 'quantitative',
    title: 'epoch (ms)',
    scale: { type: 'log', nice: false, padding: 12 },
    axis: { format: ',~r', grid: true, ...(epochTicks === undefined ? {} : { values: epochTicks }) },
  };
  const colorScale = {
    domain: [...new Set(guestNames)],
    scheme: guestNames.length <= 10 ? ('category10' as const) : ('tableau20' as const),
  };
  const color = (withLegend: boolean): NonNullable<Encoding<string>['color']> => ({
    field: 'guest',
    type: 'nominal',
    scale: colorScale,
    legend: withLegend
      ? { title: 'guest', values: legendGuests, labelLimit: 160, symbolType: 'stroke', symbolStrokeWidth: 3 }
      : null,
  });
  const shapeScale = {
    domain: ['feasible', 'infeasible', 'recommended'],
    range: ['circle', 'circle', 'diamond'],
  };
  const shapeLegend: Legend<ExprRef> = {
    title: 'plan',
    symbolStrokeColor: '#444',
    symbolStrokeWidth: 1.5,
    // The legend cannot see that infeasible points are hollow: say so with the symbol's fill.
    encoding: {
      symbols: {
        fill: { condition: { test: "datum.value === 'feasible'", value: '#444' }, value: 'white' },
        stroke: { value: '#444' },
        strokeWidth: { value: 1.5 },
        fillOpacity: { value: 1 },
      },
    },
  };
  const pointSize = mostPlans > 40 ? 14 : 36;
  const valueY = (axis: ValueAxis, title: string): YDef => ({
    field: 'value',
    type: 'quantitative',
    title: `${title}${axis.log ? ', log' : ''})`,
    scale: axis.log ? { type: 'log', nice: true } : { type: 'linear', zero: true, nice: true },
    axis: { format: ',~r', ...(axis.ticks === undefined ? {} : { values: axis.ticks }) },
  });
  const ruleLayers = (data: string, y: YDef): LayerSpec<string>['layer'] => [
    {
      data: { name: data },
      mark: { type: 'rule', strokeWidth: 1.5 },
      encoding: {
        y,
        color: { condition: { test: "datum.kind === 'link'", value: '#555' }, value: RULE_TINT },
        strokeDash: { condition: { test: "datum.kind === 'link'", value: [2, 2] }, value: [8, 3] },
      },
    },
    // Each label twice: a white halo first so that it reads on top of the series, then the text.
    ...[true, false].flatMap((halo) =>
      [true, false].map((above) => ({
        data: { name: data },
        transform: [{ filter: above ? 'datum.above' : '!datum.above' }],
        mark: {
          type: 'text' as const,
          align: 'right' as const,
          baseline: above ? ('bottom' as const) : ('top' as const),
          dx: -4,
          dy: above ? -3 : 3,
          fontWeight: 'bold' as const,
          fontSize: 11,
          ...(halo
            ? { stroke: 'white', strokeWidth: 3, strokeJoin: 'round' as const, strokeOpacity: 0.9 }
            : {}),
        },
        encoding: {
          x: { value: width },
          y,
          text: { field: 'label', type: 'nominal' as const },
          color: halo
            ? { value: 'white' }
            : { condition: { test: "datum.kind === 'link'", value: '#555' }, value: RULE_TINT },
        },
      })),
    ),
  ];

  const panel = (
    data: Record<'series' | 'markers' | 'rules', string>,
    y: YDef,
    dash: string[],
    dashTitle: string,
  ): LayerSpec<string> => ({
    width,
    height,
    layer: [
      {
        data: { name: data.series },
        mark: { type: 'line', strokeWidth: 1.5, clip: true },
        encoding: {
          x,
          y,
          color: color(true),
          strokeDash: {
            field: 'stat',
            type: 'nominal',
            title: dashTitle,
            scale: {
              domain: dash,
              range: [
                [1, 0],
                [6, 3],
              ],
            },
            legend: { symbolType: 'stroke', symbolStrokeColor: '#444', symbolStrokeWidth: 1.5 },
          },
          detail: { field: 'guest', type: 'nominal' },
        },
      },
      {
        // A guest with one epoch has no line: show its peak/max as a small dot.
        data: { name: data.series },
        transform: [{ filter: "datum.lone && datum.stat !== 'mean'" }],
        mark: { type: 'point', filled: true, size: 14, clip: true, opacity: 0.8 },
        encoding: { x, y, color: color(false) },
      },
      {
        // Feasible plans filled, infeasible ones hollow (white inside).
        data: { name: data.series },
        transform: [{ filter: "datum.stat === 'mean'" }],
        mark: { type: 'point', filled: false, size: pointSize, strokeWidth: 1.5, clip: true, opacity: 1 },
        encoding: {
          x,
          y,
          color: color(false),
          fill: {
            condition: {
              test: "datum.plan === 'feasible'",
              field: 'guest',
              type: 'nominal',
              scale: colorScale,
              legend: null,
            },
            value: 'white',
          },
          fillOpacity: { value: 1 },
          shape: { field: 'plan', type: 'nominal', scale: shapeScale, legend: shapeLegend },
        },
      },
      {
        data: { name: data.markers },
        mark: { type: 'point', filled: false, size: 260, strokeWidth: 2.5, clip: true, opacity: 1 },
        encoding: {
          x,
          y,
          color: color(false),
          shape: { datum: 'recommended', type: 'nominal', scale: shapeScale, legend: shapeLegend },
        },
      },
      ...ruleLayers(data.rules, y),
    ],
  });

  return {
    title: { text: title, subtitle, anchor: 'start', fontSize: 15, subtitleFontSize: 11 },
    background: 'white',
    padding: 12,
    datasets: {
      bw: clampRows(bwRaw, bwAxis),
      lat: clampRows(latRaw, latAxis),
      bwRec: clampRows(bwRecRaw, bwAxis),
      latRec: clampRows(latRecRaw, latAxis),
      bwRules: clampRules(bwRulesRaw, bwAxis),
      latRules: clampRules(latRulesRaw, latAxis),
    },
    vconcat: [
      panel(
        { series: 'bw', markers: 'bwRec', rules: 'bwRules' },
        valueY(bwAxis, 'bandwidth (Mbit/s'),
        ['mean', peakStat],
        'bandwidth',
      ),
      panel(
        { series: 'lat', markers: 'latRec', rules: 'latRules' },
        valueY(latAxis, 'added client latency (ms'),
        ['mean', 'max'],
        'latency',
      ),
    ],
    spacing: 24,
    resolve: {
      scale: { x: 'shared', color: 'shared', fill: 'shared', shape: 'shared', strokeDash: 'independent' },
      legend: { strokeDash: 'independent' },
    },
    config: {
      font: 'sans-serif',
      axis: { labelFontSize: 11, titleFontSize: 12, labelOverlap: true },
      legend: { labelFontSize: 11, titleFontSize: 12 },
      view: { stroke: '#ccc' },
    },
  };
}

/** Colour of the usable-link and budget rules. */
const RULE_TINT = '#b22222';

/**
 * Log when the positive values span more than {@link LOG_SPAN}, with the floor one decade under the
 * smallest positive value and ticks over the decades the nice domain covers.
 */
function chooseAxis(values: readonly number[]): ValueAxis {
  let min = Number.POSITIVE_INFINITY;
  let max = 0;
  for (const v of values) {
    if (Number.isFinite(v) && v > 0) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  if (max === 0 || max / min <= LOG_SPAN) return { log: false, floor: 0, ticks: undefined };
  const hasNonPositive = values.some((v) => Number.isFinite(v) && v <= 0);
  const floor = 10 ** (Math.floor(Math.log10(min)) - (hasNonPositive ? 1 : 0));
  return { log: true, floor, ticks: logTicks(floor, 10 ** Math.ceil(Math.log10(max))) };
}

/**
 * Round tick values for a log axis over [lo, hi]: 1-2-5 steps up to 3 decades, powers of ten beyond.
 * Undefined under one decade, where Vega's own ticks read better.
 */
function logTicks(lo: number, hi: number): number[] | undefined {
  if (!(lo > 0) || !(hi / lo >= 10)) return undefined;
  const steps = Math.log10(hi / lo) <= 3 ? [1, 2, 5] : [1];
  const ticks: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of steps) {
      // Through a string so that 0.1 × 3 style float noise never reaches a label.
      const v = Number(`${m}e${e}`);
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) ticks.push(v);
    }
  }
  return ticks;
}

/** Drops non-finite values; on a log axis raises values below the floor to it. */
function clampRows<R extends { value: number }>(rows: readonly R[], axis: ValueAxis): R[] {
  const out: R[] = [];
  for (const r of rows) {
    if (!Number.isFinite(r.value)) continue;
    out.push(axis.log && r.value < axis.floor ? { ...r, value: axis.floor } : r);
  }
  return out;
}

/** Like {@link clampRows}; a rule at the bottom of the axis gets its label above, clear of the axis. */
function clampRules(rows: readonly RuleRow[], axis: ValueAxis): RuleRow[] {
  return clampRows(rows, axis).map((r) => (r.value <= axis.floor ? { ...r, above: true } : r));
}

const FMT_SIG = new Intl.NumberFormat('en-US', { maximumSignificantDigits: 3 });
const FMT_INT = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** A number for a label: integers with grouping from 100 up, else 3 significant digits. */
function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  return Math.abs(n) >= 100 ? FMT_INT.format(n) : FMT_SIG.format(n);
}
