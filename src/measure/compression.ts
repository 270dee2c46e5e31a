/**
 * Compression measured on a guest's own pages: a raw page dump (e.g. a slice of guest RAM) is cut into
 * pages; zero pages cost nothing on the wire (the transport sends them as a marker); the rest is
 * compressed with zstd in chunks, as the transport does. The page-delta codec, which also uses the
 * previous version of each page, can only do better than this figure.
 */

import { readFile } from 'node:fs/promises';
import { compress } from 'zstd-napi';
import { RwanError } from '../errors.js';
import type { CompressionSample } from './types.js';

/** Chunk size and zstd level the transport defaults to. */
export const SAMPLE_CHUNK_BYTES = 256 * 1024;
export const SAMPLE_ZSTD_LEVEL = 3;

/** Result of sampling a page dump. */
export interface CompressionMeasurement extends CompressionSample {
  pages: number;
  zeroPages: number;
  rawBytes: number;
  wireBytes: number;
}

/** Measure wire/raw on `data` cut into pages of `pageSize` bytes. Pure apart from CPU. */
export function measureCompression(
  data: Uint8Array,
  pageSize: number,
  source: string,
): CompressionMeasurement {
  const pages = Math.floor(data.length / pageSize);
  if (pages === 0) {
    throw new RwanError('RWAN_ERR_INVALID_INPUT', `${source}: holds less than one ${pageSize}-byte page`, {
      details: { source, bytes: data.length },
    });
  }
  const chunk = Buffer.alloc(SAMPLE_CHUNK_BYTES);
  let fill = 0;
  let wire = 0;
  let zeroPages = 0;
  const flush = () => {
    if (fill === 0) return;
    const packed = compress(chunk.subarray(0, fill), { compressionLevel: SAMPLE_ZSTD_LEVEL });
    wire += Math.min(packed.length, fill); // incompressible chunks go raw
    fill = 0;
  };
  for (let p = 0; p < pages; p++) {
    const page = data.subarray(p * pageSize, (p + 1) * pageSize);
    if (isZero(page)) {
      zeroPages++;
      continue;
    }
    if (fill + pageSize > chunk.length) flush();
    chunk.set(page, fill);
    fill += pageSize;
  }
  flush();
  const raw = pages * pageSize;
  return {
    ratio: Math.max(wire, 1) / raw,
    source: `zstd -${SAMPLE_ZSTD_LEVEL} on ${pages} pages of ${source} (${((100 * zeroPages) / pages).toFixed(1)} % zero)`,
    pages,
    zeroPages,
    rawBytes: raw,
    wireBytes: wire,
  };
}

function isZero(page: Uint8Array): boolean {
  if (page.byteOffset % 8 !== 0 || page.byteLength % 8 !== 0) return page.every((b) => b === 0);
  const words = new BigUint64Array(page.buffer, page.byteOffset, page.byteLength >> 3);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0n) return false;
  return true;
}

/** Read a page dump and measure it. */
export async function sampleCompressionFile(path: string, pageSize: number): Promise<CompressionMeasurement> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (cause) {
    throw new RwanError('RWAN_ERR_IO', `cannot read ${path}`, { cause, details: { path } });
  }
  return measureCompression(data, pageSize, path);
}
