import { describe, expect, it } from 'vitest';
import {
  logSpace,
  parseBytes,
  parseCount,
  parseDistanceKm,
  parseDuration,
  parseEpochs,
  parseFraction,
  parseRate,
  parseRatio,
  splitAt,
} from '../src/units.js';
import { codeOf } from './helpers.js';

describe('parseDuration', () => {
  it.each([
    ['25ms', 0.025],
    ['1s', 1],
    ['0.5 s', 0.5],
    ['250us', 250e-6],
    ['250µs', 250e-6],
    ['2min', 120],
    ['1h', 3600],
    ['1e2ms', 0.1],
    ['.5s', 0.5],
  ])('%s → %f s', (text, seconds) => {
    expect(parseDuration(text)).toBeCloseTo(seconds, 12);
  });
  it.each(['25', 'ms', '25 parsecs', '', '1..2s', 'NaNms', 'Infinityms'])('refuses %j', (text) => {
    expect(codeOf(() => parseDuration(text))).toBe('RWAN_ERR_INVALID_UNIT');
  });
  it('refuses zero and negative values unless allowed', () => {
    expect(codeOf(() => parseDuration('0ms'))).toBe('RWAN_ERR_INVALID_VALUE');
    expect(codeOf(() => parseDuration('-5ms'))).toBe('RWAN_ERR_INVALID_VALUE');
    expect(parseDuration('0ms', { allowZero: true })).toBe(0);
    expect(codeOf(() => parseDuration('1e400s'))).toBe('RWAN_ERR_INVALID_VALUE');
  });
});

describe('parseRate', () => {
  it.each([
    ['100Mbit/s', 12.5e6],
    ['100 Mbit/s', 12.5e6],
    ['1Gbps', 125e6],
    ['100mbit', 12.5e6],
    ['100Mb/s', 12.5e6],
    ['12MiB/s', 12 * 2 ** 20],
    ['12MB/s', 12e6],
    ['10MBps', 10e6],
    ['500KB/s', 5e5],
    ['64kbit/s', 8000],
    ['8bit/s', 1],
    ['1.5Gbit/s', 187.5e6],
    ['2GiB/s', 2 * 2 ** 30],
  ])('%s → %f B/s', (text, bps) => {
    expect(parseRate(text)).toBeCloseTo(bps, 6);
  });
  it.each(['100', '100MB', '100Mb', 'fast', '100 furlongs/s', '10Xbit/s', '1e3'])('refuses %j', (text) => {
    expect(codeOf(() => parseRate(text))).toBe('RWAN_ERR_INVALID_UNIT');
  });
  it('refuses zero unless allowed, and negatives', () => {
    expect(codeOf(() => parseRate('0Mbit/s'))).toBe('RWAN_ERR_INVALID_VALUE');
    expect(parseRate('0MiB/s', { allowZero: true })).toBe(0);
    expect(codeOf(() => parseRate('-1Mbit/s'))).toBe('RWAN_ERR_INVALID_VALUE');
  });
});

describe('parseBytes, parseFraction, parseRatio, parseDistanceKm, parseCount', () => {
  it('parses sizes', () => {
    expect(parseBytes('4KiB')).toBe(4096);
    expect(parseBytes('4096')).toBe(4096);
    expect(parseBytes('4 KB')).toBe(4000);
    expect(parseBytes('1.5GiB')).toBe(1.5 * 2 ** 30);
    expect(parseBytes('4096B')).toBe(4096);
    expect(codeOf(() => parseBytes('4K'))).toBe('RWAN_ERR_INVALID_UNIT');
    expect(codeOf(() => parseBytes('4Kib'))).toBe('RWAN_ERR_INVALID_UNIT');
  });
  it('parses fractions', () => {
    expect(parseFraction('0.1%')).toBeCloseTo(0.001, 12);
    expect(parseFraction('0.001')).toBe(0.001);
    expect(parseFraction('0%')).toBe(0);
    expect(codeOf(() => parseFraction('150%'))).toBe('RWAN_ERR_INVALID_VALUE');
    expect(codeOf(() => parseFraction('2'))).toBe('RWAN_ERR_INVALID_VALUE');
    expect(codeOf(() => parseFraction('-1%'))).toBe('RWAN_ERR_INVALID_VALUE');
    expect(codeOf(() => parseFraction('1 percent'))).toBe('RWAN_ERR_INVALID_UNIT');
  });
  it('parses ratios', () => {
    expect(parseRatio('0.3')).toBe(0.3);
    expect(parseRatio('30%')).toBeCloseTo(0.3, 12);
    expect(parseRatio('4:1')).toBe(0.25);
    expect(codeOf(() => parseRatio('0'))).toBe('RWAN_ERR_INVALID_VALUE');
    expect(codeOf(() => parseRatio('0:1'))).toBe('RWAN_ERR_INVALID_VALUE');
  });
  it('parses distances and counts', () => {
    expect(parseDistanceKm('1200km')).toBe(1200);
    expect(parseDistanceKm('1200')).toBe(1200);
    expect(parseDistanceKm('100mi')).toBeCloseTo(160.9344, 6);
    expect(codeOf(() => parseDistanceKm('far'))).toBe('RWAN_ERR_INVALID_UNIT');
    expect(parseCount('512')).toBe(512);
    expect(codeOf(() => parseCount('2.5'))).toBe('RWAN_ERR_INVALID_UNIT');
    expect(codeOf(() => parseCount('2k'))).toBe('RWAN_ERR_INVALID_UNIT');
  });
});

describe('splitAt and parseEpochs', () => {
  it('splits at the last @', () => {
    expect(splitAt('12MiB/s@100ms')).toEqual({ value: '12MiB/s', window: '100ms' });
    expect(codeOf(() => splitAt('12MiB/s'))).toBe('RWAN_ERR_INVALID_UNIT');
    expect(codeOf(() => splitAt('@100ms'))).toBe('RWAN_ERR_INVALID_UNIT');
    expect(codeOf(() => splitAt('12MiB/s@'))).toBe('RWAN_ERR_INVALID_UNIT');
  });
  it('parses one epoch, a list, and a sweep', () => {
    expect(parseEpochs('100ms')).toEqual([0.1]);
    expect(parseEpochs('200ms, 50ms,100ms,100ms')).toEqual([0.05, 0.1, 0.2]);
    const sweep = parseEpochs('10ms..1s');
    expect(sweep).toHaveLength(25);
    expect(sweep[0]).toBe(0.01);
    expect(sweep.at(-1)).toBe(1);
    expect(parseEpochs('10ms..1s:3')).toEqual([0.01, 0.1, 1]);
    expect(codeOf(() => parseEpochs('1s..10ms'))).toBe('RWAN_ERR_INVALID_VALUE');
    expect(codeOf(() => parseEpochs('10ms..1s:1'))).toBe('RWAN_ERR_INVALID_VALUE');
    expect(codeOf(() => parseEpochs('10..1s'))).toBe('RWAN_ERR_INVALID_UNIT');
  });
  it('log-spaces points', () => {
    expect(logSpace(1, 100, 3)).toEqual([1, 10, 100]);
  });
});
