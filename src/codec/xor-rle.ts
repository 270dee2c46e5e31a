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
 * Definition (docs/codec.md §3; the native addon matches it bit for bit), all arithmetic mod 2^64,
 * `len` the page's byte length, rotl a 64-bit rotate left, P1 = 0x9E3779B185EBCA87,
 * P2 = 0xC2B2AE3D27D4EB4F, P3 = 0x165667B19E3779F9, P4 = 0x85EBCA77C2B2AE63:
 *
 *   the page is read as little-endian u64 words, zero-padded at the end to a multiple of 32 bytes
 *   (an empty page has no words); each 32-byte stripe is 4 words w1..w4
 *   v1 = len + P1 + P2;  v2 = len + P2;  v3 = len;  v4 = len - P1
 *   round(acc, w) = rotl(acc + w * P2, 31) * P1
 *   per stripe, for k = 1..4:  vk = round(vk, wk)
 *   h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)
 *   for k = 1..4:  h = (h ^ round(0, vk)) * P1 + P4
 *   h += len
 *   h ^= h >>> 33;  h *= P2;  h ^= h >>> 29;  h *= P3;  h ^= h >>> 32
 *   hi = h >>> 32;  lo = h mod 2^32
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

// The 64-bit constants as 32-bit halves (H, L) and the low half's 16-bit halves (L1, L0).
const P1H = 0x9e3779b1 | 0;
const P1L = 0x85ebca87 | 0;
const P1L1 = P1L >>> 16;
const P1L0 = P1L & 0xffff;
const P2H = 0xc2b2ae3d | 0;
const P2L = 0x27d4eb4f | 0;
const P2L1 = P2L >>> 16;
const P2L0 = P2L & 0xffff;
const P3H = 0x165667b1 | 0;
const P3L = 0x9e3779f9 | 0;
const P4H = 0x85ebca77 | 0;
const P4L = 0xc2b2ae63 | 0;

/*
 * 64-bit values are (hi, lo) pairs of int32 halves; (ah, al)·(bh, bl) mod 2^64 is
 * (mulHigh(al, bl) + al·bh + ah·bl, al·bl) with the last three products taken mod 2^32 (Math.imul).
 * mulHigh needs the full 32×32→64 product of the low halves. Generally it is built from 16-bit partial
 * products (each fits 32 bits: exact int32 arithmetic). In the stripe loop, where b is a constant with
 * 16-bit halves b1, b0 and a is read unsigned, it is floor((a·b1 + floor(a·b0 / 2^16)) / 2^16) in
 * doubles: every term is an integer below 2^49, so exact (and measured ~10% faster than the imuls).
 */

/** High 32 bits of the unsigned 64-bit product a·b (int32 in, int32 out). */
function mulHigh(a: number, b: number): number {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const m1 = Math.imul(a1, b0);
  const m2 = Math.imul(a0, b1);
  const mid = (Math.imul(a0, b0) >>> 16) + (m1 & 0xffff) + (m2 & 0xffff);
  return (Math.imul(a1, b1) + (m1 >>> 16) + (m2 >>> 16) + (mid >>> 16)) | 0;
}

/** The lanes v1..v4 of the hash being computed, (hi, lo) at [2k], [2k + 1]; {@link stripes} advances them. */
const lanes = new Int32Array(8);

/**
 * Runs the lanes over every 32-byte stripe of `view` (its length a multiple of 32), the rounds of all
 * four lanes interleaved (independent multiply chains) and the 64-bit arithmetic written out inline:
 * t = w·P2; s = v + t (the carry out of the low halves is bit 31 of (vl & tl) | ((vl | tl) & ~sl));
 * r = rotl(s, 31), which swaps the halves' roles; v = r·P1.
 * @returns the OR of all the words read
 */
function stripes(view: DataView): number {
  let h1 = lanes[0] as number;
  let l1 = lanes[1] as number;
  let h2 = lanes[2] as number;
  let l2 = lanes[3] as number;
  let h3 = lanes[4] as number;
  let l3 = lanes[5] as number;
  let h4 = lanes[6] as number;
  let l4 = lanes[7] as number;
  let acc = 0;
  let a0 = 0;
  let th = 0;
  let tl = 0;
  let sh = 0;
  let sl = 0;
  let rh = 0;
  let rl = 0;
  const n = view.byteLength;
  for (let j = 0; j < n; j += 32) {
    const wl1 = view.getInt32(j + 0, true);
    const wh1 = view.getInt32(j + 4, true);
    const wl2 = view.getInt32(j + 8, true);
    const wh2 = view.getInt32(j + 12, true);
    const wl3 = view.getInt32(j + 16, true);
    const wh3 = view.getInt32(j + 20, true);
    const wl4 = view.getInt32(j + 24, true);
    const wh4 = view.getInt32(j + 28, true);
    acc |= wl1 | wh1 | wl2 | wh2 | wl3 | wh3 | wl4 | wh4;
    // lane 1: v = rotl(v + w * P2, 31) * P1
    a0 = wl1 >>> 0;
    th =
      (Math.floor((a0 * P2L1 + Math.floor((a0 * P2L0) / 65536)) / 65536) +
        Math.imul(wl1, P2H) +
        Math.imul(wh1, P2L)) |
      0;
    tl = Math.imul(wl1, P2L);
    sl = (l1 + tl) | 0;
    sh = (h1 + th + (((l1 & tl) | ((l1 | tl) & ~sl)) >>> 31)) | 0;
    rh = (sh << 31) | (sl >>> 1);
    rl = (sl << 31) | (sh >>> 1);
    a0 = rl >>> 0;
    h1 =
      (Math.floor((a0 * P1L1 + Math.floor((a0 * P1L0) / 65536)) / 65536) +
        Math.imul(rl, P1H) +
        Math.imul(rh, P1L)) |
      0;
    l1 = Math.imul(rl, P1L);
    // lane 2: v = rotl(v + w * P2, 31) * P1
    a0 = wl2 >>> 0;
    th =
      (Math.floor((a0 * P2L1 + Math.floor((a0 * P2L0) / 65536)) / 65536) +
        Math.imul(wl2, P2H) +
        Math.imul(wh2, P2L)) |
      0;
    tl = Math.imul(wl2, P2L);
    sl = (l2 + tl) | 0;
    sh = (h2 + th + (((l2 & tl) | ((l2 | tl) & ~sl)) >>> 31)) | 0;
    rh = (sh << 31) | (sl >>> 1);
    rl = (sl << 31) | (sh >>> 1);
    a0 = rl >>> 0;
    h2 =
      (Math.floor((a0 * P1L1 + Math.floor((a0 * P1L0) / 65536)) / 65536) +
        Math.imul(rl, P1H) +
        Math.imul(rh, P1L)) |
      0;
    l2 = Math.imul(rl, P1L);
    // lane 3: v = rotl(v + w * P2, 31) * P1
    a0 = wl3 >>> 0;
    th =
      (Math.floor((a0 * P2L1 + Math.floor((a0 * P2L0) / 65536)) / 65536) +
        Math.imul(wl3, P2H) +
        Math.imul(wh3, P2L)) |
      0;
    tl = Math.imul(wl3, P2L);
    sl = (l3 + tl) | 0;
    sh = (h3 + th + (((l3 & tl) | ((l3 | tl) & ~sl)) >>> 31)) | 0;
    rh = (sh << 31) | (sl >>> 1);
    rl = (sl << 31) | (sh >>> 1);
    a0 = rl >>> 0;
    h3 =
      (Math.floor((a0 * P1L1 + Math.floor((a0 * P1L0) / 65536)) / 65536) +
        Math.imul(rl, P1H) +
        Math.imul(rh, P1L)) |
      0;
    l3 = Math.imul(rl, P1L);
    // lane 4: v = rotl(v + w * P2, 31) * P1
    a0 = wl4 >>> 0;
    th =
      (Math.floor((a0 * P2L1 + Math.floor((a0 * P2L0) / 65536)) / 65536) +
        Math.imul(wl4, P2H) +
        Math.imul(wh4, P2L)) |
      0;
    tl = Math.imul(wl4, P2L);
    sl = (l4 + tl) | 0;
    sh = (h4 + th + (((l4 & tl) | ((l4 | tl) & ~sl)) >>> 31)) | 0;
    rh = (sh << 31) | (sl >>> 1);
    rl = (sl << 31) | (sh >>> 1);
    a0 = rl >>> 0;
    h4 =
      (Math.floor((a0 * P1L1 + Math.floor((a0 * P1L0) / 65536)) / 65536) +
        Math.imul(rl, P1H) +
        Math.imul(rh, P1L)) |
      0;
    l4 = Math.imul(rl, P1L);
  }
  lanes[0] = h1;
  lanes[1] = l1;
  lanes[2] = h2;
  lanes[3] = l2;
  lanes[4] = h3;
  lanes[5] = l3;
  lanes[6] = h4;
  lanes[7] = l4;
  return acc;
}

/** Result of the 64-bit helpers below: (hi, lo). */
let outH = 0;
let outL = 0;

/** (outH, outL) = (ah, al) · (bh, bl) mod 2^64. */
function mul64(ah: number, al: number, bh: number, bl: number): void {
  outH = (mulHigh(al, bl) + Math.imul(al, bh) + Math.imul(ah, bl)) | 0;
  outL = Math.imul(al, bl);
}

/** (outH, outL) = (ah, al) + (bh, bl) mod 2^64. */
function add64(ah: number, al: number, bh: number, bl: number): void {
  const l = (al + bl) | 0;
  outH = (ah + bh + (((al & bl) | ((al | bl) & ~l)) >>> 31)) | 0;
  outL = l;
}

/** (outH, outL) = rotl((h, l), r), 0 < r < 32. */
function rotl64(h: number, l: number, r: number): void {
  outH = (h << r) | (l >>> (32 - r));
  outL = (l << r) | (h >>> (32 - r));
}

/** (outH, outL) = round(0, v) = rotl(v · P2, 31) · P1. */
function round0(vh: number, vl: number): void {
  mul64(vh, vl, P2H, P2L);
  rotl64(outH, outL, 31);
  mul64(outH, outL, P1H, P1L);
}

/** Scratch for the last, zero-padded stripe of a page whose length is not a multiple of 32. */
const tail = new Uint8Array(32);
const tailView = new DataView(tail.buffer);

/**
 * The {@link hashPage} definition over `buf[start, start + len)`, written to out[at], out[at + 1].
 * @returns the OR of all the bytes' words: 0 exactly when every byte is 0
 */
function hashRange(buf: Uint8Array, start: number, len: number, out: Uint32Array, at: number): number {
  // len < 2^53: its 64-bit halves
  const nh = Math.floor(len / 4294967296) | 0;
  const nl = len | 0;
  add64(nh, nl, P1H, P1L);
  add64(outH, outL, P2H, P2L);
  lanes[0] = outH;
  lanes[1] = outL;
  add64(nh, nl, P2H, P2L);
  lanes[2] = outH;
  lanes[3] = outL;
  lanes[4] = nh;
  lanes[5] = nl;
  add64(nh, nl, ~P1H, ~P1L); // len − P1 = len + ~P1 + 1
  add64(outH, outL, 0, 1);
  lanes[6] = outH;
  lanes[7] = outL;
  const full = len - (len % 32);
  // little-endian words at any byteOffset: a DataView reads them faster than assembling bytes
  let acc = stripes(new DataView(buf.buffer, buf.byteOffset + start, full));
  if (full < len) {
    tail.fill(0);
    tail.set(buf.subarray(start + full, start + len));
    acc |= stripes(tailView);
  }
  // h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)
  rotl64(lanes[0] as number, lanes[1] as number, 1);
  let hh = outH;
  let hl = outL;
  const rot = [7, 12, 18];
  for (let k = 1; k < 4; k++) {
    rotl64(lanes[2 * k] as number, lanes[2 * k + 1] as number, rot[k - 1] as number);
    add64(hh, hl, outH, outL);
    hh = outH;
    hl = outL;
  }
  // h = (h ^ round(0, vk)) * P1 + P4, k = 1..4
  for (let k = 0; k < 4; k++) {
    round0(lanes[2 * k] as number, lanes[2 * k + 1] as number);
    mul64(hh ^ outH, hl ^ outL, P1H, P1L);
    add64(outH, outL, P4H, P4L);
    hh = outH;
    hl = outL;
  }
  add64(hh, hl, nh, nl);
  hh = outH;
  hl = outL;
  // avalanche: h ^= h >>> 33; h *= P2; h ^= h >>> 29; h *= P3; h ^= h >>> 32
  hl ^= hh >>> 1;
  mul64(hh, hl, P2H, P2L);
  hh = outH;
  hl = outL;
  hl ^= (hl >>> 29) | (hh << 3);
  hh ^= hh >>> 29;
  mul64(hh, hl, P3H, P3L);
  out[at] = outH;
  out[at + 1] = outL ^ outH;
  return acc;
}
