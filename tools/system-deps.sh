#!/usr/bin/env bash
# Installs the Debian packages the integration tests need, when they are missing (runs before npm test).
# A real QEMU guest is booted by test/integration: qemu-system-x86, a kernel (linux-image-amd64) and
# a static busybox for its initramfs. The failover tests run a real BGP lab: exabgp and bird2. The WAN
# lab (tools/wanlab) drops packets with nftables and measures its round trip with ping.
# With --bench-wan, also what npm run bench:wan compares against: ssh (client and server) and socat.
# Nothing is installed when everything is present.
set -euo pipefail
packages=(qemu-system-x86 linux-image-amd64 busybox-static exabgp bird2 nftables iputils-ping)
[ "${1:-}" = --bench-wan ] && packages+=(openssh-client openssh-server socat)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "missing Debian packages: ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
