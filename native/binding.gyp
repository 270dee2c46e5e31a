# The page codec's hot loops (remus_native.c), the workload generator's epoch loop (workload.c) and
# chunk compression on the thread pool (zstd_async.c),
# built by tools/build-native.mjs at install time.
# zstd_async.c links zstd-napi's static zstd (built at its install, before this package's) and includes its
# headers: the same zstd as the decompressing side.
# Portable on purpose: -O3, no -march=native, so the binary runs on any x86-64 or arm64 machine.
{
  "targets": [
    {
      "target_name": "remus_native",
      "sources": ["remus_native.c", "workload.c", "zstd_async.c"],
      "variables": {
        "zstd_napi": "<!(node -p \"require('path').dirname(require.resolve('zstd-napi/package.json'))\")"
      },
      "include_dirs": ["<(zstd_napi)/deps/zstd/lib"],
      "libraries": ["<(zstd_napi)/build/Release/zstd.a"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=c11", "-O3", "-Wall", "-Wextra", "-fvisibility=hidden"],
      "cflags!": ["-O2", "-Os", "-O0"],
      "xcode_settings": {
        "GCC_OPTIMIZATION_LEVEL": "3",
        "GCC_C_LANGUAGE_STANDARD": "c11",
        "GCC_SYMBOLS_PRIVATE_EXTERN": "YES"
      },
      "msvs_settings": {
        "VCCLCompilerTool": { "Optimization": 2, "AdditionalOptions": ["/std:c11"] }
      }
    }
  ]
}
