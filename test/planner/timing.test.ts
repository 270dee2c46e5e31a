/**
 * Every formula against numbers computed by hand. Guest: linear D(T) = 1000 pages/s (one 1 s window),
 * 4096-byte pages + 8 bytes framing, uncompressed; link 12.5 MB/s (100 Mbit/s, no header overhead);
 * pause 1 ms flat; RTT 25 ms.
 */
import { describe, expect, it } from 'vitest';
import { fitDirtyCurve } from '../../src/planner/dirty-model.js';
import { rttCeiling } from '../../src/planner/optimise.js';
import { evaluateEpoch, type GuestContext } from '../../src/planner/timing.js';
import type { GuestSpec, LinkSpec, Policy } from '../../src/planner/types.js';
import { guest, link, m, policy } from '../helpers.js';

function ctx(g: GuestSpec, l: LinkSpec, p: Policy): GuestContext {
  return { guest: g, curve: fitDirtyCurve(g, p.percentile, []), link: l, policy: p };
}

const B = 12.5e6;
const base = () => ctx(guest([m(1, 1000)]), link(B, 0.025), policy());

describe('evaluateEpoch — periodic (paper Remus)', () => {
  it('T = 100 ms fits: checkpoint, transfer, latency, bandwidth by hand', () => {
    const ev = evaluateEpoch(base(), 0.1);
    expect(ev.pages).toBeCloseTo(100, 9);
    expect(ev.wireBytes).toBeCloseTo(100 * 4104, 6);
    expect(ev.rawBytes).toBeCloseTo(410_400, 6);
    expect(ev.transferS).toBeCloseTo(410_400 / B, 12); // 32.832 ms
    expect(ev.effectiveS).toBe(0.1); // 1 + 32.832 + 25 = 58.8 ms ≤ 100 ms
    expect(ev.latencyMeanS).toBeCloseTo(0.05 + 0.001 + 0.032832 + 0.025, 12);
    expect(ev.latencyMaxS).toBeCloseTo(0.1 + 0.001 + 0.032832 + 0.025, 12);
    expect(ev.avgBps).toBeCloseTo(4_104_000, 3); // 32.832 Mbit/s
    expect(ev.peakBps).toBeCloseTo(410_400 / (0.1 - 0.001 - 0.025), 3); // deadline bandwidth
    expect(ev.reasons).toEqual([]);
  });
  it('RTT ceiling: 100 − 1 − 32.832 = 66.168 ms', () => {
    expect(rttCeiling(base(), 0.1)).toBeCloseTo(0.066168, 4);
  });
  it('T = 20 ms stretches: E solves E = 1 ms + 1000·E·4104/B + 25 ms', () => {
    const ev = evaluateEpoch(base(), 0.02);
    const e = 0.026 / (1 - (1000 * 4104) / B);
    expect(ev.effectiveS).toBeCloseTo(e, 9);
    expect(ev.reasons.map((r) => r.tag)).toContain('stretch');
  });
  it('with a latency budget the plan is refused above it', () => {
    const c = ctx(guest([m(1, 1000)]), link(B, 0.025), policy({ latencyBudgetS: 0.1 }));
    expect(evaluateEpoch(c, 0.1).reasons.map((r) => r.tag)).toEqual(['latency']);
    // RTT ceiling now from the budget: 50 + 1 + 32.832 + RTT ≤ 100 → RTT ≤ 16.168 ms
    expect(rttCeiling(c, 0.1)).toBeCloseTo(0.016168, 4);
  });
});

describe('evaluateEpoch — processing at both ends', () => {
  it('adds 2 × per-page time × pages to the ack, the latency and the periodic cycle', () => {
    const c = ctx(guest([m(1, 1000)], { processingPerPageS: 50e-6 }), link(B, 0.025), policy());
    const ev = evaluateEpoch(c, 0.1);
    const x = 410_400 / B;
    expect(ev.processingS).toBeCloseTo(2 * 50e-6 * 100, 12); // 10 ms
    expect(ev.ackS).toBeCloseTo(0.01 + x + 0.025, 12);
    expect(ev.latencyMeanS).toBeCloseTo(0.05 + 0.001 + 0.01 + x + 0.025, 12);
    expect(evaluateEpoch(base(), 0.1).ackS).toBeCloseTo(x + 0.025, 12);
    // at 20 ms the cycle stretches: E = 1 ms + 25 ms + 1000·E pages × (4104 B / B + 2 × 50 µs)
    const e = evaluateEpoch(c, 0.02).effectiveS;
    expect(e).toBeCloseTo(0.026 / (1 - (1000 * 4104) / B - 2 * 50e-6 * 1000), 9);
  });
  it("the backup's own time per page when a receiver's stats measured it", () => {
    const c = ctx(
      guest([m(1, 1000)], { processingPerPageS: 50e-6, backupProcessing: { perPageS: 80e-6, source: 'r' } }),
      link(B, 0.025),
      policy(),
    );
    expect(evaluateEpoch(c, 0.1).processingS).toBeCloseTo((50e-6 + 80e-6) * 100, 12); // 13 ms
  });
});

describe('evaluateEpoch — loss recovery', () => {
  it('delays the ack by the segments of the last round trip and the tail probes', () => {
    const c = ctx(
      guest([m(1, 1000)]),
      link(B, 0.025, { loss: 1e-3, mssBytes: 1000, channels: 2, cc: 'bbr' }),
      policy(),
    );
    const ev = evaluateEpoch(c, 0.1);
    const x = ev.transferS; // 32.8 ms (BBR: no loss ceiling): longer than the round trip
    expect(x).toBeGreaterThan(0.025);
    const lastTrip = (410.4 * 0.025) / x; // segments sent in its last 25 ms
    const some = (n: number) => 1 - (1 - 1e-3) ** n; // one loss or more among n segments
    // the latest of the last round trip's losses (L of them on average) sets the delay:
    // ∫₀^RTT P(RTT − s_latest > u) du, s_latest within s of the end with probability 1 − e^(−L·s/RTT)
    const L = -lastTrip * Math.log(1 - 1e-3);
    const latest = 0.025 * (1 - (1 - Math.exp(-L)) / L);
    expect(latest).toBeCloseTo(
      integral((u) => 1 - Math.exp((-L * (0.025 - u)) / 0.025), 0, 0.025),
      9,
    );
    const rec = latest + some(3 * 2) * 0.025;
    expect(ev.recoveryS).toBeCloseTo(rec, 12);
    expect(ev.ackS).toBeCloseTo(x + 0.025 + rec, 12);
    expect(evaluateEpoch(base(), 0.1).recoveryS).toBe(0);
  });
  it('rare losses cost L·(RTT − w/2); several in the last round trip close to a whole round trip', () => {
    const at = (loss: number, rtt: number) =>
      evaluateEpoch(
        ctx(
          guest([m(1, 1000)]),
          link(B, rtt, { loss, mssBytes: 1000, channels: 1, cc: 'bbr' }),
          policy({ mode: 'pipelined' }),
        ),
        0.1,
      );
    // 410.4 segments in 32.8 ms (within a 100 ms round trip): L = 410.4·1e-6
    const rare = at(1e-6, 0.1);
    expect(rare.transferS).toBeCloseTo(0.032832, 9);
    expect(rare.recoveryS).toBeCloseTo(410.4e-6 * (0.1 - rare.transferS / 2) + 3e-6 * 0.1, 7);
    // 5 % of 410 segments: 21 losses on average, the latest close to the end
    const many = at(0.05, 0.1);
    expect(many.recoveryS).toBeGreaterThan(0.9 * 0.1);
    expect(many.recoveryS).toBeLessThan(0.1 + 0.1 * (1 - 0.95 ** 3));
  });
});

/** ∫ f over [a, b], Simpson's rule on 2000 intervals. */
function integral(f: (x: number) => number, a: number, b: number): number {
  const n = 2000;
  const h = (b - a) / n;
  let sum = f(a) + f(b);
  for (let i = 1; i < n; i++) sum += f(a + i * h) * (i % 2 === 1 ? 4 : 2);
  return (sum * h) / 3;
}

describe('evaluateEpoch — copies on two channels (--copies-below)', () => {
  const lossy = (copiesBelowBytes: number, channels = 2) =>
    ctx(
      guest([m(1, 1000)]),
      link(B, 0.025, { loss: 1e-3, mssBytes: 1000, channels, cc: 'bbr' }),
      policy({ mode: 'pipelined', copiesBelowBytes }),
    );
  it('a checkpoint under the bound crosses the link twice and waits only when both copies lose', () => {
    const ev = evaluateEpoch(lossy(2 ** 20), 0.1);
    expect(ev.copies).toBe(true);
    const x = (2 * 410_400) / B; // both copies' bytes
    expect(ev.transferS).toBeCloseTo(x, 12);
    expect(ev.avgBps).toBeCloseTo(2 * 4_104_000, 3);
    const some = (n: number) => 1 - (1 - 1e-3) ** n;
    // a frame waits for the sooner copy: ∫ P(D > u)² du, D a copy's delay (its latest loss among
    // the segments of its last round trip)
    const L = ((-410.4 * 0.025) / x) * Math.log(1 - 1e-3);
    const late = (u: number) => 1 - Math.exp((-L * (0.025 - u)) / 0.025);
    const rec = integral((u) => late(u) ** 2, 0, 0.025) + some(3) ** 2 * 0.025;
    expect(ev.recoveryS).toBeCloseTo(rec, 7);
    expect(ev.ackS).toBeCloseTo(x + 0.025 + rec, 12);
  });
  it('none above the bound, with one channel, or outside pipelined mode', () => {
    const once = evaluateEpoch(lossy(0), 0.1);
    expect(once.copies).toBe(false);
    expect(once.avgBps).toBeCloseTo(4_104_000, 3);
    expect(evaluateEpoch(lossy(400_000), 0.1).copies).toBe(false); // 410.4 kB per checkpoint
    expect(evaluateEpoch(lossy(2 ** 20, 1), 0.1).copies).toBe(false);
    // an ack longer than the epoch leaves the previous checkpoint in flight: both count against the bound
    const far = (copiesBelowBytes: number) =>
      ctx(
        guest([m(1, 1000)]),
        link(B, 0.12, { loss: 1e-3, mssBytes: 1000, channels: 2, cc: 'bbr' }),
        policy({ mode: 'pipelined', copiesBelowBytes }),
      );
    expect(evaluateEpoch(far(500_000), 0.1).copies).toBe(false); // 2 × 410.4 kB in flight
    expect(evaluateEpoch(far(900_000), 0.1).copies).toBe(true);
    const periodic = ctx(
      guest([m(1, 1000)]),
      link(B, 0.025, { channels: 2 }),
      policy({ mode: 'periodic', copiesBelowBytes: 2 ** 20 }),
    );
    expect(evaluateEpoch(periodic, 0.1).copies).toBe(false);
  });
});

describe('evaluateEpoch — hedges (--hedge-after, at the measured share)', () => {
  const hedged = (share: number, mode: Policy['mode'] = 'pipelined', channels = 2, bps = B) =>
    ctx(
      { ...guest([m(1, 1000)]), hedging: { share, source: 'stats' } },
      link(bps, 0.025, { channels }),
      policy({ mode, headroom: 0.1 }),
    );
  it('the link carries them too, at the share measured; the ack does not wait for them', () => {
    const plain = evaluateEpoch(hedged(0), 0.1);
    const ev = evaluateEpoch(hedged(0.25), 0.1);
    expect(plain.avgBps).toBeCloseTo(4_104_000, 3);
    expect(ev.avgBps).toBeCloseTo(1.25 * 4_104_000, 3);
    expect(ev.ackS).toBe(plain.ackS);
    expect(ev.peakBps).toBe(plain.peakBps);
  });
  it('only in the room the checkpoints leave, and only where remus-wan hedges', () => {
    // 4.104 MB/s of checkpoints on a 5 MB/s link with 10 % headroom: 0.396 MB/s of room for hedges
    const tight = evaluateEpoch(hedged(0.25, 'pipelined', 2, 5e6), 0.1);
    expect(tight.avgBps).toBeCloseTo(4.5e6, 3);
    expect(tight.reasons).toEqual([]);
    expect(evaluateEpoch(hedged(0.25, 'pipelined', 1), 0.1).avgBps).toBeCloseTo(4_104_000, 3);
    expect(evaluateEpoch(hedged(0.25, 'xl'), 0.1).avgBps).toBe(evaluateEpoch(hedged(0, 'xl'), 0.1).avgBps);
  });
});

describe('evaluateEpoch — the measured sending share (sendMs)', () => {
  const sending = (share: number, mode: Policy['mode'] = 'pipelined') =>
    ctx(
      { ...guest([m(1, 1000)]), sending: { share, source: 'stats' } },
      link(B, 0.025, { channels: 2 }),
      policy({ mode }),
    );
  it('the checkpoint leaves over that share of its epoch: the ack waits the rest, the cycle does not', () => {
    const plain = evaluateEpoch(sending(0), 0.1);
    const ev = evaluateEpoch(sending(0.6), 0.1);
    // 410.4 kB at 12.5 MB/s: 32.83 ms on the link, 60 ms measured
    expect(plain.transferS).toBeCloseTo(0.032832, 9);
    expect(plain.queuedS).toBe(0);
    expect(ev.transferS).toBe(plain.transferS);
    expect(ev.queuedS).toBeCloseTo(0.06 - 0.032832, 9);
    expect(ev.ackS).toBeCloseTo(plain.ackS + ev.queuedS, 9);
    expect(ev.latencyMeanS).toBeCloseTo(plain.latencyMeanS + ev.queuedS, 9);
    // the sender keeps up (the link's rate sets that): the epoch does not stretch, the bandwidth stays
    expect(ev.effectiveS).toBe(0.1);
    expect(ev.avgBps).toBe(plain.avgBps);
    // a share below the link's time changes nothing
    expect(evaluateEpoch(sending(0.3), 0.1).ackS).toBe(plain.ackS);
  });
  it('pipelined only: a stop-and-wait sender leaves its flows idle before each checkpoint', () => {
    for (const mode of ['periodic', 'xl'] as const) {
      expect(evaluateEpoch(sending(0.9, mode), 0.1).ackS).toBe(evaluateEpoch(sending(0, mode), 0.1).ackS);
    }
  });
});

describe('evaluateEpoch — xl (gap after commit)', () => {
  it('E = T + pause + transfer + RTT, solved with D(E)', () => {
    const c = ctx(guest([m(1, 1000)]), link(B, 0.025), policy({ mode: 'xl' }));
    const ev = evaluateEpoch(c, 0.1);
    const e = 0.126 / (1 - (1000 * 4104) / B); // 187.59 ms
    expect(ev.effectiveS).toBeCloseTo(e, 9);
    expect(ev.pages).toBeCloseTo(1000 * e, 6);
    expect(ev.latencyMeanS).toBeCloseTo(e / 2 + 0.001 + (1000 * e * 4104) / B + 0.025, 9);
    expect(ev.reasons).toEqual([]);
  });
  it('with a power law the fixed point is self-consistent', () => {
    const g = guest([m(0.1, 2000), m(1, 8000)]);
    const c = ctx(g, link(B, 0.05), policy({ mode: 'xl', pause: { baseS: 0.0006, perPageS: 3.7e-6 } }));
    const ev = evaluateEpoch(c, 0.2);
    const pages = c.curve.pagesAt(ev.effectiveS);
    const again = 0.2 + 0.0006 + 3.7e-6 * pages + (pages * 4104) / B + 0.05;
    expect(ev.effectiveS).toBeCloseTo(again, 6);
  });
});

describe('evaluateEpoch — pipelined', () => {
  it('throughput no longer pays the RTT; latency still does', () => {
    const c = ctx(guest([m(1, 1000)]), link(B, 0.2), policy({ mode: 'pipelined', inFlight: 4 }));
    const ev = evaluateEpoch(c, 0.05);
    // periodic would need 1 + 16.4 + 200 ms per 50 ms epoch; pipelined needs max(17.4, 217.4/4 = 54.4) ms
    const x = (50 * 4104) / B;
    expect(ev.effectiveS).toBeGreaterThan(0.05);
    expect(ev.effectiveS).toBeLessThan(0.06);
    const periodic = evaluateEpoch(
      ctx(guest([m(1, 1000)]), link(B, 0.2), policy({ mode: 'periodic' })),
      0.05,
    );
    expect(periodic.effectiveS).toBeGreaterThan(0.2);
    const eight = evaluateEpoch(
      ctx(guest([m(1, 1000)]), link(B, 0.2), policy({ mode: 'pipelined', inFlight: 8 })),
      0.05,
    );
    expect(eight.effectiveS).toBe(0.05);
    expect(eight.latencyMeanS).toBeCloseTo(0.025 + 0.001 + x + 0.2, 9);
  });
  it('the link carries the last checkpoint during a pause: only the transfer must fit in the epoch', () => {
    const pausing = (bps: number, g = guest([m(1, 1000)])) =>
      ctx(
        g,
        link(bps, 0.025),
        policy({ mode: 'pipelined', inFlight: 4, pause: { baseS: 0.08, perPageS: 0 } }),
      );
    // 80 ms pause + 32.8 ms transfer is more than the epoch; the transfer alone, and (pause + ack)/4, are not
    const ev = evaluateEpoch(pausing(B), 0.1);
    expect(ev.effectiveS).toBe(0.1);
    expect(ev.peakBps).toBeCloseTo(410_400 / 0.1, 3); // its slot is the epoch
    expect(ev.reasons.map((r) => r.tag)).not.toContain('stretch');
    // D(T) sublinear (200 pages in 100 ms, 1000 in 1 s): at 7 MB/s a 100 ms checkpoint takes 117 ms to
    // send, so the epoch stretches to where the link carries one per epoch (x(E) = E)
    const slow = evaluateEpoch(pausing(7e6, guest([m(0.1, 200), m(1, 1000)])), 0.1);
    expect(slow.effectiveS).toBeGreaterThan(0.1);
    expect(slow.transferS).toBeCloseTo(slow.effectiveS, 6);
    expect(slow.reasons.find((r) => r.tag === 'stretch')?.text).toMatch(/a checkpoint takes .* on the link/);
  });
});

describe('evaluateEpoch — limits', () => {
  it('a guest dirtying faster than the link has no fixed point', () => {
    const c = ctx(guest([m(1, 100_000)]), link(B, 0.025), policy({ mode: 'xl' }));
    const ev = evaluateEpoch(c, 0.1);
    expect(ev.converged).toBe(false);
    expect(ev.reasons[0]?.tag).toBe('outrun');
  });
  it('disk writes, device state and compression enter the wire bytes', () => {
    const g = guest([m(1, 1000)], {
      diskWriteBps: 1e6,
      deviceStateBytes: 50_000,
      memoryCompression: 0.25,
      diskCompression: 0.5,
    });
    const ev = evaluateEpoch(ctx(g, link(B, 0.025), policy()), 0.1);
    expect(ev.rawBytes).toBeCloseTo(410_400 + 100_000 + 50_000, 6);
    expect(ev.wireBytes).toBeCloseTo(410_400 * 0.25 + 100_000 * 0.5 + 50_000, 6);
  });
  it('headroom: a plan using more than (1 − headroom) of the link is refused', () => {
    const c = ctx(guest([m(1, 2500)]), link(B, 0.001), policy({ headroom: 0.2 }));
    // 2500 pages/s · 4104 B = 10.26 MB/s > 0.8 · 12.5 MB/s
    expect(evaluateEpoch(c, 0.1).reasons.map((r) => r.tag)).toContain('bandwidth');
  });
  it('one lossy TCP flow can be the limit, and more channels lift it', () => {
    const l = link(125e6, 0.05, { loss: 1e-3, cc: 'reno' });
    const c = ctx(guest([m(1, 5000)]), l, policy());
    const one = evaluateEpoch(c, 0.2);
    expect(one.reasons.map((r) => r.tag)).toContain('tcp');
    expect(one.channelsNeeded).toBeGreaterThan(1);
    const many = evaluateEpoch(
      ctx(guest([m(1, 5000)]), { ...l, channels: one.channelsNeeded + 1 }, policy()),
      0.2,
    );
    expect(many.reasons).toEqual([]);
  });
});
