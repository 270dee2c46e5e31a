/**
 * XOR-RLE page delta: the pure-TypeScript reference of the hot loops (the native addon must produce
 * byte-identical output). Pure: buffers in, buffers out.
 *
 * Format (docs/codec.md §2). A delta turns the receiver's copy `old` of a page into `new`:
 *
 *   delta   = pair*
 *   pair    = zrun:uleb128  lit:uleb128  xor[lit]
 *
 *   zrun    bytes left unchanged before the literal (0 only in the first pair)
 *   lit     ≥ 1 bytes of new XOR old; a literal ends where two consecutive bytes are unchanged, so a
 *           single unchanged byte between two changes stays inside the literal (as a 0x00)
 *   bytes after the last pair are unchanged; an unchanged page is the empty delta
 *
 * ULEB128: 7 bits per byte, low group first, high bit set on every byte but the last.
 */

/** Bytes of one page, or of a delta's worst case, the encoder accepts. */
export const MAX_PAGE_SIZE = 65536;

/** Why a delta could not be decoded; each is a distinct error code upstream. */
export type DeltaFault = 'truncated' | 'overrun' | 'empty-literal' | 'zero-run';

/** Bytes `n` takes as ULEB128. */
export function ulebLength(n: number): number {
  let len = 1;
  for (let v = n; v >= 0x80; v = Math.floor(v / 128)) len++;
  return len;
}

/** Write `n` (0 ≤ n < 2^53) as ULEB128 at `at`; returns the position after it. */
export function writeUleb(out: Uint8Array, at: number, n: number): number {
  let v = n;
  let p = at;
  while (v >= 0x80) {
    out[p++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  out[p++] = v;
  return p;
}

/**
 * Encode the delta from `old` to `now` (same length, ≤ {@link MAX_PAGE_SIZE}) into `out`.
 * @returns the delta length, or -1 when it would exceed `limit` bytes (send the page raw instead)
 */
export function encodeDelta(old: Uint8Array, now: Uint8Array, out: Uint8Array, limit: number): number {
  const n = now.length;
  let i = 0;
  let o = 0;
  let lastEnd = 0; // end of the previous literal
  for (;;) {
    while (i < n && old[i] === now[i]) i++;
    if (i === n) return o; // trailing unchanged bytes are implied
    const litStart = i;
    // extend the literal until two consecutive unchanged bytes (or the end)
    while (i < n) {
      if (old[i] !== now[i]) {
        i++;
      } else if (i + 1 < n && old[i + 1] !== now[i + 1]) {
        i += 2;
      } else {
        break;
      }
    }
    const zrun = litStart - lastEnd;
    const lit = i - litStart;
    const need = ulebLength(zrun) + ulebLength(lit) + lit;
    if (o + need > limit) return -1;
    o = writeUleb(out, o, zrun);
    o = writeUleb(out, o, lit);
    for (let k = litStart; k < i; k++) out[o++] = (old[k] as number) ^ (now[k] as number);
    lastEnd = i;
  }
}

/**
 * Apply `delta` to `page` in place (`page` holds the receiver's old copy).
 * @returns undefined on success, or what is wrong with the delta (the page is then partly written;
 *   callers decode into a scratch copy)
 */
export function applyDelta(page: Uint8Array, delta: Uint8Array): DeltaFault | undefined {
  const n = page.length;
  const d = delta.length;
  let p = 0;
  let at = 0;
  let first = true;
  while (p < d) {
    let zrun = 0;
    let lit = 0;
    let scale = 1;
    for (;;) {
      if (p >= d || scale > 2 ** 49) return 'truncated';
      const b = delta[p++] as number;
      zrun += (b & 0x7f) * scale;
      if (b < 0x80) break;
      scale *= 128;
    }
    scale = 1;
    for (;;) {
      if (p >= d || scale > 2 ** 49) return 'truncated';
      const b = delta[p++] as number;
      lit += (b & 0x7f) * scale;
      if (b < 0x80) break;
      scale *= 128;
    }
    if (lit === 0) return 'empty-literal';
    if (zrun === 0 && !first) return 'zero-run';
    first = false;
    at += zrun;
    if (at + lit > n) return 'overrun';
    if (p + lit > d) return 'truncated';
    for (let k = 0; k < lit; k++) page[at + k] = (page[at + k] as number) ^ (delta[p + k] as number);
    at += lit;
    p += lit;
  }
  return undefined;
}

/** True when every byte of `page` is 0. */
export function isZeroPage(page: Uint8Array): boolean {
  for (let i = 0; i < page.length; i++) if (page[i] !== 0) return false;
  return true;
}

/**
 * 64-bit content hash of a page as two 32-bit halves (`hi * 2^32 + lo` read unsigned), for finding
 * duplicate pages within an epoch and for the epoch digest. Not cryptographic.
 *
 * Definition (the native addon matches it bit for bit): two lanes over the bytes taken as
 * little-endian u32 words w[i] (a tail shorter than 4 bytes is zero-padded), with
 *   a = 0x9E3779B1 ^ len, b = 0x85EBCA77 ^ len
 *   per word: a = rotl(a ^ w, 5) * 0x01000193;  b = rotl(b + w, 13) * 0xC2B2AE3D     (mod 2^32)
 *   final:    a ^= b >>> 15; a *= 0x27D4EB2F; b ^= a >>> 13; b *= 0x165667B1; a ^= b >>> 16
 * returns { hi: a, lo: b } as unsigned 32-bit numbers.
 */
export function hashPage(page: Uint8Array): { hi: number; lo: number } {
  const len = page.length;
  let a = (0x9e3779b1 ^ len) | 0;
  let b = (0x85ebca77 ^ len) | 0;
  const words = len >>> 2;
  for (let i = 0; i < words; i++) {
    const j = i << 2;
    const w =
      (page[j] as number) |
      ((page[j + 1] as number) << 8) |
      ((page[j + 2] as number) << 16) |
      ((page[j + 3] as number) << 24);
    a = Math.imul(rotl(a ^ w, 5), 0x01000193);
    b = Math.imul(rotl((b + w) | 0, 13), 0xc2b2ae3d);
  }
  if ((len & 3) !== 0) {
    let w = 0;
    for (let j = words << 2, s = 0; j < len; j++, s += 8) w |= (page[j] as number) << s;
    a = Math.imul(rotl(a ^ w, 5), 0x01000193);
    b = Math.imul(rotl((b + w) | 0, 13), 0xc2b2ae3d);
  }
  a ^= b >>> 15;
  a = Math.imul(a, 0x27d4eb2f);
  b ^= a >>> 13;
  b = Math.imul(b, 0x165667b1);
  a ^= b >>> 16;
  return { hi: a >>> 0, lo: b >>> 0 };
}

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

/**
 * {@link hashPage} of `page` without allocating: writes hi at `out[2 * index]` and lo at
 * `out[2 * index + 1]` (the native addon's interface).
 */
export function hashPageInto(page: Uint8Array, out: Uint32Array, index: number): void {
  hashRange(page, 0, page.length, out, 2 * index);
}

/**
 * {@link hashPage} of every `pageSize`-byte page of `buf` (its length a multiple of `pageSize`):
 * page k's hi at `out[2k]`, lo at `out[2k + 1]`.
 */
export function hashPages(buf: Uint8Array, pageSize: number, out: Uint32Array): void {
  const pages = Math.floor(buf.length / pageSize);
  for (let k = 0; k < pages; k++) hashRange(buf, k * pageSize, pageSize, out, 2 * k);
}

/** The {@link hashPage} definition over `buf[start, start + len)`, written to out[at], out[at + 1]. */
function hashRange(buf: Uint8Array, start: number, len: number, out: Uint32Array, at: number): void {
  let a = (0x9e3779b1 ^ len) | 0;
  let b = (0x85ebca77 ^ len) | 0;
  const end = start + (len & ~3);
  for (let j = start; j < end; j += 4) {
    const w =
      (buf[j] as number) |
      ((buf[j + 1] as number) << 8) |
      ((buf[j + 2] as number) << 16) |
      ((buf[j + 3] as number) << 24);
    a = Math.imul(rotl(a ^ w, 5), 0x01000193);
    b = Math.imul(rotl((b + w) | 0, 13), 0xc2b2ae3d);
  }
  if ((len & 3) !== 0) {
    let w = 0;
    for (let j = end, s = 0; j < start + len; j++, s += 8) w |= (buf[j] as number) << s;
    a = Math.imul(rotl(a ^ w, 5), 0x01000193);
    b = Math.imul(rotl((b + w) | 0, 13), 0xc2b2ae3d);
  }
  a ^= b >>> 15;
  a = Math.imul(a, 0x27d4eb2f);
  b ^= a >>> 13;
  b = Math.imul(b, 0x165667b1);
  a ^= b >>> 16;
  out[at] = a;
  out[at + 1] = b;
}
