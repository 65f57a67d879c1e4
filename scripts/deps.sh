#!/usr/bin/env bash
# Install what duet needs to build, test and demo on Debian 12.
# Installs only what is missing, so a second run costs one dpkg query.
set -euo pipefail

pkgs=(
  build-essential pkg-config meson ninja-build clang libclang-rt-14-dev clang-format
  libfabric-dev liburing-dev libinih-dev libjson-c-dev libssl-dev libcmocka-dev
  libnbd-bin python3-libnbd nbdkit qemu-utils fio
  iproute2 nftables iputils-ping jq procps python3 curl bsdutils
  libfuse3-dev fuse3
  libgnutls28-dev gnutls-bin
  libsystemd-dev libmicrohttpd-dev prometheus scdoc
  libmnl-dev
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
