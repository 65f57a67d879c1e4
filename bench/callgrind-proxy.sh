#!/usr/bin/env bash
# User-space instructions per proxied request (issue 11: 4 KiB), on the
# forwarding node b or the owner a (CG_NODE), load-independent: a
# tools/duet-pair pair (one link, mirror on) whose node CG_NODE runs under
# valgrind --tool=callgrind; callgrind's counters are zeroed, SYS_N
# (default 1000) random requests of CG_BS bytes (default 4k; 1m for the
# proxy's copies of big data) (CG_RW: randread or randwrite) at
# queue depth CG_QD (default 1) go to vol-a through b's proxy port (fio, nbd engine), and
# the counters are dumped. The nodes' background (probes, heartbeats) is
# measured idle for 3 s first and subtracted. Counts every thread of the
# node (duet, libfabric, libc, OpenSSL), not the kernel. The pair runs with
# long CCM and monitor deadlines: a node under valgrind is ~50x slower.
# The heaviest functions of the run: callgrind_annotate on the kept file
# (CG_KEEP=DIR copies it there).
#
#   bench/callgrind-proxy.sh [BUILD_DIR]     (BUILD_DIR default: build)
#
# Env: SYS_N (1000), SYS_PORT_BASE (44880; uses base .. base+3, +100, +101),
#      CG_NODE (b), CG_RW (randread), CG_BS (4k), CG_QD (1), CG_KEEP.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_NAME=callgrind-proxy.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
real=${1:-build}
case $real in /*) ;; *) real=$ROOT/$real ;; esac
N=${SYS_N:-1000}
P=${SYS_PORT_BASE:-44880}
NODE=${CG_NODE:-b}
RW=${CG_RW:-randread}
QD=${CG_QD:-1}
BS=${CG_BS:-4k}
BS_BYTES=$(numfmt --from=iec "${BS^^}")
case $NODE in a | b) ;; *) echo "callgrind-proxy.sh: CG_NODE is a or b" >&2; exit 2 ;; esac
bench_cg_pair_up "$real" "$NODE" "$P"
bench_cg_wait_status "$D/b.sock" .proxy.state up
fio --name=fill --ioengine=nbd --uri="nbd://127.0.0.1:$P/vol-a" --rw=write --bs=1m --size=64m \
	--iodepth=4 >/dev/null 2>&1
pa=$(cat "$D/$NODE.pid")
fiow() {
	fio --name=w --ioengine=nbd --uri="nbd://127.0.0.1:$((P + 3))/vol-a" --rw="$RW" --bs="$BS" --size=64m \
		--io_size=$(($1 * BS_BYTES)) --iodepth="$QD" --norandommap >/dev/null 2>&1
}
bench_cg_measure "$pa" fiow "$N"
awk -v rw="$RW" -v bs="$BS" -v qd="$QD" -v node="$NODE" -v i="$idle" -v l="$load" -v ms="$ms" -v n="$N" 'BEGIN {
	net = (l - i / 3 * ms / 1000) / n
	printf "instructions per proxied %s %s at qd%d on %s (callgrind, %d requests, %d ms): %.0f net of background (%.0f gross)\n", bs, rw, qd, node, n, ms, net, l / n }'
if [ -n "${CG_KEEP:-}" ]; then cp "$W"/cg.out.*.2 "$CG_KEEP/"; fi
