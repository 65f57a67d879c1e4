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

# Ports as duet-pair: a NBD P, a proxy P+1, b NBD P+2, b proxy P+3.
P=${DUET_DEMO_PORT:-10809}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "Start a local pair (nodes a and b) in $dir"
export DUET_BUILD=$build
run "$pair" up "$dir" --size 1G --base-port "$P"

uri=nbd://127.0.0.1:$P/vol-a
step "What node a serves: nbdinfo"
run nbdinfo --list "nbd://127.0.0.1:$P"
run nbdinfo "$uri"

step "Write 16 MiB of random data with qemu-img, read it back and compare"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 16M /dev/urandom >"$tmp/data.img"
run qemu-img convert -n -f raw -O raw "$tmp/data.img" "$uri"
run qemu-img compare -f raw -F raw "$tmp/data.img" "$uri"

step "Allocation map: the written 16 MiB is data, the rest is a hole"
run nbdinfo --map "$uri"

proxy=nbd://127.0.0.1:$((P + 1))/vol-b
direct=nbd://127.0.0.1:$((P + 2))/vol-b
step "Node b's volume through node a's proxy port (forwarded over the interconnect)"
run nbdinfo "$proxy"
head -c 16M /dev/urandom >"$tmp/data-b.img"
run qemu-img convert -n -f raw -O raw "$tmp/data-b.img" "$proxy"
run qemu-img compare -f raw -F raw "$tmp/data-b.img" "$proxy"

step "The same data, read through node b's own port"
run qemu-img compare -f raw -F raw "$tmp/data-b.img" "$direct"

step "Node status"
run "$build/tools/duetctl" --socket "$dir/a.sock" status
printf '$ duetctl --socket %s status --json | jq .proxy\n' "$dir/a.sock"
"$build/tools/duetctl" --socket "$dir/a.sock" status --json | jq '.proxy | {state, partner, commands, bytes_read, bytes_written, errors, retries, timeouts}'

cat <<MSG

The pair keeps running:
  node a  $uri          control $dir/a.sock
  node b  $direct   control $dir/b.sock
  node b's volume through node a's proxy port: $proxy
  try:    nbdinfo $uri
          $build/tools/duetctl --socket $dir/a.sock status --json
  stop:   make demo-stop
MSG
