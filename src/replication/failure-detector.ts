/**
 * The receiver's primary failure detector. Pure: the caller passes the clock.
 *
 * ```
 *            heard                     silent ≥ deadTimeMs
 *  WAITING ─────────► ALIVE ─────────────────────────────────► LOST ──heard──► ALIVE (event 'primary-back')
 *   (no sender yet)     ▲ │ silent > suspectMs                  │
 *                       │ ▼                                     │ (event 'primary-lost', once)
 *                      SUSPECT (a link blip so far: nothing happens)
 * ```
 *
 * "Heard" is any frame from the sender on any channel (heartbeats included), so a link blip shorter
 * than the dead time changes nothing but the state shown in `status`; only silence for the whole dead
 * time declares the primary lost, and only once until it is heard again.
 */

/** Where the detector stands. */
export type DetectorState = 'waiting' | 'alive' | 'suspect' | 'lost';

/** A transition worth telling the operator (and the failover hook) about. */
export type DetectorEvent = 'primary-lost' | 'primary-back';

/** Timings of the detector, ms. */
export interface DetectorOptions {
  /** Silence after which the primary is declared lost. */
  deadTimeMs: number;
  /** Silence after which the link is shown as suspect (default: a quarter of the dead time). */
  suspectMs?: number;
}

/** Tracks when the sender was last heard and turns silence into at most one event per loss. */
export class FailureDetector {
  private heardAt: number | undefined;
  private current: DetectorState = 'waiting';
  private readonly suspectMs: number;

  constructor(private readonly options: DetectorOptions) {
    if (!(options.deadTimeMs > 0)) throw new RangeError('deadTimeMs must be positive');
    this.suspectMs = options.suspectMs ?? options.deadTimeMs / 4;
  }

  get state(): DetectorState {
    return this.current;
  }

  /** When the sender was last heard (the caller's clock), if ever. */
  get lastHeard(): number | undefined {
    return this.heardAt;
  }

  /** The sender was heard at `now`. Returns 'primary-back' when it had been declared lost. */
  heard(now: number): DetectorEvent | undefined {
    this.heardAt = now;
    const was = this.current;
    this.current = 'alive';
    return was === 'lost' ? 'primary-back' : undefined;
  }

  /** Advance the clock to `now`. Returns 'primary-lost' the first time the silence reaches the dead time. */
  tick(now: number): DetectorEvent | undefined {
    if (this.heardAt === undefined || this.current === 'lost') return undefined;
    const silent = now - this.heardAt;
    if (silent >= this.options.deadTimeMs) {
      this.current = 'lost';
      return 'primary-lost';
    }
    this.current = silent > this.suspectMs ? 'suspect' : 'alive';
    return undefined;
  }
}
