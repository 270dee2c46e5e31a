/**
 * The sender's bandwidth cap: a token bucket of bytes on bottleneck's reservoir, changeable while it
 * runs (the status endpoint's `POST /rate`).
 *
 *   reservoir ≤ burstBytes, refilled by bytesPerSecond × interval every `interval` ms
 *   take(n): wait until n bytes of tokens are there (in pieces of at most burstBytes, so a frame larger
 *            than the burst is paced, never stuck)
 *
 * `null` settings mean no cap: `take` resolves at once.
 */
import Bottleneck from 'bottleneck';
import { RwanError } from '../errors.js';

/** A bandwidth cap. */
export interface RateSettings {
  /** Long-run rate, bytes per second. */
  bytesPerSecond: number;
  /** Bucket size: the most that may leave back to back after an idle spell, bytes. */
  burstBytes: number;
}

/** Message of a piece dropped by a cap change (retried, never surfaced). */
const RETRY = 'rate changed';

/** Refill period of the bucket, ms. */
const INTERVAL_MS = 20;

/** Checks a cap: positive finite rate, burst of at least one refill (so the bucket can always fill). */
export function checkRate(r: RateSettings): RateSettings {
  const refill = (r.bytesPerSecond * INTERVAL_MS) / 1000;
  if (!(Number.isFinite(r.bytesPerSecond) && r.bytesPerSecond > 0)) {
    throw new RwanError('RWAN_ERR_INVALID_VALUE', `rate ${r.bytesPerSecond} B/s: expected a positive number`);
  }
  if (!(Number.isFinite(r.burstBytes) && r.burstBytes >= Math.max(1, refill))) {
    throw new RwanError(
      'RWAN_ERR_INVALID_VALUE',
      `burst ${r.burstBytes} B: expected at least ${Math.ceil(Math.max(1, refill))} B (one ${INTERVAL_MS} ms refill)`,
    );
  }
  return r;
}

/** A byte-rate limiter whose cap can change (or be lifted) at run time. */
export class RateLimiter {
  private limiter: Bottleneck | undefined;
  private current: RateSettings | null = null;

  constructor(settings: RateSettings | null) {
    this.update(settings);
  }

  /** The cap in force (`null`: none). */
  get settings(): RateSettings | null {
    return this.current;
  }

  /**
   * Change the cap; `null` lifts it. Bytes already waiting move to the new cap (a fresh bucket that
   * starts empty, so a change never lets an extra burst through).
   */
  update(settings: RateSettings | null): void {
    if (settings) checkRate(settings);
    const old = this.limiter;
    this.current = settings;
    this.limiter = settings
      ? new Bottleneck({
          reservoir: old ? 0 : settings.burstBytes,
          reservoirIncreaseAmount: (settings.bytesPerSecond * INTERVAL_MS) / 1000,
          reservoirIncreaseInterval: INTERVAL_MS,
          reservoirIncreaseMaximum: settings.burstBytes,
          // bottleneck refills on its heartbeat (250 ms by default), not on reservoirIncreaseInterval;
          // and its updateSettings() stops the refill timer, hence a new limiter per change
          heartbeatInterval: INTERVAL_MS,
          maxConcurrent: null,
        })
      : undefined;
    // waiting pieces of the old bucket are dropped and retried on the new one by take()
    void old?.stop({ dropWaitingJobs: true, dropErrorMessage: RETRY });
  }

  /** Wait until `bytes` may be sent. */
  async take(bytes: number): Promise<void> {
    for (let left = bytes; left > 0; ) {
      const limiter = this.limiter;
      if (!limiter || !this.current) return;
      const piece = Math.min(left, this.current.burstBytes);
      try {
        await limiter.schedule({ weight: piece }, async () => undefined);
        left -= piece;
      } catch (err) {
        if (!(err instanceof Error && err.message === RETRY)) throw err;
      }
    }
  }

  /** Stop the refill timer (at shutdown). */
  async stop(): Promise<void> {
    const l = this.limiter;
    this.limiter = undefined;
    this.current = null;
    await l?.stop({ dropWaitingJobs: true, dropErrorMessage: RETRY });
  }
}
