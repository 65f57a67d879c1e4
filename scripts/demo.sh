#!/usr/bin/env bash
# make demo: start a local duet pair in ./demo and drive it with real NBD
# clients. The pair is left running; `make demo-stop` ends it.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
dir=$top/demo
build=${1:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
pair=$build/tools/duet-pair

if [ "${1:-}" = --stop ]; then
	pair=$top/tools/duet-pair
	[ -d "$dir" ] && DUET_BUILD=$top/build "$pair" down "$dir"
	exit 0
fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "Start a local pair (nodes a and b) in $dir"
export DUET_BUILD=$build
run "$pair" up "$dir" --size 1G

uri=nbd://127.0.0.1:10809/vol-a
step "What node a serves: nbdinfo"
run nbdinfo --list nbd://127.0.0.1:10809
run nbdinfo "$uri"

step "Write 16 MiB of random data with qemu-img, read it back and compare"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 16M /dev/urandom >"$tmp/data.img"
run qemu-img convert -n -f raw -O raw "$tmp/data.img" "$uri"
run qemu-img compare -f raw -F raw "$tmp/data.img" "$uri"

step "Allocation map: the written 16 MiB is data, the rest is a hole"
run nbdinfo --map "$uri"

step "Node status"
run "$build/tools/duetctl" --socket "$dir/a.sock" status

cat <<MSG

The pair keeps running:
  node a  $uri          control $dir/a.sock
  node b  nbd://127.0.0.1:10811/vol-b   control $dir/b.sock
  try:    nbdinfo $uri
          $build/tools/duetctl --socket $dir/a.sock status --json
  stop:   make demo-stop
MSG
