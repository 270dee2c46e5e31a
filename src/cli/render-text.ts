/**
 * Renders a {@link PlanResult} for people (an aligned table per guest, then the link and the fleet)
 * and as CSV for spreadsheets and sweeps. Pure: returns strings.
 */
import type { EpochPlan, GuestResult, PlanResult } from '../planner/types.js';

const COLUMNS: Array<{ head: string; cell: (p: EpochPlan) => string }> = [
  { head: 'epoch', cell: (p) => ms(p.epochMs) },
  { head: 'eff.epoch', cell: (p) => ms(p.effectiveEpochMs) },
  { head: 'pages', cell: (p) => String(p.dirtyPages) },
  { head: 'wire', cell: (p) => bytes(p.wireBytes) },
  { head: 'pause', cell: (p) => ms(p.pauseMs) },
  { head: 'xfer', cell: (p) => ms(p.transferMs) },
  { head: 'Mbit/s', cell: (p) => num(p.bandwidthMbps) },
  {
    head: 'peak',
    cell: (p) => (p.peakBandwidthMbps === null ? '∞' : num(p.peakBandwidthMbps)),
  },
  { head: 'lat.mean', cell: (p) => ms(p.latencyMeanMs) },
  { head: 'lat.max', cell: (p) => ms(p.latencyMaxMs) },
  { head: 'RTT≤', cell: (p) => (p.rttCeilingMs === null ? '∞' : ms(p.rttCeilingMs)) },
  { head: 'ch', cell: (p) => String(p.channelsNeeded) },
  { head: 'fits', cell: (p) => (p.feasible ? 'yes' : 'NO') },
];

function num(x: number): string {
  if (x === 0) return '0';
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  if (Math.abs(x) >= 0.01) return x.toFixed(2);
  return x.toPrecision(2);
}

function ms(x: number): string {
  return x >= 10_000 ? `${num(x / 1000)}s` : `${num(x)}ms`;
}

function bytes(x: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = x;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${num(v)}${units[u]}`;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length))) ?? [];
  return rows.map((r) => `  ${r.map((cell, c) => cell.padStart(widths[c] ?? 0)).join('  ')}`);
}

function describeModel(g: GuestResult): string {
  const m = g.dirtyModel;
  const windows = `${m.windowsMs.length} window${m.windowsMs.length === 1 ? '' : 's'}`;
  switch (m.model) {
    case 'exact':
      return `D(T) exact from trace (${windows}, α≈${m.alpha})`;
    case 'power-law':
      return `D(T) power law α=${m.alpha} from ${windows}`;
    case 'hot-cold':
      return `D(T) hot/cold: ${m.hotPages} hot pages (τ ${m.hotTauMs} ms) + ${m.coldPagesPerSec} pages/s from ${windows}`;
    case 'linear':
      return `D(T) linear from ${windows}`;
  }
}

/** The human-readable plan. */
export function renderText(result: PlanResult): string {
  const out: string[] = [];
  const p = result.policy;
  for (const g of result.guests) {
    out.push(
      `guest ${g.name} — ${describeModel(g)}; compression ${num(g.compression.memory)} (${g.compression.source})` +
        (g.processing.perPageUs > 0
          ? `; processing ${num(g.processing.perPageUs)} µs/page at each end (${g.processing.source})`
          : ''),
      ...table([COLUMNS.map((c) => c.head), ...g.plans.map((plan) => COLUMNS.map((c) => c.cell(plan)))]),
    );
    const rec = g.recommended;
    if (rec) {
      out.push(
        `  recommended epoch ${ms(rec.epochMs)}: +${ms(rec.plan.latencyMeanMs)} mean / +${ms(rec.plan.latencyMaxMs)} max ` +
          `added latency, ${num(rec.plan.bandwidthMbps)} Mbit/s (${rec.why})`,
      );
    } else {
      out.push(`  CANNOT PROTECT: ${g.cannotProtect}`);
    }
    const reasons = [
      ...new Set(g.plans.flatMap((plan) => plan.reasons.map((r) => `${ms(plan.epochMs)}: ${r}`))),
    ];
    for (const r of reasons.slice(0, 8)) out.push(`  ✗ ${r}`);
    if (reasons.length > 8) out.push(`  ✗ … ${reasons.length - 8} more (see --json)`);
    for (const n of g.dirtyModel.notes) out.push(`  note: ${n}`);
    for (const w of g.warnings) out.push(`  warning: ${w}`);
    out.push('');
  }
  const l = result.link;
  out.push(
    `link: ${num(l.bandwidthMbps)} Mbit/s (${num(l.goodputMbps)} goodput, ${num(l.usableMbps)} usable with ${Math.round(p.headroom * 100)} % headroom), ` +
      `RTT ${ms(l.rttMs)}${l.rttSource === 'distance' ? ` from ${l.distanceKm} km of fibre` : ''}, loss ${+(l.loss * 100).toPrecision(3)} %, ` +
      `${l.channels} channel${l.channels === 1 ? '' : 's'}, ${l.cc}: one TCP flow ≤ ${num(l.flowCeilingMbps)} Mbit/s` +
      (l.channelsToFill > l.channels
        ? ` (${l.flowLimit === 'loss' ? 'loss' : 'window/RTT'} bound): ${l.channels} carry ${num(l.goodputMbps)} Mbit/s, ${l.channelsToFill} would fill the link`
        : ''),
    `policy: ${p.mode} mode, pause ${num(p.pauseBaseMs)} ms + ${num(p.pausePerPageUs)} µs/page, at most ${num(p.maxPauseFraction * 100)} % of the time` +
      (p.latencyBudgetMs === null
        ? ', no latency budget'
        : `, ${p.budgetStat} latency budget ${ms(p.latencyBudgetMs)}`),
  );
  const f = result.fleet;
  const fit = f.guests.filter((g) => g.fits).length;
  out.push(
    `fleet: ${fit} of ${f.guests.length} guest${f.guests.length === 1 ? '' : 's'} fit; ${num(f.sumBandwidthMbps)} of ${num(f.usableMbps)} Mbit/s usable; ` +
      (f.percentileBandwidthMbps === null
        ? `bursts ≤ ${num(f.sumPeakBandwidthMbps)} Mbit/s (sum of peaks)`
        : `p${f.percentile} of summed bursts ${num(f.percentileBandwidthMbps)} Mbit/s`) +
      (f.feasible ? ' — the link holds' : ' — the link does NOT hold'),
  );
  for (const g of f.guests) {
    out.push(
      g.fits
        ? `  ${g.name}: epoch ${ms(g.epochMs ?? 0)}, +${ms(g.latencyMeanMs ?? 0)} mean latency, ${num(g.bandwidthMbps)} Mbit/s`
        : `  ${g.name}: does not fit — ${g.reason}`,
    );
  }
  for (const r of f.reasons) out.push(`  ✗ ${r}`);
  return `${out.join('\n')}\n`;
}

const CSV_FIELDS = [
  'epochMs',
  'effectiveEpochMs',
  'dirtyPages',
  'checkpointBytes',
  'wireBytes',
  'peakWireBytes',
  'pauseMs',
  'transferMs',
  'queuedMs',
  'processingMs',
  'recoveryMs',
  'ackMs',
  'copies',
  'bandwidthMbps',
  'peakBandwidthMbps',
  'utilisation',
  'latencyMeanMs',
  'latencyMaxMs',
  'rttCeilingMs',
  'flowCeilingMbps',
  'channelsNeeded',
  'pauseFraction',
  'feasible',
] as const satisfies ReadonlyArray<keyof EpochPlan>;

function csvCell(v: string | number | boolean | null): string {
  if (v === null) return '';
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** One row per guest and epoch; `recommended` marks the recommendation; reasons joined by `; `. */
export function renderCsv(result: PlanResult): string {
  const lines = [['guest', ...CSV_FIELDS, 'recommended', 'reasons'].join(',')];
  for (const g of result.guests) {
    for (const p of g.plans) {
      lines.push(
        [
          csvCell(g.name),
          ...CSV_FIELDS.map((f) => csvCell(p[f])),
          String(g.recommended?.epochMs === p.epochMs),
          csvCell(p.reasons.join('; ')),
        ].join(','),
      );
    }
  }
  return `${lines.join('\n')}\n`;
}
