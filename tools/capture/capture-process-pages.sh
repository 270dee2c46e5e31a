#!/usr/bin/env bash
# Captures a real page corpus from a redis-server under redis-benchmark load (see
# tools/capture/capture-process-pages.ts and docs/page-log.md). Needs root (it reads /proc/PID/mem)
# and the Debian packages redis-server and redis-tools, installed here when missing.
#
#   bash tools/capture/capture-process-pages.sh [--epochs 30] [--epoch-ms 100] [--max-mib 256] \
#     [--keys 200000] [--value-bytes 256] [--clients 8] [--out tools/capture/out/redis.pagelog]
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
  echo "capture: must run as root (it reads /proc/PID/mem of the server it starts)" >&2
  exit 2
fi
packages=(redis-server redis-tools)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "capture: installing Debian packages: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  # The package may start a system instance (systemd); we start our own, so leave that one alone.
fi
js=dist/tools/capture/capture-process-pages.js
if [ ! -f "$js" ] || [ tools/capture/capture-process-pages.ts -nt "$js" ]; then
  echo "capture: building (tsc -p tsconfig.build.json)" >&2
  npx tsc -p tsconfig.build.json >/dev/null || [ -f "$js" ] # other files' type errors do not block the emit
fi
mkdir -p tools/capture/out
exec node "$js" "$@"
