/**
 * The byte layout of what `xl remus` / `xl migrate` write on their pipe: the xl save header, the libxl
 * migration stream v2, and the libxc migration stream v3 nested in it (docs/xen-stream.md, after
 * Xen's docs/specs/libxl-migration-stream.pandoc and libxc-migration-stream.pandoc). Constants and
 * the items a stream is made of; the reader and the writer (reader.ts, writer.ts) turn bytes into
 * items and back, byte for byte. Pure: no I/O.
 *
 *   xl save header ─ libxl header ─ libxl records … LIBXC_CONTEXT
 *     ─ libxc image header, domain header ─ libxc records … CHECKPOINT
 *       ─ libxl records (emulator) … CHECKPOINT_END ─ libxc records … CHECKPOINT ─ …
 *     (migration: … libxc END ─ libxl records … libxl END)
 */
import { RwanError } from '../errors.js';

/** `struct save_file_header` magic: exactly 32 bytes. */
export const XL_MAGIC = Buffer.from('Xen saved domain, xl format\n \0 \r', 'latin1');
/** xl save header: magic, byteorder, mandatory flags, optional flags, optional data length. */
export const XL_HEADER_BYTES = 48;
/** The receiver's banner, first thing on its stdout (no NUL). */
export const XL_BANNER = 'xl migration receiver ready, send binary domain data.\n';
/** xl save header mandatory flags. */
export const XL_FLAG_JSON_CONFIG = 1;
export const XL_FLAG_STREAM_V2 = 2;

/** "LibxlFmt", big-endian. */
export const LIBXL_IDENT = Buffer.from('LibxlFmt', 'latin1');
export const LIBXL_HEADER_BYTES = 16;
export const LIBXL_VERSION = 2;

/** libxc image header: marker (8 × 0xFF), "XENF", version, options, reserved. Big-endian. */
export const LIBXC_IMAGE_HEADER_BYTES = 24;
export const LIBXC_ID = 0x58454e46;
export const LIBXC_DOMAIN_HEADER_BYTES = 16;

/** A record's header: type, body length; the body is then zero-padded to a multiple of 8. */
export const RECORD_HEADER_BYTES = 8;
/** The restorer's cap on a record's body (REC_LENGTH_MAX). */
export const REC_LENGTH_MAX = 128 * 2 ** 20;
/** Bit 31 of a record type: optional, a receiver may skip it. */
export const OPTIONAL_RECORD = 0x80000000;

/** The optional record type `n` (bit 31 set), as the unsigned number the reader gives. */
export function optionalType(n: number): number {
  return (OPTIONAL_RECORD | n) >>> 0;
}

export const LibxcRecord = {
  END: 0x00,
  PAGE_DATA: 0x01,
  X86_PV_INFO: 0x02,
  X86_PV_P2M_FRAMES: 0x03,
  X86_PV_VCPU_BASIC: 0x04,
  X86_PV_VCPU_EXTENDED: 0x05,
  X86_PV_VCPU_XSAVE: 0x06,
  SHARED_INFO: 0x07,
  X86_TSC_INFO: 0x08,
  HVM_CONTEXT: 0x09,
  HVM_PARAMS: 0x0a,
  TOOLSTACK: 0x0b,
  X86_PV_VCPU_MSRS: 0x0c,
  VERIFY: 0x0d,
  CHECKPOINT: 0x0e,
  CHECKPOINT_DIRTY_PFN_LIST: 0x0f,
  STATIC_DATA_END: 0x10,
  X86_CPUID_POLICY: 0x11,
  X86_MSR_POLICY: 0x12,
} as const;
/** The highest mandatory libxc record type this build knows. */
export const LIBXC_RECORD_MAX = 0x12;

export const LibxlRecord = {
  END: 0,
  LIBXC_CONTEXT: 1,
  EMULATOR_XENSTORE_DATA: 2,
  EMULATOR_CONTEXT: 3,
  CHECKPOINT_END: 4,
  CHECKPOINT_STATE: 5,
} as const;
export const LIBXL_RECORD_MAX = 5;

/** libxc domain types. */
export const DomainType = { X86_PV: 1, X86_HVM: 2, X86_PVH: 3, ARM: 4 } as const;

/** PAGE_DATA pfn word: type in bits 63–60, reserved 59–52, pfn in 51–0. */
export const PAGE_TYPE_SHIFT = 60;
export const PFN_BITS = 52;
/** Page types (XEN_DOMCTL_PFINFO_* >> 28). 0x5–0x8 are reserved: a stream using them is refused. */
export const PageType = {
  NOTAB: 0x0,
  L1TAB: 0x1,
  L2TAB: 0x2,
  L3TAB: 0x3,
  L4TAB: 0x4,
  L1TAB_PINNED: 0x9,
  L2TAB_PINNED: 0xa,
  L3TAB_PINNED: 0xb,
  L4TAB_PINNED: 0xc,
  BROKEN: 0xd,
  XALLOC: 0xe,
  XTAB: 0xf,
} as const;

/** Whether pages of this type carry 4096 bytes of data in PAGE_DATA. */
export function pageHasData(type: number): boolean {
  return type < PageType.BROKEN;
}

/** Whether a page type is one the spec defines. */
export function pageTypeKnown(type: number): boolean {
  return type <= PageType.L4TAB || (type >= PageType.L1TAB_PINNED && type <= PageType.XTAB);
}

export type Endian = 'le' | 'be';

/** The xl save header (its fields in the sender's byte order) and its optional data (the JSON config). */
export interface XlHeader {
  kind: 'xl-header';
  endian: Endian;
  mandatoryFlags: number;
  optionalFlags: number;
  /** `optional_data_len` bytes: u32 config length and the config, as the sender wrote them. */
  optionalData: Buffer;
}

export interface LibxlHeader {
  kind: 'libxl-header';
  version: number;
  /** bit 0: big-endian records; bit 1: converted from a legacy stream. */
  options: number;
}

export interface LibxcHeader {
  kind: 'libxc-header';
  version: number;
  /** bit 0: big-endian records. */
  options: number;
  domainType: number;
  pageShift: number;
  xenMajor: number;
  xenMinor: number;
}

export interface XenRecord {
  kind: 'libxl-record' | 'libxc-record';
  type: number;
  /** Without padding. */
  body: Buffer;
  /** The checkpoint the record belongs to: 0 is the first (full) pass, n the n-th checkpoint after it. */
  checkpoint: number;
}

/** Bytes after libxl END: not part of the stream (xl's closing messages of a plain migration). */
export interface XenTrailer {
  kind: 'trailer';
  bytes: Buffer;
}

/** What a stream is made of, in order. */
export type XenItem = XlHeader | LibxlHeader | LibxcHeader | XenRecord | XenTrailer;

export type XenErrorCode =
  | 'RWAN_ERR_XEN_HEADER'
  | 'RWAN_ERR_XEN_RECORD'
  | 'RWAN_ERR_XEN_PAGE_DATA'
  | 'RWAN_ERR_XEN_TRUNCATED';

/** A typed stream error: the code, the byte offset in the stream, and what was found. */
export function xenError(
  code: XenErrorCode,
  message: string,
  offset: number,
  details: Record<string, unknown> = {},
): RwanError {
  return new RwanError(code, `${message} (at byte ${offset})`, { details: { offset, ...details } });
}

/** Bytes of padding after a body of `length` bytes. */
export function paddingOf(length: number): number {
  return (8 - (length % 8)) % 8;
}

/** An item's size in the stream, bytes (a record's header and padding included). */
export function itemBytes(item: XenItem): number {
  switch (item.kind) {
    case 'xl-header':
      return XL_HEADER_BYTES + item.optionalData.length;
    case 'libxl-header':
      return LIBXL_HEADER_BYTES;
    case 'libxc-header':
      return LIBXC_IMAGE_HEADER_BYTES + LIBXC_DOMAIN_HEADER_BYTES;
    case 'trailer':
      return item.bytes.length;
    default:
      return RECORD_HEADER_BYTES + item.body.length + paddingOf(item.body.length);
  }
}

/** A record type's name, for messages (`PAGE_DATA`, `optional 0x80000001`, `0x13`). */
export function recordName(kind: XenRecord['kind'], type: number): string {
  const table: Record<string, number> = kind === 'libxc-record' ? LibxcRecord : LibxlRecord;
  const name = Object.keys(table).find((k) => table[k] === type);
  if (name !== undefined) return name;
  return `${type & OPTIONAL_RECORD ? 'optional ' : ''}0x${type.toString(16)}`;
}
