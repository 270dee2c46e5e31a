import { describe, expect, it } from 'vitest';
import {
  aggregateGoodput,
  CUBIC_K,
  cubicBps,
  flowCeiling,
  linkGoodputBps,
  mathisBps,
  rttFromDistance,
} from '../../src/planner/tcp.js';
import { link } from '../helpers.js';

const mbit = (bps: number) => (bps * 8) / 1e6;

describe('TCP ceilings', () => {
  it('Mathis matches the worked numbers of planner-model §4 (MSS 1460, C = 1.22)', () => {
    // RTT 25 ms → 57 / 180 / 570 Mb/s at p = 1e-4 / 1e-5 / 1e-6; RTT 5 ms → 285 / 901 / 2850
    expect(mbit(mathisBps(1460, 0.025, 1e-4))).toBeCloseTo(57.2, 0);
    expect(mbit(mathisBps(1460, 0.025, 1e-5))).toBeCloseTo(180.9, 0);
    expect(mbit(mathisBps(1460, 0.025, 1e-6))).toBeCloseTo(572, -1);
    expect(mbit(mathisBps(1460, 0.005, 1e-4))).toBeCloseTo(286, 0);
    expect(mbit(mathisBps(1460, 0.05, 1e-4))).toBeCloseTo(28.6, 1);
    expect(mathisBps(1460, 0.025, 0)).toBe(Number.POSITIVE_INFINITY);
  });
  it('CUBIC uses the RFC 8312 §5.1 constant 1.054', () => {
    expect(CUBIC_K).toBeCloseTo(1.054, 3);
    // 1.054 · 1460 / (0.1^¼ · 0.001^¾) by hand: 1538.8 / (0.56234 · 0.0056234) = 486 600 B/s
    expect(cubicBps(1460, 0.1, 0.001)).toBeCloseTo(486_600, -3);
  });
  it('the single-flow ceiling is the smallest of link, window/RTT and the loss bound', () => {
    const l = link(125e6, 0.1, { tcpWindowBytes: 4 * 2 ** 20, cc: 'reno', loss: 1e-5 });
    const windowBps = (4 * 2 ** 20) / 0.1; // 41.9 MB/s
    const reno = mathisBps(1448, 0.1, 1e-5); // 5.59 MB/s
    expect(flowCeiling(l, 0.1)).toEqual({ bps: reno, limit: 'loss' });
    expect(flowCeiling({ ...l, loss: 0 }, 0.1)).toEqual({ bps: windowBps, limit: 'window' });
    expect(flowCeiling({ ...l, loss: 0 }, 0.001)).toEqual({ bps: 125e6, limit: 'link' });
    expect(flowCeiling({ ...l, cc: 'bbr' }, 0.1).limit).toBe('window');
  });
  it('channels add up until the link is full', () => {
    const l = link(125e6, 0.1, { cc: 'reno', loss: 1e-4 });
    const one = mathisBps(1448, 0.1, 1e-4);
    expect(aggregateGoodput(l, 0.1, 1)).toBeCloseTo(one, 6);
    expect(aggregateGoodput(l, 0.1, 4)).toBeCloseTo(4 * one, 6);
    expect(aggregateGoodput(l, 0.1, 1000)).toBe(125e6);
  });
  it('header overhead reduces goodput by MSS/(MSS + headers)', () => {
    expect(linkGoodputBps(link(125e6, 0, { overheadBytesPerSegment: 66 }))).toBeCloseTo(
      (125e6 * 1448) / 1514,
      6,
    );
  });
  it('fibre RTT is about 1 ms per 100 km of route', () => {
    expect(rttFromDistance(100)).toBeCloseTo(0.00098, 8);
    expect(rttFromDistance(2500) * 1000).toBeCloseTo(24.5, 6);
  });
});
