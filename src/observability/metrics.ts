/**
 * Prometheus metrics (prom-client) for the daemon pair, read from the sessions' counters when scraped,
 * plus Node's default process metrics and the event-loop delay (encoding and decoding run on the
 * event loop between awaits: their cost shows here).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { ReceiverEpochStats, ReceiverSession } from '../replication/receiver.js';
import type { SenderEpochStats, SenderSession } from '../replication/sender.js';
import type { XenReceiverSession } from '../xen/xen-receiver.js';

/** The event-loop delay monitor (ms percentiles), shared by metrics and status. */
export class LoopDelay {
  private readonly h = monitorEventLoopDelay({ resolution: 10 });
  constructor() {
    this.h.enable();
  }
  /** p50, p99 and max since the last reset, ms. */
  snapshot(): { p50Ms: number; p99Ms: number; maxMs: number } {
    return {
      p50Ms: this.h.percentile(50) / 1e6,
      p99Ms: this.h.percentile(99) / 1e6,
      maxMs: this.h.max / 1e6,
    };
  }
  stop(): void {
    this.h.disable();
  }
}

/** A maker of gauges in `r` whose value is read when scraped (an undefined or NaN value is left out). */
function gauges(r: Registry) {
  return (name: string, help: string, read: () => number | undefined | null) =>
    new Gauge({
      name,
      help,
      registers: [r],
      collect() {
        const v = read();
        if (v !== undefined && v !== null && Number.isFinite(v)) this.set(v);
      },
    });
}

const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Metrics of a sending daemon. */
export function senderMetrics(s: SenderSession, loop: LoopDelay): Registry {
  const r = new Registry();
  collectDefaultMetrics({ register: r });
  const g = gauges(r);
  g(
    'remus_wan_epochs_acked_total',
    'epochs acknowledged as durable by the receiver',
    () => s.counters.epochsAcked,
  );
  g('remus_wan_last_acked_epoch', 'last epoch acknowledged as durable', () => s.lastAckedEpoch);
  g('remus_wan_epochs_in_flight', 'epochs sent or being sent and not yet acknowledged', () => s.inFlight);
  g('remus_wan_full_epochs_total', 'full copies sent (session start, resync)', () => s.counters.fullEpochs);
  g('remus_wan_page_bytes_total', 'dirty page bytes captured', () => s.counters.rawBytes);
  g('remus_wan_wire_bytes_total', 'compressed chunk bytes produced', () => s.counters.wireBytes);
  g('remus_wan_reconnects_total', 'connection attempts after a loss', () => s.counters.reconnects);
  g('remus_wan_resent_epochs_total', 'epochs sent again after a reconnect', () => s.counters.resentEpochs);
  g(
    'remus_wan_copy_bytes_total',
    'chunk bytes sent a second time on another channel (--copies-below, --hedge-after)',
    () => s.counters.copyBytes,
  );
  g(
    'remus_wan_hedged_bytes_total',
    'of those, the bytes an idle channel took over from a slowed one (--hedge-after)',
    () => s.counters.hedgedBytes,
  );
  g('remus_wan_rtt_seconds', 'heartbeat round trip on channel 0', () =>
    s.rttMs === undefined ? undefined : s.rttMs / 1000,
  );
  g(
    'remus_wan_rate_limit_bytes_per_second',
    'bandwidth cap (0: none)',
    () => s.rate.settings?.bytesPerSecond ?? 0,
  );
  g('remus_wan_connected', '1 while replicating', () => (s.state === 'replicating' ? 1 : 0));
  g(
    'remus_wan_capture_memory_bytes',
    'memory kept for reading captures into (raw dirty pages until they are encoded)',
    () => s.captureMemoryBytes,
  );
  g(
    'remus_wan_event_loop_delay_p99_seconds',
    'event-loop delay, 99th percentile',
    () => loop.snapshot().p99Ms / 1000,
  );
  const ack = new Histogram({
    name: 'remus_wan_ack_latency_seconds',
    help: 'from the end of a capture to the durable ACK',
    buckets: latencyBuckets,
    registers: [r],
  });
  const enc = new Histogram({
    name: 'remus_wan_encode_seconds',
    help: 'encoding time per epoch',
    buckets: latencyBuckets,
    registers: [r],
  });
  const dirty = new Counter({
    name: 'remus_wan_dirty_pages_total',
    help: 'dirty pages acknowledged',
    registers: [r],
  });
  s.on('epoch', (e: SenderEpochStats) => {
    if (Number.isFinite(e.ackMs)) ack.observe(e.ackMs / 1000);
    enc.observe(e.encodeMs / 1000);
    dirty.inc(e.dirtyPages);
  });
  return r;
}

/** Metrics of a receiving daemon. */
export function receiverMetrics(s: ReceiverSession, loop: LoopDelay): Registry {
  const r = new Registry();
  collectDefaultMetrics({ register: r });
  const g = gauges(r);
  g('remus_wan_epochs_committed_total', 'epochs committed durably', () => s.counters.epochs);
  g('remus_wan_last_committed_epoch', 'last epoch committed durably', () => s.lastEpoch);
  g('remus_wan_pages_committed_total', 'pages committed', () => s.counters.pages);
  g('remus_wan_wire_bytes_received_total', 'compressed chunk bytes received', () => s.counters.wireBytes);
  g(
    'remus_wan_staging_spilled_bytes_total',
    'chunk bytes written to the spill file (epochs staged past --staging)',
    () => s.counters.spilledBytes,
  );
  g(
    'remus_wan_copy_bytes_dropped_total',
    'chunk bytes received as a later copy of a chunk already taken (dropped)',
    () => s.counters.copyBytes,
  );
  g('remus_wan_resumes_total', 'sender reconnections that resumed the session', () => s.counters.resumes);
  g(
    'remus_wan_refused_connections_total',
    'connections refused (handshake, protocol)',
    () => s.counters.refused,
  );
  g(
    'remus_wan_rejected_epochs_total',
    'epochs that did not decode or verify',
    () => s.counters.digestFailures,
  );
  g('remus_wan_connected_channels', 'sender channels connected', () => s.connectedChannels);
  g(
    'remus_wan_replica_retained_pages',
    'committed pages not yet written into the replica file (in the page cache and the journal)',
    () => s.retainedPages,
  );
  g('remus_wan_rtt_seconds', 'heartbeat round trip', () =>
    s.rttMs === undefined ? undefined : s.rttMs / 1000,
  );
  g(
    'remus_wan_event_loop_delay_p99_seconds',
    'event-loop delay, 99th percentile',
    () => loop.snapshot().p99Ms / 1000,
  );
  detectorMetrics(r, s);
  const commit = new Histogram({
    name: 'remus_wan_commit_seconds',
    help: 'decode + durable commit per epoch',
    buckets: latencyBuckets,
    registers: [r],
  });
  s.on('epoch', (e: ReceiverEpochStats) => commit.observe((e.decodeMs + e.commitMs) / 1000));
  return r;
}

/** The failure detector's state (1 for the current one) and the primary losses it declared. */
function detectorMetrics(
  r: Registry,
  s: { readonly detectorState: string; on(ev: 'detector', fn: (ev: string) => void): unknown },
): void {
  const states = ['waiting', 'alive', 'suspect', 'lost'] as const;
  new Gauge({
    name: 'remus_wan_primary_state',
    help: '1 for the failure detector state the primary is in (waiting, alive, suspect, lost)',
    labelNames: ['state'],
    registers: [r],
    collect() {
      for (const st of states) this.set({ state: st }, st === s.detectorState ? 1 : 0);
    },
  });
  const lost = new Counter({
    name: 'remus_wan_primary_lost_total',
    help: 'times the primary was declared lost',
    registers: [r],
  });
  s.on('detector', (ev: string) => {
    if (ev === 'primary-lost') lost.inc();
  });
}

/** Metrics of a Xen receiving daemon (`remus-wan xen-receive`). */
export function xenReceiverMetrics(s: XenReceiverSession, loop: LoopDelay): Registry {
  const r = new Registry();
  collectDefaultMetrics({ register: r });
  const g = gauges(r);
  g('remus_wan_epochs_committed_total', 'epochs handed to the receive command', () => s.counters.epochs);
  g('remus_wan_last_committed_epoch', 'last epoch handed to the receive command', () => s.lastEpoch);
  g(
    'remus_wan_xen_checkpoints_total',
    'checkpoints handed whole to the receive command',
    () => s.counters.checkpoints,
  );
  g(
    'remus_wan_xen_last_checkpoint',
    'last checkpoint handed whole to the receive command',
    () => s.lastCompleteCheckpoint,
  );
  g(
    'remus_wan_xen_stream_bytes_total',
    'stream bytes written to the receive command',
    () => s.counters.streamBytes,
  );
  g('remus_wan_wire_bytes_received_total', 'compressed chunk bytes received', () => s.counters.wireBytes);
  g('remus_wan_resumes_total', 'tunnel reconnections that resumed the stream', () => s.counters.resumes);
  g(
    'remus_wan_refused_connections_total',
    'connections refused (handshake, protocol)',
    () => s.counters.refused,
  );
  g('remus_wan_connected_channels', 'tunnel channels connected', () => s.connectedChannels);
  g(
    'remus_wan_event_loop_delay_p99_seconds',
    'event-loop delay, 99th percentile',
    () => loop.snapshot().p99Ms / 1000,
  );
  detectorMetrics(r, s);
  return r;
}

/** Phases and authorities of the failover controller (controller.ts), for the metrics' labels. */
const PHASES = ['INIT', 'DISABLED', 'RISING', 'FALLING', 'UP', 'DOWN', 'EXIT'] as const;
const AUTHORITIES = ['active', 'standby', 'fenced', 'superseded'] as const;

/** What the failover controller's metrics read. */
export interface FailoverMetricsSource {
  phase(): string;
  authority(): string;
  token(): number;
}

/**
 * The failover controller's metrics: its phase and authority (1 for the current one), its fencing
 * token, and counters of the actions carried out (by kind) and of the decisions whose actions failed.
 */
export function failoverMetrics(src: FailoverMetricsSource): {
  registry: Registry;
  decided(actions: ReadonlyArray<{ kind: string }>, failed: boolean): void;
} {
  const r = new Registry();
  collectDefaultMetrics({ register: r });
  new Gauge({
    name: 'remus_failover_phase',
    help: 'The controller’s phase (healthcheck states): 1 for the current one',
    labelNames: ['phase'],
    registers: [r],
    collect() {
      for (const p of PHASES) this.set({ phase: p }, src.phase() === p ? 1 : 0);
    },
  });
  new Gauge({
    name: 'remus_failover_authority',
    help: 'Whether this site may announce (active, standby, fenced, superseded): 1 for the current one',
    labelNames: ['authority'],
    registers: [r],
    collect() {
      for (const a of AUTHORITIES) this.set({ authority: a }, src.authority() === a ? 1 : 0);
    },
  });
  gauges(r)('remus_failover_token', 'The fencing token this site knows', () => src.token());
  const actions = new Counter({
    name: 'remus_failover_actions_total',
    help: 'Actions carried out, by kind (announce, withdraw, promote, persist-token, hook)',
    labelNames: ['kind'],
    registers: [r],
  });
  const decisions = new Counter({
    name: 'remus_failover_decisions_total',
    help: 'Ticks decided',
    registers: [r],
  });
  const failures = new Counter({
    name: 'remus_failover_failed_decisions_total',
    help: 'Ticks whose actions did not all succeed (retried at the next tick)',
    registers: [r],
  });
  return {
    registry: r,
    decided(done, failed) {
      decisions.inc();
      for (const a of done) actions.inc({ kind: a.kind });
      if (failed) failures.inc();
    },
  };
}
