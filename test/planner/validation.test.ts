/**
 * The public validation points of planner-model.md §5: the planner must reproduce published
 * measurements (Remus NSDI 2008, Clark et al. NSDI 2005) and the operators' rule of thumb.
 */
import { describe, expect, it } from 'vitest';
import { REMUS_FIG5, remusPauseModel } from '../../src/planner/defaults.js';
import { fitDirtyCurve } from '../../src/planner/dirty-model.js';
import { rttCeiling } from '../../src/planner/optimise.js';
import { plan } from '../../src/planner/plan.js';
import { evaluateEpoch, type GuestContext } from '../../src/planner/timing.js';
import type { GuestSpec, LinkSpec, Policy } from '../../src/planner/types.js';
import { logSpace } from '../../src/units.js';
import { guest, link, m, policy } from '../helpers.js';

function ctx(g: GuestSpec, l: LinkSpec, p: Policy): GuestContext {
  return { guest: g, curve: fitDirtyCurve(g, p.percentile, []), link: l, policy: p };
}

describe('R1 — Remus Fig. 5 (1 GbE): pause and transmit per checkpoint', () => {
  const pause = remusPauseModel();
  it.each(REMUS_FIG5.map((r) => [r.pages, r.suspendedMs] as const))(
    '%i pages: suspended ≈ %f ms (±15 %)',
    (pages, ms) => {
      const model = (pause.baseS + pause.perPageS * pages) * 1000;
      expect(Math.abs(model / ms - 1)).toBeLessThan(0.15);
    },
  );
  it('the fitted model is ≈ 0.5–0.6 ms + 3.7–3.8 µs/page', () => {
    expect(pause.baseS * 1000).toBeGreaterThan(0.5);
    expect(pause.baseS * 1000).toBeLessThan(0.65);
    expect(pause.perPageS * 1e6).toBeGreaterThan(3.6);
    expect(pause.perPageS * 1e6).toBeLessThan(3.9);
  });
  // Transmit 13.7 (10.3–16.2), 35 (24.7–47.6), 56.6 (48–83) ms at 256/512/1024 pages: a goodput of
  // ≈ 600 Mbit/s on the GbE testbed.
  it.each([
    [256, 10.3, 16.2],
    [512, 24.7, 47.6],
    [1024, 48, 83],
  ])('%i pages transmit within the measured range %f–%f ms at 600 Mbit/s goodput', (pages, lo, hi) => {
    const c = ctx(guest([m(0.1, pages)]), link(75e6, 0), policy({ epochsS: [0.1], pause }));
    const ev = evaluateEpoch(c, 0.1);
    expect(ev.transferS * 1000).toBeGreaterThan(lo);
    expect(ev.transferS * 1000).toBeLessThan(hi);
  });
});

describe('R3 — Remus Fig. 10: a 42 MB/s stream compressed to ≈ 4 MB/s', () => {
  it('bandwidth follows the compression ratio', () => {
    const pagesPerS = 42e6 / 4096;
    const g = guest([m(1, pagesPerS)], { memoryCompression: 4 / 42 });
    const ev = evaluateEpoch(ctx(g, link(125e6, 0.001), policy({ framingBytes: 0 })), 1);
    expect((ev.avgBps * 8) / 1e6).toBeCloseTo(32, 0);
  });
});

describe('C6 — Clark: stop-and-copy of 512 MB takes 32 / 16 / 8 s at 128 / 256 / 512 Mbit/s', () => {
  it.each([
    [128, 32],
    [256, 16],
    [512, 8],
  ])('%i Mbit/s → %i s (±6 %)', (mbit, seconds) => {
    // a whole 512 MiB guest dirty: D(T) saturates at its memory
    const g = guest([m(1, (512 * 2 ** 20) / 4096)], { memoryBytes: 512 * 2 ** 20 });
    const ev = evaluateEpoch(ctx(g, link((mbit * 1e6) / 8, 0), policy({ framingBytes: 0 })), 1);
    expect(Math.abs(ev.transferS / seconds - 1)).toBeLessThan(0.06);
  });
});

describe('C10 — Clark: a writer rewriting a 256 MB region continuously never converges', () => {
  const writer = guest([m(0.1, 65536), m(1, 65536), m(10, 65536)], { memoryBytes: 256 * 2 ** 20 });
  const l = link(128e6 / 8, 0.01, { overheadBytesPerSegment: 66 });
  it.each(['periodic', 'pipelined', 'xl'] as const)(
    '%s mode: cannot protect at any epoch from 10 ms to 2 s',
    (mode) => {
      const r = plan(
        [writer],
        l,
        policy({ mode, headroom: 0.2, epochsS: [0.1], searchEpochsS: logSpace(0.01, 2, 41) }),
      );
      const g = r.guests[0];
      expect(g?.recommended).toBeNull();
      expect(g?.cannotProtect).toMatch(/dirties faster than the link carries/);
      expect(r.fleet.feasible).toBe(false);
    },
  );
});

describe('RT — the operators’ rule of thumb (planner-model §3.6)', () => {
  // T = 100 ms, 100 Mbit/s, s ≈ 5 ms, periodic: a checkpoint ≤ 0.875 MB (213.6 pages) fits at RTT 25 ms
  const p = policy({ mode: 'periodic', framingBytes: 0, pause: { baseS: 0.005, perPageS: 0 } });
  const g = guest([m(0.1, 213)]);
  const l = link(12.5e6, 0.025);
  it('such a guest needs ≈ 100 Mbit/s to land each checkpoint in its epoch', () => {
    const ev = evaluateEpoch(ctx(g, l, p), 0.1);
    expect((ev.peakBps * 8) / 1e6).toBeGreaterThan(95);
    expect((ev.peakBps * 8) / 1e6).toBeLessThan(105);
    expect(ev.reasons).toEqual([]);
  });
  it('its RTT ceiling is ≈ 25 ms and its mean added latency ≈ 150 ms', () => {
    expect(rttCeiling(ctx(g, l, p), 0.1)).toBeGreaterThan(0.024);
    expect(rttCeiling(ctx(g, l, p), 0.1)).toBeLessThan(0.0265);
    expect(evaluateEpoch(ctx(g, l, p), 0.1).latencyMeanS).toBeCloseTo(0.15, 2);
  });
  it('with Remus-style 10:1 compression ≈ 2 100 pages per epoch fit the same link', () => {
    const compressed = guest([m(0.1, 2100)], { memoryCompression: 0.1 });
    expect(evaluateEpoch(ctx(compressed, l, p), 0.1).reasons).toEqual([]);
    const more = guest([m(0.1, 2300)], { memoryCompression: 0.1 });
    expect(evaluateEpoch(ctx(more, l, p), 0.1).reasons.length).toBeGreaterThan(0);
  });
});

describe('C2–C5 — Clark: workload dirty rates at 8 s windows, sanity ranges', () => {
  it('SPECweb99 (≈ 12 000 pages/s) needs ≈ 390 Mbit/s uncompressed at long epochs; Quake 3 (≈ 500) ≈ 16', () => {
    const bw = (pagesPerS: number) => {
      const g = guest([m(8, pagesPerS * 8)]);
      return (evaluateEpoch(ctx(g, link(125e6, 0.001), policy({ framingBytes: 0 })), 8).avgBps * 8) / 1e6;
    };
    expect(bw(12_000)).toBeCloseTo(393, -1);
    expect(bw(500)).toBeCloseTo(16.4, 0);
  });
});

describe('cannot protect: the reason names the binding limit', () => {
  const l = link(12.5e6, 0.02);
  const reason = (p: Policy, g = guest([m(0.1, 100), m(1, 500)])) =>
    plan([g], l, { ...p, epochsS: [0.1], searchEpochsS: logSpace(0.01, 2, 21) }).guests[0]?.cannotProtect ??
    '';
  it('latency budget', () => {
    expect(reason(policy({ latencyBudgetS: 0.02 }))).toMatch(
      /within the latency budget: the lowest mean added latency/,
    );
  });
  it('pause share', () => {
    const slow = policy({ pause: { baseS: 0.05, perPageS: 0 }, maxPauseFraction: 0.01 });
    expect(reason(slow)).toMatch(/pause the guest too long/);
  });
  it('TCP holding a lossy long link back', () => {
    const lossy = link(125e6, 0.1, { loss: 0.01, cc: 'reno' });
    const r = plan(
      [guest([m(1, 20_000)])],
      lossy,
      policy({ epochsS: [0.1], searchEpochsS: logSpace(0.01, 2, 21) }),
    );
    expect(r.guests[0]?.cannotProtect).toMatch(/one TCP flow carries at most/);
  });
});
