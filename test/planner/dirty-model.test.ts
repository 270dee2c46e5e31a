import { describe, expect, it } from 'vitest';
import { fitDirtyCurve } from '../../src/planner/dirty-model.js';
import { guest, m } from '../helpers.js';

describe('fitDirtyCurve', () => {
  it('one window: linear, and says so', () => {
    const c = fitDirtyCurve(guest([m(1, 1000)]), 99, []);
    expect(c.info.model).toBe('linear');
    expect(c.pagesAt(1)).toBe(1000);
    expect(c.pagesAt(0.1)).toBeCloseTo(100, 9);
    expect(c.pagesAt(3)).toBeCloseTo(3000, 9);
    expect(c.info.notes.join(' ')).toMatch(/linear/);
  });

  it('two windows: power law with α = 1 + ln(r2/r1)/ln(T2/T1), exact at the points', () => {
    // 12 MiB/s at 100 ms and 5 MiB/s at 1 s → α = 1 + ln(5/12)/ln(10) = 0.61979
    const pages = (mibps: number, t: number) => (mibps * 2 ** 20 * t) / 4096;
    const c = fitDirtyCurve(guest([m(0.1, pages(12, 0.1)), m(1, pages(5, 1))]), 99, []);
    expect(c.info.model).toBe('power-law');
    expect(c.info.alpha).toBeCloseTo(1 + Math.log(5 / 12) / Math.log(10), 3);
    expect(c.pagesAt(0.1)).toBeCloseTo(pages(12, 0.1), 6);
    expect(c.pagesAt(1)).toBeCloseTo(pages(5, 1), 6);
    // geometric midpoint: D(√0.1) = √(D(0.1)·D(1))
    expect(c.pagesAt(Math.sqrt(0.1))).toBeCloseTo(Math.sqrt(pages(12, 0.1) * pages(5, 1)), 6);
    // extrapolation keeps the slope
    const alpha = 1 + Math.log(5 / 12) / Math.log(10);
    expect(c.pagesAt(10)).toBeCloseTo(pages(5, 1) * 10 ** alpha, 6);
  });

  it('recovers a known power law from noisy-free samples and clamps extrapolation to α ≥ 0.3', () => {
    const d = (t: number) => 5000 * t ** 0.45;
    const c = fitDirtyCurve(guest([0.05, 0.1, 0.5, 2].map((t) => m(t, d(t)))), 99, []);
    expect(c.info.alpha).toBeCloseTo(0.45, 3);
    expect(c.pagesAt(0.3)).toBeCloseTo(d(0.3), 3);
    // a saturating guest: α between the last points is 0 — the extrapolation uses 0.3 instead
    const sat = fitDirtyCurve(guest([m(0.1, 1000), m(1, 2000), m(10, 2000)]), 99, []);
    expect(sat.pagesAt(100)).toBeGreaterThan(2000);
  });

  it('caps D(T) at guest memory', () => {
    const c = fitDirtyCurve(guest([m(1, 1000)], { memoryBytes: 2048 * 4096 }), 99, []);
    expect(c.pagesAt(100)).toBe(2048);
  });

  it('repairs noisy measurements: non-decreasing, at most linear growth', () => {
    const c = fitDirtyCurve(guest([m(0.1, 500), m(0.2, 400), m(0.4, 5000)]), 99, []);
    expect(c.pagesAt(0.2)).toBeCloseTo(500, 6);
    expect(c.pagesAt(0.4)).toBeCloseTo(1000, 6);
    expect(c.info.notes.length).toBeGreaterThanOrEqual(2);
  });

  it('several samples at a window give a mean and a percentile', () => {
    const c = fitDirtyCurve(guest([m(0.1, 100, 200, 300, 400, 500), m(1, 2000)]), 100, []);
    expect(c.pagesAt(0.1)).toBeCloseTo(300, 9);
    expect(c.peakPagesAt(0.1)).toBeCloseTo(500, 9);
  });

  it('hot/cold recovers H, τ and c from its own curve', () => {
    const d = (t: number) => 3000 * (1 - Math.exp(-t / 0.2)) + 500 * t;
    const c = fitDirtyCurve(
      guest(
        [0.02, 0.05, 0.1, 0.3, 1, 3, 10].map((t) => m(t, d(t))),
        { model: 'hot-cold' },
      ),
      99,
      [],
    );
    expect(c.info.model).toBe('hot-cold');
    expect(c.info.hotPages).toBeGreaterThan(2850);
    expect(c.info.hotPages).toBeLessThan(3150);
    expect(c.info.coldPagesPerSec).toBeGreaterThan(475);
    expect(c.info.coldPagesPerSec).toBeLessThan(525);
    expect(c.info.fitError).toBeLessThan(0.02);
    expect(Math.abs(c.pagesAt(30) / d(30) - 1)).toBeLessThan(0.02);
  });

  it('hot/cold with fewer than 3 windows falls back, and says so', () => {
    const c = fitDirtyCurve(guest([m(0.1, 100), m(1, 500)], { model: 'hot-cold' }), 99, []);
    expect(c.info.model).toBe('power-law');
    expect(c.info.notes.join(' ')).toMatch(/hot-cold needs 3/);
  });

  it('explicit linear uses the rate at the longest window ≤ T', () => {
    const c = fitDirtyCurve(guest([m(0.1, 100), m(1, 400)], { model: 'linear' }), 99, []);
    expect(c.pagesAt(0.5)).toBeCloseTo(500, 9); // 1000 pages/s from the 100 ms window
    expect(c.pagesAt(2)).toBeCloseTo(800, 9); // 400 pages/s from the 1 s window
    expect(c.pagesAt(0.05)).toBeCloseTo(50, 9);
  });

  it('ignores zero readings when others exist (QEMU truncates small rates to 0 MiB/s)', () => {
    const c = fitDirtyCurve(guest([m(0.1, 0), m(1, 1000), m(2, 1500)]), 99, []);
    expect(c.pagesAt(1)).toBeCloseTo(1000, 9);
    expect(c.info.notes.join(' ')).toMatch(/no dirty pages/);
  });
});
