/** Builders for planner inputs in tests: explicit, minimal, no defaults hidden from the reader. */
import { isRwanError } from '../src/errors.js';
import type { Measurement } from '../src/measure/types.js';
import type { GuestSpec, LinkSpec, Policy } from '../src/planner/types.js';

/** A measurement of `pages` unique pages in a window of `windowS` seconds. */
export function m(windowS: number, ...pages: number[]): Measurement {
  return { windowS, pages, source: 'test', mode: 'given' };
}

/** A guest with 4 KiB pages, no disk, no device state, uncompressed. */
export function guest(measurements: Measurement[], extra: Partial<GuestSpec> = {}): GuestSpec {
  return {
    name: 'g',
    pageSize: 4096,
    measurements,
    traces: [],
    diskWriteBps: 0,
    deviceStateBytes: 0,
    memoryCompression: 1,
    diskCompression: 1,
    compressionSource: 'given',
    processingPerPageS: 0,
    processingSource: 'none',
    model: 'auto',
    ...extra,
  };
}

/** A link with no header overhead (goodput = bandwidth), no loss, a huge window, one channel. */
export function link(bandwidthBps: number, rttS: number, extra: Partial<LinkSpec> = {}): LinkSpec {
  return {
    bandwidthBps,
    rttS,
    rttSource: 'given',
    loss: 0,
    mssBytes: 1448,
    channels: 1,
    tcpWindowBytes: 2 ** 40,
    cc: 'cubic',
    overheadBytesPerSegment: 0,
    ...extra,
  };
}

/** A policy with a 1 ms fixed pause, 8-byte framing, no headroom unless given. */
export function policy(extra: Partial<Policy> = {}): Policy {
  return {
    mode: 'periodic',
    epochsS: [0.1],
    searchEpochsS: [],
    budgetStat: 'mean',
    headroom: 0,
    pause: { baseS: 0.001, perPageS: 0 },
    framingBytes: 8,
    percentile: 99,
    inFlight: 4,
    copiesBelowBytes: 0,
    maxPauseFraction: 1,
    ...extra,
  };
}

/** The `RwanError` code `fn` throws (or a description of a foreign error), undefined when it returns. */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isRwanError(err) ? err.code : `not ours: ${String(err)}`;
  }
  return undefined;
}

/** The `RwanError` code `p` rejects with, undefined when it resolves. */
export async function codeOfAsync(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    return isRwanError(err) ? err.code : `not ours: ${String(err)}`;
  }
  return undefined;
}
