/**
 * Defaults, each derived from a published measurement or a stock system setting. Pure.
 */
import { linearFit } from './stats.js';
import type { LinkSpec, PauseModel, Policy } from './types.js';

/**
 * Remus (Cully et al., NSDI 2008, Fig. 5, 1 GbE): time the guest stays suspended per checkpoint when
 * an application rewrites the first byte of N pages. Read off the figure (±10–15 %).
 */
export const REMUS_FIG5 = [
  { pages: 1, suspendedMs: 0.6, transmitMs: 0.6 },
  { pages: 256, suspendedMs: 1.5, transmitMs: 13.7 },
  { pages: 512, suspendedMs: 2.6, transmitMs: 35 },
  { pages: 1024, suspendedMs: 4.4, transmitMs: 56.6 },
] as const;

/** Pause model fitted (least squares) to {@link REMUS_FIG5}: ≈ 0.6 ms + 3.7 µs per page. */
export function remusPauseModel(): PauseModel {
  const { a, b } = linearFit(
    REMUS_FIG5.map((r) => r.pages),
    REMUS_FIG5.map((r) => r.suspendedMs),
  );
  return { baseS: a / 1000, perPageS: b / 1000 };
}

/** x86 page size, bytes. */
export const DEFAULT_PAGE_SIZE = 4096;
/** Xen migration v2 sends a 64-bit pfn per page in each PAGE_DATA batch. */
export const DEFAULT_FRAMING_BYTES = 8;

/** Link defaults: Linux TCP with timestamps over Ethernet, CUBIC, the stock 4 MiB `tcp_wmem` maximum. */
export const DEFAULT_LINK: Omit<LinkSpec, 'bandwidthBps' | 'rttS' | 'rttSource'> = {
  loss: 0,
  mssBytes: 1448,
  channels: 1,
  tcpWindowBytes: 4 * 2 ** 20,
  cc: 'cubic',
  // IPv4 20 + TCP 20 + timestamps 12 + Ethernet header 14
  overheadBytesPerSegment: 66,
};

/** Epochs shown when none are asked for, seconds (xl's default interval is 200 ms). */
export const DEFAULT_EPOCHS_S = [0.025, 0.05, 0.1, 0.2, 0.5, 1];
/** Epochs searched for the recommendation: 10 ms to 2 s, 41 points, log-spaced. */
export const SEARCH_RANGE = { fromS: 0.01, toS: 2, points: 41 } as const;

/** Policy defaults (headroom: peers plan for 1.2–1.25× the measured need). */
export const DEFAULT_POLICY: Omit<Policy, 'epochsS' | 'searchEpochsS'> = {
  mode: 'xl',
  budgetStat: 'mean',
  headroom: 0.2,
  pause: remusPauseModel(),
  framingBytes: DEFAULT_FRAMING_BYTES,
  percentile: 99,
  inFlight: 4,
  copiesBelowBytes: 0,
  // Remus measured guest slowdowns well above the bare pause share; keep the pause itself small.
  maxPauseFraction: 0.1,
};
