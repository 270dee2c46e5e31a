/*
 * remus_native: the page codec's hot loops in C (N-API, NAPI_VERSION 8, C11, node_api.h only).
 *
 * Byte-identical twin of src/codec/xor-rle.ts (docs/codec.md §2 XOR-RLE delta, §3 page hash):
 *
 *   encodeDelta(old, now, out, limit) -> delta length, or -1 when it would exceed `limit` bytes
 *   applyDelta(page, delta)           -> 0 ok, 1 truncated, 2 overrun, 3 empty-literal, 4 zero-run
 *   isZeroPage(page)                  -> boolean
 *   hashPageInto(page, out, index)    -> writes hi, lo at out[2*index], out[2*index + 1] (Uint32Array)
 *   hashPages(buf, pageSize, out)     -> the same for every page of buf, page k at out[2k], out[2k + 1]
 *   classifyPage(page, out, index)    -> true when every byte is 0; always writes the hash as hashPageInto
 *   applyDeltasHash(slab, pageSize, stream, ops, count, hashOut)
 *                                     -> the decoder's batch: for k < count, applyDelta on the page
 *                                        at slot ops[3k] of slab with stream[ops[3k+1], +ops[3k+2]),
 *                                        then its hash into hashOut[2k], hashOut[2k+1]; stops at the
 *                                        first fault. Returns the records applied; when < count, the
 *                                        fault number is in hashOut[2 * returned]
 *   encodePage(page, base, out, limit, hashOut)
 *                                     -> the encoder's per-page pass: hash into hashOut[0..1]; -2 for a
 *                                        zero page; else -1 without a base, or encodeDelta(base, page)
 *                                        and then base := page
 *   setPipeSize(fd, bytes)           -> Linux fcntl F_SETPIPE_SZ: the pipe's capacity becomes at least
 *                                        `bytes` (rounded up to a page; one page at the least); returns
 *                                        the capacity, or -errno (not a pipe, above pipe-max-size)
 *   setTcpRtoMin(fd, microseconds)   -> Linux setsockopt TCP_RTO_MIN_US (6.15 and later): the socket's
 *                                        lower bound on the retransmission timeout, which also bounds
 *                                        the tail-loss probe of a lone segment in flight; 0, or -errno
 *                                        (ENOPROTOOPT on older kernels)
 *   setTcpCongestion(fd, name)       -> Linux setsockopt TCP_CONGESTION: the socket's congestion
 *                                        control ("cubic", "bbr", "reno"…); 0, or -errno (ENOENT: not
 *                                        available; EPERM: not allowed without CAP_NET_ADMIN)
 *   tcpUnsent(fd)                    -> Linux ioctl SIOCOUTQNSD: the bytes written to a TCP socket that
 *                                        it has not sent yet (its send queue less what is in flight);
 *                                        or -errno (ENOTTY, EINVAL: not a TCP socket)
 *   waitReadable(fd, timeoutMs, callback)
 *                                     -> poll(fd, POLLIN) on the thread pool for at most timeoutMs;
 *                                        callback(revents) on the main thread (0: timed out; POLLIN,
 *                                        POLLHUP…: a read will not block), or callback(-errno). A
 *                                        bounded wait, so that no pool thread stays blocked on a fd
 *                                        nobody writes (the process could not exit)
 *   trimHeap()                       -> glibc's malloc_trim(0): the C heap's free pages (all arenas)
 *                                        back to the system; true when some were; false elsewhere
 *   fixMmapThreshold(bytes)          -> glibc's mallopt M_MMAP_THRESHOLD and M_TRIM_THRESHOLD: blocks
 *                                        of at least `bytes` get a mapping of their own, unmapped
 *                                        when freed, and glibc no longer raises that threshold as
 *                                        large blocks are freed (its default, which lets them settle
 *                                        in the arenas); true when set, false elsewhere
 *   readPages(fd, pfns, from, to, pageSize, fileSize, out)
 *                                     -> the capture's scattered read: page pfns[k] (k in [from, to))
 *                                        of the file open as fd into out[k*pageSize ..), one pread per
 *                                        run of consecutive pfns; bytes past fileSize (or past the end
 *                                        when the file shrank meanwhile) are zeros. Returns 0, or the
 *                                        failed pread's -errno (the caller throws)
 *   readPagesAsync(fd, pfns, from, to, pageSize, fileSize, out, callback)
 *                                     -> the same reads on the thread pool; callback(rc) on the main
 *                                        thread afterwards. pfns and out must not change until then
 *   mapFile(fd, length, writable)     -> an ArrayBuffer over bytes [0, length) of the file open as fd
 *                                        (mmap MAP_SHARED: stores reach the file's page cache at once,
 *                                        as a pwrite would), or -errno. The mapping lives until
 *                                        unmapFile (it has no finalizer; the process's end unmaps it)
 *   unmapFile(buffer)                 -> detaches the ArrayBuffer (every view over it becomes empty)
 *                                        and unmaps it: 0, or -errno. A detached buffer: 0
 *   releaseMemory(view)               -> gives the whole memory pages inside the Uint8Array back to the
 *                                        system (Linux madvise MADV_DONTNEED: they read as zeros
 *                                        afterwards, and cost no memory until written): for a buffer
 *                                        that nothing will read again but that the garbage collector
 *                                        frees only later. Returns the bytes released, or -errno; 0
 *                                        where this cannot be done
 *
 * workload.c adds workloadContext, workloadPick and workloadMutate (the workload generator's epoch loop,
 * for the benchmarks' writer; see there); zstd_async.c adds zstdContext and zstdCompressAsync (chunk
 * compression on the thread pool; see there).
 *
 * Byte arrays are Uint8Arrays (Buffers) at any byteOffset; words are loaded with memcpy, so no
 * alignment is assumed. Only portable 64-bit word tricks are used (no SIMD intrinsics, no
 * -march=native): the binary runs on any x86-64 or arm64 machine.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* pread under -std=c11 */
#endif
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE 1 /* F_SETPIPE_SZ */
#endif
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE 1 /* madvise, MADV_DONTNEED */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#ifndef _WIN32
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#endif

#include <node_api.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Word helpers: a word's byte k (k = 0 is the lowest address) is bits 8k..8k+7 on every host.     */

static inline uint64_t load64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

static inline uint32_t load32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap32(v);
#endif
  return v;
}

/* Index (0..7) of the lowest nonzero byte of x; x != 0. */
static inline size_t first_byte(uint64_t x) {
#if defined(__GNUC__) || defined(__clang__)
  return (size_t)__builtin_ctzll(x) >> 3;
#else
  size_t k = 0;
  while ((x & 0xFF) == 0) {
    x >>= 8;
    k++;
  }
  return k;
#endif
}

/* 0x80 in exactly the bytes of x that are zero (no false positives, unlike the XBZRLE shortcut). */
static inline uint64_t zero_bytes(uint64_t x) {
  const uint64_t m = 0x7F7F7F7F7F7F7F7FULL;
  return ~(((x & m) + m) | x | m);
}

/* ---------------------------------------------------------------------------------------------- */
/* XOR-RLE encode                                                                                 */

/* First i' >= i with a[i'] != b[i'], or n. */
static size_t scan_equal(const uint8_t *a, const uint8_t *b, size_t i, size_t n) {
  while (i + 32 <= n) {
    uint64_t x0 = load64(a + i) ^ load64(b + i);
    uint64_t x1 = load64(a + i + 8) ^ load64(b + i + 8);
    uint64_t x2 = load64(a + i + 16) ^ load64(b + i + 16);
    uint64_t x3 = load64(a + i + 24) ^ load64(b + i + 24);
    if ((x0 | x1 | x2 | x3) != 0) {
      if (x0 != 0) return i + first_byte(x0);
      if (x1 != 0) return i + 8 + first_byte(x1);
      if (x2 != 0) return i + 16 + first_byte(x2);
      return i + 24 + first_byte(x3);
    }
    i += 32;
  }
  while (i + 8 <= n) {
    uint64_t x = load64(a + i) ^ load64(b + i);
    if (x != 0) return i + first_byte(x);
    i += 8;
  }
  while (i < n && a[i] == b[i]) i++;
  return i;
}

/* Index (0..63) of the lowest set bit of x; x != 0. */
static inline size_t lowest_bit(uint64_t x) {
#if defined(__GNUC__) || defined(__clang__)
  return (size_t)__builtin_ctzll(x);
#else
  size_t k = 0;
  while ((x & 1) == 0) {
    x >>= 1;
    k++;
  }
  return k;
#endif
}

/* Largest page encodePage maps its changed stripes for (larger pages are scanned without a map). */
#define MAP_MAX_BYTES 65536
#define MAP_WORDS (MAP_MAX_BYTES / 16 / 64)

/*
 * scan_equal guided by a map of the 16-byte stripes that differ: bit k % 64 of map[k / 64] is set
 * exactly when a[16k..16k+16) and b[16k..16k+16) (bytes below n) differ. Unchanged stripes are
 * skipped unread; the first differing byte at or after i is found in the flagged ones.
 */
static size_t scan_equal_map(const uint8_t *a, const uint8_t *b, size_t i, size_t n, const uint64_t *map) {
  /* the next 16 bytes directly, as scan_equal does (a dense page's next change is near) */
  if (i + 16 <= n) {
    uint64_t x = load64(a + i) ^ load64(b + i);
    if (x != 0) return i + first_byte(x);
    x = load64(a + i + 8) ^ load64(b + i + 8);
    if (x != 0) return i + 8 + first_byte(x);
    i += 16;
  }
  const size_t words = ((n + 15) / 16 + 63) / 64;
  while (i < n) {
    size_t w = (i / 16) / 64;
    uint64_t bits = map[w] & (~(uint64_t)0 << ((i / 16) % 64));
    while (bits == 0) {
      if (++w == words) return n;
      bits = map[w];
    }
    const size_t stripe = w * 64 + lowest_bit(bits);
    const size_t end = stripe * 16 + 16 < n ? stripe * 16 + 16 : n;
    const size_t j = scan_equal(a, b, stripe * 16 > i ? stripe * 16 : i, end);
    if (j < end) return j;
    i = end; /* the stripe's differences all lie before i */
  }
  return n;
}

#define LITERAL_TOO_LONG ((size_t)-1)

/*
 * End of the literal that contains byte i - 1: the first i' >= i where a[i'] == b[i'] and either
 * i' + 1 == n or a[i' + 1] == b[i' + 1]; n when there is none. Returns LITERAL_TOO_LONG as soon as the
 * end is known to lie beyond `cap` (the literal alone could no longer fit the encoder's limit).
 */
static size_t scan_literal(const uint8_t *a, const uint8_t *b, size_t i, size_t n, int64_t cap) {
  while (i + 9 <= n) {
    if ((int64_t)i > cap) return LITERAL_TOO_LONG;
    uint64_t z = zero_bytes(load64(a + i) ^ load64(b + i));
    uint64_t pairs = z & (z >> 8); /* byte k flagged: bytes k and k+1 both unchanged */
    if (pairs != 0) return i + first_byte(pairs);
    if ((z >> 63) != 0 && a[i + 8] == b[i + 8]) return i + 7;
    i += 8;
  }
  /* the reference loop, verbatim */
  while (i < n) {
    if (a[i] != b[i]) {
      i++;
    } else if (i + 1 < n && a[i + 1] != b[i + 1]) {
      i += 2;
    } else {
      break;
    }
  }
  return i;
}

static inline size_t uleb_length(size_t v) {
  size_t len = 1;
  while (v >= 0x80) {
    v >>= 7;
    len++;
  }
  return len;
}

static inline size_t write_uleb(uint8_t *out, size_t at, size_t v) {
  while (v >= 0x80) {
    out[at++] = (uint8_t)((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out[at++] = (uint8_t)v;
  return at;
}

/* 0x80 in every byte. */
#define HIGH_BITS 0x8080808080808080ULL

/* Number of bytes of m flagged 0x80 (m has no other bits set). */
static inline uint64_t count_flags(uint64_t m) { return ((m >> 7) * 0x0101010101010101ULL) >> 56; }

/* a[i..i+8) XOR b[i..i+8), bytes at or past n read as equal (0). */
static inline uint64_t xor_word(const uint8_t *a, const uint8_t *b, size_t i, size_t n) {
  if (i + 8 <= n) return load64(a + i) ^ load64(b + i);
  uint64_t x = 0;
  for (size_t k = 0; i + k < n; k++) x |= (uint64_t)(a[i + k] ^ b[i + k]) << (8 * k);
  return x;
}

/*
 * A lower bound on the bytes the pairs of a[s..n) and b[s..n) take, where s is 0 or just after a
 * literal: the exact number of literal bytes, plus 2 header bytes per literal. One word-at-a-time pass,
 * branch-free per word. Byte j is outside every literal exactly when it is unchanged and so is a
 * neighbour, the byte before s and the bytes from n on counting as unchanged (an unchanged byte
 * inside a literal has changed bytes on both sides); a literal starts at each literal byte that
 * follows an outside byte.
 */
static uint64_t rest_lower_bound(const uint8_t *a, const uint8_t *b, size_t s, size_t n) {
  uint64_t lit_bytes = 0;
  uint64_t literals = 0;
  uint64_t u_prev = HIGH_BITS; /* only its byte 7 is used: the byte before s, unchanged */
  uint64_t gap_prev = HIGH_BITS;
  uint64_t u = zero_bytes(xor_word(a, b, s, n));
  for (size_t i = s; i < n; i += 8) {
    const uint64_t u_next = i + 8 < n ? zero_bytes(xor_word(a, b, i + 8, n)) : HIGH_BITS;
    const uint64_t neighbours = (u << 8) | (u_prev >> 56) | (u >> 8) | (u_next << 56);
    const uint64_t gap = u & neighbours;
    const uint64_t lit = ~gap & HIGH_BITS;
    const uint64_t starts = lit & ((gap << 8) | (gap_prev >> 56));
    lit_bytes += count_flags(lit);
    literals += count_flags(starts);
    u_prev = u;
    gap_prev = gap;
    u = u_next;
  }
  return lit_bytes + 2 * literals;
}

/*
 * The delta length, or -1 when it would exceed `limit` bytes. `out` holds at least `limit` bytes; its
 * content after -1 is unspecified. Output identical to the reference (xor-rle.ts); it only gives up
 * sooner: inside a literal as soon as the literal alone overflows, and, once a page looks dense (16
 * pairs and a projected length over the limit), after one counting pass over the rest of the page
 * shows that the pairs still to come cannot fit. `map`, when not NULL, is the map of differing
 * stripes scan_equal_map takes (the same result, found without reading unchanged stripes).
 */
static int64_t encode_delta(const uint8_t *a, const uint8_t *b, size_t n, uint8_t *out, int64_t limit,
                            const uint64_t *map) {
  size_t i = 0;
  size_t o = 0;
  size_t last_end = 0;
  unsigned pairs = 0;
  for (;;) {
    i = map != NULL ? scan_equal_map(a, b, i, n, map) : scan_equal(a, b, i, n);
    if (i == n) return (int64_t)o;
    const size_t lit_start = i;
    /* every pair costs at least 2 header bytes, so the literal may end no later than `cap` */
    const int64_t cap = (int64_t)lit_start + (limit - (int64_t)o - 2);
    i = scan_literal(a, b, i + 1, n, cap);
    if (i == LITERAL_TOO_LONG) return -1;
    const size_t zrun = lit_start - last_end;
    const size_t lit = i - lit_start;
    const size_t need = uleb_length(zrun) + uleb_length(lit) + lit;
    if ((int64_t)(o + need) > limit) return -1;
    o = write_uleb(out, o, zrun);
    o = write_uleb(out, o, lit);
    for (size_t k = 0; k < lit; k++) out[o + k] = (uint8_t)(a[lit_start + k] ^ b[lit_start + k]);
    o += lit;
    last_end = i;
    if (++pairs == 16 && (double)o * (double)n > (double)limit * (double)i &&
        (double)o + (double)rest_lower_bound(a, b, i, n) > (double)limit) {
      return -1;
    }
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* XOR-RLE decode                                                                                 */

enum { FAULT_NONE = 0, FAULT_TRUNCATED = 1, FAULT_OVERRUN = 2, FAULT_EMPTY_LITERAL = 3, FAULT_ZERO_RUN = 4 };

/* ULEB128 with the reference's rules: at most 8 bytes (scale up to 2^49), else truncated. */
static inline int read_uleb(const uint8_t *d, size_t len, size_t *p, uint64_t *value) {
  uint64_t v = 0;
  for (unsigned shift = 0;; shift += 7) {
    if (*p >= len || shift > 49) return FAULT_TRUNCATED;
    const uint8_t byte = d[(*p)++];
    v |= (uint64_t)(byte & 0x7F) << shift;
    if (byte < 0x80) break;
  }
  *value = v;
  return FAULT_NONE;
}

/* Same checks in the same order as the reference, so a malformed delta gives the same fault. */
static int apply_delta(uint8_t *page, size_t n, const uint8_t *d, size_t len) {
  size_t p = 0;
  uint64_t at = 0; /* values are < 2^56, so at + zrun + lit cannot wrap */
  int first = 1;
  while (p < len) {
    uint64_t zrun;
    uint64_t lit;
    int fault = read_uleb(d, len, &p, &zrun);
    if (fault != FAULT_NONE) return fault;
    fault = read_uleb(d, len, &p, &lit);
    if (fault != FAULT_NONE) return fault;
    if (lit == 0) return FAULT_EMPTY_LITERAL;
    if (zrun == 0 && !first) return FAULT_ZERO_RUN;
    first = 0;
    at += zrun;
    if (at + lit > n) return FAULT_OVERRUN;
    if (p + lit > len) return FAULT_TRUNCATED;
    uint8_t *dst = page + at;
    const uint8_t *src = d + p;
    for (size_t k = 0; k < (size_t)lit; k++) dst[k] = (uint8_t)(dst[k] ^ src[k]);
    at += lit;
    p += (size_t)lit;
  }
  return FAULT_NONE;
}

/* ---------------------------------------------------------------------------------------------- */
/* Zero pages and the page hash                                                                   */

static int is_zero(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i + 64 <= n) {
    uint64_t acc = load64(p + i) | load64(p + i + 8) | load64(p + i + 16) | load64(p + i + 24) |
                   load64(p + i + 32) | load64(p + i + 40) | load64(p + i + 48) | load64(p + i + 56);
    if (acc != 0) return 0;
    i += 64;
  }
  while (i + 8 <= n) {
    if (load64(p + i) != 0) return 0;
    i += 8;
  }
  while (i < n) {
    if (p[i] != 0) return 0;
    i++;
  }
  return 1;
}

static inline uint64_t rotl64(uint64_t x, unsigned r) { return (x << r) | (x >> (64 - r)); }

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL

/* One lane step of a stripe (xxh64's round). */
static inline uint64_t lane(uint64_t v, uint64_t w) { return rotl64(v + w * P2, 31) * P1; }

static inline uint64_t merge_round(uint64_t h, uint64_t v) { return (h ^ lane(0, v)) * P1 + P4; }

/* The merge, length and avalanche of §3, split into the 32-bit halves. */
static inline void hash_finish(uint64_t v1, uint64_t v2, uint64_t v3, uint64_t v4, uint64_t len, uint32_t *hi,
                               uint32_t *lo) {
  uint64_t h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
  h = merge_round(h, v1);
  h = merge_round(h, v2);
  h = merge_round(h, v3);
  h = merge_round(h, v4);
  h += len;
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  *hi = (uint32_t)(h >> 32);
  *lo = (uint32_t)h;
}

/*
 * The page hash (docs/codec.md §3): four independent xxHash64-style lanes over 32-byte stripes (the
 * last one zero-padded), xxh64's merge and avalanche. Returns the OR of all the page's bytes (spread
 * over a word): 0 exactly when the page is all zero, for classifyPage.
 */
static uint64_t hash_page(const uint8_t *p, size_t len, uint32_t *hi, uint32_t *lo) {
  const uint64_t seed = (uint64_t)len;
  uint64_t v1 = seed + P1 + P2;
  uint64_t v2 = seed + P2;
  uint64_t v3 = seed;
  uint64_t v4 = seed - P1;
  uint64_t acc = 0;
  size_t i = 0;
  for (; i + 32 <= len; i += 32) {
    const uint64_t w1 = load64(p + i);
    const uint64_t w2 = load64(p + i + 8);
    const uint64_t w3 = load64(p + i + 16);
    const uint64_t w4 = load64(p + i + 24);
    acc |= w1 | w2 | w3 | w4;
    v1 = lane(v1, w1);
    v2 = lane(v2, w2);
    v3 = lane(v3, w3);
    v4 = lane(v4, w4);
  }
  if (i < len) {
    uint8_t tail[32] = {0};
    memcpy(tail, p + i, len - i);
    const uint64_t w1 = load64(tail);
    const uint64_t w2 = load64(tail + 8);
    const uint64_t w3 = load64(tail + 16);
    const uint64_t w4 = load64(tail + 24);
    acc |= w1 | w2 | w3 | w4;
    v1 = lane(v1, w1);
    v2 = lane(v2, w2);
    v3 = lane(v3, w3);
    v4 = lane(v4, w4);
  }
  hash_finish(v1, v2, v3, v4, seed, hi, lo);
  return acc;
}

/*
 * hash_page that also compares the page with `base` as it goes: sets in `map` (MAP_WORDS words, for
 * a page of at most MAP_MAX_BYTES; NULL for none) the bit of every 16-byte stripe that differs, as
 * scan_equal_map takes it (two map bits per 32-byte hash stripe); *diff is 0 exactly when the pages
 * are equal. The hash loop is bound by its multiplies, so the compare is nearly free, and it brings
 * the base into cache while the page is hashed, for the delta and the copy that follow.
 */
static uint64_t hash_compare(const uint8_t *p, const uint8_t *base, size_t len, uint32_t *hi, uint32_t *lo,
                             uint64_t *map, uint64_t *diff) {
  const uint64_t seed = (uint64_t)len;
  uint64_t v1 = seed + P1 + P2;
  uint64_t v2 = seed + P2;
  uint64_t v3 = seed;
  uint64_t v4 = seed - P1;
  uint64_t acc = 0;
  uint64_t d = 0;
  uint64_t bits = 0; /* the map word being filled */
  size_t i = 0;
  for (; i + 32 <= len; i += 32) {
    const uint64_t w1 = load64(p + i);
    const uint64_t w2 = load64(p + i + 8);
    const uint64_t w3 = load64(p + i + 16);
    const uint64_t w4 = load64(p + i + 24);
    const uint64_t dx0 = (w1 ^ load64(base + i)) | (w2 ^ load64(base + i + 8));
    const uint64_t dx1 = (w3 ^ load64(base + i + 16)) | (w4 ^ load64(base + i + 24));
    acc |= w1 | w2 | w3 | w4;
    d |= dx0 | dx1;
    const size_t s = (i / 16) % 64; /* even: this stripe's two map bits share a word */
    bits |= ((uint64_t)(dx0 != 0) | (uint64_t)(dx1 != 0) << 1) << s;
    if (s == 62) {
      if (map != NULL) map[i / 16 / 64] = bits;
      bits = 0;
    }
    v1 = lane(v1, w1);
    v2 = lane(v2, w2);
    v3 = lane(v3, w3);
    v4 = lane(v4, w4);
  }
  if (i < len) {
    uint8_t tail[32] = {0};
    memcpy(tail, p + i, len - i);
    const uint64_t w1 = load64(tail);
    const uint64_t w2 = load64(tail + 8);
    const uint64_t w3 = load64(tail + 16);
    const uint64_t w4 = load64(tail + 24);
    acc |= w1 | w2 | w3 | w4;
    /* the tail's one or two 16-byte map stripes, bytes below len only */
    for (size_t s = i; s < len; s += 16) {
      uint64_t dx = 0;
      for (size_t k = s; k < len && k < s + 16; k++) dx |= (uint64_t)(p[k] ^ base[k]);
      d |= dx;
      bits |= (uint64_t)(dx != 0) << ((s / 16) % 64);
      if ((s / 16) % 64 == 63 && map != NULL) map[s / 16 / 64] = bits; /* the tail ends a full word */
    }
    v1 = lane(v1, w1);
    v2 = lane(v2, w2);
    v3 = lane(v3, w3);
    v4 = lane(v4, w4);
  }
  if (map != NULL && (len + 15) / 16 % 64 != 0) map[(len + 15) / 16 / 64] = bits; /* a last, partial word */
  hash_finish(v1, v2, v3, v4, seed, hi, lo);
  *diff = d;
  return acc;
}

/*
 * The encoder's per-page pass (encodePage): hash of `page` into *hi, *lo; -2 when the page is all zero
 * (nothing else touched); -1 without a base; else encode_delta(base, page) and, whatever it returned,
 * base := page while both are still in cache (memmove: the caller may pass overlapping views). An
 * unchanged page is the empty delta, with nothing to encode or copy.
 */
static int64_t encode_page(const uint8_t *page, uint8_t *base, int has_base, size_t n, uint8_t *out,
                           int64_t limit, uint32_t *hi, uint32_t *lo) {
  if (!has_base) return hash_page(page, n, hi, lo) == 0 ? -2 : -1;
  uint64_t map_words[MAP_WORDS];
  uint64_t *map = n <= MAP_MAX_BYTES ? map_words : NULL;
  uint64_t diff;
  if (hash_compare(page, base, n, hi, lo, map, &diff) == 0) return -2;
  if (diff == 0) return 0;
  const int64_t r = encode_delta(base, page, n, out, limit, map);
  memmove(base, page, n);
  return r;
}

#ifndef _WIN32 /* the daemons run on Linux; elsewhere readPages is the TypeScript fallback's */
/* ---------------------------------------------------------------------------------------------- */
/* Capture reads                                                                                  */

/*
 * pread `len` bytes at `position` into `dst`, of which only those below `size` exist; the rest, and
 * whatever the file no longer holds (it shrank meanwhile: pread returned 0), are zeros. Interrupted
 * and short reads are continued. 0, or -errno.
 */
static int read_run(int fd, uint8_t *dst, size_t len, uint64_t position, uint64_t size) {
  const size_t avail = position >= size ? 0 : (size - position < len ? (size_t)(size - position) : len);
  size_t got = 0;
  while (got < avail) {
    const ssize_t r = pread(fd, dst + got, avail - got, (off_t)(position + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  if (got < len) memset(dst + got, 0, len - got);
  return 0;
}
#endif

/* ---------------------------------------------------------------------------------------------- */
/* N-API glue                                                                                     */

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

static napi_value throw_range(napi_env env, const char *msg) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
  return NULL;
}

/* An int32 result (NULL when it cannot be made). */
static napi_value int_result(napi_env env, int v) {
  napi_value result;
  if (napi_create_int32(env, v, &result) != napi_ok) return NULL;
  return result;
}

/* An int64 result (NULL when it cannot be made). */
static napi_value int64_result(napi_env env, int64_t v) {
  napi_value result;
  if (napi_create_int64(env, v, &result) != napi_ok) return NULL;
  return result;
}

/*
 * The arguments of a descriptor setter `name(fd, what)`: a descriptor and a value in 1..INT32_MAX.
 * False with a TypeError or RangeError thrown ("name(fd, what): …") when they are not.
 */
static bool fd_and_int(napi_env env, napi_callback_info info, const char *name, const char *what, int64_t *fd,
                       int64_t *v) {
  size_t argc = 2;
  napi_value argv[2];
  char msg[128];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  *fd = -1;
  *v = -1;
  if (argc < 2 || napi_get_value_int64(env, argv[0], fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], v) != napi_ok) {
    snprintf(msg, sizeof msg, "%s(fd, %s): numbers expected", name, what);
    throw_type(env, msg);
    return false;
  }
  if (*fd < 0 || *fd > INT32_MAX || *v < 1 || *v > INT32_MAX) {
    snprintf(msg, sizeof msg, "%s(fd, %s): fd or %s out of range", name, what, what);
    throw_range(env, msg);
    return false;
  }
  return true;
}

/* The one number argument of a function: false with `type_msg` thrown as a TypeError when it is not. */
static bool one_int64(napi_env env, napi_callback_info info, const char *type_msg, int64_t *v) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  if (argc < 1 || napi_get_value_int64(env, argv[0], v) != napi_ok) {
    throw_type(env, type_msg);
    return false;
  }
  return true;
}

/* A typed array of the given element type; data points at its first element (byteOffset applied). */
static int get_array(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *length) {
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, v, &type, length, data, NULL, NULL) != napi_ok) return 0;
  if (type != want) return 0;
  if (*length == 0) *data = NULL;
  return 1;
}

/* A number that is a whole value in [min, max] (doubles are exact up to 2^53). */
static int get_whole(napi_env env, napi_value v, double min, double max, double *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return 0;
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
  if (!(d >= min && d <= max) || d != (double)(int64_t)d) return 0;
  *out = d;
  return 1;
}

static napi_value js_encode_delta(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 4) return throw_type(env, "encodeDelta(old, now, out, limit): 4 arguments expected");
  void *a;
  void *b;
  void *out;
  size_t na;
  size_t nb;
  size_t nout;
  if (!get_array(env, argv[0], napi_uint8_array, &a, &na)) return throw_type(env, "old must be a Uint8Array");
  if (!get_array(env, argv[1], napi_uint8_array, &b, &nb)) return throw_type(env, "now must be a Uint8Array");
  if (!get_array(env, argv[2], napi_uint8_array, &out, &nout)) return throw_type(env, "out must be a Uint8Array");
  if (na != nb) return throw_range(env, "old and now must have the same length");
  napi_valuetype t;
  double limit;
  if (napi_typeof(env, argv[3], &t) != napi_ok || t != napi_number ||
      napi_get_value_double(env, argv[3], &limit) != napi_ok || limit != limit) {
    return throw_type(env, "limit must be a number");
  }
  if (limit > (double)nout) return throw_range(env, "out is shorter than limit");
  /* lengths are whole numbers, so comparing them with limit is comparing with floor(limit); any
     negative limit rejects every nonempty delta, as -1 does */
  const int64_t lim = limit < 0 ? -1 : (int64_t)limit;
  const int64_t r = encode_delta((const uint8_t *)a, (const uint8_t *)b, na, (uint8_t *)out, lim, NULL);
  return int64_result(env, r);
}

/* The (page, delta) arguments of applyDelta and applyDeltaHash: 0 after throwing. */
static int get_page_delta(napi_env env, napi_value *argv, void **page, size_t *n, void **delta, size_t *len) {
  if (!get_array(env, argv[0], napi_uint8_array, page, n)) {
    throw_type(env, "page must be a Uint8Array");
    return 0;
  }
  if (!get_array(env, argv[1], napi_uint8_array, delta, len)) {
    throw_type(env, "delta must be a Uint8Array");
    return 0;
  }
  return 1;
}

static napi_value js_apply_delta(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2) return throw_type(env, "applyDelta(page, delta): 2 arguments expected");
  void *page;
  void *delta;
  size_t n;
  size_t len;
  if (!get_page_delta(env, argv, &page, &n, &delta, &len)) return NULL;
  const int fault = apply_delta((uint8_t *)page, n, (const uint8_t *)delta, len);
  return int_result(env, fault);
}

/* applyDeltaHash(page, delta, hashOut): applyDelta, then (when it succeeded) hashPageInto(page, hashOut, 0). */
static napi_value js_apply_delta_hash(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) return throw_type(env, "applyDeltaHash(page, delta, hashOut): 3 arguments expected");
  void *page;
  void *delta;
  void *out;
  size_t n;
  size_t len;
  size_t nout;
  if (!get_page_delta(env, argv, &page, &n, &delta, &len)) return NULL;
  if (!get_array(env, argv[2], napi_uint32_array, &out, &nout)) return throw_type(env, "hashOut must be a Uint32Array");
  if (nout < 2) return throw_range(env, "hashOut must hold 2 elements");
  const int fault = apply_delta((uint8_t *)page, n, (const uint8_t *)delta, len);
  if (fault == 0) {
    uint32_t *o = (uint32_t *)out;
    hash_page((const uint8_t *)page, n, &o[0], &o[1]);
  }
  return int_result(env, fault);
}

/* applyDeltasHash(slab, pageSize, stream, ops, count, hashOut): see the header. */
static napi_value js_apply_deltas_hash(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 6) return throw_type(env, "applyDeltasHash(slab, pageSize, stream, ops, count, hashOut): 6 arguments expected");
  void *slab;
  void *stream;
  void *ops;
  void *out;
  size_t nslab;
  size_t nstream;
  size_t nops;
  size_t nout;
  double ps;
  double count;
  if (!get_array(env, argv[0], napi_uint8_array, &slab, &nslab)) return throw_type(env, "slab must be a Uint8Array");
  if (!get_whole(env, argv[1], 1, 65536, &ps)) return throw_range(env, "pageSize must be an integer from 1 to 65536");
  if (!get_array(env, argv[2], napi_uint8_array, &stream, &nstream)) return throw_type(env, "stream must be a Uint8Array");
  if (!get_array(env, argv[3], napi_int32_array, &ops, &nops)) return throw_type(env, "ops must be an Int32Array");
  if (!get_whole(env, argv[4], 0, 4294967295.0, &count)) return throw_range(env, "count must be a non-negative integer");
  if (!get_array(env, argv[5], napi_uint32_array, &out, &nout)) return throw_type(env, "hashOut must be a Uint32Array");
  const size_t n = (size_t)ps;
  const size_t c = (size_t)count;
  if (nops / 3 < c) return throw_range(env, "ops must hold 3 words per record");
  if (nout / 2 < c + 1) return throw_range(env, "hashOut must hold 2 words per record, plus 2");
  const int32_t *op = (const int32_t *)ops;
  /* every slot and stream range is checked before anything is written */
  for (size_t k = 0; k < c; k++) {
    const int32_t slot = op[3 * k];
    const int32_t at = op[3 * k + 1];
    const int32_t len = op[3 * k + 2];
    if (slot < 0 || ((uint64_t)slot + 1) * n > nslab) return throw_range(env, "a slot lies outside slab");
    if (at < 0 || len < 0 || (uint64_t)at + (uint64_t)len > nstream) {
      return throw_range(env, "a delta lies outside stream");
    }
  }
  uint32_t *h = (uint32_t *)out;
  size_t k = 0;
  for (; k < c; k++) {
    uint8_t *page = (uint8_t *)slab + (size_t)op[3 * k] * n;
    const int fault = apply_delta(page, n, (const uint8_t *)stream + op[3 * k + 1], (size_t)op[3 * k + 2]);
    if (fault != FAULT_NONE) {
      h[2 * k] = (uint32_t)fault;
      break;
    }
    hash_page(page, n, &h[2 * k], &h[2 * k + 1]);
  }
  napi_value result;
  if (napi_create_uint32(env, (uint32_t)k, &result) != napi_ok) return NULL;
  return result;
}

static napi_value js_is_zero_page(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1) return throw_type(env, "isZeroPage(page): 1 argument expected");
  void *page;
  size_t n;
  if (!get_array(env, argv[0], napi_uint8_array, &page, &n)) return throw_type(env, "page must be a Uint8Array");
  napi_value result;
  if (napi_get_boolean(env, is_zero((const uint8_t *)page, n), &result) != napi_ok) return NULL;
  return result;
}

/* Arguments (page, out, index) of hashPageInto and classifyPage: 0 after throwing. */
static int get_page_out_index(napi_env env, napi_callback_info info, const char *usage, const uint8_t **page,
                              size_t *n, uint32_t **slot) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  if (argc < 3) {
    throw_type(env, usage);
    return 0;
  }
  void *p;
  void *out;
  size_t nout;
  double index;
  if (!get_array(env, argv[0], napi_uint8_array, &p, n)) {
    throw_type(env, "page must be a Uint8Array");
    return 0;
  }
  if (!get_array(env, argv[1], napi_uint32_array, &out, &nout)) {
    throw_type(env, "out must be a Uint32Array");
    return 0;
  }
  if (!get_whole(env, argv[2], 0, 9007199254740991.0, &index)) {
    throw_range(env, "index must be a non-negative integer");
    return 0;
  }
  if (index >= (double)(nout / 2)) {
    throw_range(env, "out has no room at index");
    return 0;
  }
  *page = (const uint8_t *)p;
  *slot = (uint32_t *)out + 2 * (size_t)index;
  return 1;
}

static napi_value js_hash_page_into(napi_env env, napi_callback_info info) {
  const uint8_t *page;
  size_t n;
  uint32_t *o;
  if (!get_page_out_index(env, info, "hashPageInto(page, out, index): 3 arguments expected", &page, &n, &o)) {
    return NULL;
  }
  hash_page(page, n, &o[0], &o[1]);
  return NULL; /* undefined */
}

static napi_value js_classify_page(napi_env env, napi_callback_info info) {
  const uint8_t *page;
  size_t n;
  uint32_t *o;
  if (!get_page_out_index(env, info, "classifyPage(page, out, index): 3 arguments expected", &page, &n, &o)) {
    return NULL;
  }
  const int zero = hash_page(page, n, &o[0], &o[1]) == 0;
  napi_value result;
  if (napi_get_boolean(env, zero, &result) != napi_ok) return NULL;
  return result;
}

static napi_value js_hash_pages(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) return throw_type(env, "hashPages(buf, pageSize, out): 3 arguments expected");
  void *buf;
  void *out;
  size_t n;
  size_t nout;
  double page_size;
  if (!get_array(env, argv[0], napi_uint8_array, &buf, &n)) return throw_type(env, "buf must be a Uint8Array");
  if (!get_whole(env, argv[1], 1, 9007199254740991.0, &page_size)) {
    return throw_range(env, "pageSize must be a positive integer");
  }
  if (!get_array(env, argv[2], napi_uint32_array, &out, &nout)) return throw_type(env, "out must be a Uint32Array");
  const size_t ps = (size_t)page_size;
  if (n % ps != 0) return throw_range(env, "buf length must be a multiple of pageSize");
  const size_t pages = n / ps;
  if (nout / 2 < pages) return throw_range(env, "out must hold 2 words per page");
  uint32_t *o = (uint32_t *)out;
  for (size_t k = 0; k < pages; k++) hash_page((const uint8_t *)buf + k * ps, ps, &o[2 * k], &o[2 * k + 1]);
  return NULL;
}

static napi_value js_encode_page(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 5) return throw_type(env, "encodePage(page, base, out, limit, hashOut): 5 arguments expected");
  void *page;
  void *base = NULL;
  void *out;
  void *hash;
  size_t n;
  size_t nbase = 0;
  size_t nout;
  size_t nhash;
  if (!get_array(env, argv[0], napi_uint8_array, &page, &n)) return throw_type(env, "page must be a Uint8Array");
  napi_valuetype t;
  if (napi_typeof(env, argv[1], &t) != napi_ok) return NULL;
  const int has_base = t != napi_null;
  if (has_base && !get_array(env, argv[1], napi_uint8_array, &base, &nbase)) {
    return throw_type(env, "base must be a Uint8Array or null");
  }
  if (!get_array(env, argv[2], napi_uint8_array, &out, &nout)) return throw_type(env, "out must be a Uint8Array");
  double limit;
  if (napi_typeof(env, argv[3], &t) != napi_ok || t != napi_number ||
      napi_get_value_double(env, argv[3], &limit) != napi_ok || limit != limit) {
    return throw_type(env, "limit must be a number");
  }
  if (!get_array(env, argv[4], napi_uint32_array, &hash, &nhash)) {
    return throw_type(env, "hashOut must be a Uint32Array");
  }
  if (has_base && nbase != n) return throw_range(env, "base and page must have the same length");
  if (limit > (double)nout) return throw_range(env, "out is shorter than limit");
  if (nhash < 2) return throw_range(env, "hashOut must hold 2 words");
  const int64_t lim = limit < 0 ? -1 : (int64_t)limit; /* as in js_encode_delta */
  uint32_t *h = (uint32_t *)hash;
  const int64_t r =
      encode_page((const uint8_t *)page, (uint8_t *)base, has_base, n, (uint8_t *)out, lim, &h[0], &h[1]);
  return int64_result(env, r);
}

/* setTcpRtoMin(fd, microseconds): see the header. TCP_RTO_MIN_US is newer than most C headers. */
#ifndef TCP_RTO_MIN_US
#define TCP_RTO_MIN_US 45
#endif
static napi_value js_set_tcp_rto_min(napi_env env, napi_callback_info info) {
  int64_t fd, us;
  if (!fd_and_int(env, info, "setTcpRtoMin", "microseconds", &fd, &us)) return NULL;
  int64_t r = -ENOSYS;
#if defined(__linux__)
  int v = (int)us;
  r = setsockopt((int)fd, IPPROTO_TCP, TCP_RTO_MIN_US, &v, sizeof v) == 0 ? 0 : -errno;
#endif
  return int64_result(env, r);
}

/* setTcpCongestion(fd, name): see the header. */
static napi_value js_set_tcp_congestion(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int64_t fd = -1;
  char name[32];
  size_t len = 0;
  if (argc < 2 || napi_get_value_int64(env, argv[0], &fd) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], name, sizeof name, &len) != napi_ok) {
    return throw_type(env, "setTcpCongestion(fd, name): a number and a string expected");
  }
  if (fd < 0 || fd > INT32_MAX || len == 0 || len >= sizeof name - 1) {
    return throw_range(env, "setTcpCongestion(fd, name): fd or name out of range");
  }
  int64_t r = -ENOSYS;
#if defined(__linux__)
  r = setsockopt((int)fd, IPPROTO_TCP, TCP_CONGESTION, name, (socklen_t)len) == 0 ? 0 : -errno;
#endif
  return int64_result(env, r);
}

/* tcpUnsent(fd): see the header. */
#if defined(__linux__)
#include <linux/sockios.h>
#endif
static napi_value js_tcp_unsent(napi_env env, napi_callback_info info) {
  int64_t fd = -1;
  if (!one_int64(env, info, "tcpUnsent(fd): a number expected", &fd)) return NULL;
  if (fd < 0 || fd > INT32_MAX) return throw_range(env, "tcpUnsent(fd): fd out of range");
  int64_t r = -ENOSYS;
#if defined(__linux__) && defined(SIOCOUTQNSD)
  int n = 0;
  r = ioctl((int)fd, SIOCOUTQNSD, &n) == 0 ? n : -errno;
#endif
  return int64_result(env, r);
}

/* setPipeSize(fd, bytes): see the header. */
static napi_value js_set_pipe_size(napi_env env, napi_callback_info info) {
  int64_t fd, bytes;
  if (!fd_and_int(env, info, "setPipeSize", "bytes", &fd, &bytes)) return NULL;
  int64_t r = -ENOSYS;
#if defined(__linux__) && defined(F_SETPIPE_SZ)
  r = fcntl((int)fd, F_SETPIPE_SZ, (int)bytes);
  if (r < 0) r = -errno;
#endif
  return int64_result(env, r);
}

/* trimHeap(): see the header. */
static napi_value js_trim_heap(napi_env env, napi_callback_info info) {
  (void)info;
  int released = 0;
#if defined(__GLIBC__)
  released = malloc_trim(0);
#endif
  napi_value result;
  if (napi_get_boolean(env, released != 0, &result) != napi_ok) return NULL;
  return result;
}

/* fixMmapThreshold(bytes): see the header. */
static napi_value js_fix_mmap_threshold(napi_env env, napi_callback_info info) {
  int64_t bytes = -1;
  if (!one_int64(env, info, "fixMmapThreshold(bytes): a number expected", &bytes)) return NULL;
  if (bytes < 4096 || bytes > 32 * 1024 * 1024) {
    return throw_range(env, "fixMmapThreshold(bytes): bytes must be in [4096, 33554432]");
  }
  int set = 0;
#if defined(__GLIBC__)
  set = mallopt(M_MMAP_THRESHOLD, (int)bytes) == 1 && mallopt(M_TRIM_THRESHOLD, (int)bytes) == 1;
#endif
  napi_value result;
  if (napi_get_boolean(env, set != 0, &result) != napi_ok) return NULL;
  return result;
}

#ifndef _WIN32
/* readPages(fd, pfns, from, to, pageSize, fileSize, out): see the header. */
/* readPages' and readPagesAsync's arguments, checked. */
typedef struct {
  int fd;
  const double *pfns;
  size_t from, to, page_size;
  uint64_t file_size;
  uint8_t *out;
} read_args;

/* Checks argv[0..6] into `a`: false, with an exception pending, when one is wrong. */
static bool get_read_args(napi_env env, napi_value *argv, read_args *a) {
  double fd;
  void *pfns;
  size_t npfns;
  double from;
  double to;
  double ps;
  double size;
  void *out;
  size_t nout;
  if (!get_whole(env, argv[0], 0, 2147483647.0, &fd)) return throw_range(env, "fd must be a non-negative integer"), false;
  if (!get_array(env, argv[1], napi_float64_array, &pfns, &npfns)) return throw_type(env, "pfns must be a Float64Array"), false;
  if (!get_whole(env, argv[2], 0, (double)npfns, &from) || !get_whole(env, argv[3], from, (double)npfns, &to)) {
    return throw_range(env, "from and to must be integers with 0 <= from <= to <= pfns.length"), false;
  }
  if (!get_whole(env, argv[4], 1, 65536, &ps)) return throw_range(env, "pageSize must be an integer from 1 to 65536"), false;
  if (!get_whole(env, argv[5], 0, 9007199254740991.0, &size)) {
    return throw_range(env, "fileSize must be a non-negative integer"), false;
  }
  if (!get_array(env, argv[6], napi_uint8_array, &out, &nout)) return throw_type(env, "out must be a Uint8Array"), false;
  const size_t n = (size_t)ps;
  if ((uint64_t)(size_t)to * n > nout) return throw_range(env, "out must hold `to` pages"), false;
  const double *p = (const double *)pfns;
  /* every pfn is checked before anything is read: a whole page number whose bytes lie below 2^53 */
  for (size_t k = (size_t)from; k < (size_t)to; k++) {
    const double v = p[k];
    if (!(v >= 0 && v * (double)n <= 9007199254740991.0 - (double)n) || v != (double)(int64_t)v) {
      return throw_range(env, "a pfn is not a page number"), false;
    }
  }
  *a = (read_args){(int)fd, p, (size_t)from, (size_t)to, n, (uint64_t)size, (uint8_t *)out};
  return true;
}

/* The reads: one pread per run of consecutive pfns. 0, or the failed read's -errno. */
static int do_read_pages(const read_args *a) {
  int rc = 0;
  for (size_t i = a->from; i < a->to && rc == 0;) {
    size_t k = i + 1;
    while (k < a->to && a->pfns[k] == a->pfns[k - 1] + 1) k++;
    rc = read_run(a->fd, a->out + i * a->page_size, (k - i) * a->page_size, (uint64_t)a->pfns[i] * a->page_size,
                  a->file_size);
    i = k;
  }
  return rc;
}

static napi_value js_read_pages(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 7) return throw_type(env, "readPages(fd, pfns, from, to, pageSize, fileSize, out): 7 arguments expected");
  read_args a;
  if (!get_read_args(env, argv, &a)) return NULL;
  return int_result(env, do_read_pages(&a));
}

/* readPagesAsync: readPages on the thread pool, then callback(rc) on the main thread. */
typedef struct {
  napi_async_work work;
  napi_ref pfns_ref, out_ref, callback_ref;
  read_args args;
  int rc;
} read_job;

static void read_job_execute(napi_env env, void *data) {
  (void)env;
  read_job *j = data;
  j->rc = do_read_pages(&j->args);
}

/*
 * The end of an async job that answers with an int: callback(rc, or -ECANCELED when the job did not
 * run) on the main thread; the callback's reference and the work are deleted first.
 */
static void call_back_int(napi_env env, napi_status status, int rc, napi_ref callback_ref, napi_async_work work) {
  napi_value callback, global, arg;
  bool ok = napi_get_reference_value(env, callback_ref, &callback) == napi_ok &&
            napi_get_global(env, &global) == napi_ok &&
            napi_create_int32(env, status == napi_ok ? rc : -ECANCELED, &arg) == napi_ok;
  napi_delete_reference(env, callback_ref);
  napi_delete_async_work(env, work);
  if (ok) napi_call_function(env, global, callback, 1, &arg, NULL); /* a throw surfaces as uncaught */
}

static void read_job_complete(napi_env env, napi_status status, void *data) {
  read_job *j = data;
  napi_ref callback_ref = j->callback_ref;
  napi_async_work work = j->work;
  int rc = j->rc;
  napi_delete_reference(env, j->pfns_ref);
  napi_delete_reference(env, j->out_ref);
  free(j);
  call_back_int(env, status, rc, callback_ref, work);
}

static napi_value js_read_pages_async(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 8) {
    return throw_type(env, "readPagesAsync(fd, pfns, from, to, pageSize, fileSize, out, callback): 8 arguments expected");
  }
  read_args a;
  if (!get_read_args(env, argv, &a)) return NULL;
  napi_valuetype t;
  if (napi_typeof(env, argv[7], &t) != napi_ok || t != napi_function) return throw_type(env, "callback must be a function");
  read_job *j = calloc(1, sizeof *j);
  if (j == NULL) {
    napi_throw_error(env, "ERR_MEMORY", "readPagesAsync: out of memory");
    return NULL;
  }
  j->args = a;
  napi_value name;
  if (napi_create_reference(env, argv[1], 1, &j->pfns_ref) != napi_ok ||
      napi_create_reference(env, argv[6], 1, &j->out_ref) != napi_ok ||
      napi_create_reference(env, argv[7], 1, &j->callback_ref) != napi_ok ||
      napi_create_string_utf8(env, "remus-wan:readPages", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, read_job_execute, read_job_complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    return NULL; /* an engine failure, which has thrown; the job leaks */
  }
  return NULL;
}
#endif

#ifndef _WIN32
/* waitReadable(fd, timeoutMs, callback): see the header. */
typedef struct {
  napi_async_work work;
  napi_ref callback_ref;
  int fd, timeout_ms, rc;
} poll_job;

static void poll_job_execute(napi_env env, void *data) {
  (void)env;
  poll_job *j = data;
  struct pollfd p = {.fd = j->fd, .events = POLLIN, .revents = 0};
  int r;
  do r = poll(&p, 1, j->timeout_ms);
  while (r < 0 && errno == EINTR);
  j->rc = r < 0 ? -errno : r == 0 ? 0 : p.revents;
}

static void poll_job_complete(napi_env env, napi_status status, void *data) {
  poll_job *j = data;
  napi_ref callback_ref = j->callback_ref;
  napi_async_work work = j->work;
  int rc = j->rc;
  free(j);
  call_back_int(env, status, rc, callback_ref, work);
}

static napi_value js_wait_readable(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int64_t fd = -1, timeout = -1;
  napi_valuetype t;
  if (argc < 3 || napi_get_value_int64(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &timeout) != napi_ok || napi_typeof(env, argv[2], &t) != napi_ok ||
      t != napi_function) {
    return throw_type(env, "waitReadable(fd, timeoutMs, callback): a number, a number and a function expected");
  }
  if (fd < 0 || fd > INT32_MAX || timeout < 0 || timeout > 60000) {
    return throw_range(env, "waitReadable(fd, timeoutMs, callback): fd or timeoutMs out of range");
  }
  poll_job *j = calloc(1, sizeof *j);
  if (j == NULL) {
    napi_throw_error(env, "ERR_MEMORY", "waitReadable: out of memory");
    return NULL;
  }
  j->fd = (int)fd;
  j->timeout_ms = (int)timeout;
  napi_value name;
  if (napi_create_reference(env, argv[2], 1, &j->callback_ref) != napi_ok ||
      napi_create_string_utf8(env, "remus-wan:waitReadable", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, poll_job_execute, poll_job_complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    return NULL;
  }
  return NULL;
}

/* mapFile(fd, length, writable): see the header. */
static napi_value js_map_file(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) return throw_type(env, "mapFile(fd, length, writable): 3 arguments expected");
  double fd;
  double length;
  bool writable;
  if (!get_whole(env, argv[0], 0, 2147483647.0, &fd)) return throw_range(env, "fd must be a non-negative integer");
  if (!get_whole(env, argv[1], 1, 9007199254740991.0, &length) || (double)(size_t)length != length) {
    return throw_range(env, "length must be a positive integer");
  }
  if (napi_get_value_bool(env, argv[2], &writable) != napi_ok) return throw_type(env, "writable must be a boolean");
  const int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void *p = mmap(NULL, (size_t)length, prot, MAP_SHARED, (int)fd, 0);
  if (p == MAP_FAILED) return int_result(env, -errno);
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, (size_t)length, NULL, NULL, &ab) != napi_ok) {
    munmap(p, (size_t)length);
    return NULL;
  }
  return ab;
}

/* releaseMemory(view): see the header. */
static napi_value js_release_memory(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  void *data;
  size_t n;
  if (argc < 1 || !get_array(env, argv[0], napi_uint8_array, &data, &n)) {
    return throw_type(env, "releaseMemory(view): a Uint8Array expected");
  }
  double released = 0;
#if defined(__linux__)
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  const uintptr_t from = ((uintptr_t)data + page - 1) / page * page;
  const uintptr_t to = ((uintptr_t)data + n) / page * page;
  if (n > 0 && to > from) {
    if (madvise((void *)from, to - from, MADV_DONTNEED) != 0) return int_result(env, -errno);
    released = (double)(to - from);
  }
#else
  (void)data;
  (void)n;
#endif
  napi_value result;
  if (napi_create_double(env, released, &result) != napi_ok) return NULL;
  return result;
}

/* unmapFile(buffer): see the header. */
static napi_value js_unmap_file(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  bool is_ab = false;
  if (argc < 1 || napi_is_arraybuffer(env, argv[0], &is_ab) != napi_ok || !is_ab) {
    return throw_type(env, "unmapFile(buffer): an ArrayBuffer from mapFile expected");
  }
  void *p = NULL;
  size_t length = 0;
  if (napi_get_arraybuffer_info(env, argv[0], &p, &length) != napi_ok) return NULL;
  if (p == NULL || length == 0) return int_result(env, 0);
  if (napi_detach_arraybuffer(env, argv[0]) != napi_ok) return NULL;
  return int_result(env, munmap(p, length) == 0 ? 0 : -errno);
}
#endif

/* workload.c: the workload generator's epoch loop (workloadContext, workloadPick, workloadMutate). */
napi_status workload_register(napi_env env, napi_value exports);
/* zstd_async.c: chunk compression on the thread pool (zstdContext, zstdCompressAsync). */
napi_status zstd_async_register(napi_env env, napi_value exports);

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"encodeDelta", NULL, js_encode_delta, NULL, NULL, NULL, napi_enumerable, NULL},
      {"applyDelta", NULL, js_apply_delta, NULL, NULL, NULL, napi_enumerable, NULL},
      {"applyDeltaHash", NULL, js_apply_delta_hash, NULL, NULL, NULL, napi_enumerable, NULL},
      {"applyDeltasHash", NULL, js_apply_deltas_hash, NULL, NULL, NULL, napi_enumerable, NULL},
      {"isZeroPage", NULL, js_is_zero_page, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hashPageInto", NULL, js_hash_page_into, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hashPages", NULL, js_hash_pages, NULL, NULL, NULL, napi_enumerable, NULL},
      {"classifyPage", NULL, js_classify_page, NULL, NULL, NULL, napi_enumerable, NULL},
      {"encodePage", NULL, js_encode_page, NULL, NULL, NULL, napi_enumerable, NULL},
      {"trimHeap", NULL, js_trim_heap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setPipeSize", NULL, js_set_pipe_size, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setTcpRtoMin", NULL, js_set_tcp_rto_min, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setTcpCongestion", NULL, js_set_tcp_congestion, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tcpUnsent", NULL, js_tcp_unsent, NULL, NULL, NULL, napi_enumerable, NULL},
#ifndef _WIN32
      {"waitReadable", NULL, js_wait_readable, NULL, NULL, NULL, napi_enumerable, NULL},
#endif
      {"fixMmapThreshold", NULL, js_fix_mmap_threshold, NULL, NULL, NULL, napi_enumerable, NULL},
#ifndef _WIN32
      {"readPages", NULL, js_read_pages, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readPagesAsync", NULL, js_read_pages_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapFile", NULL, js_map_file, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unmapFile", NULL, js_unmap_file, NULL, NULL, NULL, napi_enumerable, NULL},
      {"releaseMemory", NULL, js_release_memory, NULL, NULL, NULL, napi_enumerable, NULL},
#endif
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  if (workload_register(env, exports) != napi_ok) return NULL;
  if (zstd_async_register(env, exports) != napi_ok) return NULL;
  return exports;
}
