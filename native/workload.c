/*
 * The workload generator's epoch loop in C: a byte-identical twin of `Workload.nextEpoch`'s draws and
 * mutations in tools/workload/generator.ts (docs/workload.md). Benchmarks play the generator into a
 * shared mapping of the image while both daemons run on the same cores; in TypeScript its page writes
 * cost the daemons a large share of the machine, far more than a guest's own stores would. The
 * TypeScript generator keeps everything else (options, the text pool, the Zipf tables, the initial
 * memory) and hands this file its arrays:
 *
 *   workloadContext(memory, rng, kind, cursor, mark, hits, picked, aliasProb, alias, rankToPfn,
 *                   mixCdf, contentCdf, poolBytes, poolStart, poolLen, poolNumAt, scalars)
 *                                     -> an opaque handle over those arrays (the caller keeps them
 *                                        alive as long as the handle); scalars = Float64Array of
 *                                        [pageSize, seedHash, heapHi, mmapHi, clockBase]
 *   workloadPick(handle, stamp, target)
 *                                     -> the epoch's draws: picked[0 .. count) and hits, as
 *                                        nextEpoch's draw loop and cold sweep; returns count
 *   workloadMutate(handle, from, to, epoch)
 *                                     -> mutates pages picked[from .. to) in order, as nextEpoch's
 *                                        mutate loop
 *
 * The random generator's state is rng[0], shared with the TypeScript side. Every expression keeps the
 * TypeScript evaluation order (two draws in one expression are taken left to right) and the same
 * double arithmetic (no FMA contraction under -std=c11, and x86-64/arm64 doubles are IEEE).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <node_api.h>

enum { ZERO = 0, TEXT = 1, STRUCT = 2, RANDOM = 3 };
enum { MUT_SPARSE = 0, MUT_APPEND = 1, MUT_REWRITE = 2, MUT_ZERO = 3, MUT_COPY = 4 };
#define EPOCH_NS 100000000.0
#define MAX_SPARSE_WORDS 32
#define POOL_LINES 4096u

static const uint32_t RECORD_FIELDS[6] = {2, 3, 4, 6, 8, 16};

typedef struct {
  uint8_t *mem;
  uint32_t *u32;
  size_t pages;
  uint32_t page_size;
  uint32_t words_per_page;
  uint32_t *rng;
  uint8_t *kind;
  uint32_t *cursor;
  uint32_t *mark;
  uint32_t *hits;
  uint32_t *picked;
  const double *alias_prob;
  const uint32_t *alias;
  const uint32_t *rank_to_pfn;
  double mix_cdf[5];
  double content_cdf[4];
  const uint8_t *pool_bytes;
  const uint32_t *pool_start;
  const uint32_t *pool_len;
  const uint32_t *pool_num_at;
  uint32_t seed_hash;
  uint32_t heap_hi;
  uint32_t mmap_hi;
  double clock_base;
} workload_t;

/* mulberry32, as Workload.r32 */
static inline uint32_t r32(workload_t *w) {
  const uint32_t a = w->rng[0] + 0x6d2b79f5u;
  w->rng[0] = a;
  uint32_t t = (a ^ (a >> 15)) * (a | 1u);
  t ^= t + (t ^ (t >> 7)) * (t | 61u);
  return t ^ (t >> 14);
}

static inline double rnd(workload_t *w) { return (double)r32(w) / 4294967296.0; }

static inline uint32_t mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

static inline int pick_index(const double *cdf, double u) {
  int i = 0;
  while (u >= cdf[i]) i++;
  return i;
}

static inline uint32_t zipf_rank(workload_t *w) {
  const uint32_t i = (uint32_t)floor(rnd(w) * (double)w->pages);
  return rnd(w) < w->alias_prob[i] ? i : w->alias[i];
}

static inline uint32_t xorshift(uint32_t *g) {
  uint32_t x = *g;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  *g = x;
  return x;
}

static void pointer(workload_t *w, size_t at) {
  const uint32_t x = r32(w);
  w->u32[at] = 0x10000000u + (x & 0x03fffff0u);
  w->u32[at + 1] = (x & 0x80000000u) ? w->mmap_hi : w->heap_hi;
}

static void sparse(workload_t *w, uint32_t pfn, uint32_t words, double epoch) {
  const uint32_t slots = w->page_size >> 3;
  const uint32_t h = mix32(pfn ^ w->seed_hash);
  const size_t base = (size_t)pfn * w->words_per_page;
  uint32_t *u = w->u32;
  for (uint32_t i = 0; i < words; i++) {
    uint32_t slot;
    int op;
    if (rnd(w) < 0.6) {
      const uint32_t which = r32(w) % 3u;
      const uint32_t hw = mix32(h + which);
      slot = hw % slots;
      op = (hw >> 30) == 0 ? 1 : 0;
    } else {
      slot = r32(w) % slots;
      op = 2 + (int)(r32(w) & 1u);
    }
    const size_t at = base + (size_t)slot * 2;
    switch (op) {
      case 0: {
        const uint64_t lo = (uint64_t)u[at] + 1u + (r32(w) & 3u);
        u[at] = (uint32_t)lo;
        if (lo > 0xffffffffu) u[at + 1] += 1u;
        break;
      }
      case 1: {
        const double ns = w->clock_base + epoch * EPOCH_NS + (double)(r32(w) % 100000000u);
        u[at] = (uint32_t)fmod(ns, 4294967296.0);
        u[at + 1] = (uint32_t)floor(ns / 4294967296.0);
        break;
      }
      case 2:
        pointer(w, at);
        break;
      default: {
        const uint32_t v = r32(w);
        u[at] = v & (rnd(w) < 0.5 ? 0xffu : 0xffffu);
      }
    }
  }
}

/* Writes 6 fresh decimal digits at line_start + num_at, skipping digits at or past `limit`. */
static void patch_number(workload_t *w, size_t line_start, uint32_t num_at, uint32_t limit) {
  uint32_t v = r32(w) % 1000000u;
  for (int64_t d = (int64_t)num_at + 5; d >= (int64_t)num_at; d--) {
    if (d < (int64_t)limit) w->mem[line_start + (size_t)d] = (uint8_t)(0x30 + v % 10u);
    v /= 10u;
  }
}

static uint32_t copy_line(workload_t *w, size_t at, size_t end) {
  const uint32_t line = r32(w) % POOL_LINES;
  const uint32_t s = w->pool_start[line];
  const size_t room = end - at;
  const uint32_t n = w->pool_len[line] < room ? w->pool_len[line] : (uint32_t)room;
  memcpy(w->mem + at, w->pool_bytes + s, n);
  const uint32_t num_at = w->pool_num_at[line];
  if (num_at != 0xffffffffu) patch_number(w, at, num_at, n);
  return n;
}

static size_t copy_lines(workload_t *w, size_t at, size_t end, uint32_t lines) {
  const uint32_t first = r32(w) % POOL_LINES;
  const uint32_t last = (first + lines < POOL_LINES ? first + lines : POOL_LINES) - 1;
  const uint32_t s = w->pool_start[first];
  const size_t span = (size_t)w->pool_start[last] + w->pool_len[last] - s;
  const size_t n = span < end - at ? span : end - at;
  memcpy(w->mem + at, w->pool_bytes + s, n);
  for (uint32_t line = first; line <= last; line++) {
    const uint32_t num_at = w->pool_num_at[line];
    if (num_at == 0xffffffffu) continue;
    const size_t line_at = w->pool_start[line] - s;
    if (line_at >= n) break;
    patch_number(w, at + line_at, num_at, (uint32_t)(n - line_at));
  }
  return at + n;
}

static void append(workload_t *w, uint32_t pfn, uint32_t lines) {
  const size_t ps = w->page_size;
  const size_t off = (size_t)pfn * ps;
  uint32_t c = w->cursor[pfn];
  for (uint32_t i = 0; i < lines; i++) {
    if (c >= ps - 16) c = 0;
    c += copy_line(w, off + c, off + ps);
  }
  w->cursor[pfn] = c;
}

static void fill_structured(workload_t *w, size_t base, uint32_t nw) {
  uint32_t *u = w->u32;
  const uint32_t variant = r32(w) % 6u;
  uint32_t g = r32(w) | 1u;
  if (variant < 4) {
    const uint32_t fields = RECORD_FIELDS[r32(w) % 6u];
    uint8_t roles[16];
    for (uint32_t f = 0; f < fields; f++) roles[f] = (uint8_t)(r32(w) % 6u);
    double q = floor((double)nw / (double)(2 * fields) / 3.0);
    const uint32_t m = (uint32_t)(q > 1 ? q : 1);
    const uint32_t used = nw - 2 * fields * (r32(w) % m);
    uint32_t serial = r32(w) & 0xffffu;
    uint32_t f = 0;
    for (size_t at = base, stop = base + used; at < stop; at += 2) {
      const uint32_t x = xorshift(&g);
      uint32_t lo = 0;
      uint32_t hi = 0;
      switch (roles[f]) {
        case 0:
          if ((x & 7u) != 0) {
            lo = 0x10000000u + (x & 0x03fffff0u);
            hi = (x & 0x80000000u) ? w->mmap_hi : w->heap_hi;
          }
          break;
        case 1:
          lo = x & 0xffu;
          hi = (x >> 8) & 0xfffu;
          break;
        case 2:
          lo = serial;
          break;
        case 3:
          lo = 1u << (x & 7u);
          break;
        case 4:
          lo = x & 0x3ffu;
          break;
        default:
          break;
      }
      u[at] = lo;
      u[at + 1] = hi;
      if (++f == fields) {
        f = 0;
        serial++;
      }
    }
    memset(u + base + used, 0, (size_t)(nw - used) * 4);
  } else if (variant == 4) {
    static const uint32_t masks[3] = {0xfu, 0xffu, 0xffffu};
    const uint32_t mask = masks[r32(w) % 3u];
    if (r32(w) & 1u) {
      uint32_t v = r32(w) & mask;
      for (uint32_t i = 0; i < nw; i++) {
        v += xorshift(&g) & 7u;
        u[base + i] = v;
      }
    } else {
      for (uint32_t i = 0; i < nw; i++) u[base + i] = xorshift(&g) & mask;
    }
  } else {
    for (uint32_t k = 0; k + 1 < nw; k += 2) {
      const uint32_t x = xorshift(&g);
      if ((x & 0x3ffu) < 307) {
        u[base + k] = 0;
        u[base + k + 1] = 0;
      } else {
        u[base + k] = 0x10000000u + (x & 0x03fffff0u);
        u[base + k + 1] = (x & 0x80000000u) ? w->mmap_hi : w->heap_hi;
      }
    }
  }
}

static void fill(workload_t *w, uint32_t pfn, int k) {
  const size_t ps = w->page_size;
  const size_t off = (size_t)pfn * ps;
  const size_t base = (size_t)pfn * w->words_per_page;
  const uint32_t nw = w->words_per_page;
  if (k == ZERO) {
    memset(w->mem + off, 0, ps);
  } else if (k == RANDOM) {
    uint32_t x = r32(w) | 1u;
    for (uint32_t i = 0; i < nw; i++) w->u32[base + i] = xorshift(&x);
  } else if (k == TEXT) {
    size_t at = off;
    const size_t end = off + ps;
    while (at < end) {
      const uint32_t lines = 4 + (r32(w) & 15u);
      at = copy_lines(w, at, end, lines);
    }
  } else {
    fill_structured(w, base, nw);
  }
}

/* Picks page `pfn` for the epoch `stamp` (one write event) unless it already is; 1 when it was not. */
static inline int pick_page(workload_t *w, uint32_t pfn, uint32_t stamp, uint32_t *count) {
  if (w->mark[pfn] == stamp) return 0;
  w->mark[pfn] = stamp;
  w->hits[pfn] = 1;
  w->picked[(*count)++] = pfn;
  return 1;
}

/* floor(log2(v)) for v >= 1 (a loop: write counts are small, and it builds with any compiler) */
static inline uint32_t log2_floor(uint32_t v) {
  uint32_t r = 0;
  while (v >>= 1) r++;
  return r;
}

static void mutate(workload_t *w, uint32_t pfn, double epoch) {
  const uint32_t hits = w->hits[pfn];
  const uint32_t log2_hits = hits == 0 ? (uint32_t)-1 : log2_floor(hits); /* hits >= 1 when picked */
  switch (pick_index(w->mix_cdf, rnd(w))) {
    case MUT_SPARSE: {
      uint32_t words = 1 + log2_hits;
      while (rnd(w) < 2.0 / 3.0) words++;
      sparse(w, pfn, words < MAX_SPARSE_WORDS ? words : MAX_SPARSE_WORDS, epoch);
      break;
    }
    case MUT_APPEND: {
      uint32_t lines = 1 + log2_hits;
      while (rnd(w) < 0.5) lines++;
      append(w, pfn, lines < 16 ? lines : 16);
      break;
    }
    case MUT_REWRITE: {
      int k = w->kind[pfn];
      if (k == ZERO) {
        const double u = w->content_cdf[0];
        k = u >= 1 ? STRUCT : pick_index(w->content_cdf, u + rnd(w) * (1 - u));
        w->kind[pfn] = (uint8_t)k;
      }
      fill(w, pfn, k);
      break;
    }
    case MUT_ZERO:
      memset(w->mem + (size_t)pfn * w->page_size, 0, w->page_size);
      break;
    case MUT_COPY: {
      uint32_t src = w->rank_to_pfn[zipf_rank(w)];
      if (src == pfn) src = (uint32_t)((pfn + 1) % w->pages);
      if (src != pfn) {
        memmove(w->mem + (size_t)pfn * w->page_size, w->mem + (size_t)src * w->page_size, w->page_size);
        w->kind[pfn] = w->kind[src];
      }
      break;
    }
    default:
      break;
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* N-API glue                                                                                     */

static napi_value fail(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

/* The typed array v of type `want` with at least `min` elements; NULL otherwise. */
static void *array_of(napi_env env, napi_value v, napi_typedarray_type want, size_t min) {
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, NULL, NULL) != napi_ok) return NULL;
  if (type != want || length < min || data == NULL) return NULL;
  return data;
}

static size_t length_of(napi_env env, napi_value v) {
  size_t length = 0;
  if (napi_get_typedarray_info(env, v, NULL, &length, NULL, NULL, NULL) != napi_ok) return 0;
  return length;
}

static void release(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static workload_t *handle_of(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return (workload_t *)p;
}

static int whole_u32(napi_env env, napi_value v, uint32_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
  if (!(d >= 0 && d <= 4294967295.0) || d != floor(d)) return 0;
  *out = (uint32_t)d;
  return 1;
}

static napi_value js_workload_context(napi_env env, napi_callback_info info) {
  size_t argc = 17;
  napi_value a[17];
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok) return NULL;
  if (argc < 17) return fail(env, "workloadContext: 17 arguments expected");
  const double *scalars = array_of(env, a[16], napi_float64_array, 5);
  if (scalars == NULL) return fail(env, "workloadContext: scalars must be a Float64Array of 5");
  const uint32_t ps = (uint32_t)scalars[0];
  const size_t pages = length_of(env, a[2]);
  if (ps < 64 || (ps & 7u) != 0 || pages == 0) return fail(env, "workloadContext: bad page size or pages");
  workload_t *w = calloc(1, sizeof *w);
  if (w == NULL) return fail(env, "workloadContext: out of memory");
  w->page_size = ps;
  w->words_per_page = ps >> 2;
  w->pages = pages;
  w->mem = array_of(env, a[0], napi_uint8_array, pages * ps);
  w->u32 = (uint32_t *)w->mem;
  w->rng = array_of(env, a[1], napi_uint32_array, 1);
  w->kind = array_of(env, a[2], napi_uint8_array, pages);
  w->cursor = array_of(env, a[3], napi_uint32_array, pages);
  w->mark = array_of(env, a[4], napi_uint32_array, pages);
  w->hits = array_of(env, a[5], napi_uint32_array, pages);
  w->picked = array_of(env, a[6], napi_uint32_array, pages);
  w->alias_prob = array_of(env, a[7], napi_float64_array, pages);
  w->alias = array_of(env, a[8], napi_uint32_array, pages);
  w->rank_to_pfn = array_of(env, a[9], napi_uint32_array, pages);
  const double *mix = array_of(env, a[10], napi_float64_array, 5);
  const double *content = array_of(env, a[11], napi_float64_array, 4);
  w->pool_bytes = array_of(env, a[12], napi_uint8_array, 1);
  w->pool_start = array_of(env, a[13], napi_uint32_array, POOL_LINES);
  w->pool_len = array_of(env, a[14], napi_uint32_array, POOL_LINES);
  w->pool_num_at = array_of(env, a[15], napi_uint32_array, POOL_LINES);
  if (w->mem == NULL || ((uintptr_t)w->mem & 3u) != 0 || w->rng == NULL || w->kind == NULL ||
      w->cursor == NULL || w->mark == NULL || w->hits == NULL || w->picked == NULL ||
      w->alias_prob == NULL || w->alias == NULL || w->rank_to_pfn == NULL || mix == NULL ||
      content == NULL || w->pool_bytes == NULL || w->pool_start == NULL || w->pool_len == NULL ||
      w->pool_num_at == NULL) {
    free(w);
    return fail(env, "workloadContext: an array is missing, of the wrong type or too short");
  }
  const size_t pool_bytes = length_of(env, a[12]);
  for (uint32_t i = 0; i < POOL_LINES; i++) {
    if ((size_t)w->pool_start[i] + w->pool_len[i] > pool_bytes) {
      free(w);
      return fail(env, "workloadContext: a pool line lies outside the pool's bytes");
    }
  }
  memcpy(w->mix_cdf, mix, sizeof w->mix_cdf);
  memcpy(w->content_cdf, content, sizeof w->content_cdf);
  w->seed_hash = (uint32_t)scalars[1];
  w->heap_hi = (uint32_t)scalars[2];
  w->mmap_hi = (uint32_t)scalars[3];
  w->clock_base = scalars[4];
  napi_value handle;
  if (napi_create_external(env, w, release, NULL, &handle) != napi_ok) {
    free(w);
    return NULL;
  }
  return handle;
}

static napi_value js_workload_pick(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value a[3];
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok) return NULL;
  workload_t *w = argc < 3 ? NULL : handle_of(env, a[0]);
  uint32_t stamp;
  uint32_t target;
  if (w == NULL || !whole_u32(env, a[1], &stamp) || !whole_u32(env, a[2], &target) || target > w->pages) {
    return fail(env, "workloadPick(handle, stamp, target): bad arguments");
  }
  uint32_t count = 0;
  const uint64_t max_draws = 16ull * target + 64;
  for (uint64_t d = 0; count < target && d < max_draws; d++) {
    const uint32_t pfn = w->rank_to_pfn[zipf_rank(w)];
    if (!pick_page(w, pfn, stamp, &count)) w->hits[pfn]++; /* drawn again: one more write event */
  }
  /* the cold tail: one contiguous sweep */
  uint32_t pfn = (uint32_t)(r32(w) % w->pages);
  for (size_t n = 0; count < target && n < w->pages; n++) {
    pick_page(w, pfn, stamp, &count);
    pfn = pfn + 1 == w->pages ? 0 : pfn + 1;
  }
  napi_value result;
  if (napi_create_uint32(env, count, &result) != napi_ok) return NULL;
  return result;
}

static napi_value js_workload_mutate(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value a[4];
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok) return NULL;
  workload_t *w = argc < 4 ? NULL : handle_of(env, a[0]);
  uint32_t from;
  uint32_t to;
  double epoch;
  if (w == NULL || !whole_u32(env, a[1], &from) || !whole_u32(env, a[2], &to) || from > to || to > w->pages ||
      napi_get_value_double(env, a[3], &epoch) != napi_ok || !(epoch >= 0 && epoch == floor(epoch))) {
    return fail(env, "workloadMutate(handle, from, to, epoch): bad arguments");
  }
  for (uint32_t i = from; i < to; i++) mutate(w, w->picked[i], epoch);
  return NULL;
}

/* Adds the three functions to `exports` (called from remus_native.c's module init). */
napi_status workload_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"workloadContext", NULL, js_workload_context, NULL, NULL, NULL, napi_enumerable, NULL},
      {"workloadPick", NULL, js_workload_pick, NULL, NULL, NULL, napi_enumerable, NULL},
      {"workloadMutate", NULL, js_workload_mutate, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
