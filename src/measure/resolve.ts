/**
 * Turns a fleet document (from a file, or built from command-line options) into the planner's inputs:
 * every quantity parsed with its unit, every referenced measurement file loaded and merged, defaults
 * filled in. Errors name the field (`guests.2.measurements.0.rate`) they come from.
 */
import { dirname, resolve as resolvePath } from 'node:path';
import { RwanError } from '../errors.js';
import {
  DEFAULT_EPOCHS_S,
  DEFAULT_LINK,
  DEFAULT_PAGE_SIZE,
  DEFAULT_POLICY,
  SEARCH_RANGE,
} from '../planner/defaults.js';
import { rttFromDistance } from '../planner/tcp.js';
import type { GuestSpec, LinkSpec, Policy } from '../planner/types.js';
import {
  logSpace,
  parseBytes,
  parseCount,
  parseDistanceKm,
  parseDuration,
  parseEpochs,
  parseFraction,
  parseRate,
  parseRatio,
} from '../units.js';
import { sampleCompressionFile } from './compression.js';
import type { FleetFileData, GuestEntryData, LinkEntryData, PolicyEntryData } from './fleet-file.js';
import { loadInput } from './inputs.js';
import type { GuestMeasurements, MeasureMode, Measurement } from './types.js';

/** Planner inputs resolved from a fleet document. */
export interface Resolved {
  guests: GuestSpec[];
  link: LinkSpec;
  policy: Policy;
}

const str = (v: string | number) => String(v);

/**
 * Resolve a fleet document.
 * @param baseDir directory that relative file names in the document are relative to
 */
export async function resolveFleet(doc: FleetFileData, baseDir: string): Promise<Resolved> {
  const link = resolveLink(doc.link ?? {});
  const policy = resolvePolicy(doc.policy ?? {});
  const guests: GuestSpec[] = [];
  for (const [i, entry] of doc.guests.entries()) {
    guests.push(...(await resolveGuest(entry, `guests.${i}`, baseDir, doc.guests.length === 1)));
  }
  const names = new Set<string>();
  for (const g of guests) {
    if (names.has(g.name)) {
      throw new RwanError('RWAN_ERR_INVALID_INPUT', `two guests are named ${JSON.stringify(g.name)}`, {
        details: { name: g.name },
      });
    }
    names.add(g.name);
  }
  return { guests, link, policy };
}

/** Resolve the link; bandwidth and one of rtt/distance are required. */
export function resolveLink(l: LinkEntryData): LinkSpec {
  if (l.bandwidth === undefined) {
    throw new RwanError(
      'RWAN_ERR_MISSING_FIELD',
      'the link needs a bandwidth: --bandwidth 100Mbit/s (or link.bandwidth)',
      {
        details: { field: 'link.bandwidth' },
      },
    );
  }
  if (l.rtt !== undefined && l.distance !== undefined) {
    throw new RwanError('RWAN_ERR_USAGE', 'give the RTT or the distance, not both', {
      details: { field: 'link.rtt' },
    });
  }
  if (l.rtt === undefined && l.distance === undefined) {
    throw new RwanError(
      'RWAN_ERR_MISSING_FIELD',
      'the link needs an RTT (--rtt 25ms) or a fibre route length (--distance 1200km)',
      {
        details: { field: 'link.rtt' },
      },
    );
  }
  const distanceKm =
    l.distance === undefined ? undefined : parseDistanceKm(str(l.distance), { what: 'link.distance' });
  const spec: LinkSpec = {
    ...DEFAULT_LINK,
    bandwidthBps: parseRate(str(l.bandwidth), { what: 'link.bandwidth' }),
    rttS:
      distanceKm === undefined
        ? parseDuration(str(l.rtt ?? ''), { what: 'link.rtt', allowZero: true })
        : rttFromDistance(distanceKm),
    rttSource: distanceKm === undefined ? 'given' : 'distance',
  };
  if (distanceKm !== undefined) spec.distanceKm = distanceKm;
  if (l.loss !== undefined) spec.loss = parseFraction(str(l.loss), { what: 'link.loss' });
  if (spec.loss >= 1)
    throw new RwanError('RWAN_ERR_INVALID_VALUE', 'link.loss must be below 100 %', {
      details: { field: 'link.loss' },
    });
  if (l.mss !== undefined) spec.mssBytes = l.mss;
  if (l.channels !== undefined) spec.channels = l.channels;
  if (l.tcpWindow !== undefined)
    spec.tcpWindowBytes = parseBytes(str(l.tcpWindow), { what: 'link.tcpWindow' });
  if (l.cc !== undefined) spec.cc = l.cc;
  return spec;
}

/** Resolve the policy, filling defaults. */
export function resolvePolicy(p: PolicyEntryData): Policy {
  const policy: Policy = {
    ...DEFAULT_POLICY,
    epochsS: p.epoch === undefined ? DEFAULT_EPOCHS_S : parseEpochs(p.epoch, { what: 'policy.epoch' }),
    searchEpochsS: logSpace(SEARCH_RANGE.fromS, SEARCH_RANGE.toS, SEARCH_RANGE.points),
  };
  if (p.mode !== undefined) policy.mode = p.mode;
  if (p.latencyBudget !== undefined)
    policy.latencyBudgetS = parseDuration(p.latencyBudget, { what: 'policy.latencyBudget' });
  if (p.budgetStat !== undefined) policy.budgetStat = p.budgetStat;
  if (p.headroom !== undefined) {
    policy.headroom = parseFraction(str(p.headroom), { what: 'policy.headroom' });
    if (policy.headroom >= 1) {
      throw new RwanError('RWAN_ERR_INVALID_VALUE', 'policy.headroom must be below 100 %', {
        details: { field: 'policy.headroom' },
      });
    }
  }
  if (p.pause !== undefined) {
    const [base, perPage, extra] = p.pause.split(',').map((s) => s.trim());
    if (base === undefined || perPage === undefined || extra !== undefined) {
      throw new RwanError(
        'RWAN_ERR_INVALID_UNIT',
        `policy.pause: expected BASE,PER_PAGE such as 0.6ms,3.7us, got ${JSON.stringify(p.pause)}`,
        {
          details: { field: 'policy.pause', value: p.pause },
        },
      );
    }
    policy.pause = {
      baseS: parseDuration(base, { what: 'policy.pause base', allowZero: true }),
      perPageS: parseDuration(perPage, { what: 'policy.pause per page', allowZero: true }),
    };
  }
  if (p.framing !== undefined) policy.framingBytes = p.framing;
  if (p.percentile !== undefined) policy.percentile = p.percentile;
  if (p.inFlight !== undefined) policy.inFlight = p.inFlight;
  if (p.copiesBelow !== undefined) {
    policy.copiesBelowBytes =
      p.copiesBelow.trim() === 'off' ? 0 : parseBytes(p.copiesBelow, { what: 'policy.copiesBelow' });
  }
  if (p.maxPause !== undefined)
    policy.maxPauseFraction = parseFraction(str(p.maxPause), { what: 'policy.maxPause' });
  // A sweep's own points are the candidates; a single epoch or a list also searches the default grid.
  if (p.epoch?.includes('..')) policy.searchEpochsS = [];
  return policy;
}

async function resolveGuest(
  entry: GuestEntryData,
  path: string,
  baseDir: string,
  only: boolean,
): Promise<GuestSpec[]> {
  const pageSize =
    entry.pageSize === undefined
      ? DEFAULT_PAGE_SIZE
      : parseBytes(str(entry.pageSize), { what: `${path}.pageSize` });
  if (!Number.isInteger(pageSize)) {
    throw new RwanError('RWAN_ERR_INVALID_VALUE', `${path}.pageSize must be a whole number of bytes`, {
      details: { field: `${path}.pageSize` },
    });
  }
  const inline = (entry.measurements ?? []).map((m, j) =>
    inlineMeasurement(m, `${path}.measurements.${j}`, pageSize),
  );
  const loaded: GuestMeasurements[] = [];
  for (const file of entry.files ?? [])
    loaded.push(...(await loadInput(resolvePath(baseDir, file), pageSize)));

  // A libvirt file with several domains, given alone, is a fleet of its own.
  const named = loaded.filter((g) => g.name !== undefined);
  if (only && inline.length === 0 && named.length > 1 && named.length === loaded.length) {
    return Promise.all(
      named.map((g) => toSpec({ ...entry, name: g.name as string }, [g], [], pageSize, path, baseDir)),
    );
  }
  const own = named.length > 1 ? loaded.filter((g) => g.name === undefined || g.name === entry.name) : loaded;
  const name = entry.name === '' ? (named[0]?.name ?? 'guest') : entry.name;
  return [await toSpec({ ...entry, name }, own, inline, pageSize, path, baseDir)];
}

async function toSpec(
  entry: GuestEntryData,
  loaded: GuestMeasurements[],
  inline: Measurement[],
  pageSize: number,
  path: string,
  baseDir: string,
): Promise<GuestSpec> {
  const measurements = [...inline, ...loaded.flatMap((g) => g.measurements)];
  const traces = loaded.flatMap((g) => g.traces);
  if (measurements.length === 0 && traces.length === 0) {
    throw new RwanError(
      'RWAN_ERR_MISSING_FIELD',
      `guest ${JSON.stringify(entry.name)} has no measurements: give --dirty-rate RATE@WINDOW, --dirty-pages N@WINDOW or a measurement file`,
      { details: { field: `${path}.measurements` } },
    );
  }
  const filePageSize = loaded.find((g) => g.pageSize !== undefined)?.pageSize;
  if (filePageSize !== undefined && entry.pageSize === undefined && filePageSize !== pageSize) {
    throw new RwanError(
      'RWAN_ERR_INVALID_INPUT',
      `${path}: a measurement file says the page size is ${filePageSize}; set pageSize to match`,
      {
        details: { field: `${path}.pageSize` },
      },
    );
  }
  let memoryCompression = 1;
  let compressionSource = 'none';
  if (entry.compression !== undefined) {
    memoryCompression = parseRatio(str(entry.compression), { what: `${path}.compression` });
    compressionSource = 'given';
  } else if (entry.samplePages !== undefined) {
    const sample = await sampleCompressionFile(resolvePath(baseDir, entry.samplePages), pageSize);
    memoryCompression = sample.ratio;
    compressionSource = sample.source;
  } else {
    const measured = loaded.find((g) => g.compression)?.compression;
    if (measured) {
      memoryCompression = measured.ratio;
      compressionSource = measured.source;
    }
  }
  const memoryBytes =
    entry.memory !== undefined
      ? parseBytes(str(entry.memory), { what: `${path}.memory` })
      : loaded.find((g) => g.memoryBytes)?.memoryBytes;
  const spec: GuestSpec = {
    name: entry.name,
    pageSize,
    measurements,
    traces,
    diskWriteBps:
      entry.diskWrite === undefined
        ? 0
        : parseRate(str(entry.diskWrite), { what: `${path}.diskWrite`, allowZero: true }),
    deviceStateBytes:
      entry.deviceState === undefined
        ? (loaded.find((g) => g.deviceStateBytes !== undefined)?.deviceStateBytes ?? 0)
        : parseBytes(str(entry.deviceState), { what: `${path}.deviceState`, allowZero: true }),
    memoryCompression,
    diskCompression:
      entry.diskCompression === undefined
        ? 1
        : parseRatio(str(entry.diskCompression), { what: `${path}.diskCompression` }),
    compressionSource,
    processingPerPageS: loaded.find((g) => g.processing)?.processing?.perPageS ?? 0,
    processingSource: loaded.find((g) => g.processing)?.processing?.source ?? 'none',
    model: entry.model ?? 'auto',
  };
  if (memoryBytes !== undefined) spec.memoryBytes = memoryBytes;
  const hedging = loaded.find((g) => g.hedging)?.hedging;
  if (hedging) spec.hedging = hedging;
  const backup = loaded.find((g) => g.backupProcessing)?.backupProcessing;
  if (backup) spec.backupProcessing = backup;
  const sending = loaded.find((g) => g.sending)?.sending;
  if (sending) spec.sending = sending;
  if (entry.priority !== undefined) spec.priority = entry.priority;
  return spec;
}

function inlineMeasurement(
  m: {
    window: string;
    rate?: string | undefined;
    pages?: number | undefined;
    samples?: number[] | undefined;
    mode?: string | undefined;
  },
  path: string,
  pageSize: number,
): Measurement {
  const windowS = parseDuration(m.window, { what: `${path}.window` });
  const given = [m.rate, m.pages, m.samples].filter((v) => v !== undefined).length;
  if (given !== 1) {
    throw new RwanError('RWAN_ERR_INVALID_INPUT', `${path}: give exactly one of rate, pages, samples`, {
      details: { field: path },
    });
  }
  const mode = (m.mode ?? 'given') as MeasureMode;
  if (m.rate !== undefined) {
    const bps = parseRate(m.rate, { what: `${path}.rate`, allowZero: true });
    return { windowS, pages: [(bps * windowS) / pageSize], source: `${m.rate}@${m.window}`, mode };
  }
  const pages = m.samples ?? [m.pages as number];
  return {
    windowS,
    pages,
    source: `${pages.length > 1 ? `${pages.length} samples` : pages[0]} pages@${m.window}`,
    mode,
  };
}

/** Parse `--dirty-pages N@WINDOW` into a measurement entry (the count must be a whole number). */
export function pagesEntry(value: string, window: string): { window: string; pages: number } {
  return { window, pages: parseCount(value, { what: '--dirty-pages', allowZero: true }) };
}

/** Directory relative paths in a fleet file are resolved against. */
export function baseDirOf(file: string): string {
  return dirname(resolvePath(file));
}
