/**
 * Several guests on one link. Pure.
 *
 * Each guest is first planned as if alone on the link; its feasible epochs are its options. The fleet
 * starts every guest at its lowest-latency option; while the sum of mean bandwidths exceeds the usable
 * link, the guest whose next longer epoch saves the most bandwidth per millisecond of added latency
 * moves to it. If even the cheapest options do not fit, guests are dropped from the end of the
 * priority order (lowest priority, then last in the file) until the rest fit.
 *
 * Bursts: when every admitted guest has a trace, their per-epoch rates are laid on one time line
 * (traces assumed concurrent from their starts) and the configured percentile of the summed rate is
 * reported; otherwise the sum of per-guest peaks bounds it from above.
 */
import { percentile } from './stats.js';
import { type EpochEval, toMbps } from './timing.js';
import type { FleetGuestShare, FleetResult } from './types.js';

/** A guest as the fleet sees it. */
export interface FleetMember {
  name: string;
  priority: number;
  order: number;
  /** Feasible plans the guest may run, any order. Empty: the guest cannot be protected. */
  options: EpochEval[];
  /** Wire bytes of each epoch at a plan's effective epoch, when the guest has a trace. */
  epochWireBytes: (plan: EpochEval) => Float64Array | undefined;
  /** Why the guest has no options. */
  whyNot?: string;
}

const latency = (e: EpochEval) => e.latencyMeanS;

/**
 * Choose an epoch per guest and admit guests onto a link of `goodputBps` keeping `headroom`.
 * @param p percentile (0..100) of the summed per-epoch rate
 */
export function planFleet(
  members: readonly FleetMember[],
  goodputBps: number,
  headroom: number,
  p: number,
): FleetResult {
  const usable = goodputBps * (1 - headroom);
  // Pareto front per guest: ascending latency, strictly descending bandwidth.
  const fronts = new Map<number, EpochEval[]>();
  for (const m of members) {
    const sorted = [...m.options].sort((a, b) => latency(a) - latency(b) || a.avgBps - b.avgBps);
    const front: EpochEval[] = [];
    for (const o of sorted)
      if (front.length === 0 || o.avgBps < (front[front.length - 1] as EpochEval).avgBps) front.push(o);
    fronts.set(m.order, front);
  }
  const ordered = [...members].sort((a, b) => a.priority - b.priority || a.order - b.order);
  let admitted = ordered.filter((m) => (fronts.get(m.order) ?? []).length > 0);
  let choice = relax(admitted, fronts, usable);
  while (admitted.length > 0 && total(admitted, choice, fronts) > usable) {
    admitted = admitted.slice(0, -1);
    choice = relax(admitted, fronts, usable);
  }
  const admittedSet = new Set(admitted.map((m) => m.order));
  const chosen = (m: FleetMember) =>
    admittedSet.has(m.order) ? fronts.get(m.order)?.[choice.get(m.order) ?? 0] : undefined;

  const shares = members.map((m): FleetGuestShare => {
    const plan = chosen(m);
    const share: FleetGuestShare = {
      name: m.name,
      epochMs: plan ? plan.epochS * 1000 : null,
      latencyMeanMs: plan ? plan.latencyMeanS * 1000 : null,
      bandwidthMbps: plan ? toMbps(plan.avgBps) : 0,
      peakBandwidthMbps: plan && Number.isFinite(plan.peakBps) ? toMbps(plan.peakBps) : 0,
      fits: plan !== undefined,
    };
    if (!plan) {
      share.reason =
        (fronts.get(m.order) ?? []).length === 0
          ? (m.whyNot ?? 'no feasible plan')
          : `the usable ${fmt(usable)} Mbit/s is taken by guests of higher priority or earlier in the list`;
    }
    return share;
  });
  const admittedPlans = admitted.map((m) => ({ m, plan: chosen(m) as EpochEval }));
  const sum = admittedPlans.reduce((s, x) => s + x.plan.avgBps, 0);
  const sumPeak = admittedPlans.reduce(
    (s, x) => s + (Number.isFinite(x.plan.peakBps) ? x.plan.peakBps : x.plan.avgBps),
    0,
  );
  const series = admittedPlans.map((x) => ({ bytes: x.m.epochWireBytes(x.plan), e: x.plan.effectiveS }));
  const pct =
    series.length > 0 && series.every((s) => s.bytes && s.bytes.length > 0)
      ? summedPercentile(series as Array<{ bytes: Float64Array; e: number }>, p)
      : null;
  const reasons: string[] = [];
  const rejected = shares.filter((s) => !s.fits);
  if (rejected.length > 0) {
    reasons.push(
      `${rejected.length} of ${members.length} guests do not fit: ${rejected.map((s) => s.name).join(', ')}`,
    );
  }
  if (pct !== null && pct > goodputBps) {
    reasons.push(
      `p${p} of the summed checkpoint rate is ${fmt(pct)} Mbit/s, above the link's ${fmt(goodputBps)} Mbit/s: bursts will queue`,
    );
  }
  return {
    guests: shares,
    sumBandwidthMbps: toMbps(sum),
    sumPeakBandwidthMbps: toMbps(sumPeak),
    percentileBandwidthMbps: pct === null ? null : toMbps(pct),
    percentile: p,
    usableMbps: toMbps(usable),
    feasible: reasons.length === 0,
    reasons,
  };
}

function total(
  admitted: readonly FleetMember[],
  choice: Map<number, number>,
  fronts: Map<number, EpochEval[]>,
): number {
  return admitted.reduce(
    (s, m) => s + ((fronts.get(m.order) ?? [])[choice.get(m.order) ?? 0]?.avgBps ?? 0),
    0,
  );
}

/** Greedy: move guests to longer epochs, best bandwidth saving per added latency first, until it fits. */
function relax(
  admitted: readonly FleetMember[],
  fronts: Map<number, EpochEval[]>,
  usable: number,
): Map<number, number> {
  const choice = new Map(admitted.map((m) => [m.order, 0]));
  let sum = total(admitted, choice, fronts);
  while (sum > usable) {
    let best: { order: number; score: number; saving: number } | undefined;
    for (const m of admitted) {
      const front = fronts.get(m.order) ?? [];
      const i = choice.get(m.order) ?? 0;
      const here = front[i];
      const next = front[i + 1];
      if (!here || !next) continue;
      const saving = here.avgBps - next.avgBps;
      const score = saving / Math.max(1e-9, latency(next) - latency(here));
      if (!best || score > best.score) best = { order: m.order, score, saving };
    }
    if (!best) break;
    choice.set(best.order, (choice.get(best.order) ?? 0) + 1);
    sum -= best.saving;
  }
  return choice;
}

function fmt(bps: number): string {
  return `${+toMbps(bps).toPrecision(3)}`;
}

/**
 * Percentile of the summed rate of guests with per-epoch series: each guest's rate is constant over one
 * of its epochs (bytes / effective epoch); the time line is sampled at the shortest effective epoch
 * over the span all traces cover.
 */
function summedPercentile(series: Array<{ bytes: Float64Array; e: number }>, p: number): number {
  const step = Math.min(...series.map((s) => s.e));
  const span = Math.min(...series.map((s) => s.bytes.length * s.e));
  const n = Math.max(1, Math.floor(span / step));
  const sums = new Float64Array(n);
  for (const s of series) {
    for (let i = 0; i < n; i++) {
      const k = Math.min(s.bytes.length - 1, Math.floor((i * step) / s.e));
      sums[i] = (sums[i] as number) + (s.bytes[k] as number) / s.e;
    }
  }
  return percentile(sums, p);
}
