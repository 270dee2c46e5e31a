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
  // 4 bytes at a time where that cannot change the result (the byte loops below are the definition)
  const oldWords = new DataView(old.buffer, old.byteOffset, old.length);
  const nowWords = new DataView(now.buffer, now.byteOffset, now.length);
  let i = 0;
  let o = 0;
  let lastEnd = 0; // end of the previous literal
  for (;;) {
    while (i + 4 <= n && oldWords.getInt32(i) === nowWords.getInt32(i)) i += 4;
    while (i < n && old[i] === now[i]) i++;
    if (i === n) return o; // trailing unchanged bytes are implied
    const litStart = i;
    // skip words of the literal holding no two consecutive unchanged bytes (one may straddle words)
    while (i + 5 <= n) {
      // a pair costs ≥ 2 header bytes: a literal already this long cannot fit (-1 all the same)
      if (i - litStart > limit - o - 2) return -1;
      const x = oldWords.getInt32(i, true) ^ nowWords.getInt32(i, true);
      const z = ~(((x & 0x7f7f7f7f) + 0x7f7f7f7f) | x | 0x7f7f7f7f); // 0x80 in the unchanged bytes
      if ((z & (z >>> 8)) !== 0 || (z >>> 31 !== 0 && old[i + 4] === now[i + 4])) break;
      i += 4;
    }
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
 * Definition (docs/codec.md §3; the native addon matches it bit for bit), all arithmetic mod 2^32,
 * `len` the page's byte length mod 2^32, P1 = 0x9E3779B1, P2 = 0x85EBCA77, P3 = 0xC2B2AE3D,
 * P5 = 0x165667B1:
 *
 *   the page is read as little-endian u32 words, zero-padded at the end to a multiple of 16 bytes
 *   (an empty page has no words); each 16-byte stripe is 4 words w1..w4
 *   v1 = len + P1 + P2;  v2 = len + P2;  v3 = len;  v4 = len - P1
 *   per stripe, for k = 1..4:  vk = rotl(vk + wk * P2, 13) * P1
 *   h1 = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)
 *   h2 = v1 ^ rotl(v2, 5) ^ rotl(v3, 11) ^ rotl(v4, 17)
 *   avalanche(h) = h ^= h >>> 15; h *= P2; h ^= h >>> 13; h *= P3; h ^= h >>> 16
 *   hi = avalanche(h1 ^ len);  lo = avalanche((h2 + P5) ^ rotl(len, 16))
 *
 * returns { hi, lo } as unsigned 32-bit numbers.
 */
export function hashPage(page: Uint8Array): { hi: number; lo: number } {
  const out = new Uint32Array(2);
  hashRange(page, 0, page.length, out, 0);
  return { hi: out[0] as number, lo: out[1] as number };
}

/**
 * {@link hashPage} of `page` without allocating: writes hi at `out[2 * index]` and lo at
 * `out[2 * index + 1]` (the native addon's interface).
 */
export function hashPageInto(page: Uint8Array, out: Uint32Array, index: number): void {
  hashRange(page, 0, page.length, out, 2 * index);
}

/**
 * Zero test and hash in one pass (what the encoder needs of every page): returns true when every
 * byte of `page` is 0, and always writes its {@link hashPage} hi at `out[2 * index]`, lo at
 * `out[2 * index + 1]`.
 */
export function classifyPage(page: Uint8Array, out: Uint32Array, index: number): boolean {
  return hashRange(page, 0, page.length, out, 2 * index) === 0;
}

/**
 * The encoder's per-page pass in one call: always writes the page's {@link hashPage} hi at
 * `hashOut[0]`, lo at `hashOut[1]`; returns -2 when every byte of `page` is 0 (`out` and `base`
 * untouched); else -1 when `base` is null; else `encodeDelta(base, page, out, limit)` (the delta
 * length, or -1), after which `base` holds a copy of `page` whatever the result.
 */
export function encodePage(
  page: Uint8Array,
  base: Uint8Array | null,
  out: Uint8Array,
  limit: number,
  hashOut: Uint32Array,
): number {
  if (hashRange(page, 0, page.length, hashOut, 0) === 0) return -2;
  if (base === null) return -1;
  const n = encodeDelta(base, page, out, limit);
  base.set(page);
  return n;
}

/**
 * {@link hashPage} of every `pageSize`-byte page of `buf` (its length a multiple of `pageSize`):
 * page k's hi at `out[2k]`, lo at `out[2k + 1]`.
 */
export function hashPages(buf: Uint8Array, pageSize: number, out: Uint32Array): void {
  const pages = Math.floor(buf.length / pageSize);
  for (let k = 0; k < pages; k++) hashRange(buf, k * pageSize, pageSize, out, 2 * k);
}

const P1 = 0x9e3779b1 | 0;
const P2 = 0x85ebca77 | 0;
const P3 = 0xc2b2ae3d | 0;
const P5 = 0x165667b1 | 0;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function avalanche(x: number): number {
  let h = x ^ (x >>> 15);
  h = Math.imul(h, P2);
  h ^= h >>> 13;
  h = Math.imul(h, P3);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Scratch for the last, zero-padded stripe of a page whose length is not a multiple of 16. */
const tail = new Uint8Array(16);
const tailView = new DataView(tail.buffer);

/**
 * The {@link hashPage} definition over `buf[start, start + len)`, written to out[at], out[at + 1].
 * @returns the OR of all the bytes' words: 0 exactly when every byte is 0
 */
function hashRange(buf: Uint8Array, start: number, len: number, out: Uint32Array, at: number): number {
  const n = len | 0;
  let v1 = (n + P1 + P2) | 0;
  let v2 = (n + P2) | 0;
  let v3 = n;
  let v4 = (n - P1) | 0;
  let acc = 0;
  const full = len - (len % 16);
  // little-endian words at any byteOffset: a DataView reads them ~2.5× faster than assembling bytes
  const view = new DataView(buf.buffer, buf.byteOffset + start, full);
  for (let j = 0; j < full; j += 16) {
    const w1 = view.getInt32(j, true);
    const w2 = view.getInt32(j + 4, true);
    const w3 = view.getInt32(j + 8, true);
    const w4 = view.getInt32(j + 12, true);
    acc |= w1 | w2 | w3 | w4;
    v1 = Math.imul(rotl((v1 + Math.imul(w1, P2)) | 0, 13), P1);
    v2 = Math.imul(rotl((v2 + Math.imul(w2, P2)) | 0, 13), P1);
    v3 = Math.imul(rotl((v3 + Math.imul(w3, P2)) | 0, 13), P1);
    v4 = Math.imul(rotl((v4 + Math.imul(w4, P2)) | 0, 13), P1);
  }
  const end = start + full;
  if (end < start + len) {
    tail.fill(0);
    tail.set(buf.subarray(end, start + len));
    const w1 = tailView.getInt32(0, true);
    const w2 = tailView.getInt32(4, true);
    const w3 = tailView.getInt32(8, true);
    const w4 = tailView.getInt32(12, true);
    acc |= w1 | w2 | w3 | w4;
    v1 = Math.imul(rotl((v1 + Math.imul(w1, P2)) | 0, 13), P1);
    v2 = Math.imul(rotl((v2 + Math.imul(w2, P2)) | 0, 13), P1);
    v3 = Math.imul(rotl((v3 + Math.imul(w3, P2)) | 0, 13), P1);
    v4 = Math.imul(rotl((v4 + Math.imul(w4, P2)) | 0, 13), P1);
  }
  const h1 = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0;
  const h2 = v1 ^ rotl(v2, 5) ^ rotl(v3, 11) ^ rotl(v4, 17);
  out[at] = avalanche(h1 ^ n);
  out[at + 1] = avalanche(((h2 + P5) | 0) ^ rotl(n, 16));
  return acc;
}
