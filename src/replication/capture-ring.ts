/**
 * The memory the sender's incremental captures read pages into: one SharedArrayBuffer shared by the
 * captures in flight. A capture takes a region of it, the encoder reads the region in place (an
 * encoder thread is given the buffer once, then regions by offset), and the region is given back once
 * the epoch is encoded.
 *
 * ```
 *   0 ─────────────────────────────────────────────────────────────► capacity
 *   [ epoch N (encoding) │            free            │ epoch N+1 (captured, waiting) ]
 *     epoch N+2 goes here once N is back ▲    ▲ or here, while N is still out
 * ```
 *
 * A region goes at the start of the free gap it fits when that gap begins the buffer or lies between
 * two regions, and at the end of the gap when the gap ends the buffer; of the gaps it fits, the
 * largest. With two captures in flight (sender.ts CAPTURES_AHEAD) they sit at opposite ends, and the
 * next one takes the end the older one left: the buffer needs to hold any two consecutive captures,
 * however their sizes vary. (Appending after the newest region, as a ring does, needs room for three.)
 *
 * Why one buffer: the memory a capture reads into is faulted in (and zeroed by the kernel) the first
 * time it is written, so it is reused rather than allocated per epoch; with one buffer per capture,
 * the buffers in flight plus the spares kept for reuse held about four captures' worth resident.
 *
 * Sizing: when a take fits no gap, or the buffer is more than 1.5 times the size a new one would have
 * (it grew in a backlog), a new buffer of a quarter more than the most bytes recently in flight is
 * made and the old one retired: its memory goes back to the system (`release`) at once but for the
 * regions still out, and each of those as it is given back, not when both threads' garbage
 * collectors find it.
 *
 * No I/O: `release` (madvise through the addon in the daemon) is injected.
 */

/** Takes whose bytes in flight decide whether an empty ring is worth keeping. */
const RECENT_TAKES = 8;
/** Headroom of a new ring over the bytes in flight when it is made. */
const HEADROOM = 1.25;
/**
 * A ring more than this times the size a new one would have is replaced: every byte of it ends up
 * resident (captures go to both ends and, when larger, the middle), so one grown in a backlog (the
 * first capture after a full copy can be the whole image) must not stay.
 */
const SHRINK_ABOVE = 1.5;

interface Region {
  start: number;
  end: number;
}

interface Ring {
  memory: SharedArrayBuffer;
  /** Regions out, by address. */
  regions: Region[];
}

/** Options of {@link CaptureRing}. */
export interface CaptureRingOptions {
  /** Regions are whole multiples of this (bytes). */
  pageSize: number;
  /** Gives the memory pages of a view back to the system (it reads as zeros afterwards). */
  release?: (view: Uint8Array) => void;
}

/**
 * The free gaps of `ring`, in address order: [from, to) between its regions and the ends (an empty
 * region may sit inside a run, so a gap starts after the furthest end so far). Empty gaps included.
 */
function* gaps(ring: Ring): Generator<[number, number]> {
  const cap = ring.memory.byteLength;
  let from = 0;
  for (let i = 0; i <= ring.regions.length; i++) {
    const to = ring.regions[i]?.start ?? cap;
    yield [from, to];
    from = Math.max(from, ring.regions[i]?.end ?? cap);
  }
}

function bytesOut(ring: Ring): number {
  let n = 0;
  for (const r of ring.regions) n += r.end - r.start;
  return n;
}

/** Capture memory for one sender: see the file comment. (A 'ring' is one of its buffers.) */
export class CaptureRing {
  private current: Ring | undefined;
  /** Rings replaced while regions of them were out: dropped when the last comes back. */
  private readonly retired = new Set<Ring>();
  /** Bytes in flight just after each of the last {@link RECENT_TAKES} takes. */
  private readonly recent: number[] = [];

  constructor(private readonly o: CaptureRingOptions) {}

  /** Bytes of all rings (current and retired). */
  get capacity(): number {
    let n = this.current?.memory.byteLength ?? 0;
    for (const r of this.retired) n += r.memory.byteLength;
    return n;
  }

  /**
   * Bytes the captures may hold resident: the current ring, and of the retired ones only their regions
   * still out (the rest went back to the system when they were retired).
   */
  get heldBytes(): number {
    let n = this.current?.memory.byteLength ?? 0;
    for (const r of this.retired) n += bytesOut(r);
    return n;
  }

  /** Regions taken and not given back yet. */
  get regionsOut(): number {
    let n = this.current?.regions.length ?? 0;
    for (const r of this.retired) n += r.regions.length;
    return n;
  }

  /**
   * A region of `bytes` (a multiple of the page size) for the next capture: a view over shared
   * memory, to be given back with {@link give}. Its content is what the region last held.
   */
  take(bytes: number): Uint8Array {
    const ps = this.o.pageSize;
    if (!Number.isInteger(bytes) || bytes < 0 || bytes % ps !== 0) {
      throw new RangeError(`capture ring: ${bytes} bytes is not a whole number of ${ps}-byte pages`);
    }
    const inFlight = (this.current === undefined ? 0 : bytesOut(this.current)) + bytes;
    this.recent.push(inFlight);
    if (this.recent.length > RECENT_TAKES) this.recent.shift();
    const wanted = this.sized(Math.max(...this.recent));
    let ring = this.current;
    // far larger than the recent captures need (grown in a backlog): the next ones go to a smaller
    // one, and its memory goes back at once but for its regions still out
    let start =
      ring === undefined || ring.memory.byteLength > SHRINK_ABOVE * wanted ? -1 : this.fit(ring, bytes);
    if (ring === undefined || start < 0) {
      if (ring !== undefined) this.retire(ring);
      ring = { memory: new SharedArrayBuffer(wanted), regions: [] };
      this.current = ring;
      start = 0;
    }
    const region = { start, end: start + bytes };
    const at = ring.regions.findIndex((r) => r.start > start);
    ring.regions.splice(at < 0 ? ring.regions.length : at, 0, region);
    return new Uint8Array(ring.memory, start, bytes);
  }

  /**
   * Gives back a region from {@link take} (or another view of the same bytes): false when it is not
   * one that is out.
   */
  give(view: Uint8Array): boolean {
    const ring =
      this.current?.memory === view.buffer
        ? this.current
        : [...this.retired].find((r) => r.memory === view.buffer);
    const at =
      ring?.regions.findIndex((r) => r.start === view.byteOffset && r.end - r.start === view.byteLength) ??
      -1;
    if (ring === undefined || at < 0) return false;
    ring.regions.splice(at, 1);
    if (ring !== this.current) {
      if (ring.regions.length === 0) {
        this.retired.delete(ring);
        this.drop(ring);
      } else {
        this.o.release?.(view); // a retired ring's memory is not read into again
      }
    }
    return true;
  }

  /** Ring bytes for `inFlight` bytes in flight: a quarter more, in whole pages. */
  private sized(inFlight: number): number {
    const ps = this.o.pageSize;
    return Math.max(ps, Math.ceil((inFlight * HEADROOM) / ps) * ps);
  }

  /** Where `bytes` go in `ring` (see the file comment), or -1 when no gap holds them. */
  private fit(ring: Ring, bytes: number): number {
    const cap = ring.memory.byteLength;
    let best = -1;
    let bestGap = -1;
    for (const [from, to] of gaps(ring)) {
      const gap = to - from;
      if (gap >= bytes && gap > bestGap) {
        bestGap = gap;
        // a gap that ends the buffer (and does not also begin it) fills from its end
        best = to === cap && from > 0 ? cap - bytes : from;
      }
    }
    return best;
  }

  /**
   * Stops taking from `ring`. Of a ring with regions still out, everything else goes back to the system
   * now (and each region as it comes back): while a new ring fills, the old one holds only what the
   * encoder has yet to read, not its whole size as well.
   */
  private retire(ring: Ring): void {
    if (ring.regions.length === 0) {
      this.drop(ring);
      return;
    }
    this.retired.add(ring);
    for (const [from, to] of gaps(ring)) {
      if (to > from) this.o.release?.(new Uint8Array(ring.memory, from, to - from));
    }
  }

  private drop(ring: Ring): void {
    this.o.release?.(new Uint8Array(ring.memory));
    if (this.current === ring) this.current = undefined;
  }
}
