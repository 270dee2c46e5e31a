import { describe, expect, it } from 'vitest';
import type { WriteTrace } from '../../src/measure/types.js';
import { plan } from '../../src/planner/plan.js';
import { guest, link, m, policy } from '../helpers.js';

// several epochs asked for: each guest may run any of them on the shared link
const search = { epochsS: [0.05, 0.1, 0.2, 0.5, 1, 2], searchEpochsS: [] };

describe('fleet on one link', () => {
  it('sums the guests’ bandwidths and admits all when they fit', () => {
    const guests = [guest([m(1, 500)], { name: 'a' }), guest([m(1, 300)], { name: 'b' })];
    // one epoch asked for: the fleet runs exactly that one
    const r = plan(guests, link(12.5e6, 0.01), policy({ epochsS: [0.1], searchEpochsS: [] }));
    // 100 ms epochs, periodic: 50 and 30 pages · 4104 B per 100 ms = 2.052 + 1.2312 MB/s
    expect(r.fleet.sumBandwidthMbps).toBeCloseTo(((800 * 4104) / 1e6) * 8, 2);
    expect(r.fleet.guests.every((g) => g.fits)).toBe(true);
    expect(r.fleet.feasible).toBe(true);
    expect(r.fleet.percentileBandwidthMbps).toBeNull();
  });

  it('moves guests to longer epochs to make room before dropping anyone', () => {
    // power-law guests: longer epochs need less bandwidth
    const mk = (name: string) => guest([m(0.05, 100), m(2, 1000)], { name });
    const p = policy({ mode: 'periodic', headroom: 0, ...search });
    const alone = plan([mk('a')], link(12.5e6, 0.005), p);
    const best = alone.guests[0]?.recommended?.plan.bandwidthMbps ?? 0;
    const l = link((best * 1.5 * 1e6) / 8, 0.005); // room for 1.5 guests at their best epoch
    const r = plan([mk('a'), mk('b')], l, p);
    expect(r.fleet.guests.map((g) => g.fits)).toEqual([true, true]);
    expect(r.fleet.sumBandwidthMbps).toBeLessThanOrEqual(r.fleet.usableMbps);
    expect(Math.max(...r.fleet.guests.map((g) => g.epochMs ?? 0))).toBeGreaterThan(
      alone.guests[0]?.recommended?.epochMs ?? 0,
    );
  });

  it('drops the lowest-priority guests when even the longest epochs do not fit', () => {
    const heavy = (name: string, priority: number) => guest([m(1, 1000)], { name, priority });
    const r = plan(
      [heavy('low', 5), heavy('high', 1), heavy('mid', 2)],
      link(1000 * 4104 * 2.5, 0.001),
      policy({ headroom: 0, epochsS: [0.1], searchEpochsS: [] }),
    );
    expect(r.fleet.guests.map((g) => [g.name, g.fits])).toEqual([
      ['low', false],
      ['high', true],
      ['mid', true],
    ]);
    expect(r.fleet.reasons[0]).toMatch(/1 of 3 guests do not fit: low/);
  });

  it('with traces, reports a percentile of the summed per-epoch rate', () => {
    // two guests, each writing 10 distinct pages in every other 100 ms window, out of phase
    const mkTrace = (phase: number): WriteTrace => {
      const times: number[] = [];
      const ids: number[] = [];
      for (let w = 0; w < 20; w++) {
        if (w % 2 !== phase) continue;
        for (let i = 0; i < 10; i++) {
          times.push(w * 0.1 + i * 0.005);
          ids.push(i);
        }
      }
      return {
        times: Float64Array.from(times),
        pageIds: Uint32Array.from(ids),
        distinctPages: 10,
        durationS: 2,
        source: 't',
      };
    };
    const g = (name: string, phase: number) => guest([], { name, traces: [mkTrace(phase)] });
    const r = plan(
      [g('a', 0), g('b', 1)],
      link(12.5e6, 0.001),
      policy({ epochsS: [0.1], searchEpochsS: [], percentile: 100 }),
    );
    // out of phase: the summed rate is always one guest's 10 pages per 100 ms
    const one = ((10 * 4104) / 0.1) * 8e-6;
    expect(r.fleet.percentileBandwidthMbps).toBeCloseTo(one, 3);
    expect(r.fleet.sumPeakBandwidthMbps).toBeGreaterThan(one * 1.5);
  });
});
