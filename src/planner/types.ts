/**
 * The planner's inputs and results. Pure data, in internal units (seconds, bytes, bytes/s) for inputs;
 * results use the output units of the JSON schema (ms, decimal Mbit/s of wire bytes).
 */
import type { Measurement, WriteTrace } from '../measure/types.js';

/** How checkpoints are scheduled. See README "Timing modes". */
export const Modes = ['xl', 'periodic', 'pipelined'] as const;
export type Mode = (typeof Modes)[number];

/** D(T) models. `auto` picks exact (trace) > power law (≥ 2 windows) > linear (1 window). */
export const Models = ['auto', 'power-law', 'hot-cold', 'linear'] as const;
export type ModelName = (typeof Models)[number];

/** TCP congestion control assumed for the single-flow ceiling. */
export const CongestionControls = ['reno', 'cubic', 'bbr'] as const;
export type CongestionControl = (typeof CongestionControls)[number];

/** One guest to plan. */
export interface GuestSpec {
  name: string;
  /** Bytes per page (4096 on x86). */
  pageSize: number;
  /** Guest RAM in bytes; D(T) never exceeds it. */
  memoryBytes?: number;
  measurements: Measurement[];
  traces: WriteTrace[];
  /** Disk writes mirrored to the backup, bytes/s. */
  diskWriteBps: number;
  /** Device/CPU state sent with every checkpoint, bytes. */
  deviceStateBytes: number;
  /** Wire bytes / raw bytes for memory pages (1 = uncompressed). */
  memoryCompression: number;
  /** Wire bytes / raw bytes for disk writes. */
  diskCompression: number;
  /** How the memory compression figure was obtained, echoed in the output. */
  compressionSource: string;
  /**
   * Time to process one dirty page at each end, seconds: encoding at the primary, and as long again
   * for decoding and committing at the backup (0: not measured, left out). From a daemon's stats.
   */
  processingPerPageS: number;
  /** Where `processingPerPageS` came from ('none' when 0). */
  processingSource: string;
  /**
   * Decoding and committing per page at the backup, seconds, when a receiver's stats measured it
   * (else the backup is taken to need as long as the primary's encoding).
   */
  backupProcessing?: { perPageS: number; source: string };
  /**
   * Bytes remus-wan's sender hedged (`--hedge-after`: sent again on an idle channel) per wire byte of
   * the checkpoints it did not copy, as its stats measured; the link carries them too. A share of
   * the traffic the dirty rate does not predict: it depends on how often a channel slows.
   */
  hedging?: { share: number; source: string };
  /**
   * The share of its epoch a checkpoint took, beyond its encoding, to leave remus-wan's sender (its
   * TCP flows' pace and windows), as its stats measured. BBR paces a flow by the delivery rate it has
   * seen, and after a loss recovery a pipelined sender's flows have seen little more than their own
   * average rate: each checkpoint then leaves over most of its epoch, which no link figure predicts.
   */
  sending?: { share: number; source: string };
  model: ModelName;
  /** Lower numbers are admitted to a shared link first (fleet). Default: file order. */
  priority?: number;
}

/** The WAN link between the sites. */
export interface LinkSpec {
  /** Capacity available to replication, bytes/s (of IP packets). */
  bandwidthBps: number;
  /** Round-trip time, seconds. */
  rttS: number;
  /** How the RTT was obtained: given, or derived from a fibre route length. */
  rttSource: 'given' | 'distance';
  distanceKm?: number;
  /** Packet loss probability (0..1). */
  loss: number;
  /** TCP payload bytes per segment. */
  mssBytes: number;
  /** Parallel TCP channels the transport may use. */
  channels: number;
  /** Largest TCP window (send/receive buffer) a flow can use, bytes. */
  tcpWindowBytes: number;
  cc: CongestionControl;
  /** Header bytes per segment (IP + TCP + options + Ethernet) that consume link capacity. */
  overheadBytesPerSegment: number;
}

/** Pause model: the primary suspends the guest for `baseS + perPageS × pages` per checkpoint. */
export interface PauseModel {
  baseS: number;
  perPageS: number;
}

/** What the operator asks for. */
export interface Policy {
  mode: Mode;
  /** Epochs (checkpoint intervals) to report, seconds, ascending. */
  epochsS: number[];
  /** Extra epochs searched for the recommendation (beyond `epochsS`), seconds. */
  searchEpochsS: number[];
  /** Added-latency budget, seconds (applies to `budgetStat`). */
  latencyBudgetS?: number;
  budgetStat: 'mean' | 'max';
  /** Fraction of the link kept free (0.2 = plan for 80 % utilisation). */
  headroom: number;
  pause: PauseModel;
  /** Per-page framing on the wire, bytes (Xen migration v2: 8-byte pfn). */
  framingBytes: number;
  /** Percentile (0..100) of per-epoch bytes used for peak bandwidth and fleet bursts. */
  percentile: number;
  /** Epochs in flight in `pipelined` mode. */
  inFlight: number;
  /**
   * `pipelined` mode with two channels or more: a checkpoint of at most this many wire bytes goes on
   * two channels at once (remus-wan's `--copies-below`; 0: never).
   */
  copiesBelowBytes: number;
  /** Largest share of time the guest may spend paused for checkpoints (0..1). */
  maxPauseFraction: number;
}

/** The fitted D(T) curve of a guest, as reported in the output. */
export interface DirtyModelInfo {
  model: 'exact' | 'power-law' | 'hot-cold' | 'linear';
  /** Coalescing exponent of the power law (D ∝ T^alpha), when it applies. */
  alpha?: number;
  /** Hot-set pages, hot-set refresh time (ms) and cold pages/s of the hot/cold model. */
  hotPages?: number;
  hotTauMs?: number;
  coldPagesPerSec?: number;
  /** RMS relative error of the fit against the measurements (0 = exact). */
  fitError?: number;
  /** Windows the data covers, ms. */
  windowsMs: number[];
  /** Human-readable remarks (fallbacks, clamps, extrapolation). */
  notes: string[];
}

/** One plan: one guest at one configured epoch. Field names are a stable API (README, JSON schema). */
export interface EpochPlan {
  epochMs: number;
  effectiveEpochMs: number;
  dirtyPages: number;
  /** Raw checkpoint bytes: pages × (page + framing) + disk writes + device state. */
  checkpointBytes: number;
  /** Bytes on the wire after compression. */
  wireBytes: number;
  /** Wire bytes of the `percentile`-th epoch (bursts). */
  peakWireBytes: number;
  pauseMs: number;
  transferMs: number;
  /**
   * How long the checkpoint waits, beyond its transfer at the flows' rate, to leave the primary: the
   * measured sending share of the epoch less the transfer (0 without daemon stats; pipelined only).
   */
  queuedMs: number;
  /** Encoding at the primary plus decoding and committing at the backup (0 when not measured). */
  processingMs: number;
  /** Mean delay loss recovery adds (retransmissions a round trip later; tail probes). */
  recoveryMs: number;
  /** From the end of the pause to the backup's acknowledgement: processing + transfer + queued + RTT + recovery. */
  ackMs: number;
  /** The checkpoint goes on two channels at once (`--copies-below`): bandwidth counts both copies. */
  copies: boolean;
  /** Mean wire bandwidth, decimal Mbit/s. */
  bandwidthMbps: number;
  /** Bandwidth needed to land a percentile checkpoint in its slot, decimal Mbit/s; null when the
   * slot is empty (the pause and RTT alone fill the epoch), so no bandwidth is enough. */
  peakBandwidthMbps: number | null;
  /** Share of the link's goodput the stream uses on average (0..1+). */
  utilisation: number;
  latencyMeanMs: number;
  latencyMaxMs: number;
  /** Largest RTT that keeps this plan feasible; null when no RTT limits it below 10 s. */
  rttCeilingMs: number | null;
  /** Single TCP flow ceiling on this link, decimal Mbit/s. */
  flowCeilingMbps: number;
  channelsNeeded: number;
  /** Guest time lost to checkpoint pauses (0..1). */
  pauseFraction: number;
  feasible: boolean;
  reasons: string[];
}

/** The recommendation for a guest. */
export interface Recommendation {
  epochMs: number;
  plan: EpochPlan;
  why: string;
}

export interface GuestResult {
  name: string;
  pageSize: number;
  dirtyModel: DirtyModelInfo;
  compression: { memory: number; disk: number; source: string };
  /**
   * Processing per dirty page at the primary (0 when not measured), and where it came from; the
   * backup's when a receiver's stats measured it (else taken as the primary's).
   */
  processing: { perPageUs: number; source: string; backupPerPageUs?: number; backupSource?: string };
  /** The measured hedge share the bandwidth counts ({@link GuestSpec.hedging}), when the input had one. */
  hedging?: { share: number; source: string };
  /** The measured sending share the plans' queuedMs count ({@link GuestSpec.sending}), when the input had one. */
  sending?: { share: number; source: string };
  plans: EpochPlan[];
  /** Lowest-latency feasible plan, or null with `cannotProtect` explaining why. */
  recommended: Recommendation | null;
  cannotProtect?: string;
  warnings: string[];
}

export interface LinkResult {
  bandwidthMbps: number;
  goodputMbps: number;
  rttMs: number;
  rttSource: 'given' | 'distance';
  distanceKm?: number;
  loss: number;
  mssBytes: number;
  /** Header bytes each segment adds on the link (IP, TCP, Ethernet): the plan's rates are payload. */
  segmentOverheadBytes: number;
  channels: number;
  tcpWindowBytes: number;
  cc: CongestionControl;
  flowCeilingMbps: number;
  /** What limits one TCP flow: the link itself, the window over the RTT, or loss. */
  flowLimit: 'link' | 'window' | 'loss';
  /** Channels that would fill the link. */
  channelsToFill: number;
  usableMbps: number;
}

/** The epoch the fleet gives a guest (it may trade latency for bandwidth so that every guest fits). */
export interface FleetGuestShare {
  name: string;
  epochMs: number | null;
  latencyMeanMs: number | null;
  bandwidthMbps: number;
  peakBandwidthMbps: number;
  fits: boolean;
  reason?: string;
}

export interface FleetResult {
  guests: FleetGuestShare[];
  /** Sum of the admitted guests' mean bandwidths, Mbit/s. */
  sumBandwidthMbps: number;
  /** Sum of the admitted guests' peak bandwidths (upper bound on bursts), Mbit/s. */
  sumPeakBandwidthMbps: number;
  /** Percentile of the summed per-epoch rates when every admitted guest has a trace; else null. */
  percentileBandwidthMbps: number | null;
  percentile: number;
  usableMbps: number;
  feasible: boolean;
  reasons: string[];
}

export interface PlanResult {
  guests: GuestResult[];
  link: LinkResult;
  fleet: FleetResult;
  policy: {
    mode: Mode;
    latencyBudgetMs: number | null;
    budgetStat: 'mean' | 'max';
    headroom: number;
    pauseBaseMs: number;
    pausePerPageUs: number;
    framingBytes: number;
    percentile: number;
    inFlight: number;
    copiesBelowBytes: number;
    maxPauseFraction: number;
  };
}
