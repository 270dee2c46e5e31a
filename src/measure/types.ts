/**
 * What every input adapter produces: dirty-page measurements of one or more guests, in the planner's
 * units (seconds, pages, bytes). Adapters read files or talk to QEMU; the planner never does.
 */

/** How a dirty count was obtained; QEMU/libvirt modes differ in what they count (see README). */
export type MeasureMode =
  | 'page-sampling'
  | 'dirty-bitmap'
  | 'dirty-ring'
  | 'trace'
  | 'counts'
  | 'daemon'
  | 'given'
  | 'unknown';

/** Unique pages dirtied in one window of `windowS` seconds, possibly several samples of it. */
export interface Measurement {
  /** Window (measuring period) in seconds. */
  windowS: number;
  /** One value per sample: unique pages written at least once during a window. Never empty. */
  pages: number[];
  /** Where it came from, for the output (`qemu query-dirty-rate`, `--dirty-rate 12MiB/s@100ms`). */
  source: string;
  mode: MeasureMode;
}

/** A write trace: page writes `(time, pfn)` in time order. Exact D(T) comes from it. */
export interface WriteTrace {
  /** Seconds from the start of the trace, non-decreasing. */
  times: Float64Array;
  /** Dense page ids (0..distinctPages-1), one per write. */
  pageIds: Uint32Array;
  /** Number of distinct pages in the trace. */
  distinctPages: number;
  /** Trace length in seconds (last time, or the declared duration). */
  durationS: number;
  source: string;
}

/** Measured compression of a guest's pages (wire bytes / raw bytes). */
export interface CompressionSample {
  ratio: number;
  source: string;
}

/** Everything known about one guest from measurement inputs. Fields are optional: inputs merge. */
export interface GuestMeasurements {
  name?: string;
  pageSize?: number;
  memoryBytes?: number;
  measurements: Measurement[];
  traces: WriteTrace[];
  compression?: CompressionSample;
  /** Observed device-state / non-page bytes per checkpoint (daemon stats). */
  deviceStateBytes?: number;
  /** Encoding time per dirty page at the primary, seconds (daemon stats: `encodeMs` / `dirtyPages`). */
  processing?: { perPageS: number; source: string };
  /** Decoding and committing time per page at the backup, seconds (receiver stats). */
  backupProcessing?: { perPageS: number; source: string };
  /** Hedged bytes per wire byte of the epochs sent once (daemon stats: `hedgedBytes`, `copyBytes`). */
  hedging?: { share: number; source: string };
  /**
   * The share of an epoch a checkpoint took, beyond its encoding, to leave the primary (daemon stats:
   * `sendMs` less `encodeMs`, over `epochMs`; the mean over the epochs).
   */
  sending?: { share: number; source: string };
  notes: string[];
}

/**
 * The file `remus-plan measure qmp` writes and the planner reads back (`format` is fixed).
 * Rates are kept as QEMU reported them (MiB/s) next to the pages they imply.
 */
export interface MeasurementFile {
  format: 'remus-plan/measurements@1';
  guest?: string;
  source: string;
  /** ISO-8601 time the measurement started. */
  startedAt: string;
  pageSize: number;
  memoryBytes?: number;
  qemuVersion?: string;
  mode: MeasureMode;
  samplePagesPerGiB?: number;
  measurements: Array<{
    windowMs: number;
    dirtyRateMiBps: number;
    pages: number;
  }>;
  notes?: string[];
}

/** An empty set of guest measurements. */
export function emptyGuest(): GuestMeasurements {
  return { measurements: [], traces: [], notes: [] };
}
