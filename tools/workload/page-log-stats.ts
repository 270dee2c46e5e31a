/**
 * Statistics of a page log (docs/page-log.md), to compare a synthetic workload with a captured one.
 *
 *   node dist/tools/workload/page-log-stats.js FILE [--json]
 *
 * Epoch 0 is treated as the initial memory when it is the first epoch. For every later dirty page whose
 * previous content is known (it appeared in an earlier epoch), the bytes that changed are counted
 * (the XOR with the previous content, what an XBZRLE-style delta encodes).
 */
import { parseArgs } from 'node:util';
import { isRwanError } from '../../src/errors.js';
import { PageLogReader } from './page-log.js';

/** What {@link pageLogStats} reports. */
export interface PageLogStats {
  pageSize: number;
  meta: Record<string, unknown> | null;
  epochs: number;
  /** Pages of epoch 0 (0 when the log has none). */
  initialPages: number;
  initialZeroShare: number;
  /** Over the epochs after epoch 0. */
  dirtyPerEpoch: { mean: number; min: number; median: number; max: number };
  /** Share of dirty pages that are all zero. */
  zeroShare: number;
  /** Share of dirty pages seen for the first time (no previous content). */
  firstSeenShare: number;
  /** Among dirty pages with a previous content: share whose XOR has fewer than 16 / 64 / 256 changed bytes. */
  xorUnder16Share: number;
  xorUnder64Share: number;
  xorUnder256Share: number;
  /** Among them: share with more than half the page changed. */
  xorOverHalfShare: number;
  meanChangedBytes: number;
  /** Share of all dirty-page appearances that fall on the 1 % most often dirtied pages. */
  top1PercentShare: number;
  /** Distinct pages dirtied at least once after epoch 0. */
  distinctDirty: number;
}

/** Streams the page log at `path` once and computes its statistics. */
export function pageLogStats(path: string): PageLogStats {
  const reader = PageLogReader.open(path);
  const ps = reader.header.pageSize;
  const last = new Map<number, Buffer>(); // previous content of every page seen
  const freq = new Map<number, number>();
  const counts: number[] = [];
  let epochs = 0;
  let initialPages = 0;
  let initialZero = 0;
  let dirty = 0;
  let zero = 0;
  let first = 0;
  let compared = 0;
  let under16 = 0;
  let under64 = 0;
  let under256 = 0;
  let overHalf = 0;
  let changedTotal = 0;
  const zeroPage = Buffer.alloc(ps);
  for (const e of reader) {
    const initial = epochs === 0 && e.epoch === 0;
    epochs++;
    if (!initial) counts.push(e.pfns.length);
    for (let i = 0; i < e.pfns.length; i++) {
      const pfn = e.pfns[i] as number;
      const page = e.pages.subarray(i * ps, (i + 1) * ps);
      const isZero = page.equals(zeroPage);
      if (initial) {
        initialPages++;
        if (isZero) initialZero++;
      } else {
        dirty++;
        if (isZero) zero++;
        freq.set(pfn, (freq.get(pfn) ?? 0) + 1);
        const prev = last.get(pfn);
        if (prev === undefined) first++;
        else {
          let c = 0;
          for (let j = 0; j < ps; j++) if (prev[j] !== page[j]) c++;
          compared++;
          changedTotal += c;
          if (c < 16) under16++;
          if (c < 64) under64++;
          if (c < 256) under256++;
          if (c > ps / 2) overHalf++;
        }
      }
      const slot = last.get(pfn);
      if (slot === undefined) last.set(pfn, Buffer.from(page));
      else page.copy(slot);
    }
  }
  const sorted = [...counts].sort((a, b) => a - b);
  const f = [...freq.values()].sort((a, b) => b - a);
  const top = Math.max(1, Math.ceil(f.length / 100));
  const topSum = f.slice(0, top).reduce((a, b) => a + b, 0);
  const share = (n: number, d: number): number => (d === 0 ? 0 : n / d);
  return {
    pageSize: ps,
    meta: reader.header.meta,
    epochs,
    initialPages,
    initialZeroShare: share(initialZero, initialPages),
    dirtyPerEpoch: {
      mean: share(dirty, counts.length),
      min: sorted[0] ?? 0,
      median: sorted[Math.floor(sorted.length / 2)] ?? 0,
      max: sorted[sorted.length - 1] ?? 0,
    },
    zeroShare: share(zero, dirty),
    firstSeenShare: share(first, dirty),
    xorUnder16Share: share(under16, compared),
    xorUnder64Share: share(under64, compared),
    xorUnder256Share: share(under256, compared),
    xorOverHalfShare: share(overHalf, compared),
    meanChangedBytes: share(changedTotal, compared),
    top1PercentShare: share(topSum, dirty),
    distinctDirty: f.length,
  };
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { json: { type: 'boolean', default: false } },
  });
  const path = positionals[0];
  if (path === undefined || positionals.length > 1) {
    process.stderr.write('usage: page-log-stats FILE [--json]\n');
    process.exitCode = 2;
    return;
  }
  try {
    const s = pageLogStats(path);
    if (values.json) {
      process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
      return;
    }
    const pct = (x: number): string => `${(100 * x).toFixed(1)} %`;
    const d = s.dirtyPerEpoch;
    process.stdout.write(
      `${[
        `${path}: page size ${s.pageSize}, ${s.epochs} epochs`,
        `initial memory (epoch 0): ${s.initialPages} pages, ${pct(s.initialZeroShare)} zero`,
        `dirty pages per epoch: mean ${d.mean.toFixed(0)}, min ${d.min}, median ${d.median}, max ${d.max}`,
        `dirty pages: ${pct(s.zeroShare)} zero, ${pct(s.firstSeenShare)} seen for the first time, ${s.distinctDirty} distinct`,
        `XOR with the previous content: < 16 B changed ${pct(s.xorUnder16Share)}, < 64 B ${pct(s.xorUnder64Share)}, ` +
          `< 256 B ${pct(s.xorUnder256Share)}, > half the page ${pct(s.xorOverHalfShare)}; mean ${s.meanChangedBytes.toFixed(0)} B`,
        `skew: the 1 % most often dirtied pages take ${pct(s.top1PercentShare)} of the dirty-page appearances`,
      ].join('\n')}\n`,
    );
  } catch (err) {
    if (!isRwanError(err)) throw err;
    process.stderr.write(`${err.message} [${err.code}]\n`);
    process.exitCode = err.exitCode;
  }
}

if (process.argv[1]?.endsWith('page-log-stats.js')) main();
