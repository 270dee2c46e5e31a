/*
 * zstd_async: chunk compression on libuv's thread pool (N-API async work), so that the sender's
 * encoder can run on its main thread without a second JavaScript isolate (a worker thread costs
 * ~20 MiB resident) and still compress in parallel with it.
 *
 *   zstdContext(level)                 -> an opaque context (a ZSTD_CCtx at that level; freed with
 *                                         the context object)
 *   zstdCompressAsync(ctx, src, dst, callback)
 *                                      -> undefined; compresses src (a Uint8Array) into dst (a
 *                                         Uint8Array of at least ZSTD_compressBound(src.length)
 *                                         bytes) on the thread pool, then calls
 *                                         callback(error: string | null, bytes: number) on the
 *                                         main thread. One job per context at a time (a second
 *                                         throws); src and dst must not be touched until the
 *                                         callback. Each output is one whole zstd frame, as
 *                                         ZSTD_compressCCtx writes it.
 *
 * zstd itself is zstd-napi's static library (its deps/zstd, built at its install), linked in by
 * binding.gyp: the same version that decompresses on the other side.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <node_api.h>
#include <zstd.h>

typedef struct {
  ZSTD_CCtx *cctx;
  int level;
  bool busy;
} zctx;

typedef struct {
  napi_async_work work;
  napi_ref ctx_ref, src_ref, dst_ref, callback_ref;
  zctx *ctx;
  const void *src;
  size_t src_len;
  void *dst;
  size_t dst_cap;
  size_t result;
} zjob;

static napi_value zthrow(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

static void zctx_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  zctx *z = data;
  ZSTD_freeCCtx(z->cctx);
  free(z);
}

static napi_value js_zstd_context(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int32_t level = 0;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &level) != napi_ok) {
    return zthrow(env, "zstdContext(level): an integer level expected");
  }
  zctx *z = calloc(1, sizeof *z);
  if (z == NULL || (z->cctx = ZSTD_createCCtx()) == NULL) {
    free(z);
    napi_throw_error(env, "ERR_MEMORY", "zstdContext: out of memory");
    return NULL;
  }
  z->level = level;
  napi_value out;
  if (napi_create_external(env, z, zctx_free, NULL, &out) != napi_ok) {
    zctx_free(env, z, NULL);
    return NULL;
  }
  return out;
}

static bool typed_bytes(napi_env env, napi_value v, void **data, size_t *len) {
  bool is = false;
  napi_typedarray_type type;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  if (napi_get_typedarray_info(env, v, &type, len, data, NULL, NULL) != napi_ok) return false;
  return type == napi_uint8_array;
}

static void zjob_execute(napi_env env, void *data) {
  (void)env;
  zjob *j = data;
  j->result = ZSTD_compressCCtx(j->ctx->cctx, j->dst, j->dst_cap, j->src, j->src_len, j->ctx->level);
}

static void zjob_complete(napi_env env, napi_status status, void *data) {
  zjob *j = data;
  j->ctx->busy = false;
  napi_value callback, global, argv[2];
  bool ok = napi_get_reference_value(env, j->callback_ref, &callback) == napi_ok &&
            napi_get_global(env, &global) == napi_ok;
  if (ok) {
    if (status != napi_ok) {
      napi_create_string_utf8(env, "compression cancelled", NAPI_AUTO_LENGTH, &argv[0]);
      napi_create_int32(env, -1, &argv[1]);
    } else if (ZSTD_isError(j->result)) {
      napi_create_string_utf8(env, ZSTD_getErrorName(j->result), NAPI_AUTO_LENGTH, &argv[0]);
      napi_create_int32(env, -1, &argv[1]);
    } else {
      napi_get_null(env, &argv[0]);
      napi_create_double(env, (double)j->result, &argv[1]);
    }
  }
  napi_delete_reference(env, j->ctx_ref);
  napi_delete_reference(env, j->src_ref);
  napi_delete_reference(env, j->dst_ref);
  napi_delete_reference(env, j->callback_ref);
  napi_delete_async_work(env, j->work);
  free(j);
  if (ok) napi_call_function(env, global, callback, 2, argv, NULL); /* a throw surfaces as uncaught */
}

static napi_value js_zstd_compress_async(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  const char *usage = "zstdCompressAsync(ctx, src, dst, callback): a context, two Uint8Arrays, a function";
  if (argc < 4) return zthrow(env, usage);
  zctx *z = NULL;
  napi_valuetype t;
  if (napi_typeof(env, argv[0], &t) != napi_ok || t != napi_external ||
      napi_get_value_external(env, argv[0], (void **)&z) != napi_ok || z == NULL) {
    return zthrow(env, usage);
  }
  void *src = NULL, *dst = NULL;
  size_t src_len = 0, dst_cap = 0;
  if (!typed_bytes(env, argv[1], &src, &src_len) || !typed_bytes(env, argv[2], &dst, &dst_cap)) {
    return zthrow(env, usage);
  }
  if (napi_typeof(env, argv[3], &t) != napi_ok || t != napi_function) return zthrow(env, usage);
  if (dst_cap < ZSTD_compressBound(src_len)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "zstdCompressAsync: dst is shorter than the bound");
    return NULL;
  }
  if (z->busy) {
    napi_throw_error(env, "ERR_INVALID_STATE", "zstdCompressAsync: the context is busy");
    return NULL;
  }
  zjob *j = calloc(1, sizeof *j);
  if (j == NULL) {
    napi_throw_error(env, "ERR_MEMORY", "zstdCompressAsync: out of memory");
    return NULL;
  }
  j->ctx = z;
  j->src = src;
  j->src_len = src_len;
  j->dst = dst;
  j->dst_cap = dst_cap;
  napi_value name;
  if (napi_create_reference(env, argv[0], 1, &j->ctx_ref) != napi_ok ||
      napi_create_reference(env, argv[1], 1, &j->src_ref) != napi_ok ||
      napi_create_reference(env, argv[2], 1, &j->dst_ref) != napi_ok ||
      napi_create_reference(env, argv[3], 1, &j->callback_ref) != napi_ok ||
      napi_create_string_utf8(env, "remus-wan:zstd", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, zjob_execute, zjob_complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    /* references made so far leak with the job: only on an engine failure, which has thrown */
    return NULL;
  }
  z->busy = true;
  return NULL;
}

napi_status zstd_async_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"zstdContext", NULL, js_zstd_context, NULL, NULL, NULL, napi_enumerable, NULL},
      {"zstdCompressAsync", NULL, js_zstd_compress_async, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
