/** The page codec's public surface (docs/codec.md). */
export { DEFAULT_ZSTD_LEVEL, Method, type MethodValue } from './chunk-compression.js';
export { DIGEST_BYTES } from './digest.js';
export { type ChunkInput, EpochDecoder, type PageSink } from './epoch-decoder.js';
export { type EncodedChunk, EpochEncoder, type EpochSummary } from './epoch-encoder.js';
export { type HotLoops, hot } from './hot-loops.js';
export { type CodecOptions, DEFAULT_CODEC_OPTIONS, type KindCounts } from './options.js';
export { PageCache, type PageCacheStats } from './page-cache.js';
