/** The remus-wan wire protocol (docs/protocol.md): frames, encoder, decoder. Pure: no I/O. */
export * from './decoder.js';
export * from './encoder.js';
export * from './frames.js';
export { type Direction, type ProtocolErrorCode, protocolError, WIRE_CODE_OF } from './protocol-error.js';
export { validateFrame } from './validate.js';
