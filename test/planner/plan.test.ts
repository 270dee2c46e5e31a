import { describe, expect, it } from 'vitest';
import { plan } from '../../src/planner/plan.js';
import { guest, link, m, policy } from '../helpers.js';

describe('plan: recommendation and warnings', () => {
  it('recommends the lowest-latency feasible epoch and reports the rest', () => {
    // periodic, 1000 pages/s linear, 12.5 MB/s, RTT 25 ms: T must cover 1 ms + 0.32832·T + 25 ms → T ≥ 38.7 ms
    const r = plan([guest([m(1, 1000)])], link(12.5e6, 0.025), policy({ epochsS: [0.02, 0.04, 0.1, 0.5] }));
    const g = r.guests[0]!;
    expect(g.plans.map((p) => p.feasible)).toEqual([false, true, true, true]);
    expect(g.recommended?.epochMs).toBe(40);
    expect(g.recommended?.why).toMatch(/3 feasible epochs of 4/);
    expect(g.plans[0]?.reasons[0]).toMatch(/stretches/);
  });

  it('warns about missing compression and disk writes, extrapolation, and xl checkpoints above the TCP window', () => {
    const g = guest([m(5, 500_000)], { compressionSource: 'none' });
    const r = plan(
      [g],
      link(125e6, 0.02, { tcpWindowBytes: 2 ** 20 }),
      policy({ mode: 'xl', epochsS: [0.1] }),
    );
    const w = r.guests[0]!.warnings.join('\n');
    expect(w).toMatch(/no compression assumed/);
    expect(w).toMatch(/no disk writes given/);
    expect(w).toMatch(/extrapolated far beyond the measured windows \(5000–5000 ms\)/);
    expect(w).toMatch(/exceeds the 1\.0 MiB socket buffer/);
  });

  it('warns that a pipelined sender on a lossy link may leave later than planned, unless its stats say how late', () => {
    const lossy = link(125e6, 0.08, { loss: 0.005, cc: 'bbr', channels: 2 });
    const warned = (g: ReturnType<typeof guest>, mode: 'pipelined' | 'periodic') =>
      plan([g], lossy, policy({ mode, epochsS: [0.1] })).guests[0]!.warnings.some((w) => /sendMs/.test(w));
    expect(warned(guest([m(1, 1000)]), 'pipelined')).toBe(true);
    expect(warned(guest([m(1, 1000)]), 'periodic')).toBe(false);
    expect(warned({ ...guest([m(1, 1000)]), sending: { share: 0.7, source: 'stats' } }, 'pipelined')).toBe(
      false,
    );
    const sent = plan(
      [{ ...guest([m(1, 1000)]), sending: { share: 0.7, source: 's.jsonl' } }],
      lossy,
      policy({ mode: 'pipelined', epochsS: [0.1] }),
    );
    expect(sent.guests[0]?.sending).toEqual({ share: 0.7, source: 's.jsonl' });
    expect(sent.guests[0]?.plans[0]?.queuedMs).toBeGreaterThan(0);
    expect(sent.link.segmentOverheadBytes).toBe(lossy.overheadBytesPerSegment);
  });

  it('reports the link and the policy in output units', () => {
    const r = plan(
      [guest([m(1, 10)])],
      link(12.5e6, 0.025, { overheadBytesPerSegment: 66 }),
      policy({ headroom: 0.2 }),
    );
    expect(r.link.bandwidthMbps).toBe(100);
    expect(r.link.goodputMbps).toBeCloseTo((100 * 1448) / 1514, 2);
    expect(r.link.usableMbps).toBeCloseTo((0.8 * 100 * 1448) / 1514, 2);
    expect(r.link.rttMs).toBe(25);
    expect(r.policy.pauseBaseMs).toBe(1);
    expect(r.policy.latencyBudgetMs).toBeNull();
  });
});
