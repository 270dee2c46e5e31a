/**
 * One error taxonomy for the whole project. Every error a user can provoke carries a stable `code`
 * (`RWAN_ERR_*`) and the process exit status the CLIs use for it. Tests assert on `code`, never on text.
 */

/** Stable error codes and the exit status each maps to. Listed in the README. */
export const ErrorCodes = {
  /** A command-line value or a file field could not be parsed as the unit it needs (`100Mbit/s`, `25ms`). */
  RWAN_ERR_INVALID_UNIT: 2,
  /** A value parsed but is out of range (zero, negative, NaN, a percentage above 100 %, an empty range). */
  RWAN_ERR_INVALID_VALUE: 2,
  /** Options that cannot be used together, or a required option that is missing. */
  RWAN_ERR_USAGE: 2,
  /** An input file is not in any format we read, or is malformed (bad JSON, bad CSV row, wrong field type). */
  RWAN_ERR_INVALID_INPUT: 3,
  /** An input file lacks a field the planner needs (no measurements, no link bandwidth). */
  RWAN_ERR_MISSING_FIELD: 3,
  /** A file could not be read or written. */
  RWAN_ERR_IO: 4,
  /** QMP: connecting, the greeting, a command error reply, or an unexpected reply. */
  RWAN_ERR_QMP: 5,
  /** QMP: no reply or no finished measurement within the time limit. */
  RWAN_ERR_QMP_TIMEOUT: 5,
  /** `--fail-on-infeasible`: a guest or the fleet does not fit the link or the budget. */
  RWAN_ERR_INFEASIBLE: 10,
  /** Codec: a record kind that does not exist. */
  RWAN_ERR_CODEC_BAD_KIND: 6,
  /** Codec: a record, length or delta ends before its bytes do. */
  RWAN_ERR_CODEC_TRUNCATED: 6,
  /** Codec: a delta run or a page number past its end (the page, or the safe integer range). */
  RWAN_ERR_CODEC_RUN_OVERFLOW: 6,
  /** Codec: a delta that is not canonical (an empty literal, a zero run after the first pair). */
  RWAN_ERR_CODEC_BAD_DELTA: 6,
  /** Codec: a delta against a page the receiver does not hold. */
  RWAN_ERR_CODEC_MISSING_BASE: 6,
  /** Codec: a duplicate that refers to a page not (yet) in the epoch. */
  RWAN_ERR_CODEC_BAD_REF: 6,
  /** Codec: a chunk whose decoded length, record count or trailing bytes do not match its header. */
  RWAN_ERR_CODEC_CHUNK_LENGTH: 6,
  /** Codec: zstd refused a chunk (corrupt frame, wrong dictionary, larger than announced). */
  RWAN_ERR_CODEC_DECOMPRESS: 6,
  /** Codec: chunks out of order, a page twice in one epoch, or a call out of sequence. */
  RWAN_ERR_CODEC_SEQUENCE: 6,
  /** Codec: the epoch's pages do not match the sender's digest or page count. */
  RWAN_ERR_CODEC_DIGEST: 6,
  /** Protocol: a frame does not start with the magic bytes `RW` (not a remus-wan peer, or the stream lost sync). */
  RWAN_ERR_PROTOCOL_BAD_MAGIC: 6,
  /** Protocol: a frame header carries a version this build does not speak. */
  RWAN_ERR_PROTOCOL_UNSUPPORTED_VERSION: 6,
  /** Protocol: a frame type this version does not define. */
  RWAN_ERR_PROTOCOL_UNKNOWN_TYPE: 6,
  /** Protocol: a reserved header field, an undefined flag bit, or a reserved payload byte is not 0. */
  RWAN_ERR_PROTOCOL_RESERVED: 6,
  /** Protocol: a frame's payloadLength exceeds the cap for its type (checked before buffering). */
  RWAN_ERR_PROTOCOL_FRAME_TOO_LARGE: 6,
  /** Protocol: a length field exceeds its cap (CHUNK rawLength, peer name, error message). */
  RWAN_ERR_PROTOCOL_FIELD_TOO_LARGE: 6,
  /** Protocol: a payload ends inside a field (payloadLength too small for the frame type or a string). */
  RWAN_ERR_PROTOCOL_TRUNCATED: 6,
  /** Protocol: bytes left over in a payload after its last field. */
  RWAN_ERR_PROTOCOL_TRAILING_BYTES: 6,
  /** Protocol: a field value out of its range (page size, role, method, epoch, bad UTF-8, ...), decoded or to encode. */
  RWAN_ERR_PROTOCOL_INVALID_FIELD: 6,
  /** Protocol: the stream ended in the middle of a frame. */
  RWAN_ERR_PROTOCOL_UNEXPECTED_EOF: 6,
  /** Replica store: the state, journal or replica on disk is damaged beyond a torn tail, or belongs to another setup (page size, session). */
  RWAN_ERR_STORE: 7,
  /** TLS: a certificate, key or CA file missing or invalid, a peer certificate refused, or certificates could not be made. */
  RWAN_ERR_TLS: 8,
  /** Network: cannot listen or connect (address in use, refused, unreachable) within the retry budget. */
  RWAN_ERR_CONNECT: 8,
  /** Peer: the other daemon refused the session or broke it (version, incompatible HELLO, unknown session, an ERROR frame, a timeout). */
  RWAN_ERR_PEER: 8,
  /** Source: the replicated image, its dirty log, or the process to pause cannot be used. */
  RWAN_ERR_SOURCE: 9,
  /** Failover: a route or one of its attributes is refused (not a prefix, wrong family, a control character, out of range). */
  RWAN_ERR_ROUTE: 2,
  /** Failover: ExaBGP cannot be told (pipe missing or not a FIFO, ExaBGP not running, answered `error`, no answer in time). */
  RWAN_ERR_EXABGP: 11,
  /** Xen stream: a bad xl, libxl or libxc header (magic, byte order, ident, marker, version), or a legacy pre-v2 stream. */
  RWAN_ERR_XEN_HEADER: 12,
  /** Xen stream: a record over 128 MiB, non-zero padding, an unknown mandatory type, a body where none belongs, a record out of place. */
  RWAN_ERR_XEN_RECORD: 12,
  /** Xen stream: a PAGE_DATA record whose length does not match its pfns, with no pfn, or with a reserved page type. */
  RWAN_ERR_XEN_PAGE_DATA: 12,
  /** Xen stream: the bytes end inside a header or a record. */
  RWAN_ERR_XEN_TRUNCATED: 12,
  /** A bug: something the code believed impossible happened. */
  RWAN_ERR_INTERNAL: 70,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** Options accepted by {@link RwanError}. */
export interface RwanErrorOptions {
  /** The lower-level error this one explains. */
  cause?: unknown;
  /** Structured context (file, line, field, value) for logs and `--json` error output. */
  details?: Record<string, unknown>;
}

/** Base class of every error the project raises on purpose. */
export class RwanError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: number;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: RwanErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RwanError';
    this.code = code;
    this.exitCode = ErrorCodes[code];
    this.details = options.details ?? {};
  }

  /** A plain object for `--json` error output. */
  toJSON(): { code: ErrorCode; message: string; details: Record<string, unknown> } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

/** `err` itself when it is one of ours, else an RWAN_ERR_INTERNAL wrapping it (a bug). */
export function asRwanError(err: unknown): RwanError {
  return err instanceof RwanError ? err : new RwanError('RWAN_ERR_INTERNAL', String(err), { cause: err });
}

/** True when `err` is one of ours (optionally with the given code). */
export function isRwanError(err: unknown, code?: ErrorCode): err is RwanError {
  return err instanceof RwanError && (code === undefined || err.code === code);
}
