/**
 * Fuzz properties of the page codec's decoder, shared by test/codec/codec-fuzz.test.ts (a budgeted
 * run in CI) and tools/fuzz/codec-fuzz.ts (npm run fuzz:codec, a long run). Each property feeds the
 * decoder hostile input and holds when the outcome is decoded pages or a typed RwanError — never
 * another exception, never a hang, never an allocation above the decoder's chunk cap.
 */
import fc from 'fast-check';
import { Method } from '../../src/codec/chunk-compression.js';
import { type EncodedChunk, EpochDecoder, EpochEncoder, type EpochSummary } from '../../src/codec/index.js';
import { isRwanError } from '../../src/errors.js';

const PAGE = 512;
/** The decoder's chunk cap in these properties: every allocation it makes is at most this. */
export const FUZZ_CHUNK_CAP = 64 * 1024;

interface Session {
  first: { chunks: EncodedChunk[]; summary: EpochSummary };
  second: { chunks: EncodedChunk[]; summary: EpochSummary };
}

/** Two epochs over the same pages (the second mostly deltas), compressed or not. */
function session(zstdLevel: number | null): Session {
  const enc = new EpochEncoder({ pageSize: PAGE, zstdLevel, chunkBytes: 2048 });
  const pages = Array.from({ length: 12 }, (_, i) => new Uint8Array(PAGE).fill(i * 7));
  const first = enc.encodeEpoch(
    1,
    pages.map((_, i) => i * 3),
    (i) => pages[i] as Uint8Array,
  );
  pages.forEach((p, i) => {
    p[(i * 31) % PAGE] = 200;
    p[(i * 57) % PAGE] = 100;
  });
  const second = enc.encodeEpoch(
    2,
    [...pages.map((_, i) => i * 3), 99],
    (i) => (pages[i] ?? (pages[1] as Uint8Array)) as Uint8Array,
  );
  return { first, second };
}

function check(run: () => void): void {
  try {
    run();
  } catch (err) {
    if (!isRwanError(err)) throw err;
  }
}

function decoderAfterFirst(s: Session): EpochDecoder {
  const dec = new EpochDecoder({ pageSize: PAGE, maxChunkBytes: FUZZ_CHUNK_CAP });
  dec.begin(1);
  for (const c of s.first.chunks) dec.chunk(c, () => undefined);
  dec.end(s.first.summary.pageCount, s.first.summary.digest);
  dec.begin(2);
  return dec;
}

/** The properties, built once (encoding the sample sessions is not part of a run). */
export function codecFuzzProperties() {
  const sessions = [session(null), session(1)];
  return {
    /** Valid epochs with a few bytes of one chunk changed, cut short or lengthened. */
    mutatedChunks: fc.property(
      fc.nat(1),
      fc.nat(63),
      fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 8 }),
      fc.integer({ min: -4, max: 4 }),
      fc.boolean(),
      (which, chunkIndex, edits, lenDelta, keepLength) => {
        const s = sessions[which] as Session;
        const dec = decoderAfterFirst(s);
        const target = chunkIndex % s.second.chunks.length;
        check(() => {
          for (const [i, c] of s.second.chunks.entries()) {
            if (i !== target) {
              dec.chunk(c, () => undefined);
              continue;
            }
            const data = Buffer.from(c.data);
            for (const [at, v] of edits) data[at % data.length] = v;
            const cut =
              lenDelta < 0
                ? data.subarray(0, Math.max(0, data.length + lenDelta))
                : Buffer.concat([data, Buffer.alloc(lenDelta)]);
            dec.chunk({ ...c, data: cut, rawLength: keepLength ? c.rawLength : cut.length }, () => undefined);
          }
          dec.end(s.second.summary.pageCount, s.second.summary.digest);
        });
      },
    ),
    /** Arbitrary bytes as a chunk, with arbitrary header fields. */
    randomChunks: fc.property(
      fc.uint8Array({ maxLength: 4096 }),
      fc.integer({ min: -1, max: 2 ** 31 }),
      fc.integer({ min: -1, max: 2 ** 31 }),
      fc.constantFrom(Method.RAW, Method.ZSTD, Method.ZSTD_DICT, 9),
      fc.boolean(),
      (data, records, rawLength, method, honest) => {
        const dec = decoderAfterFirst(sessions[0] as Session);
        check(() =>
          dec.chunk(
            {
              epoch: 2,
              seq: 0,
              records: honest ? Math.floor(data.length / 3) : records,
              rawLength: honest ? data.length : rawLength,
              method,
              data,
            },
            () => undefined,
          ),
        );
      },
    ),
  };
}
