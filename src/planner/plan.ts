/**
 * The planner's entry point: guests + link + policy → {@link PlanResult}. Pure.
 *
 *   measurements ─► fitDirtyCurve ─► evaluateEpoch (per epoch, fixed point E ↔ D(E))
 *                                      ├─► rttCeiling (bisection over RTT)
 *                                      └─► pickRecommended / cannotProtectReason (search grid)
 *   chosen plans ─► planFleet (admission on the shared link, burst percentile)
 */
import { fitDirtyCurve } from './dirty-model.js';
import { type FleetMember, planFleet } from './fleet.js';
import { cannotProtectReason, pickRecommended, rttCeiling } from './optimise.js';
import { sig } from './stats.js';
import { aggregateGoodput, flowCeiling, linkGoodputBps } from './tcp.js';
import { bytesFor, type EpochEval, evaluateEpoch, type GuestContext, toMbps } from './timing.js';
import type { EpochPlan, GuestResult, GuestSpec, LinkResult, LinkSpec, PlanResult, Policy } from './types.js';

/** At most this many shown epochs are also counted exactly on traces. */
const EXACT_EPOCHS_MAX = 24;

/** Plan every guest and the fleet. */
export function plan(guests: readonly GuestSpec[], link: LinkSpec, policy: Policy): PlanResult {
  const members: FleetMember[] = [];
  const results = guests.map((guest, order) => {
    const { result, options, ctx } = planGuest(guest, link, policy);
    members.push({
      name: guest.name,
      priority: guest.priority ?? 0,
      order,
      options,
      epochWireBytes: (chosen) =>
        ctx.curve
          .epochSeries(chosen.effectiveS)
          ?.map((pages) => bytesFor(ctx, chosen.effectiveS, pages).wire),
      ...(result.cannotProtect ? { whyNot: result.cannotProtect } : {}),
    });
    return result;
  });
  const goodput = aggregateGoodput(link, link.rttS);
  const flow = flowCeiling(link, link.rttS);
  const linkResult: LinkResult = {
    bandwidthMbps: sig(toMbps(link.bandwidthBps)),
    goodputMbps: sig(toMbps(goodput)),
    rttMs: sig(link.rttS * 1000),
    rttSource: link.rttSource,
    ...(link.distanceKm === undefined ? {} : { distanceKm: link.distanceKm }),
    loss: link.loss,
    mssBytes: link.mssBytes,
    segmentOverheadBytes: link.overheadBytesPerSegment,
    channels: link.channels,
    tcpWindowBytes: link.tcpWindowBytes,
    cc: link.cc,
    flowCeilingMbps: sig(toMbps(Math.min(flow.bps, linkGoodputBps(link)))),
    flowLimit: flow.limit,
    channelsToFill: Math.ceil(linkGoodputBps(link) / flow.bps - 1e-9),
    usableMbps: sig(toMbps(goodput * (1 - policy.headroom))),
  };
  const fleet = planFleet(members, goodput, policy.headroom, policy.percentile);
  fleet.sumBandwidthMbps = sig(fleet.sumBandwidthMbps);
  fleet.sumPeakBandwidthMbps = sig(fleet.sumPeakBandwidthMbps);
  fleet.usableMbps = sig(fleet.usableMbps);
  if (fleet.percentileBandwidthMbps !== null)
    fleet.percentileBandwidthMbps = sig(fleet.percentileBandwidthMbps);
  for (const g of fleet.guests) {
    if (g.latencyMeanMs !== null) g.latencyMeanMs = sig(g.latencyMeanMs);
    g.bandwidthMbps = sig(g.bandwidthMbps);
    g.peakBandwidthMbps = sig(g.peakBandwidthMbps);
    if (g.epochMs !== null) g.epochMs = sig(g.epochMs);
  }
  return {
    guests: results,
    link: linkResult,
    fleet,
    policy: {
      mode: policy.mode,
      latencyBudgetMs: policy.latencyBudgetS === undefined ? null : sig(policy.latencyBudgetS * 1000),
      budgetStat: policy.budgetStat,
      headroom: policy.headroom,
      pauseBaseMs: sig(policy.pause.baseS * 1000),
      pausePerPageUs: sig(policy.pause.perPageS * 1e6),
      framingBytes: policy.framingBytes,
      percentile: policy.percentile,
      inFlight: policy.inFlight,
      copiesBelowBytes: policy.copiesBelowBytes,
      maxPauseFraction: policy.maxPauseFraction,
    },
  };
}

/** Plan one guest: the requested epochs, the recommendation, warnings. */
export function planGuest(
  guest: GuestSpec,
  link: LinkSpec,
  policy: Policy,
): { result: GuestResult; options: EpochEval[]; ctx: GuestContext } {
  const candidatesS = [...new Set([...policy.epochsS, ...policy.searchEpochsS])].sort((a, b) => a - b);
  // Traces are counted exactly at the epochs shown (and on their own log grid); a long sweep relies on
  // the grid, which is dense enough (≈ 20 % steps) for log–log interpolation.
  const curve = fitDirtyCurve(
    guest,
    policy.percentile,
    policy.epochsS.length <= EXACT_EPOCHS_MAX ? policy.epochsS : [],
  );
  const ctx: GuestContext = { guest, curve, link, policy };
  const evals = new Map(candidatesS.map((t) => [t, evaluateEpoch(ctx, t)]));
  const shown = policy.epochsS.map((t) => evals.get(t) as EpochEval);
  const plans = shown.map((ev) => toEpochPlan(ev, rttCeiling(ctx, ev.epochS)));
  const candidates = [...evals.values()];
  const best = pickRecommended(candidates, policy.budgetStat);
  const result: GuestResult = {
    name: guest.name,
    pageSize: guest.pageSize,
    dirtyModel: curve.info,
    compression: {
      memory: guest.memoryCompression,
      disk: guest.diskCompression,
      source: guest.compressionSource,
    },
    processing: {
      perPageUs: sig(guest.processingPerPageS * 1e6),
      source: guest.processingSource,
      ...(guest.backupProcessing
        ? {
            backupPerPageUs: sig(guest.backupProcessing.perPageS * 1e6),
            backupSource: guest.backupProcessing.source,
          }
        : {}),
    },
    ...(guest.hedging
      ? { hedging: { share: sig(guest.hedging.share, 3), source: guest.hedging.source } }
      : {}),
    ...(guest.sending
      ? { sending: { share: sig(guest.sending.share, 3), source: guest.sending.source } }
      : {}),
    plans,
    recommended: best
      ? {
          epochMs: sig(best.epochS * 1000),
          plan: toEpochPlan(best, rttCeiling(ctx, best.epochS)),
          why: `lowest ${policy.budgetStat} added latency among ${candidates.filter((c) => c.reasons.length === 0).length} feasible epochs of ${candidates.length} tried`,
        }
      : null,
    warnings: guestWarnings(guest, link, policy, shown, curve.info.windowsMs),
  };
  if (!best) result.cannotProtect = cannotProtectReason(candidates, policy.budgetStat);
  // On a shared link the guest may run any feasible epoch — or only the one asked for, if one was.
  const pool = policy.epochsS.length === 1 ? shown : candidates;
  return { result, options: pool.filter((c) => c.reasons.length === 0), ctx };
}

function toEpochPlan(ev: EpochEval, ceilingS: number | null): EpochPlan {
  return {
    epochMs: sig(ev.epochS * 1000),
    effectiveEpochMs: sig(ev.effectiveS * 1000),
    dirtyPages: Math.round(ev.pages),
    checkpointBytes: Math.round(ev.rawBytes),
    wireBytes: Math.round(ev.wireBytes),
    peakWireBytes: Math.round(ev.peakWireBytes),
    pauseMs: sig(ev.pauseS * 1000),
    transferMs: sig(ev.transferS * 1000),
    queuedMs: sig(ev.queuedS * 1000),
    processingMs: sig(ev.processingS * 1000),
    recoveryMs: sig(ev.recoveryS * 1000),
    ackMs: sig(ev.ackS * 1000),
    copies: ev.copies,
    bandwidthMbps: sig(toMbps(ev.avgBps)),
    peakBandwidthMbps: Number.isFinite(ev.peakBps) ? sig(toMbps(ev.peakBps)) : null,
    utilisation: sig(ev.utilisation, 3),
    latencyMeanMs: sig(ev.latencyMeanS * 1000),
    latencyMaxMs: sig(ev.latencyMaxS * 1000),
    rttCeilingMs: ceilingS === null ? null : sig(ceilingS * 1000),
    flowCeilingMbps: sig(toMbps(ev.flowBps)),
    channelsNeeded: ev.channelsNeeded,
    pauseFraction: sig(ev.pauseS / ev.effectiveS, 3),
    feasible: ev.reasons.length === 0,
    reasons: ev.reasons.map((r) => r.text),
  };
}

function guestWarnings(
  guest: GuestSpec,
  link: LinkSpec,
  policy: Policy,
  shown: readonly EpochEval[],
  windowsMs: readonly number[],
): string[] {
  const warnings: string[] = [];
  // D(T) is only known between the shortest and longest window measured; far outside it, say so.
  const lo = Math.min(...windowsMs) / 1000;
  const hi = Math.max(...windowsMs) / 1000;
  const outside = shown.filter((ev) => ev.effectiveS < lo / 2 || ev.effectiveS > hi * 2);
  if (outside.length > 0) {
    const list = outside.map((ev) => `${+(ev.effectiveS * 1000).toPrecision(3)} ms`).join(', ');
    warnings.push(
      `D(T) is extrapolated far beyond the measured windows (${+(lo * 1000).toPrecision(3)}–${+(hi * 1000).toPrecision(3)} ms) ` +
        `for effective epochs ${list}: measure at the epochs you plan for`,
    );
  }
  if (guest.memoryCompression === 1 && guest.compressionSource === 'none') {
    warnings.push('no compression assumed (xl remus sends raw pages): give --compression or --sample-pages');
  }
  if (guest.diskWriteBps === 0) warnings.push('no disk writes given: Remus also mirrors every disk write');
  if (policy.mode === 'xl') {
    const big = shown.find((ev) => ev.peakWireBytes > link.tcpWindowBytes);
    if (big) {
      warnings.push(
        `xl writes a checkpoint while the guest is suspended: at ${+(big.epochS * 1000).toPrecision(3)} ms a ` +
          `checkpoint (${(big.peakWireBytes / 2 ** 20).toFixed(1)} MiB) exceeds the ${(link.tcpWindowBytes / 2 ** 20).toFixed(1)} MiB ` +
          'socket buffer, so WAN transfer time adds to the pause',
      );
    }
  }
  if (policy.mode === 'pipelined' && link.loss > 0 && link.rttS > 0.01 && !guest.sending) {
    warnings.push(
      'on a lossy link the TCP flows of a pipelined sender can fall back to about its own average rate ' +
        "after each loss recovery (BBR's bandwidth estimate, CUBIC's window), and each checkpoint then " +
        'leaves over most of its epoch: the acks may come up to an epoch later than planned here. Give ' +
        "remus-wan's stats file (its sendMs) to count what it measured",
    );
  }
  // Linux restarts cwnd from the initial window after an idle period longer than the RTO (≥ 200 ms):
  // on a long link every checkpoint then crawls through slow start again.
  const idle = shown.find((ev) => ev.effectiveS - ev.transferS > Math.max(0.2, ev.rttS));
  if (idle && link.rttS > 0.01) {
    warnings.push(
      `from the ${+(idle.epochS * 1000).toPrecision(3)} ms epoch up the link idles longer than a TCP RTO between ` +
        'checkpoints: set net.ipv4.tcp_slow_start_after_idle=0, or every checkpoint restarts from slow start',
    );
  }
  return warnings;
}
