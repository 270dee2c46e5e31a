/**
 * Exact D(T) from a write trace. Pure.
 *
 * Epochs are aligned windows `[k·T, (k+1)·T)` from the start of the trace, as a checkpointing system
 * cuts them. For each complete window the number of distinct pages written in it is counted exactly:
 * one pass over the writes with a "last epoch seen" stamp per page, O(writes + pages) per window.
 */
import type { WriteTrace } from '../measure/types.js';

/** Number of complete windows of `windowS` seconds the trace holds. */
export function completeWindows(trace: WriteTrace, windowS: number): number {
  return Math.floor(trace.durationS / windowS + 1e-9);
}

/**
 * Distinct pages written in each complete window of `windowS` seconds.
 * @param scratch optional reusable stamp array of length ≥ `trace.distinctPages`
 * @returns one count per complete window (empty when the trace is shorter than one window)
 */
export function epochCounts(trace: WriteTrace, windowS: number, scratch?: Int32Array): Float64Array {
  const windows = completeWindows(trace, windowS);
  const counts = new Float64Array(windows);
  if (windows === 0) return counts;
  const stamp =
    scratch && scratch.length >= trace.distinctPages ? scratch : new Int32Array(trace.distinctPages);
  stamp.fill(-1, 0, trace.distinctPages);
  const { times, pageIds } = trace;
  const inv = 1 / windowS;
  const n = times.length;
  // The writes of window k are a contiguous run (times are sorted): t·inv < k + 1 ⇔ ⌊t/T⌋ ≤ k.
  let i = 0;
  for (let k = 0; k < windows; k++) {
    let c = 0;
    while (i < n && (times[i] as number) * inv < k + 1) {
      const id = pageIds[i] as number;
      if (stamp[id] !== k) {
        stamp[id] = k;
        c++;
      }
      i++;
    }
    counts[k] = c;
  }
  return counts;
}
