/**
 * What TCP can carry on a long, lossy link. Pure. All rates in bytes/s of payload (goodput).
 *
 *   flow ceiling = min(link goodput, window / RTT, loss bound)
 *   loss bound   = reno:  Mathis et al. 1997, MSS/RTT · √(3/2) / √p
 *                  cubic: max(Mathis, RFC 8312 §5.1 average window: 1.054 · MSS / (RTT^¼ · p^¾))
 *                  bbr:   none (BBR does not back off on random loss)
 */
import type { LinkSpec } from './types.js';

/** Mathis constant for Reno with an ACK per segment: √(3/2). */
export const MATHIS_C = Math.sqrt(3 / 2);
/** CUBIC constants (RFC 8312): C = 0.4, β = 0.7. */
const CUBIC_C = 0.4;
const CUBIC_BETA = 0.7;
/** (C·(3+β) / (4·(1−β)))^¼ ≈ 1.054. */
export const CUBIC_K = ((CUBIC_C * (3 + CUBIC_BETA)) / (4 * (1 - CUBIC_BETA))) ** 0.25;

/** Fibre: light travels ≈ 204 000 km/s in glass (n ≈ 1.468), so 4.9 µs per km one way. */
export const FIBRE_S_PER_KM = 4.9e-6;

/** Round-trip time over a fibre route of `km` kilometres, seconds (≈ 1 ms per 100 km). */
export function rttFromDistance(km: number): number {
  return 2 * km * FIBRE_S_PER_KM;
}

/** Payload share of the link: MSS / (MSS + headers). */
export function linkGoodputBps(link: LinkSpec): number {
  return (link.bandwidthBps * link.mssBytes) / (link.mssBytes + link.overheadBytesPerSegment);
}

/** Mathis et al. bound for one Reno flow, bytes/s (∞ without loss or RTT). */
export function mathisBps(mssBytes: number, rttS: number, loss: number): number {
  if (loss <= 0 || rttS <= 0) return Number.POSITIVE_INFINITY;
  return (mssBytes / rttS) * (MATHIS_C / Math.sqrt(loss));
}

/** RFC 8312 §5.1 average CUBIC throughput, bytes/s (∞ without loss or RTT). */
export function cubicBps(mssBytes: number, rttS: number, loss: number): number {
  if (loss <= 0 || rttS <= 0) return Number.POSITIVE_INFINITY;
  return (CUBIC_K * mssBytes) / (rttS ** 0.25 * loss ** 0.75);
}

/** Which limit binds a single flow. */
export type FlowLimit = 'link' | 'window' | 'loss';

/** Ceiling of one TCP flow on `link` at round-trip time `rttS`, and what sets it. */
export function flowCeiling(link: LinkSpec, rttS: number): { bps: number; limit: FlowLimit } {
  const linkBps = linkGoodputBps(link);
  const windowBps = rttS > 0 ? link.tcpWindowBytes / rttS : Number.POSITIVE_INFINITY;
  let lossBps = Number.POSITIVE_INFINITY;
  if (link.cc === 'reno') lossBps = mathisBps(link.mssBytes, rttS, link.loss);
  else if (link.cc === 'cubic') {
    lossBps = Math.max(mathisBps(link.mssBytes, rttS, link.loss), cubicBps(link.mssBytes, rttS, link.loss));
  }
  if (linkBps <= windowBps && linkBps <= lossBps) return { bps: linkBps, limit: 'link' };
  return windowBps <= lossBps ? { bps: windowBps, limit: 'window' } : { bps: lossBps, limit: 'loss' };
}

/** Goodput of `channels` parallel flows: they add up until the link is full. */
export function aggregateGoodput(link: LinkSpec, rttS: number, channels = link.channels): number {
  return Math.min(linkGoodputBps(link), channels * flowCeiling(link, rttS).bps);
}
