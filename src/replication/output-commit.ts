/**
 * Output commit for a service replicated by `remus-wan send`: what the service says to its clients
 * is held until the backup has the state it came from, as Remus holds a guest's network output.
 *
 * A byte the service wrote at time t reflects its state at t, which the first capture to start after
 * t contains. So each held piece is marked with the epoch of the next capture to start
 * (`captureStarting(epoch)` moves that mark), and released once that epoch is acknowledged
 * (`acked(epoch)`). A piece that arrives while a capture runs gets the next epoch: later, never
 * earlier, than needed. Several epochs may be in flight; pieces leave in the order they came, per
 * stream. Pure: the proxy (proxy.ts) feeds it and writes what it releases.
 */

/** Something held for one client stream: bytes, or the end of the stream (the service closed it). */
export type Held = { kind: 'data'; bytes: Buffer } | { kind: 'end' };

interface Piece {
  stream: number;
  need: number;
  held: Held;
}

export class OutputCommit {
  private readonly queue: Piece[] = [];
  private next = 1;
  private ackedThrough = 0;
  /** Bytes held now. */
  heldBytes = 0;

  constructor(private readonly release: (stream: number, held: Held) => void) {}

  /** The capture of `epoch` is starting: what arrives from now on waits for the one after it. */
  captureStarting(epoch: number): void {
    this.next = Math.max(this.next, epoch + 1);
  }

  /** The epoch a piece arriving now must wait for. */
  get waitsFor(): number {
    return this.next;
  }

  /** The last epoch acknowledged. */
  get acknowledged(): number {
    return this.ackedThrough;
  }

  /** Hold `held` for `stream` until the next capture's epoch is acknowledged. */
  hold(stream: number, held: Held): void {
    this.queue.push({ stream, need: this.next, held });
    if (held.kind === 'data') this.heldBytes += held.bytes.length;
  }

  /** The backup acknowledged `epoch` (and all before it): release what waited for it. */
  acked(epoch: number): void {
    if (epoch <= this.ackedThrough) return;
    this.ackedThrough = epoch;
    while (this.queue.length > 0 && (this.queue[0] as Piece).need <= epoch) {
      const p = this.queue.shift() as Piece;
      if (p.held.kind === 'data') this.heldBytes -= p.held.bytes.length;
      this.release(p.stream, p.held);
    }
  }

  /** Forget what a stream still holds (its client went away). */
  drop(stream: number): void {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const p = this.queue[i] as Piece;
      if (p.stream !== stream) continue;
      if (p.held.kind === 'data') this.heldBytes -= p.held.bytes.length;
      this.queue.splice(i, 1);
    }
  }
}
