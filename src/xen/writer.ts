/**
 * Items back to bytes (format.ts): the inverse of the reader, byte for byte. The writer follows the
 * headers it writes for each layer's byte order, so records need only their type and body. Pure.
 */
import {
  type Endian,
  LIBXC_DOMAIN_HEADER_BYTES,
  LIBXC_ID,
  LIBXC_IMAGE_HEADER_BYTES,
  LIBXL_HEADER_BYTES,
  LIBXL_IDENT,
  paddingOf,
  REC_LENGTH_MAX,
  RECORD_HEADER_BYTES,
  type XenItem,
  XL_HEADER_BYTES,
  XL_MAGIC,
  xenError,
} from './format.js';

export class XenStreamWriter {
  private libxlEndian: Endian = 'le';
  private libxcEndian: Endian = 'le';
  /** Bytes written so far. */
  position = 0;

  /** The bytes of one item. */
  encode(item: XenItem): Buffer {
    const b = this.bytes(item);
    this.position += b.length;
    return b;
  }

  private bytes(item: XenItem): Buffer {
    switch (item.kind) {
      case 'xl-header': {
        const h = Buffer.alloc(XL_HEADER_BYTES + item.optionalData.length);
        XL_MAGIC.copy(h, 0);
        const put = (v: number, at: number) =>
          item.endian === 'le' ? h.writeUInt32LE(v, at) : h.writeUInt32BE(v, at);
        put(0x01020304, 32);
        put(item.mandatoryFlags, 36);
        put(item.optionalFlags, 40);
        put(item.optionalData.length, 44);
        item.optionalData.copy(h, XL_HEADER_BYTES);
        return h;
      }
      case 'libxl-header': {
        const h = Buffer.alloc(LIBXL_HEADER_BYTES);
        LIBXL_IDENT.copy(h, 0);
        h.writeUInt32BE(item.version, 8);
        h.writeUInt32BE(item.options, 12);
        this.libxlEndian = item.options & 1 ? 'be' : 'le';
        return h;
      }
      case 'libxc-header': {
        const h = Buffer.alloc(LIBXC_IMAGE_HEADER_BYTES + LIBXC_DOMAIN_HEADER_BYTES);
        h.fill(0xff, 0, 8);
        h.writeUInt32BE(LIBXC_ID, 8);
        h.writeUInt32BE(item.version, 12);
        h.writeUInt16BE(item.options, 16);
        this.libxcEndian = item.options & 1 ? 'be' : 'le';
        const d = LIBXC_IMAGE_HEADER_BYTES;
        const le = this.libxcEndian === 'le';
        if (le) {
          h.writeUInt32LE(item.domainType, d);
          h.writeUInt16LE(item.pageShift, d + 4);
          h.writeUInt32LE(item.xenMajor, d + 8);
          h.writeUInt32LE(item.xenMinor, d + 12);
        } else {
          h.writeUInt32BE(item.domainType, d);
          h.writeUInt16BE(item.pageShift, d + 4);
          h.writeUInt32BE(item.xenMajor, d + 8);
          h.writeUInt32BE(item.xenMinor, d + 12);
        }
        return h;
      }
      case 'libxl-record':
      case 'libxc-record': {
        const n = item.body.length;
        if (n > REC_LENGTH_MAX)
          throw xenError('RWAN_ERR_XEN_RECORD', `a record body of ${n} bytes (over 128 MiB)`, this.position);
        const r = Buffer.alloc(RECORD_HEADER_BYTES + n + paddingOf(n));
        const le = (item.kind === 'libxl-record' ? this.libxlEndian : this.libxcEndian) === 'le';
        if (le) {
          r.writeUInt32LE(item.type >>> 0, 0);
          r.writeUInt32LE(n, 4);
        } else {
          r.writeUInt32BE(item.type >>> 0, 0);
          r.writeUInt32BE(n, 4);
        }
        item.body.copy(r, RECORD_HEADER_BYTES);
        return r;
      }
      case 'trailer':
        return item.bytes;
    }
  }
}

/** The bytes of a whole stream. */
export function writeXenStream(items: Iterable<XenItem>): Buffer {
  const w = new XenStreamWriter();
  const out: Buffer[] = [];
  for (const item of items) out.push(w.encode(item));
  return Buffer.concat(out);
}
