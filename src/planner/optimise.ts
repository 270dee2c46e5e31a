/**
 * Searches over the plan: the RTT ceiling of a plan, the recommended epoch of a guest, and the reason a
 * guest cannot be protected at any epoch. Pure.
 */
import { type EpochEval, evaluateEpoch, type GuestContext, type ReasonTag, toMbps } from './timing.js';

/** RTTs above this are not searched: the ceiling is reported as unbounded (null). */
export const RTT_SEARCH_MAX_S = 10;
/** RTT ceilings are found to 10 µs or 0.01 % of their value, whichever is larger. */
const RTT_PRECISION_S = 1e-5;
const RTT_PRECISION_REL = 1e-4;

/**
 * The largest RTT (seconds) at which epoch `t` stays feasible for this guest on this link (bandwidth,
 * TCP ceiling, stretch, latency budget all re-evaluated at that RTT), searched next to the link's RTT.
 * 0 when no RTT up to the link's keeps it feasible; null when it stays feasible up to
 * {@link RTT_SEARCH_MAX_S}.
 */
export function rttCeiling(ctx: GuestContext, t: number): number | null {
  const ok = (rtt: number) => evaluateEpoch(ctx, t, rtt, false).reasons.length === 0;
  // Feasibility need not be monotone in RTT (in xl mode a longer RTT stretches the epoch, which lowers
  // the bandwidth), so bracket the boundary next to the link's own RTT: upward by doubling when the
  // plan holds there, downward by halving when it does not.
  const here = ctx.link.rttS;
  let lo: number;
  let hi: number;
  if (ok(here)) {
    lo = here;
    hi = Math.max(here * 2, 1e-3);
    while (ok(hi)) {
      if (hi >= RTT_SEARCH_MAX_S) return null;
      lo = hi;
      hi = Math.min(RTT_SEARCH_MAX_S, hi * 2);
    }
  } else {
    hi = here;
    lo = here / 2;
    while (!ok(lo)) {
      if (lo < RTT_PRECISION_S) return 0;
      hi = lo;
      lo /= 2;
    }
  }
  while (hi - lo > Math.max(RTT_PRECISION_S, RTT_PRECISION_REL * hi)) {
    const mid = (lo + hi) / 2;
    if (ok(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** The lowest-latency feasible candidate (ties: less bandwidth), or undefined. */
export function pickRecommended(
  candidates: readonly EpochEval[],
  stat: 'mean' | 'max',
): EpochEval | undefined {
  let best: EpochEval | undefined;
  for (const c of candidates) {
    if (c.reasons.length > 0) continue;
    const lat = stat === 'max' ? c.latencyMaxS : c.latencyMeanS;
    const bestLat = best && (stat === 'max' ? best.latencyMaxS : best.latencyMeanS);
    if (
      !best ||
      bestLat === undefined ||
      lat < bestLat - 1e-12 ||
      (Math.abs(lat - bestLat) <= 1e-12 && c.avgBps < best.avgBps)
    ) {
      best = c;
    }
  }
  return best;
}

/**
 * Why no candidate epoch works, in one sentence. The dominant cause is the one that blocks the epochs
 * closest to working: the link first (nothing else matters if the stream outruns it), then the pause
 * share, then the latency budget; TCP is named when it holds the link back.
 */
export function cannotProtectReason(candidates: readonly EpochEval[], budgetStat: 'mean' | 'max'): string {
  const has = (c: EpochEval, tag: ReasonTag) => c.reasons.some((r) => r.tag === tag);
  const linkBound = (c: EpochEval) =>
    has(c, 'outrun') || has(c, 'stretch') || has(c, 'bandwidth') || has(c, 'burst');
  const fmtMs = (s: number) => `${+(s * 1000).toPrecision(3)} ms`;
  const range = `${fmtMs(candidates[0]?.epochS ?? 0)}–${fmtMs(candidates[candidates.length - 1]?.epochS ?? 0)}`;
  if (candidates.every(linkBound)) {
    const tcp = candidates.filter((c) => has(c, 'tcp'));
    if (tcp.length === candidates.length) {
      const c = tcp[tcp.length - 1] as EpochEval;
      return `cannot protect at any epoch in ${range}: ${c.reasons.find((r) => r.tag === 'tcp')?.text}`;
    }
    const least = candidates.reduce((a, b) => (b.avgBps / b.goodputBps < a.avgBps / a.goodputBps ? b : a));
    const why = least.reasons[0]?.text ?? '';
    return (
      `cannot protect at any epoch in ${range}: the guest dirties faster than the link carries ` +
      `(best case at ${fmtMs(least.epochS)}: ${+toMbps(least.avgBps).toPrecision(3)} Mbit/s needed; ${why})`
    );
  }
  const linkOk = candidates.filter((c) => !linkBound(c));
  const tcp = candidates.flatMap((c) => c.reasons.filter((r) => r.tag === 'tcp'))[0];
  const tcpHint = tcp ? `; shorter epochs are held back by TCP: ${tcp.text}` : '';
  if (linkOk.every((c) => !has(c, 'latency'))) {
    // the link carries these epochs, but each pauses the guest too long
    const least = linkOk.reduce((a, b) => (b.pauseS / b.effectiveS < a.pauseS / a.effectiveS ? b : a));
    return (
      `cannot protect at any epoch in ${range}: wherever the link keeps up, checkpoints pause the guest too long ` +
      `(best at ${fmtMs(least.epochS)}: ${least.reasons.find((r) => r.tag === 'pause')?.text})${tcpHint}`
    );
  }
  const lat = (c: EpochEval) => (budgetStat === 'max' ? c.latencyMaxS : c.latencyMeanS);
  const best = linkOk.reduce((a, b) => (lat(b) < lat(a) ? b : a));
  return (
    `cannot protect at any epoch in ${range} within the latency budget: the lowest ${budgetStat} added latency ` +
    `the link allows is ${fmtMs(lat(best))} (epoch ${fmtMs(best.epochS)})${tcpHint}`
  );
}
