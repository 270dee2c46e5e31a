/**
 * One guest at one configured epoch: checkpoint bytes, pause, transfer, effective epoch, latency,
 * bandwidth, feasibility. Pure.
 *
 *   pages(E)  = D(E)
 *   raw(E)    = pages·(P + f) + W_d·E + device state
 *   wire(E)   = pages·(P + f)·c_m + W_d·E·c_d + device state
 *   pause(E)  = s0 + s1·pages
 *   x(E)      = wire(E) / goodput            goodput = min(link, channels × one TCP flow)
 *   q(E)      = max(0, s·E − x)              queued: s, pipelined only, is the share of its epoch a
 *                                            checkpoint took to leave the primary beyond encoding,
 *                                            as remus-wan's stats measured it (0 without them)
 *               BBR paces a flow at the delivery rate it has seen, which after a loss recovery is
 *               little more than a pipelined sender's own average rate: a checkpoint then leaves over
 *               most of its epoch (behind the last one's tail), not at the link's rate
 *   proc(E)   = (p + p_b)·pages              p: encoding per page at the primary, p_b: decoding and
 *                                            committing at the backup (the daemons' stats; p_b = p
 *                                            without the receiver's)
 *   rec(E)    = RTT·P − w·(P/L − e^(−L)) + P(3·ch)·RTT      L = −k·ln(1 − loss), P = 1 − e^(−L)
 *               loss recovery, on average: a lost segment arrives about a round trip after it was
 *               sent, so only the k = (wire/MSS)·w/y segments of the checkpoint's last round trip
 *               w = min(y, RTT) delay its end (y = x + q), by RTT less the time between the latest
 *               loss and the end; one of the last 3 of a channel's burst waits for a probe timeout
 *               (2 RTT) instead
 *   ack(E)    = proc + x + q + RTT + rec     from the end of the pause to the backup's acknowledgement
 *
 *   xl         E = T + pause + ack                      (libxl re-arms its timer after the commit)
 *   periodic   E = max(T, pause + ack)                  (paper Remus: one checkpoint in flight)
 *   pipelined  E = max(T, x, (pause + ack) / W)         (W epochs in flight; the link carries the
 *                                                        last checkpoint's tail during a pause)
 *
 * E feeds back into D(E); the smallest fixed point ≥ T is found by monotone iteration (the map is
 * non-decreasing in E, so iterating from T climbs towards it), accelerated with Aitken's Δ² and closed
 * by regula falsi. No fixed point below {@link MAX_EPOCH_S} means the guest dirties faster than the
 * link carries.
 *
 *   latency mean = E/2 + pause + ack,   max = E + pause + ack
 */
import type { DirtyCurve } from './dirty-model.js';
import { type FlowLimit, flowCeiling, linkGoodputBps } from './tcp.js';
import type { GuestSpec, LinkSpec, Policy } from './types.js';

/** Longest effective epoch considered, seconds; beyond it the stream is declared unsustainable. */
export const MAX_EPOCH_S = 3600;

/** Why a plan is infeasible; the text goes to the output, the tag drives "cannot protect" summaries. */
export type ReasonTag = 'outrun' | 'stretch' | 'bandwidth' | 'burst' | 'tcp' | 'latency' | 'pause';
export interface Reason {
  tag: ReasonTag;
  text: string;
}

/** Everything computed for one epoch, in internal units (seconds, bytes, bytes/s). */
export interface EpochEval {
  epochS: number;
  rttS: number;
  /** False when no effective epoch ≤ MAX_EPOCH_S exists. */
  converged: boolean;
  effectiveS: number;
  pages: number;
  peakPages: number;
  rawBytes: number;
  wireBytes: number;
  peakWireBytes: number;
  pauseS: number;
  transferS: number;
  /** How long the checkpoint waits beyond its transfer to leave the primary (measured share). */
  queuedS: number;
  processingS: number;
  /** Mean loss-recovery delay of a checkpoint. */
  recoveryS: number;
  /** processing + transfer + queued + RTT + recovery: from the end of the pause to the acknowledgement. */
  ackS: number;
  /** The checkpoint goes on two channels at once (policy.copiesBelowBytes). */
  copies: boolean;
  goodputBps: number;
  flowBps: number;
  flowLimit: FlowLimit;
  avgBps: number;
  peakBps: number;
  utilisation: number;
  latencyMeanS: number;
  latencyMaxS: number;
  channelsNeeded: number;
  reasons: Reason[];
}

/** The parts of a guest's plan that do not change with the epoch. */
export interface GuestContext {
  guest: GuestSpec;
  curve: DirtyCurve;
  link: LinkSpec;
  policy: Policy;
}

/** Bytes of one checkpoint at effective epoch `e` (seconds) with `pages` dirty pages. */
export function bytesFor(ctx: GuestContext, e: number, pages: number): { raw: number; wire: number } {
  const { guest, policy } = ctx;
  const pageBytes = pages * (guest.pageSize + policy.framingBytes);
  const disk = guest.diskWriteBps * e;
  return {
    raw: pageBytes + disk + guest.deviceStateBytes,
    wire: pageBytes * guest.memoryCompression + disk * guest.diskCompression + guest.deviceStateBytes,
  };
}

/** Encoding at the primary, decoding and committing at the backup, of a checkpoint of `pages` pages. */
function processingFor(ctx: GuestContext, pages: number): number {
  const { processingPerPageS: primary, backupProcessing } = ctx.guest;
  return (primary + (backupProcessing?.perPageS ?? primary)) * pages;
}

/**
 * The mean delay loss recovery adds to a checkpoint of `wire` bytes that takes `y` seconds to leave.
 * Each segment is lost with the link's loss probability and arrives again about a round trip after
 * it was first sent (fast retransmit, RACK), while the rest goes on: a segment sent `s` before the
 * checkpoint's last one delays its end by RTT − s, so only the segments of the last round trip count,
 * and of their losses only the latest. Taking the losses among those k segments as a Poisson stream
 * (L = −k·ln(1 − loss) of them on average, spread over w = min(y, RTT)), the latest lies within s of
 * the end with probability 1 − e^(−L·s/w), and
 *
 *   delay = ∫₀^RTT P(RTT − s_latest > u) du = RTT·(1 − e^(−L)) − w·((1 − e^(−L))/L − e^(−L))
 *
 * (L·(RTT − w/2) when losses are rare; close to a whole RTT when the last round trip loses several).
 * With copies on two channels a frame waits only for the sooner of its copies: the delay is
 * ∫ P(D > u)² du. One of the last three segments of a channel's burst is revealed by no later one and
 * waits for the probe timeout (2 RTT): one round trip more.
 */
function recoveryFor(ctx: GuestContext, wire: number, y: number, rtt: number, copies: boolean): number {
  const { loss, mssBytes, channels } = ctx.link;
  if (loss <= 0 || wire <= 0) return 0;
  const w = y > 0 ? Math.min(y, rtt) : 0;
  const segments = (wire / mssBytes) * (y > 0 ? w / y : 1);
  // −expm1 and log1p keep the small-loss end exact, without a power on the planner's hot path (the
  // fixed point and the sweeps evaluate this millions of times)
  const keep = Math.log1p(-loss);
  const lost = -segments * keep; // L
  const some = -Math.expm1(-lost); // 1 − e^(−L): one loss or more
  const probe = (n: number) => -Math.expm1(n * keep) * rtt;
  if (copies) {
    // ∫ (1 − e^(−L·min(RTT − u, w)/w))² du: the part past w waits with both copies lost, the rest as they fall
    const within = w > 0 ? w * (1 - (2 * some) / lost - Math.expm1(-2 * lost) / (2 * lost)) : 0;
    const tail = probe(3) / rtt;
    return (rtt - w) * some * some + Math.max(0, within) + tail * tail * rtt;
  }
  const spread = w > 0 ? w * (some / lost - Math.exp(-lost)) : 0;
  return rtt * some - spread + probe(3 * channels);
}

/** The hedged bytes per wire byte of a checkpoint sent once: measured, and only where remus-wan hedges. */
function hedgeShare(ctx: GuestContext): number {
  const h = ctx.guest.hedging;
  return h && ctx.policy.mode !== 'xl' && ctx.link.channels >= 2 ? h.share : 0;
}

/** The measured share of its epoch a checkpoint takes to leave the primary: pipelined mode only. */
function sendShare(ctx: GuestContext): number {
  const s = ctx.guest.sending;
  return s && ctx.policy.mode === 'pipelined' ? s.share : 0;
}

/**
 * Whether a checkpoint of `wire` bytes, acknowledged `ack` seconds after its capture at epoch `e`,
 * goes on two channels at once: remus-wan's `--copies-below` (pipelined mode, two channels or more)
 * copies it while the unacknowledged bytes, the earlier epochs still in flight and its own, are
 * within the bound. Both copies cross the link; the first to arrive counts.
 */
function copiedAt(ctx: GuestContext, wire: number, ack: number, e: number): boolean {
  const { policy, link } = ctx;
  if (policy.mode !== 'pipelined' || link.channels < 2 || wire <= 0) return false;
  const before = Math.min(policy.inFlight - 1, Math.max(0, Math.ceil(ack / e) - 1));
  return (before + 1) * wire <= policy.copiesBelowBytes;
}

/**
 * A checkpoint of `pages` pages and `wire` bytes at `goodput` bytes/s, epoch `e`: its transfer, the
 * processing at both ends, the loss recovery, and the ack they add up to with the round trip; with
 * copies, the link carries it twice.
 */
function ackOf(ctx: GuestContext, pages: number, wire: number, goodput: number, rtt: number, e: number) {
  const once = ackWith(ctx, pages, wire, goodput, rtt, e, false);
  return ctx.policy.copiesBelowBytes > 0 && copiedAt(ctx, wire, once.ack, e)
    ? ackWith(ctx, pages, wire, goodput, rtt, e, true)
    : once;
}

/**
 * {@link ackOf} with the copies decided: the copies share the link, the first is through after both;
 * at epoch `e` the checkpoint leaves no sooner than the measured sending share of it.
 */
function ackWith(
  ctx: GuestContext,
  pages: number,
  wire: number,
  goodput: number,
  rtt: number,
  e: number,
  copies: boolean,
) {
  const linkBytes = copies ? 2 * wire : wire;
  const transfer = linkBytes / goodput;
  const queued = Math.max(0, sendShare(ctx) * e - transfer);
  const processing = processingFor(ctx, pages);
  const recovery = recoveryFor(ctx, wire, transfer + queued, rtt, copies);
  const ack = processing + transfer + queued + rtt + recovery;
  return { copies, linkBytes, transfer, queued, processing, recovery, ack };
}

/** The time the checkpoint cycle needs at effective epoch `e` (before taking max with T). */
function need(ctx: GuestContext, t: number, e: number, rtt: number, goodput: number): number {
  const pages = ctx.curve.pagesAt(e);
  const pause = ctx.policy.pause.baseS + ctx.policy.pause.perPageS * pages;
  const { transfer: x, ack } = ackOf(ctx, pages, bytesFor(ctx, e, pages).wire, goodput, rtt, e);
  switch (ctx.policy.mode) {
    case 'xl':
      return t + pause + ack;
    case 'periodic':
      return pause + ack;
    case 'pipelined':
      return Math.max(x, (pause + ack) / ctx.policy.inFlight);
  }
}

/** Smallest E ≥ T with need(E) ≤ E, or undefined when there is none below MAX_EPOCH_S. */
export function effectiveEpoch(
  ctx: GuestContext,
  t: number,
  rtt: number,
  goodput: number,
): number | undefined {
  const f = (e: number) => Math.max(t, need(ctx, t, e, rtt, goodput));
  // A few plain iterations: from T they climb monotonically towards the smallest fixed point and
  // never pass it (f is non-decreasing), so leaving MAX_EPOCH_S behind proves there is none.
  const seq = [t];
  let e = t;
  for (let i = 0; i < 3; i++) {
    const next = f(e);
    if (next > MAX_EPOCH_S) return undefined;
    if (next - e <= TOLERANCE * Math.max(1, e)) return next;
    seq.push(next);
    e = next;
  }
  // Still climbing: bracket the fixed point above e (where f(E) ≤ E) — first at Aitken's Δ² estimate
  // from the last three iterates, else by doubling — then close the bracket by regula falsi.
  const [e0, e1, e2] = seq.slice(-3) as [number, number, number];
  const curvature = e2 - 2 * e1 + e0;
  const aitken = curvature < 0 ? e2 - (e2 - e1) ** 2 / curvature : Number.NaN;
  let lo = e;
  let hi =
    Number.isFinite(aitken) && aitken > lo && aitken <= MAX_EPOCH_S && f(aitken) <= aitken ? aitken : lo * 2;
  while (f(hi) > hi) {
    lo = hi;
    if (hi >= MAX_EPOCH_S) return undefined;
    hi = Math.min(MAX_EPOCH_S, hi * 2);
  }
  return regulaFalsi((x) => f(x) - x, lo, hi);
}

/** Relative precision of the effective epoch. */
const TOLERANCE = 1e-9;

/** A root of g in [lo, hi] with g(lo) > 0 ≥ g(hi): Illinois-modified regula falsi. */
function regulaFalsi(g: (x: number) => number, lo: number, hi: number): number {
  let glo = g(lo);
  let ghi = g(hi);
  let side = 0;
  for (let i = 0; i < 200 && hi - lo > TOLERANCE * hi; i++) {
    const x = hi - (ghi * (hi - lo)) / (ghi - glo);
    const gx = g(x);
    if (gx > 0) {
      lo = x;
      glo = gx;
      if (side === -1) ghi /= 2;
      side = -1;
    } else {
      hi = x;
      ghi = gx;
      if (side === 1) glo /= 2;
      side = 1;
    }
  }
  return hi;
}

const mbps = (bps: number) => (bps * 8) / 1e6;
const ms = (s: number) => `${+(s * 1000).toPrecision(3)} ms`;
const mbit = (bps: number) => `${+mbps(bps).toPrecision(3)} Mbit/s`;

/**
 * Plan one configured epoch `t` (seconds) at round-trip time `rtt` (seconds).
 */
export function evaluateEpoch(ctx: GuestContext, t: number, rtt = ctx.link.rttS, explain = true): EpochEval {
  const { link, policy, curve } = ctx;
  const flow = flowCeiling(link, rtt);
  const linkOnly = linkGoodputBps(link);
  const goodput = Math.min(linkOnly, link.channels * flow.bps);
  const reasons: Reason[] = [];
  // Searches only need the tags; formatting the sentences is most of their cost.
  const say = (tag: ReasonTag, text: () => string) => reasons.push({ tag, text: explain ? text() : '' });
  const fixed = effectiveEpoch(ctx, t, rtt, goodput);
  const converged = fixed !== undefined;
  const e = fixed ?? MAX_EPOCH_S;

  const pages = curve.pagesAt(e);
  const peakPages = curve.peakPagesAt(e);
  const { raw, wire } = bytesFor(ctx, e, pages);
  const peakWire = bytesFor(ctx, e, peakPages).wire;
  const pauseS = policy.pause.baseS + policy.pause.perPageS * pages;
  const {
    copies,
    linkBytes,
    transfer: transferS,
    queued: queuedS,
    processing: processingS,
    recovery: recoveryS,
    ack: ackS,
  } = ackOf(ctx, pages, wire, goodput, rtt, e);
  const usable = goodput * (1 - policy.headroom);
  // remus-wan's hedges (--hedge-after), at the share its stats measured, on checkpoints sent once:
  // they go only on an idle channel, so they take at most the room the checkpoints leave
  const baseBps = linkBytes / e;
  const hedgeBps = copies ? 0 : Math.min((hedgeShare(ctx) * wire) / e, Math.max(0, usable - baseBps));
  const avgBps = baseBps + hedgeBps;
  // The slot a checkpoint must be sent in: periodic — inside its epoch, after the pause and before the
  // ack; pipelined — one epoch (acks overlap, and the next pause overlaps its tail); xl — no
  // deadline, the percentile checkpoint's rate.
  const slot = policy.mode === 'periodic' ? e - pauseS - (ackS - transferS) : e;
  const peakLink = copiedAt(ctx, peakWire, ackS, e) ? 2 * peakWire : peakWire;
  const peakBps = slot > 0 ? peakLink / slot : peakLink > 0 ? Number.POSITIVE_INFINITY : 0;
  const utilisation = avgBps / goodput;
  const latencyMeanS = e / 2 + pauseS + ackS;
  const latencyMaxS = e + pauseS + ackS;
  // Rate that holds the configured epoch T (not the stretched one): what the channels must carry.
  const pagesT = curve.peakPagesAt(t);
  const wireT = bytesFor(ctx, t, pagesT).wire;
  const pauseT = policy.pause.baseS + policy.pause.perPageS * pagesT;
  // what the ack waits for besides the transfer: the round trip, processing, and loss recovery (at
  // the link's full rate: the best the channels can do)
  const atLink = ackOf(ctx, pagesT, wireT, linkOnly, rtt, t);
  const waitT = atLink.ack - atLink.transfer;
  const deadline =
    policy.mode === 'periodic'
      ? t - pauseT - waitT
      : policy.mode === 'pipelined'
        ? Math.min(t, policy.inFlight * t - pauseT - waitT)
        : Number.POSITIVE_INFINITY; // xl: no deadline, the mean rate alone sizes the channels
  const requiredBps = Math.max(
    avgBps / (1 - policy.headroom),
    deadline > 0 ? atLink.linkBytes / deadline : Number.POSITIVE_INFINITY,
  );
  const channelsNeeded = Math.max(1, Math.ceil(Math.min(requiredBps, linkOnly) / flow.bps));

  if (!converged) {
    const longRate = bytesFor(ctx, MAX_EPOCH_S, curve.pagesAt(MAX_EPOCH_S)).wire / MAX_EPOCH_S;
    say(
      'outrun',
      () =>
        `dirties faster than the link carries: checkpoints never catch up (≥ ${mbit(longRate)} needed even at ${MAX_EPOCH_S} s epochs, ${mbit(goodput)} available)`,
    );
  } else if (policy.mode !== 'xl' && e > t * (1 + 1e-6)) {
    const W = policy.inFlight;
    const need =
      policy.mode === 'periodic'
        ? `a checkpoint needs ${ms(e)} (pause ${ms(pauseS)} + transfer ${ms(transferS)} + RTT ${ms(rtt)})`
        : transferS >= (pauseS + ackS) / W
          ? `a checkpoint takes ${ms(transferS)} on the link`
          : `${W} checkpoints in flight each need ${ms(pauseS + ackS)} (pause + ack)`;
    say('stretch', () => `${need}: the ${ms(t)} epoch stretches to ${ms(e)}`);
  }
  if (converged && avgBps > usable) {
    say(
      'bandwidth',
      () =>
        `needs ${mbit(avgBps)} on average, above the usable ${mbit(usable)} (${Math.round(policy.headroom * 100)} % headroom kept)`,
    );
  }
  if (converged && policy.mode !== 'xl' && peakBps > goodput && reasons.length === 0) {
    say(
      'burst',
      () =>
        `the p${policy.percentile} checkpoint needs ${mbit(peakBps)} to land in its slot, above ${mbit(goodput)}`,
    );
  }
  if (converged && pauseS / e > policy.maxPauseFraction) {
    say(
      'pause',
      () =>
        `the guest is paused ${(100 * (pauseS / e)).toFixed(1)} % of the time, above ${+(100 * policy.maxPauseFraction).toPrecision(3)} %`,
    );
  }
  const budget = policy.latencyBudgetS;
  const stat = policy.budgetStat === 'max' ? latencyMaxS : latencyMeanS;
  if (budget !== undefined && stat > budget) {
    say('latency', () => `${policy.budgetStat} added latency ${ms(stat)} exceeds the ${ms(budget)} budget`);
  }
  if (goodput < linkOnly && channelsNeeded > link.channels && reasons.length > 0) {
    say(
      'tcp',
      () =>
        `one TCP flow carries at most ${mbit(flow.bps)} here (${flow.limit === 'window' ? 'window / RTT' : 'loss'}); ${channelsNeeded} channels needed, ${link.channels} configured`,
    );
  }
  return {
    epochS: t,
    rttS: rtt,
    converged,
    effectiveS: e,
    pages,
    peakPages,
    rawBytes: raw,
    wireBytes: wire,
    peakWireBytes: peakWire,
    pauseS,
    transferS,
    queuedS,
    processingS,
    recoveryS,
    ackS,
    copies,
    goodputBps: goodput,
    flowBps: flow.bps,
    flowLimit: flow.limit,
    avgBps,
    peakBps,
    utilisation,
    latencyMeanS,
    latencyMaxS,
    channelsNeeded,
    reasons,
  };
}

/** Decimal Mbit/s from bytes/s. */
export const toMbps = mbps;
