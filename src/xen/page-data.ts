/**
 * PAGE_DATA record bodies (libxc type 0x01): `u32 count, u32 reserved, u64 pfn[count]`, then 4096-byte
 * pages for the pfns whose type carries data, in pfn order. Each pfn word holds the page type in bits
 * 63–60 and the pfn in bits 51–0 (format.ts). Pure.
 */
import { type Endian, PAGE_TYPE_SHIFT, PFN_BITS, pageHasData, pageTypeKnown, xenError } from './format.js';

export interface PageBatch {
  /** Page frame numbers, as in the record (at most 2^52 − 1: exact in a double). */
  pfns: number[];
  /** Their page types (PageType). */
  types: number[];
  /** The pages with data, one after the other, in pfn order. */
  data: Buffer;
  /** Index into `data` (in pages) of each pfn's page, or −1 when its type carries none. */
  slot: number[];
}

const HI = 2 ** 32;

/**
 * Read a PAGE_DATA body. `offset` is the body's position in the stream, for errors.
 * @throws RwanError RWAN_ERR_XEN_PAGE_DATA: no pfn, a reserved or unknown page type, a length that
 *   does not match the pfns (8 + 8·count + pageSize·pages with data)
 */
export function parsePageData(body: Buffer, endian: Endian, pageSize: number, offset = 0): PageBatch {
  const fail = (message: string, details: Record<string, unknown> = {}): never => {
    throw xenError('RWAN_ERR_XEN_PAGE_DATA', `PAGE_DATA: ${message}`, offset, details);
  };
  if (body.length < 8) fail(`a body of ${body.length} bytes has no count`);
  const le = endian === 'le';
  const count = le ? body.readUInt32LE(0) : body.readUInt32BE(0);
  if (count === 0) fail('count is 0');
  if (body.length < 8 + 8 * count)
    fail(`${count} pfns need ${8 + 8 * count} bytes, the body has ${body.length}`, { count });
  const pfns: number[] = new Array(count);
  const types: number[] = new Array(count);
  const slot: number[] = new Array(count);
  let withData = 0;
  for (let i = 0; i < count; i++) {
    const at = 8 + 8 * i;
    const lo = le ? body.readUInt32LE(at) : body.readUInt32BE(at + 4);
    const hi = le ? body.readUInt32LE(at + 4) : body.readUInt32BE(at);
    const type = hi >>> (PAGE_TYPE_SHIFT - 32);
    if (!pageTypeKnown(type)) fail(`pfn ${i} has the reserved page type 0x${type.toString(16)}`, { type });
    pfns[i] = (hi & ((1 << (PFN_BITS - 32)) - 1)) * HI + lo;
    types[i] = type;
    slot[i] = pageHasData(type) ? withData++ : -1;
  }
  const want = 8 + 8 * count + pageSize * withData;
  if (body.length !== want) {
    fail(`${count} pfns, ${withData} with data, need a body of ${want} bytes, not ${body.length}`, {
      count,
      withData,
    });
  }
  return { pfns, types, data: body.subarray(8 + 8 * count), slot };
}

/** Build a PAGE_DATA body: `data` holds the pages of the pfns whose type carries data, in order. */
export function buildPageData(
  pfns: readonly number[],
  types: readonly number[],
  data: Buffer,
  endian: Endian,
): Buffer {
  const head = Buffer.alloc(8 + 8 * pfns.length);
  const le = endian === 'le';
  if (le) head.writeUInt32LE(pfns.length, 0);
  else head.writeUInt32BE(pfns.length, 0);
  pfns.forEach((pfn, i) => {
    const hi = (((types[i] ?? 0) << (PAGE_TYPE_SHIFT - 32)) | Math.floor(pfn / HI)) >>> 0;
    const lo = pfn % HI;
    const at = 8 + 8 * i;
    if (le) {
      head.writeUInt32LE(lo, at);
      head.writeUInt32LE(hi, at + 4);
    } else {
      head.writeUInt32BE(hi, at);
      head.writeUInt32BE(lo, at + 4);
    }
  });
  return Buffer.concat([head, data]);
}
