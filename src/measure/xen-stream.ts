/**
 * Per-checkpoint sizes of a captured Xen stream (what `xl remus` wrote: src/xen), as a planner input:
 * one row per checkpoint, in the per-window counts shape the planner reads (trace-file.ts): the pages
 * the checkpoint carried (`dirtyPages`, pfns with data), the checkpoint interval as its window
 * (`epochMs`: the stream has no clock, `xl remus -i` gives it), the first pass marked `full` (every
 * page: left out as a dirty-rate sample), and the bytes: pages, everything else (`deviceStateBytes`:
 * vCPU and device-model state, emulator records, static records), the whole checkpoint on the wire.
 * Pure: items in, rows out.
 */
import { type Endian, itemBytes, LibxcRecord, LibxlRecord, type XenItem } from '../xen/format.js';
import { parsePageData } from '../xen/page-data.js';

export interface XenCheckpointRow {
  checkpoint: number;
  /** The first pass: every page (a full copy, not a dirty-rate sample). */
  full: boolean;
  epochMs: number;
  /** Pages with data in the checkpoint's PAGE_DATA records. */
  dirtyPages: number;
  /** Pfns without data (ballooned, broken, invalid). */
  emptyPfns: number;
  pageBytes: number;
  /** Bytes of every record but PAGE_DATA (headers and padding included): the state besides memory. */
  deviceStateBytes: number;
  /** Every byte of the checkpoint as xl wrote it. */
  streamBytes: number;
}

export class XenStreamStats {
  private endian: Endian = 'le';
  private pageSize = 4096;
  private row: XenCheckpointRow;
  readonly rows: XenCheckpointRow[] = [];

  constructor(private readonly epochMs: number) {
    this.row = this.fresh(0);
  }

  private fresh(checkpoint: number): XenCheckpointRow {
    return {
      checkpoint,
      full: checkpoint === 0,
      epochMs: this.epochMs,
      dirtyPages: 0,
      emptyPfns: 0,
      pageBytes: 0,
      deviceStateBytes: 0,
      streamBytes: 0,
    };
  }

  /** Count an item, in stream order. */
  add(item: XenItem): void {
    const r = this.row;
    const bytes = itemBytes(item);
    r.streamBytes += bytes;
    if (item.kind === 'libxc-header') {
      this.endian = item.options & 1 ? 'be' : 'le';
      this.pageSize = 2 ** item.pageShift;
    }
    if (item.kind !== 'libxc-record' && item.kind !== 'libxl-record') {
      r.deviceStateBytes += bytes;
      return;
    }
    if (item.kind === 'libxc-record' && item.type === LibxcRecord.PAGE_DATA) {
      const b = parsePageData(item.body, this.endian, this.pageSize);
      const withData = b.slot.filter((s) => s >= 0).length;
      r.dirtyPages += withData;
      r.emptyPfns += b.pfns.length - withData;
      r.pageBytes += withData * this.pageSize;
      r.deviceStateBytes += bytes - withData * this.pageSize;
    } else {
      r.deviceStateBytes += bytes;
    }
    if (item.kind === 'libxl-record' && item.type === LibxlRecord.CHECKPOINT_END) {
      this.rows.push(r);
      this.row = this.fresh(r.checkpoint + 1);
    }
  }

  /** What was counted after the last CHECKPOINT_END (a migration's tail, or a partial checkpoint). */
  get pending(): XenCheckpointRow {
    return this.row;
  }
}
