#!/usr/bin/env bash
# User-space instructions per mirrored 4 KiB write on the owner (issue 11),
# load-independent: a tools/duet-pair pair (one link, mirror on) whose node a
# runs under valgrind --tool=callgrind; callgrind's counters are zeroed,
# SYS_N (default 1000) 4 KiB random writes at queue depth 1 go to a (fio,
# nbd engine), and the counters are dumped. The nodes' background (probes,
# heartbeats) is measured idle for 3 s first and subtracted. Counts every
# thread of a (duet, libfabric, libc), not the kernel. The pair runs with
# long CCM and monitor deadlines: a node under valgrind is ~50x slower.
#
#   bench/callgrind-write.sh [BUILD_DIR]     (BUILD_DIR default: build)
#
# Env: SYS_N (1000), SYS_PORT_BASE (44860; uses base .. base+3, +100, +101).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_NAME=callgrind-write.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
real=${1:-build}
case $real in /*) ;; *) real=$ROOT/$real ;; esac
N=${SYS_N:-1000}
P=${SYS_PORT_BASE:-44860}
bench_cg_pair_up "$real" a "$P"
pa=$(cat "$D/a.pid")
fiow() {
	fio --name=w --ioengine=nbd --uri="nbd://127.0.0.1:$P/vol-a" --rw=randwrite --bs=4k --size=256m \
		--number_ios="$1" --iodepth=1 --norandommap >/dev/null 2>&1
}
bench_cg_measure "$pa" fiow "$N"
awk -v i="$idle" -v l="$load" -v ms="$ms" -v n="$N" 'BEGIN {
	net = (l - i / 3 * ms / 1000) / n
	printf "instructions per mirrored 4 KiB write on a (callgrind, %d writes, %d ms): %.0f net of background (%.0f gross)\n", n, ms, net, l / n }'
