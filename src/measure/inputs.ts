/**
 * Reads measurement files and recognises their format by content, so an operator can pass whatever
 * the measuring tool wrote: QEMU replies or HMP text, `virsh domstats --dirtyrate`, traces, remus-wan
 * stats, or the file `remus-plan measure qmp` writes.
 */
import { readFile } from 'node:fs/promises';
import { RwanError } from '../errors.js';
import { looksLikeFleet } from './fleet-file.js';
import { looksLikeLibvirt, parseLibvirtDomstats } from './libvirt.js';
import { jsonValues, looksLikeQemu, parseQemuDirtyRate } from './qemu-replies.js';
import { looksLikeTrace, parseTrace } from './trace-file.js';
import { emptyGuest, type GuestMeasurements, type MeasurementFile } from './types.js';

/** Formats `detectFormat` recognises. */
export type InputFormat = 'measurements' | 'qemu' | 'libvirt' | 'trace' | 'fleet';

/** Read a file as UTF-8, mapping errors to RWAN_ERR_IO. */
export async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    throw new RwanError(
      'RWAN_ERR_IO',
      `cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : String(code ?? cause)}`,
      {
        cause,
        details: { path, errno: code },
      },
    );
  }
}

/** Which format a file's text is in. */
export function detectFormat(text: string, source: string): InputFormat {
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      const value: unknown = JSON.parse(text);
      if (looksLikeFleet(value)) return 'fleet';
      if (isMeasurementFile(value)) return 'measurements';
    } catch {
      // NDJSON or a transcript: decided below
    }
  }
  if (looksLikeLibvirt(text)) return 'libvirt';
  if (looksLikeQemu(text)) return 'qemu';
  if (looksLikeTrace(text)) return 'trace';
  throw new RwanError(
    'RWAN_ERR_INVALID_INPUT',
    `${source}: not a format remus-plan reads (QEMU query-dirty-rate replies or HMP text, virsh domstats --dirtyrate, a CSV/NDJSON trace, remus-wan stats, a measurement file)`,
    { details: { source } },
  );
}

function isMeasurementFile(value: unknown): value is MeasurementFile {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { format?: unknown }).format === 'remus-plan/measurements@1'
  );
}

/**
 * Parse one measurement file's text into guests (libvirt may hold several domains; every other format
 * one guest).
 * @param pageSize bytes per page, to turn byte rates into pages
 */
export function parseInput(text: string, pageSize: number, source: string): GuestMeasurements[] {
  const format = detectFormat(text, source);
  switch (format) {
    case 'fleet':
      throw new RwanError('RWAN_ERR_USAGE', `${source} is a fleet file: pass it with --fleet`, {
        details: { source },
      });
    case 'measurements':
      return [fromMeasurementFile(jsonValues(text, source)[0] as MeasurementFile, source)];
    case 'libvirt':
      return parseLibvirtDomstats(text, pageSize, source);
    case 'qemu':
      return [{ ...emptyGuest(), measurements: parseQemuDirtyRate(text, pageSize, source) }];
    case 'trace': {
      const content = parseTrace(text, pageSize, source);
      return [content.kind === 'writes' ? { ...emptyGuest(), traces: [content.trace] } : content.guest];
    }
  }
}

/** Read and parse a measurement file. */
export async function loadInput(path: string, pageSize: number): Promise<GuestMeasurements[]> {
  return parseInput(await readText(path), pageSize, path);
}

function fromMeasurementFile(file: MeasurementFile, source: string): GuestMeasurements {
  const bad = (why: string): never => {
    throw new RwanError('RWAN_ERR_INVALID_INPUT', `${source}: ${why}`, { details: { source } });
  };
  if (!Array.isArray(file.measurements) || file.measurements.length === 0) bad('no measurements');
  if (!(typeof file.pageSize === 'number' && file.pageSize > 0)) bad('pageSize must be a positive number');
  const guest: GuestMeasurements = {
    ...emptyGuest(),
    pageSize: file.pageSize,
    measurements: file.measurements.map((m, i) => {
      if (!(m.windowMs > 0) || !(m.pages >= 0)) bad(`measurement ${i + 1} needs windowMs > 0 and pages ≥ 0`);
      return {
        windowS: m.windowMs / 1000,
        pages: [m.pages],
        source: `${source} (${file.source})`,
        mode: file.mode,
      };
    }),
    notes: file.notes ?? [],
  };
  if (file.guest !== undefined) guest.name = file.guest;
  if (file.memoryBytes !== undefined) guest.memoryBytes = file.memoryBytes;
  return guest;
}
