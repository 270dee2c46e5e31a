/**
 * Protocol errors: one `RwanError` code per kind of violation, each carrying the {@link WireErrorCode}
 * to send to the peer in an ERROR frame before closing (`details.wireCode`, like ws's `kStatusCode`).
 */
import { type ErrorCode, RwanError } from '../errors.js';
import { WireErrorCode } from './frames.js';

/** The `RwanError` codes raised by `src/protocol/` (errors.ts, README "Error codes and exit status"). */
export type ProtocolErrorCode = Extract<ErrorCode, `RWAN_ERR_PROTOCOL_${string}`>;

/** The ERROR-frame code a receiver sends for each violation. */
export const WIRE_CODE_OF: Readonly<Record<ProtocolErrorCode, number>> = {
  RWAN_ERR_PROTOCOL_BAD_MAGIC: WireErrorCode.PROTOCOL_VIOLATION,
  RWAN_ERR_PROTOCOL_UNSUPPORTED_VERSION: WireErrorCode.UNSUPPORTED_VERSION,
  RWAN_ERR_PROTOCOL_UNKNOWN_TYPE: WireErrorCode.PROTOCOL_VIOLATION,
  RWAN_ERR_PROTOCOL_RESERVED: WireErrorCode.PROTOCOL_VIOLATION,
  RWAN_ERR_PROTOCOL_FRAME_TOO_LARGE: WireErrorCode.TOO_LARGE,
  RWAN_ERR_PROTOCOL_FIELD_TOO_LARGE: WireErrorCode.TOO_LARGE,
  RWAN_ERR_PROTOCOL_TRUNCATED: WireErrorCode.PROTOCOL_VIOLATION,
  RWAN_ERR_PROTOCOL_TRAILING_BYTES: WireErrorCode.PROTOCOL_VIOLATION,
  RWAN_ERR_PROTOCOL_INVALID_FIELD: WireErrorCode.PROTOCOL_VIOLATION,
  RWAN_ERR_PROTOCOL_UNEXPECTED_EOF: WireErrorCode.PROTOCOL_VIOLATION,
};

/** Whether the error came from encoding our own frame or decoding the peer's. */
export type Direction = 'encode' | 'decode';

/**
 * A protocol `RwanError`. `details` always holds `wireCode`; callers add `frame`, `field`, `value`,
 * `direction` and (decoder) `offset`, the stream offset of the offending frame's first byte.
 */
export function protocolError(
  code: ProtocolErrorCode,
  message: string,
  details: Record<string, unknown> = {},
): RwanError {
  return new RwanError(code, message, {
    details: { wireCode: WIRE_CODE_OF[code], ...details },
  });
}
