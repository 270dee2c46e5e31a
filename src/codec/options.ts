/** Settings both ends of a codec session must agree on, and their defaults. Pure. */
import type { HotLoops } from './hot-loops.js';

/** Codec settings. Sender and receiver must use the same `pageSize`, `cacheBytes` and dictionary. */
export interface CodecOptions {
  /** Bytes per page (a power of two, 512..65536). */
  pageSize: number;
  /** Byte cap of the page cache that holds delta bases (the same on both sides). */
  cacheBytes: number;
  /** Records-stream bytes per chunk before compression (a chunk closes once it reaches this). */
  chunkBytes: number;
  /** zstd level; `null` sends chunks uncompressed. */
  zstdLevel: number | null;
  /** zstd dictionary shared by both sides, optional. */
  dictionary?: Uint8Array;
  /** Largest records stream a received chunk may announce, bytes (decoder cap). */
  maxChunkBytes: number;
  /** Hot loops to use (default: the native addon when it loaded, else the TypeScript fallback). */
  loops?: HotLoops;
}

/** Defaults: 4 KiB pages, a 64 MiB cache (QEMU XBZRLE's default), 512 KiB chunks, zstd level 1. */
export const DEFAULT_CODEC_OPTIONS: CodecOptions = {
  pageSize: 4096,
  cacheBytes: 64 * 2 ** 20,
  chunkBytes: 512 * 1024,
  zstdLevel: 1,
  maxChunkBytes: 16 * 2 ** 20,
};

/** Kinds of records an epoch used, for statistics. */
export interface KindCounts {
  zero: number;
  raw: number;
  delta: number;
  dup: number;
}
