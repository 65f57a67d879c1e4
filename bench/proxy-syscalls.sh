#!/usr/bin/env bash
# System calls per proxied request at any queue depth (issue 11), by kind,
# counted with `perf stat -p` on each node (tracepoints, no stop at every
# call as with strace, so batching stays as it is without a tracer: at
# queue depth 32 strace's slowdown merges requests into big batches and
# understates the calls). A tools/duet-pair pair (one link); fio (nbd
# engine) sends SYS_N 4 KiB requests of each kind to vol-a through b's
# proxy port (b forwards, a serves). Gross counts: the idle background
# (probes) adds about 0.1 per request. Needs perf with tracepoint access.
#
#   bench/proxy-syscalls.sh [BUILD_DIR]     (BUILD_DIR default: build)
#
# Env: SYS_N (4000), SYS_QD (32), SYS_RWS ("randread randwrite"),
#      SYS_PORT_BASE (44540; uses base .. base+3, +100, +101).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
N=${SYS_N:-4000} QD=${SYS_QD:-32} P=${SYS_PORT_BASE:-44540}
for t in fio jq perf; do
	command -v "$t" >/dev/null || { echo "proxy-syscalls.sh: needs $t" >&2; exit 2; }
done
perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1 ||
	{ echo "proxy-syscalls.sh: perf cannot count tracepoints here" >&2; exit 2; }
W=$(mktemp -d "${TMPDIR:-/tmp}/duet-psys.XXXXXX")
export DUET_BUILD=$BUILD
cleanup() { "$ROOT/tools/duet-pair" down "$W/pair" >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
"$ROOT/tools/duet-pair" up "$W/pair" --base-port "$P" --links 1 --size 256M --log-level warn >/dev/null
ctl() { "$BUILD/tools/duetctl" --socket "$W/pair/$1.sock" "${@:2}"; }
for i in $(seq 1 300); do
	[ "$(ctl a status --json | jq -r .mirror.state)" = in_sync ] &&
		[ "$(ctl b status --json | jq -r .proxy.state)" = up ] && break
	sleep 0.1
done
fio --name=fill --ioengine=nbd --uri="nbd://127.0.0.1:$P/vol-a" --rw=write --bs=1m --size=256m \
	--iodepth=4 >/dev/null 2>&1
ev=
for s in epoll_wait epoll_pwait2 read write readv writev sendmsg recvmsg sendto recvfrom \
	io_uring_enter futex; do
	ev+="syscalls:sys_enter_$s,"
done
ev+=raw_syscalls:sys_enter,context-switches
echo "## system calls per proxied 4 KiB request at queue depth $QD (perf stat, $N requests)"
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD), build $BUILD, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
for rw in ${SYS_RWS:-randread randwrite}; do
	r0=$(ctl b status --json | jq .proxy.requests)
	pp=()
	for x in a b; do
		perf stat -x, -e "$ev" -p "$(cat "$W/pair/$x.pid")" -o "$W/perf-$x.txt" &
		pp+=($!)
	done
	sleep 0.5
	fio --name=ops --ioengine=nbd --uri="nbd://127.0.0.1:$((P + 3))/vol-a" --rw="$rw" --bs=4k \
		--iodepth="$QD" --number_ios="$N" --size=256m --norandommap --randrepeat=0 >/dev/null 2>&1
	kill -INT "${pp[@]}" 2>/dev/null || true
	wait "${pp[@]}" 2>/dev/null || true
	r=$(($(ctl b status --json | jq .proxy.requests) - r0))
	[ "$r" -gt 0 ] || { echo "proxy-syscalls.sh: b forwarded nothing (took vol-a over?)" >&2; exit 1; }
	for x in b a; do
		echo "- $rw, $x ($([ $x = b ] && echo forwards || echo serves)): $(awk -F, -v r="$r" '$1 ~ /^[0-9]+$/ && $1 > 0 {
			n = $3; sub(/.*sys_enter_/, "", n); sub(/raw_syscalls:sys_enter/, "all", n)
			printf "%s %.1f, ", n, $1 / r }' "$W/perf-$x.txt" | sed 's/, $//')"
	done
done
