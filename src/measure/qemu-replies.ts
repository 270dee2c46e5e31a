/**
 * Saved QEMU dirty-rate results: `query-dirty-rate` replies (QMP, any release: `calc-time` in seconds,
 * or with `calc-time-unit` "second"/"millisecond" since 8.2) and the HMP `info dirty_rate` text.
 * A file may hold one reply, a JSON array of replies, one reply per line, or a QMP transcript whose
 * lines start with `<-`/`->`. Pure: text in, measurements out.
 */
import { RwanError } from '../errors.js';
import type { MeasureMode, Measurement } from './types.js';

const MiB = 2 ** 20;

/** True when the text looks like QEMU dirty-rate output. */
export function looksLikeQemu(text: string): boolean {
  return /"dirty-rate"|"calc-time"|^\s*Dirty rate:/m.test(text);
}

/**
 * Parse saved QEMU dirty-rate results.
 * @param pageSize guest page size in bytes, to turn MiB/s into pages
 */
export function parseQemuDirtyRate(text: string, pageSize: number, source: string): Measurement[] {
  if (/^\s*Dirty rate:/m.test(text)) return parseHmp(text, pageSize, source);
  const replies = jsonValues(text, source);
  const out: Measurement[] = [];
  replies.forEach((value, index) => {
    const info = unwrap(value);
    if (info === undefined) return; // other QMP traffic in a transcript ({"return": {}}, events)
    const where = { source, reply: index + 1 };
    if (info.status !== 'measured') {
      if (info.status === 'measuring' || info.status === 'unstarted') return;
      throw new RwanError('RWAN_ERR_INVALID_INPUT', `${source}: reply ${index + 1} has an unknown status`, {
        details: { ...where, status: info.status },
      });
    }
    const rate = info['dirty-rate'];
    const calcTime = info['calc-time'];
    if (typeof rate !== 'number' || !(rate >= 0) || typeof calcTime !== 'number' || !(calcTime > 0)) {
      throw new RwanError(
        'RWAN_ERR_INVALID_INPUT',
        `${source}: reply ${index + 1} needs a numeric dirty-rate ≥ 0 and calc-time > 0`,
        {
          details: where,
        },
      );
    }
    const unit = info['calc-time-unit'] ?? 'second';
    if (unit !== 'second' && unit !== 'millisecond') {
      throw new RwanError(
        'RWAN_ERR_INVALID_INPUT',
        `${source}: unknown calc-time-unit ${JSON.stringify(unit)}`,
        { details: where },
      );
    }
    const windowS = unit === 'millisecond' ? calcTime / 1000 : calcTime;
    out.push({
      windowS,
      pages: [(rate * MiB * windowS) / pageSize],
      source: `${source} (qemu ${String(info.mode ?? 'page-sampling')})`,
      mode: modeOf(info.mode),
    });
  });
  if (out.length === 0) {
    throw new RwanError(
      'RWAN_ERR_MISSING_FIELD',
      `${source}: no finished ("measured") dirty-rate result in the file`,
      {
        details: { source },
      },
    );
  }
  return out;
}

interface DirtyRateInfo {
  status?: unknown;
  'dirty-rate'?: unknown;
  'calc-time'?: unknown;
  'calc-time-unit'?: unknown;
  mode?: unknown;
}

function unwrap(value: unknown): DirtyRateInfo | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const inner = 'return' in v ? v.return : v;
  if (typeof inner !== 'object' || inner === null || !('status' in inner)) return undefined;
  return inner as DirtyRateInfo;
}

function modeOf(mode: unknown): MeasureMode {
  return mode === 'dirty-bitmap' || mode === 'dirty-ring' || mode === 'page-sampling' || mode === undefined
    ? ((mode ?? 'page-sampling') as MeasureMode)
    : 'unknown';
}

/** JSON values from a document, an array, NDJSON, or a `<-`/`->` transcript. */
export function jsonValues(text: string, source: string): unknown[] {
  const trimmed = text.trim();
  try {
    const whole: unknown = JSON.parse(trimmed);
    return Array.isArray(whole) ? whole : [whole];
  } catch {
    // fall through to one value per line
  }
  const values: unknown[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.replace(/^\s*(<-|->)\s*/, '').trim();
    if (line === '' || line.startsWith('#')) return;
    try {
      values.push(JSON.parse(line));
    } catch (cause) {
      throw new RwanError('RWAN_ERR_INVALID_INPUT', `${source}:${i + 1}: not JSON`, {
        cause,
        details: { source, line: i + 1 },
      });
    }
  });
  return values;
}

function parseHmp(text: string, pageSize: number, source: string): Measurement[] {
  // One block per `info dirty_rate`; blocks start at "Status:".
  const blocks = text.split(/(?=^\s*Status:)/m).filter((b) => /Dirty rate:/.test(b));
  return blocks.map((block, i) => {
    const status = /Status:\s*(\S+)/.exec(block)?.[1];
    const period = /Period:\s*([\d.]+)\s*\((sec|ms)\)/.exec(block);
    const rate = /^\s*Dirty rate:\s*([\d.]+)\s*\(MB\/s\)/m.exec(block);
    const mode = /Mode:\s*(\S+)/.exec(block)?.[1];
    if (status !== 'measured' || !period || !rate) {
      throw new RwanError(
        'RWAN_ERR_INVALID_INPUT',
        `${source}: HMP block ${i + 1} is not a finished measurement with Period and Dirty rate`,
        {
          details: { source, block: i + 1 },
        },
      );
    }
    const windowS = Number(period[1]) / (period[2] === 'ms' ? 1000 : 1);
    return {
      windowS,
      pages: [(Number(rate[1]) * MiB * windowS) / pageSize],
      source: `${source} (qemu hmp ${mode ?? ''})`.replace(' )', ')'),
      mode: modeOf(mode),
    };
  });
}
