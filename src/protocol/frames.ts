/**
 * The remus-wan wire protocol: frame types, constants and limits (docs/protocol.md). Pure: no I/O.
 *
 * ```
 *  frame = header (12 bytes) + payload (payloadLength bytes)
 *
 *  offset  0      2     3     4     5     6          8                12
 *          +------+-----+-----+-----+-----+----------+----------------+---------------
 *          | 52 57| ver |type |flags| rsv |   rsv    | payloadLength  | payload ...
 *          | 'RW' | u8  | u8  | u8  | u8  |   u16    |     u32 LE     |
 *          +------+-----+-----+-----+-----+----------+----------------+---------------
 * ```
 *
 * All integers are little-endian. u64 fields are JS numbers in the API: values above
 * `Number.MAX_SAFE_INTEGER` are refused, and the all-ones sentinel 2^64-1 ("none") maps to `null`
 * where a field allows it.
 */

/** Bytes of the fixed frame header. */
export const HEADER_SIZE = 12;

/** The first two bytes of every frame: ASCII `R` `W` (read as a u16 LE: 0x5752). */
export const MAGIC_0 = 0x52;
/** Second magic byte, ASCII `W`. */
export const MAGIC_1 = 0x57;

/** The protocol version this implementation speaks (header byte 2; HELLO's version range). */
export const PROTOCOL_VERSION = 1;

/** Bytes of a session id. */
export const SESSION_ID_BYTES = 16;
/** Bytes of an epoch digest (docs/codec.md: the codec computes it). */
export const DIGEST_BYTES = 16;

/** The u64 sentinel 2^64-1 ("no epoch"), carried as `null` in the API. */
export const U64_NONE = 0xffff_ffff_ffff_ffffn;

/** Frame types (header byte 3). 0 is never a valid type, so a zeroed header is caught. */
export const FrameType = {
  HELLO: 1,
  EPOCH_BEGIN: 2,
  CHUNK: 3,
  EPOCH_END: 4,
  ACK: 5,
  HEARTBEAT: 6,
  RESUME: 7,
  ERROR: 8,
  /** Receiver → sender, with Capability.XEN_STREAM: bytes of the receive command's output. */
  STREAM_DATA: 9,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Name of each frame type, for messages and error details. */
export const FRAME_TYPE_NAMES: Readonly<Record<FrameType, string>> = {
  1: 'HELLO',
  2: 'EPOCH_BEGIN',
  3: 'CHUNK',
  4: 'EPOCH_END',
  5: 'ACK',
  6: 'HEARTBEAT',
  7: 'RESUME',
  8: 'ERROR',
  9: 'STREAM_DATA',
};

/** True when `t` is a frame type this version knows. */
export function isFrameType(t: number): t is FrameType {
  return Number.isInteger(t) && t >= FrameType.HELLO && t <= FrameType.STREAM_DATA;
}

/** HELLO capability bits. Unknown bits are legal: each side uses the intersection of both sets. */
export const Capability = {
  /** CHUNK method 1 (zstd). */
  ZSTD: 1 << 0,
  /** CHUNK method 2 (zstd with a shared dictionary). */
  ZSTD_DICT: 1 << 1,
  /** EPOCH_END carries a digest the receiver checks (otherwise the digest is 16 zero bytes). */
  DIGEST: 1 << 2,
  /** RESUME is understood: an epoch can be resent after a reconnect. */
  RESUME: 1 << 3,
  /** CHUNK kind 1 (extra, non-page records such as device state). */
  EXTRA: 1 << 4,
  /**
   * The epochs are segments of a Xen migration stream (docs/xen-stream.md): the receiver feeds them
   * to a receive command instead of a replica. A sender and a receiver must agree on it.
   */
  XEN_STREAM: 1 << 5,
  /** With XEN_STREAM: xl's `-e` (the backup's receive command does not wait for the domain's death). */
  XEN_DETACH: 1 << 6,
  /**
   * The receiver takes the first copy of an epoch's frames and drops the others: a sender may send an
   * epoch's BEGIN, CHUNKs and END on several channels at once.
   */
  COPIES: 1 << 7,
} as const;

/** HELLO role. */
export const Role = { SENDER: 0, RECEIVER: 1 } as const;
export type Role = (typeof Role)[keyof typeof Role];

/** How a CHUNK's data carries its records stream (the same values as the codec's `Method`). */
export const ChunkMethod = { RAW: 0, ZSTD: 1, ZSTD_DICT: 2 } as const;
export type ChunkMethod = (typeof ChunkMethod)[keyof typeof ChunkMethod];

/** What a CHUNK's records stream holds. */
export const ChunkKind = {
  /** Page records (docs/codec.md). */
  PAGES: 0,
  /** Opaque non-page records (device state, ...), framed by the codec. */
  EXTRA: 1,
} as const;
export type ChunkKind = (typeof ChunkKind)[keyof typeof ChunkKind];

/** ACK flag bits; the others must be 0. */
export const AckFlags = {
  /** The epoch is applied to the replica and persisted: the sender may release its buffered output. */
  DURABLE: 1 << 0,
} as const;
/** Every ACK flag bit this version defines. */
export const ACK_FLAGS_KNOWN = AckFlags.DURABLE;

/** EPOCH_BEGIN flag bits; the others must be 0. */
export const EpochFlags = {
  /**
   * A full copy: every page of the image is in the epoch, the receiver's replica becomes exactly it,
   * and both sides reset their page caches before it (no delta refers to anything earlier).
   */
  FULL: 1 << 0,
} as const;
/** Every EPOCH_BEGIN flag bit this version defines. */
export const EPOCH_FLAGS_KNOWN = EpochFlags.FULL;

/** HEARTBEAT flag bits; the others must be 0. */
export const HeartbeatFlags = {
  /** An answer to a HEARTBEAT: `sentAt` and `seq` are echoed, so the peer measures the round trip. */
  REPLY: 1 << 0,
} as const;
/** Every HEARTBEAT flag bit this version defines. */
export const HEARTBEAT_FLAGS_KNOWN = HeartbeatFlags.REPLY;

/** Why a receiver asks for a RESUME. */
export const ResumeReason = {
  /** The connection dropped; resend from the first epoch not acknowledged. */
  RECONNECT: 0,
  /** The receiver restarted and holds epochs up to `fromEpoch - 1` durably. */
  RESTART: 1,
  /** An epoch's digest did not match: resend it. */
  DIGEST_MISMATCH: 2,
  /** A gap in epochs or chunks was seen. */
  GAP: 3,
} as const;
export type ResumeReason = (typeof ResumeReason)[keyof typeof ResumeReason];

/**
 * Numeric error codes carried by ERROR frames (an open table: unknown codes are accepted and
 * handled by the `fatal` flag). 0x8000..0xfffe are for implementation-specific codes.
 */
export const WireErrorCode = {
  /** A malformed frame: bad magic, reserved bits, unknown type, truncated or trailing bytes, a bad field. */
  PROTOCOL_VIOLATION: 1,
  /** No common protocol version. */
  UNSUPPORTED_VERSION: 2,
  /** A frame or a field above the receiver's caps. */
  TOO_LARGE: 3,
  /** A well-formed frame at the wrong time (session state). */
  UNEXPECTED_FRAME: 4,
  /** HELLO parameters that do not fit together (page size, roles, channels, capabilities). */
  INCOMPATIBLE: 5,
  /** HELLO or RESUME named a session the peer does not know. */
  UNKNOWN_SESSION: 6,
  /** RESUME asked for an epoch the sender no longer holds. */
  RESUME_IMPOSSIBLE: 7,
  /** An epoch's digest did not match (when not recovered by RESUME). */
  DIGEST_MISMATCH: 8,
  /** A chunk's data did not decode (codec error). */
  CODEC: 9,
  /** The peer ran out of a resource (memory, disk). */
  RESOURCE: 10,
  /** No frame from the peer within the heartbeat timeout. */
  TIMEOUT: 11,
  /** An orderly shutdown; not a fault. */
  SHUTDOWN: 12,
  /** The receiver was promoted (failover): the stream ended at its last complete epoch; the sender stops. */
  PROMOTED: 13,
  /** A bug in the peer. */
  INTERNAL: 0xffff,
} as const;

/** Page sizes a HELLO may announce: powers of two in this range, bytes. */
export const MIN_PAGE_SIZE = 512;
/** Largest page size, bytes. */
export const MAX_PAGE_SIZE = 65536;

/** Largest peer name in a HELLO, UTF-8 bytes. */
export const MAX_PEER_NAME_BYTES = 256;
/** Largest message in an ERROR frame, UTF-8 bytes. */
export const MAX_ERROR_MESSAGE_BYTES = 1024;
/** Payload cap of every frame type but CHUNK, bytes (checked from the header, before buffering). */
export const MAX_CONTROL_PAYLOAD = 4096;

/** Fixed payload bytes of each frame type (HELLO, CHUNK and ERROR have a variable tail). */
export const FIXED_PAYLOAD: Readonly<Record<FrameType, number>> = {
  1: 53, // HELLO, then the peer name
  2: 25, // EPOCH_BEGIN
  3: 26, // CHUNK, then the data
  4: 44, // EPOCH_END
  5: 17, // ACK
  6: 21, // HEARTBEAT
  7: 25, // RESUME
  8: 5, // ERROR, then the message
  9: 8, // STREAM_DATA, then the data
};

/** Largest data of a STREAM_DATA frame, bytes (within the control payload cap). */
export const MAX_STREAM_DATA_BYTES = MAX_CONTROL_PAYLOAD - 8;

/** True for frame types whose payload is exactly `FIXED_PAYLOAD` bytes. */
export function isFixedSize(type: FrameType): boolean {
  return (
    type !== FrameType.HELLO &&
    type !== FrameType.CHUNK &&
    type !== FrameType.ERROR &&
    type !== FrameType.STREAM_DATA
  );
}

/** Caps that bound every allocation of a decoder (and what an encoder may produce). */
export interface ProtocolLimits {
  /** Largest CHUNK data (the bytes after the CHUNK fields), bytes. */
  readonly maxChunkData: number;
  /** Largest `rawLength` a CHUNK may announce (the decoded records stream), bytes. */
  readonly maxRawLength: number;
}

/** Default CHUNK data cap: 16 MiB. */
export const DEFAULT_MAX_CHUNK_DATA = 16 * 2 ** 20;
/** Default CHUNK rawLength cap: 16 MiB (the codec's `maxChunkBytes` default). */
export const DEFAULT_MAX_RAW_LENGTH = 16 * 2 ** 20;
/** Smallest cap a peer may set or announce: one 64 KiB page record with room to spare, bytes. */
export const MIN_CHUNK_CAP = 128 * 1024;
/** Largest cap: CHUNK fields plus data must fit the u32 payloadLength, bytes. */
export const MAX_CHUNK_CAP = 0xffff_ffff - 26;

/** The default limits. */
export const DEFAULT_LIMITS: ProtocolLimits = {
  maxChunkData: DEFAULT_MAX_CHUNK_DATA,
  maxRawLength: DEFAULT_MAX_RAW_LENGTH,
};

/** Largest payload a frame of `type` may announce under `limits`, bytes. */
export function maxPayload(type: FrameType, limits: ProtocolLimits): number {
  return type === FrameType.CHUNK ? FIXED_PAYLOAD[type] + limits.maxChunkData : MAX_CONTROL_PAYLOAD;
}

/** First frame on each connection, both directions: who I am and what I can do. */
export interface HelloFrame {
  readonly type: typeof FrameType.HELLO;
  /** Lowest protocol version I speak. */
  readonly minVersion: number;
  /** Highest protocol version I speak (≥ minVersion). */
  readonly maxVersion: number;
  /** {@link Capability} bits. */
  readonly capabilities: number;
  /** The replication session (16 bytes), the same on every channel of a session. */
  readonly sessionId: Buffer;
  /** Page size of the guest, bytes (power of two, 512..65536). */
  readonly pageSize: number;
  readonly role: Role;
  /** Receiver: the last epoch it holds durably; `null` for none (and always `null` from a sender). */
  readonly lastEpochHeld: number | null;
  /** This connection's channel index, < channelCount. */
  readonly channelIndex: number;
  /** Channels (parallel connections) in the session, ≥ 1. */
  readonly channelCount: number;
  /** The largest CHUNK data and rawLength I accept, bytes (≥ {@link MIN_CHUNK_CAP}). */
  readonly maxChunkBytes: number;
  /**
   * Sender: the byte cap of its page cache, which the receiver's must equal (both mirror one cache:
   * docs/codec.md §6); the receiver echoes the value it uses. 0: no page cache.
   */
  readonly cacheBytes: number;
  /** Free-form name of the peer (host, guest), UTF-8 ≤ 256 bytes; '' when not given. */
  readonly peerName: string;
}

/**
 * Opens an epoch. It says what the epoch builds on, not what it holds: a sender streams chunks while
 * it still encodes them, so the counts come with EPOCH_END.
 */
export interface EpochBeginFrame {
  readonly type: typeof FrameType.EPOCH_BEGIN;
  readonly epoch: number;
  /** {@link EpochFlags} bits. */
  readonly flags: number;
  /** The epoch whose decoded state this one's deltas build on (the previous one); `null` with FULL. */
  readonly baseEpoch: number | null;
  /** Size of the replicated image at this epoch, bytes. */
  readonly imageBytes: number;
}

/** A piece of an epoch: a compressed (or raw) records stream. `data` is opaque to the protocol. */
export interface ChunkFrame {
  readonly type: typeof FrameType.CHUNK;
  readonly epoch: number;
  /** Index of the chunk within its epoch, from 0, over both kinds. */
  readonly seq: number;
  /** Records in the decoded stream. */
  readonly records: number;
  /** Length of the decoded records stream, bytes (≤ maxRawLength). */
  readonly rawLength: number;
  readonly method: ChunkMethod;
  readonly kind: ChunkKind;
  /** Dictionary id for method 2 (≠ 0); 0 for the other methods. */
  readonly dictId: number;
  /** The chunk's bytes; a view of the received bytes when they arrived contiguous. */
  readonly data: Buffer;
}

/** Closes an epoch: what its CHUNKs (on any channel) add up to, and the digest to check. */
export interface EpochEndFrame {
  readonly type: typeof FrameType.EPOCH_END;
  readonly epoch: number;
  /** End-to-end digest of the epoch's decoded pages (16 bytes, computed by the codec). */
  readonly digest: Buffer;
  /** Dirty pages in the epoch (sum of `records` over page chunks). */
  readonly pageCount: number;
  /** CHUNK frames in the epoch, both kinds. */
  readonly chunkCount: number;
  /** Sum of `rawLength` over all the epoch's chunks, both kinds, bytes. */
  readonly rawBytes: number;
  /** Sum of `rawLength` over the epoch's extra chunks, bytes (≤ rawBytes). */
  readonly extraBytes: number;
}

/** Receiver → sender: an epoch arrived whole (and, with DURABLE, is persisted). */
export interface AckFrame {
  readonly type: typeof FrameType.ACK;
  readonly epoch: number;
  /** {@link AckFlags} bits. */
  readonly flags: number;
  /** Frame bytes (headers + payloads) received on this connection, its HELLO included. */
  readonly receivedBytes: number;
}

/** Either direction: liveness and round-trip time. */
export interface HeartbeatFrame {
  readonly type: typeof FrameType.HEARTBEAT;
  /** Wall-clock time of the original sender, milliseconds since the Unix epoch (echoed in a REPLY). */
  readonly sentAt: number;
  /** Heartbeat sequence number of the original sender (echoed in a REPLY). */
  readonly seq: number;
  /** The last epoch the sender of this frame acknowledged (receiver) or saw acknowledged (sender). */
  readonly lastAcked: number | null;
  /** {@link HeartbeatFlags} bits. */
  readonly flags: number;
}

/** Receiver → sender: resend from an epoch. */
export interface ResumeFrame {
  readonly type: typeof FrameType.RESUME;
  readonly sessionId: Buffer;
  /** The first epoch the receiver wants. */
  readonly fromEpoch: number;
  readonly reason: ResumeReason;
}

/** Either direction: something went wrong; `fatal` means the connection closes after it. */
export interface ErrorFrame {
  readonly type: typeof FrameType.ERROR;
  /** A {@link WireErrorCode} (or an unknown code from a newer peer). */
  readonly code: number;
  readonly fatal: boolean;
  /** Human-readable, UTF-8 ≤ 1 KiB. */
  readonly message: string;
}

/**
 * Receiver → sender (Xen streams): bytes the backup's receive command wrote after its banner (xl's
 * back channel), in order; `offset` counts the bytes before them, so that a sender given them again
 * after a reconnect writes each byte once.
 */
export interface StreamDataFrame {
  readonly type: typeof FrameType.STREAM_DATA;
  readonly offset: number;
  /** At most {@link MAX_STREAM_DATA_BYTES}. */
  readonly data: Buffer;
}

/** Any frame. */
export type Frame =
  | HelloFrame
  | EpochBeginFrame
  | ChunkFrame
  | EpochEndFrame
  | AckFrame
  | HeartbeatFrame
  | ResumeFrame
  | ErrorFrame
  | StreamDataFrame;
