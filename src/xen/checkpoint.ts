/**
 * A Xen stream cut into checkpoints, each split into what the page codec carries and what travels as
 * opaque bytes, and joined back byte for byte:
 *
 *   pages     the 4096-byte pages of the checkpoint's PAGE_DATA records, in stream order, with their
 *             pfns (the codec keys its page cache, deltas and duplicates by pfn)
 *   skeleton  every other byte of the checkpoint exactly as xl wrote it (headers, every record, the
 *             PAGE_DATA record headers, counts and pfn lists), with the page bytes cut out
 *   cuts      where in the skeleton the pages go back: (offset, number of pages), one per PAGE_DATA
 *
 * Joining needs no parsing: skeleton bytes up to each cut, then that many pages. A checkpoint ends at
 * libxl CHECKPOINT_END; the first one also holds the headers and the whole first pass; a migration's
 * last one ends at libxl END, and what xl writes after that END comes as a `trailer` of its own. Pure.
 */
import { type Endian, LibxcRecord, LibxlRecord, pageHasData, type XenItem } from './format.js';
import { parsePageData } from './page-data.js';
import { XenStreamWriter } from './writer.js';

export interface XenCheckpoint {
  /** 0: the headers and the first pass; n: the n-th checkpoint after it. */
  index: number;
  skeleton: Buffer;
  cuts: Array<{ at: number; pages: number }>;
  pfns: number[];
  /** The pages, one after the other (pfns.length × pageSize bytes). */
  pages: Buffer;
  /** How it ends: at CHECKPOINT_END, at a migration's libxl END, or it is the bytes after that END. */
  end: 'checkpoint' | 'migration' | 'trailer';
  /** A first part of the checkpoint, cut before its end (cut()): the rest comes in a later one. */
  partial?: boolean;
}

/** Groups a reader's items into checkpoints and splits each (XenStreamReader → XenCheckpointer). */
export class XenCheckpointer {
  private readonly writer = new XenStreamWriter();
  private endian: Endian = 'le';
  private pageSize = 4096;
  private index = 0;
  private skeleton: Buffer[] = [];
  private skeletonBytes = 0;
  private cuts: XenCheckpoint['cuts'] = [];
  private pfns: number[] = [];
  private pages: Buffer[] = [];

  /** Add items in stream order; returns the checkpoints they complete. */
  push(items: Iterable<XenItem>): XenCheckpoint[] {
    const done: XenCheckpoint[] = [];
    for (const item of items) {
      if (item.kind === 'trailer') {
        done.push({
          index: this.index++,
          skeleton: item.bytes,
          cuts: [],
          pfns: [],
          pages: Buffer.alloc(0),
          end: 'trailer',
        });
        continue;
      }
      const bytes = this.writer.encode(item);
      if (item.kind === 'libxc-header') {
        this.endian = item.options & 1 ? 'be' : 'le';
        this.pageSize = 2 ** item.pageShift;
      }
      if (item.kind === 'libxc-record' && item.type === LibxcRecord.PAGE_DATA) {
        const b = parsePageData(item.body, this.endian, this.pageSize);
        const head = 16 + 8 * b.pfns.length; // record header, count, reserved, pfns
        this.add(bytes.subarray(0, head));
        const withData = b.pfns.filter((_, i) => pageHasData(b.types[i] as number));
        this.cuts.push({ at: this.skeletonBytes, pages: withData.length });
        this.pfns.push(...withData);
        this.pages.push(b.data);
        this.add(bytes.subarray(head + b.data.length)); // the padding (none: pages are 8-aligned)
      } else {
        this.add(bytes);
      }
      if (
        item.kind === 'libxl-record' &&
        (item.type === LibxlRecord.CHECKPOINT_END || item.type === LibxlRecord.END)
      ) {
        done.push(this.take(item.type === LibxlRecord.END ? 'migration' : 'checkpoint'));
        this.index++;
      }
    }
    return done;
  }

  /**
   * What was added since the last checkpoint ended (or the last cut), as a part of the checkpoint in
   * progress; undefined when nothing was. The rest of that checkpoint comes in the part or
   * checkpoint that follows.
   */
  cut(): XenCheckpoint | undefined {
    if (this.skeletonBytes === 0 && this.pages.length === 0) return undefined;
    return { ...this.take('checkpoint'), partial: true };
  }

  /** What was buffered, as checkpoint `index` ending so; the buffers start empty again. */
  private take(end: XenCheckpoint['end']): XenCheckpoint {
    const c: XenCheckpoint = {
      index: this.index,
      skeleton: Buffer.concat(this.skeleton),
      cuts: this.cuts,
      pfns: this.pfns,
      pages: Buffer.concat(this.pages),
      end,
    };
    this.skeleton = [];
    this.skeletonBytes = 0;
    this.cuts = [];
    this.pfns = [];
    this.pages = [];
    return c;
  }

  private add(b: Buffer): void {
    if (b.length === 0) return;
    this.skeleton.push(b);
    this.skeletonBytes += b.length;
  }
}

/**
 * The checkpoint's bytes as xl wrote them: the skeleton with the pages put back at their cuts.
 * @param pageSize bytes per page (4096 for x86)
 */
export function joinCheckpoint(
  c: Pick<XenCheckpoint, 'skeleton' | 'cuts' | 'pages'>,
  pageSize = 4096,
): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  let page = 0;
  for (const cut of c.cuts) {
    parts.push(
      c.skeleton.subarray(from, cut.at),
      c.pages.subarray(page * pageSize, (page + cut.pages) * pageSize),
    );
    from = cut.at;
    page += cut.pages;
  }
  if (page * pageSize !== c.pages.length)
    throw new RangeError(`the cuts take ${page} pages, the checkpoint has ${c.pages.length / pageSize}`);
  parts.push(c.skeleton.subarray(from));
  return Buffer.concat(parts);
}
