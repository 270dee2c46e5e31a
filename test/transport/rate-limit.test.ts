import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../../src/transport/rate-limit.js';
import { codeOf } from '../helpers.js';

describe('RateLimiter', () => {
  it('lets a burst through at once, then paces to the rate (frames larger than the burst too)', async () => {
    const r = new RateLimiter({ bytesPerSecond: 1_000_000, burstBytes: 100_000 });
    const t0 = performance.now();
    await r.take(100_000); // the bucket starts full
    const burst = performance.now() - t0;
    await r.take(250_000); // 2.5 bursts: about 250 ms at 1 MB/s
    const paced = performance.now() - t0;
    await r.stop();
    expect(burst).toBeLessThan(100);
    expect(paced).toBeGreaterThan(200); // never faster than the rate
    expect(paced).toBeLessThan(2000); // and the refill really runs at the rate (a 250 ms refill tick would take 3 s)
  });

  it('changes rate at run time, also for bytes already waiting, and can be lifted', async () => {
    const r = new RateLimiter({ bytesPerSecond: 10_000, burstBytes: 1_000 });
    await r.take(1_000);
    const t0 = performance.now();
    const waiting = r.take(500_000); // 50 s at the first rate
    r.update({ bytesPerSecond: 10_000_000, burstBytes: 1_000_000 });
    await waiting;
    r.update(null);
    await r.take(1e9); // no cap: at once
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(r.settings).toBeNull();
    await r.stop();
  });

  it('refuses a nonsense cap', () => {
    expect(codeOf(() => new RateLimiter({ bytesPerSecond: 0, burstBytes: 10 }))).toBe(
      'RWAN_ERR_INVALID_VALUE',
    );
    expect(codeOf(() => new RateLimiter({ bytesPerSecond: 1e6, burstBytes: 1 }))).toBe(
      'RWAN_ERR_INVALID_VALUE',
    );
  });
});
