/**
 * Xen checkpoints (checkpoint.ts) as remus-wan epochs, and back. An epoch carries pages keyed by pfn,
 * each pfn at most once; a checkpoint may hold a pfn twice (the first pass of `xl remus` is a live
 * migration: its later iterations resend pages dirtied meanwhile) and may be huge (the first pass is
 * the guest's whole memory). So a checkpoint becomes one or more *segments*, cut between PAGE_DATA
 * records where a pfn would repeat or the segment would pass `maxPages`; each segment is one epoch:
 *
 *   guest pages     pfn < XEN_META_PFN, in stream order
 *   meta pages      pfn XEN_META_PFN + i: the segment's header (its checkpoint, whether it ends
 *                   it, its cut points) and its skeleton (every byte that is not a guest page), in
 *                   4096-byte pages, the last one zero-filled. Skeletons of successive checkpoints
 *                   are alike (pfn lists, vCPU and device state), so the codec's delta against the
 *                   previous epoch's meta pages compresses them well.
 *
 * The receiver joins an epoch's pages back into the segment's bytes; the segments of a checkpoint,
 * in order, are its bytes as xl wrote them. Pure.
 */
import { RwanError } from '../errors.js';
import type { XenCheckpoint } from './checkpoint.js';

/** The first pfn of the meta pages: 2^40, far above any guest's memory (4 PiB at 4 KiB pages). */
export const XEN_META_PFN = 2 ** 40;
const PAGE = 4096;
/** Meta header: magic, version, checkpoint, flags, skeleton length, cut count; then the cuts. */
const META_MAGIC = 0x5857534d; // "XWSM"
const META_HEADER = 24;

export interface XenSegment {
  /** The checkpoint it belongs to (XenCheckpoint.index). */
  checkpoint: number;
  /** The last segment of its checkpoint (the epoch whose acknowledgement commits the checkpoint). */
  last: boolean;
  end: XenCheckpoint['end'];
  /** Guest pfns, then meta pfns; as many as pages / 4096. */
  pfns: number[];
  pages: Buffer;
  /** Guest pages in it (the first ones). */
  guestPages: number;
}

/**
 * Cut a checkpoint into segments, no pfn twice in one, each of at most `maxPages` guest pages unless
 * a single PAGE_DATA record (at most 1024 pfns from Xen) holds more: records are not cut.
 */
export function segmentCheckpoint(c: XenCheckpoint, maxPages = 16384): XenSegment[] {
  const out: XenSegment[] = [];
  let skelFrom = 0;
  let pageFrom = 0;
  let cuts: Array<{ at: number; pages: number }> = [];
  let seen = new Set<number>();
  let pageAt = 0;
  const close = (skelTo: number, last: boolean) => {
    const n = pageAt - pageFrom;
    out.push(
      makeSegment(
        c,
        last,
        c.skeleton.subarray(skelFrom, skelTo),
        cuts.map((x) => ({ at: x.at - skelFrom, pages: x.pages })),
        c.pfns.slice(pageFrom, pageAt),
        c.pages.subarray(pageFrom * PAGE, pageAt * PAGE),
        n,
      ),
    );
    skelFrom = skelTo;
    pageFrom = pageAt;
    cuts = [];
    seen = new Set();
  };
  for (const cut of c.cuts) {
    const pfns = c.pfns.slice(pageAt, pageAt + cut.pages);
    if (pageAt > pageFrom && (pageAt - pageFrom + cut.pages > maxPages || pfns.some((p) => seen.has(p)))) {
      close(cut.at, false);
    }
    for (const p of pfns) {
      if (p >= XEN_META_PFN) {
        throw new RwanError(
          'RWAN_ERR_XEN_PAGE_DATA',
          `pfn ${p} is beyond the guest pfns remus-wan carries (2^40)`,
          {
            details: { pfn: p },
          },
        );
      }
      seen.add(p);
    }
    cuts.push(cut);
    pageAt += cut.pages;
  }
  close(c.skeleton.length, c.partial !== true);
  return out;
}

function makeSegment(
  c: XenCheckpoint,
  last: boolean,
  skeleton: Buffer,
  cuts: Array<{ at: number; pages: number }>,
  pfns: number[],
  pages: Buffer,
  guestPages: number,
): XenSegment {
  const metaBytes = META_HEADER + 8 * cuts.length + skeleton.length;
  const metaPages = Math.ceil(metaBytes / PAGE);
  const meta = Buffer.alloc(metaPages * PAGE);
  meta.writeUInt32LE(META_MAGIC, 0);
  meta.writeUInt32LE(1, 4);
  meta.writeUInt32LE(c.index, 8);
  meta.writeUInt32LE((last ? 1 : 0) | ({ checkpoint: 0, migration: 2, trailer: 4 }[c.end] ?? 0), 12);
  meta.writeUInt32LE(skeleton.length, 16);
  meta.writeUInt32LE(cuts.length, 20);
  cuts.forEach((x, i) => {
    meta.writeUInt32LE(x.at, META_HEADER + 8 * i);
    meta.writeUInt32LE(x.pages, META_HEADER + 8 * i + 4);
  });
  skeleton.copy(meta, META_HEADER + 8 * cuts.length);
  return {
    checkpoint: c.index,
    last,
    end: c.end,
    pfns: [...pfns, ...Array.from({ length: metaPages }, (_, i) => XEN_META_PFN + i)],
    pages: Buffer.concat([pages, meta]),
    guestPages,
  };
}

/**
 * A segment's bytes from its epoch's pages, as the receiver decoded them (pfns and pages in the
 * order they were encoded).
 * @throws RwanError RWAN_ERR_XEN_RECORD when the meta pages are not a segment's
 */
export function joinSegment(
  pfns: ArrayLike<number>,
  pages: Buffer,
): { checkpoint: number; last: boolean; end: XenCheckpoint['end']; bytes: Buffer } {
  let guest = 0;
  while (guest < pfns.length && (pfns[guest] as number) < XEN_META_PFN) guest++;
  const meta = pages.subarray(guest * PAGE);
  const bad = (why: string): never => {
    throw new RwanError('RWAN_ERR_XEN_RECORD', `not a Xen segment: ${why}`);
  };
  if (meta.length < META_HEADER || meta.readUInt32LE(0) !== META_MAGIC) bad('no meta header');
  if (meta.readUInt32LE(4) !== 1) bad(`meta version ${meta.readUInt32LE(4)}`);
  const flags = meta.readUInt32LE(12);
  const skelLength = meta.readUInt32LE(16);
  const n = meta.readUInt32LE(20);
  if (META_HEADER + 8 * n + skelLength > meta.length) bad('meta pages too short');
  const skeleton = meta.subarray(META_HEADER + 8 * n, META_HEADER + 8 * n + skelLength);
  const parts: Buffer[] = [];
  let from = 0;
  let page = 0;
  for (let i = 0; i < n; i++) {
    const at = meta.readUInt32LE(META_HEADER + 8 * i);
    const count = meta.readUInt32LE(META_HEADER + 8 * i + 4);
    if (at < from || at > skelLength || page + count > guest) bad(`cut ${i} out of range`);
    parts.push(skeleton.subarray(from, at), pages.subarray(page * PAGE, (page + count) * PAGE));
    from = at;
    page += count;
  }
  if (page !== guest) bad(`${guest} guest pages, the cuts place ${page}`);
  parts.push(skeleton.subarray(from));
  return {
    checkpoint: meta.readUInt32LE(8),
    last: (flags & 1) !== 0,
    end: flags & 4 ? 'trailer' : flags & 2 ? 'migration' : 'checkpoint',
    bytes: Buffer.concat(parts),
  };
}
