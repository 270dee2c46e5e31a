/**
 * The WAN lab (tools/wanlab): two namespaces joined by the delay line, tbf and nftables; what it gives
 * is measured, and it goes away whole. Physical bounds only: the round trip is at least the delay
 * asked, the throughput at most the rate cap, a 2 % loss shows in 300 pings.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const lab = join(import.meta.dirname, '..', '..', 'tools', 'wanlab', 'wanlab.mjs');
const name = `t${process.pid % 100000}`;
const wanlab = (...args: string[]) =>
  JSON.parse(
    execFileSync(process.execPath, [lab, ...args, '--name', name, '--json'], {
      encoding: 'utf8',
      timeout: 120_000,
    }),
  );
afterAll(() => {
  spawnSync(process.execPath, [lab, 'down', '--name', name]); // if a test failed half-way
});

describe('wanlab', () => {
  it('up: the round trip, rate and loss asked, measured; down: nothing left', () => {
    const r = wanlab(
      'up',
      '--rtt',
      '20ms',
      '--rate',
      '50mbit',
      '--loss',
      '2%',
      '--pings',
      '300',
      '--bytes',
      '10MB',
    );
    expect(r.asked).toEqual({ rttMs: 20, jitterMs: 0, rateBitsPerSecond: 50e6, loss: 0.02 });
    const m = r.measured;
    console.log(`wanlab asked 20 ms, 50 Mbit/s, 2 % loss; measured ${JSON.stringify(m)}`);
    expect(m.rttMs.min).toBeGreaterThanOrEqual(20);
    expect(m.rttMs.avg).toBeLessThan(30);
    expect(m.pingLoss).toBeGreaterThan(0);
    expect(m.throughputMbps).toBeGreaterThan(0);
    expect(m.throughputMbps).toBeLessThanOrEqual(52); // the cap, and tbf's burst
    const list = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    expect(list()).toContain(`wl-${name}-a`);
    expect(wanlab('down')).toEqual({ name, down: true });
    expect(list()).not.toContain(`wl-${name}-`);
    expect(existsSync(`/run/wanlab/${name}.json`) || existsSync(`/run/wanlab/${name}.delayline.log`)).toBe(
      false,
    );
    // the delay line has ended (a zombie at most: detached, it is its init's to reap)
    const stat = spawnSync('ps', ['-o', 'stat=', '-p', String(r.pid)], { encoding: 'utf8' }).stdout.trim();
    expect(stat === '' || stat.startsWith('Z')).toBe(true);
  }, 180_000);
});
