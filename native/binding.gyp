# The page codec's hot loops (remus_native.c) and the workload generator's epoch loop (workload.c),
# built by tools/build-native.mjs at install time.
# Portable on purpose: -O3, no -march=native, so the binary runs on any x86-64 or arm64 machine.
{
  "targets": [
    {
      "target_name": "remus_native",
      "sources": ["remus_native.c", "workload.c"],
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
