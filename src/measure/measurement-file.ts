/** Writing a {@link MeasurementFile} (what `remus-plan measure qmp` produces) to disk. */
import { writeFile } from 'node:fs/promises';
import { RwanError } from '../errors.js';
import type { MeasurementFile } from './types.js';

/** The file's text: pretty JSON with a trailing newline. Pure. */
export function formatMeasurementFile(file: MeasurementFile): string {
  return `${JSON.stringify(file, null, 2)}\n`;
}

/**
 * Write `file` to `path` as pretty JSON, replacing what is there.
 * @throws RwanError `RWAN_ERR_IO` when the file cannot be written
 */
export async function writeMeasurementFile(path: string, file: MeasurementFile): Promise<void> {
  try {
    await writeFile(path, formatMeasurementFile(file), 'utf8');
  } catch (err) {
    throw new RwanError('RWAN_ERR_IO', `cannot write ${path}: ${(err as Error).message}`, {
      cause: err,
      details: { path },
    });
  }
}
