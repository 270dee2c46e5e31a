/**
 * `virsh domstats --dirtyrate` text: one `Domain: 'name'` header per guest, then `key=value` lines.
 * Keys used: `dirtyrate.calc_status` (2 = measured), `dirtyrate.calc_period` (seconds),
 * `dirtyrate.megabytes_per_second` (MiB/s), `dirtyrate.calc_mode`. Pure.
 */
import { RwanError } from '../errors.js';
import type { GuestMeasurements, MeasureMode } from './types.js';

const MiB = 2 ** 20;

/** True when the text looks like `virsh domstats --dirtyrate` output. */
export function looksLikeLibvirt(text: string): boolean {
  return /^\s*dirtyrate\.\w+=/m.test(text);
}

/** Parse domstats text into one guest per domain that has a finished measurement. */
export function parseLibvirtDomstats(text: string, pageSize: number, source: string): GuestMeasurements[] {
  const guests: GuestMeasurements[] = [];
  let current: { name: string; keys: Map<string, string>; line: number } | undefined;
  const finish = () => {
    if (!current) return;
    const g = toGuest(current.name, current.keys, current.line, pageSize, source);
    if (g) guests.push(g);
  };
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    const header = /^Domain:\s*'(.*)'\s*$/.exec(line);
    if (header) {
      finish();
      current = { name: header[1] ?? '', keys: new Map(), line: i + 1 };
      return;
    }
    const kv = /^([\w.]+)=(.*)$/.exec(line);
    if (!kv) {
      throw new RwanError(
        'RWAN_ERR_INVALID_INPUT',
        `${source}:${i + 1}: expected "Domain: 'name'" or key=value`,
        {
          details: { source, line: i + 1, text: line.slice(0, 80) },
        },
      );
    }
    current ??= { name: 'guest', keys: new Map(), line: i + 1 };
    current.keys.set(kv[1] ?? '', kv[2] ?? '');
  });
  finish();
  if (guests.length === 0) {
    throw new RwanError(
      'RWAN_ERR_MISSING_FIELD',
      `${source}: no domain with dirtyrate.calc_status=2 (measured)`,
      {
        details: { source },
      },
    );
  }
  return guests;
}

function toGuest(
  name: string,
  keys: Map<string, string>,
  line: number,
  pageSize: number,
  source: string,
): GuestMeasurements | undefined {
  const status = keys.get('dirtyrate.calc_status');
  if (status === undefined) return undefined; // a domain without dirty-rate stats
  if (status !== '2') return undefined; // unstarted or still measuring
  const num = (key: string) => {
    const text = keys.get(key);
    const value = Number(text);
    if (text === undefined || text.trim() === '' || !Number.isFinite(value) || value < 0) {
      throw new RwanError(
        'RWAN_ERR_INVALID_INPUT',
        `${source}: domain '${name}' (line ${line}) has no valid ${key}`,
        {
          details: { source, domain: name, key, value: text },
        },
      );
    }
    return value;
  };
  const period = num('dirtyrate.calc_period');
  const rate = num('dirtyrate.megabytes_per_second');
  if (period === 0) {
    throw new RwanError('RWAN_ERR_INVALID_INPUT', `${source}: domain '${name}' has dirtyrate.calc_period=0`, {
      details: { source, domain: name },
    });
  }
  const modeText = keys.get('dirtyrate.calc_mode') ?? 'page-sampling';
  const mode: MeasureMode = ['page-sampling', 'dirty-bitmap', 'dirty-ring'].includes(modeText)
    ? (modeText as MeasureMode)
    : 'unknown';
  return {
    name,
    measurements: [
      {
        windowS: period,
        pages: [(rate * MiB * period) / pageSize],
        source: `${source} (libvirt ${modeText})`,
        mode,
      },
    ],
    traces: [],
    notes: [],
  };
}
