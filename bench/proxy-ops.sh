#!/usr/bin/env bash
# Fabric operations and messages per proxied request (issue 11), from the
# nodes' own counters: load-independent at queue depth 1 (at higher depths
# how many requests share a batch depends on timing). A tools/duet-pair
# pair (one link); fio (nbd engine) sends SYS_N requests of each case to
# vol-a through b's proxy port, so b forwards and a serves. Per request and
# node: the proxy client's CCM messages sent and received
# (ccm_clients[].msgs_sent/msgs_received), its standalone acks
# (acks_sent), and the link's completed operations (links[].ops: message
# sends, RDMA reads and writes, probes; net of the probes' background,
# measured idle for 2 s first). Receives are the partner's sends. Also
# each node's CPU time per request (every thread's run time from
# /proc/PID/task/*/schedstat, user and kernel, net of the idle background):
# less dependent on the machine's load than wall-clock rates, though at
# higher depths it too depends on how many requests share a loop turn.
# With perf (tracepoints allowed: perf_event_paranoid <= 1 or root), each
# node's system calls and context switches per request (gross, the idle
# background not subtracted: it is ~0.1 per request), counted by
# `perf stat -p` without stopping the node at each call as strace does, so
# at queue depth 32 batching stays as it is without a tracer.
#
#   bench/proxy-ops.sh [BUILD_DIR]     (BUILD_DIR default: build)
#
# Env: SYS_N requests per case (default 2000; 1 MiB cases use N/8),
#      SYS_PORT_BASE (44900; uses base .. base+3, +100, +101),
#      OPS_CASES (subset of "randread-4k-qd1 randwrite-4k-qd1
#      randread-4k-qd32 randwrite-4k-qd32 read-1m-qd8 write-1m-qd8").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
N=${SYS_N:-2000}
P=${SYS_PORT_BASE:-44900}
CASES=${OPS_CASES:-randread-4k-qd1 randwrite-4k-qd1 randread-4k-qd32 randwrite-4k-qd32 read-1m-qd8 write-1m-qd8}
PAIR=$ROOT/tools/duet-pair
DUETCTL=$BUILD/tools/duetctl
export DUET_BUILD=$BUILD
for t in fio jq; do
	command -v "$t" >/dev/null || { echo "proxy-ops.sh: needs $t" >&2; exit 2; }
done
PERF=0
perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1 && PERF=1
W=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/duet-ops.XXXXXX")
cleanup() { "$PAIR" down "$W/pair" >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

"$PAIR" up "$W/pair" --base-port "$P" --links 1 --size 256M --log-level warn >/dev/null
ctl() { "$DUETCTL" --socket "$W/pair/$1.sock" "${@:2}"; }
for i in $(seq 1 300); do
	[ "$(ctl a status --json | jq -r .mirror.state)" = in_sync ] &&
		[ "$(ctl b status --json | jq -r .proxy.state)" = up ] && break
	sleep 0.1
done
fio --name=fill --ioengine=nbd --uri="nbd://127.0.0.1:$P/vol-a" --rw=write --bs=1m \
	--size=256m --iodepth=4 >/dev/null 2>&1

# snap NODE: "link_ops msgs_sent msgs_received acks_sent forwarded served"
snap() {
	ctl "$1" status --json | jq -r '[([.links[].ops] | add),
		(.ccm_clients[] | select(.name == "proxy") | .msgs_sent, .msgs_received, (.acks_sent // 0)),
		.proxy.requests, .proxy.served.requests] | map(tostring) | join(" ")'
}
# cpu NODE: nanoseconds on CPU, all threads so far
cpu() { cat /proc/"$(cat "$W/pair/$1.pid")"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%d", s }'; }
# The probes' background: link operations per second, idle.
a0=$(snap a) b0=$(snap b) ca0=$(cpu a) cb0=$(cpu b)
sleep 2
a1=$(snap a) b1=$(snap b) ca1=$(cpu a) cb1=$(cpu b)
cbg_a=$(((ca1 - ca0) / 2)) cbg_b=$(((cb1 - cb0) / 2))
bg_a=$(awk -v x="$a0" -v y="$a1" 'BEGIN { split(x, p); split(y, q); print (q[1] - p[1]) / 2 }')
bg_b=$(awk -v x="$b0" -v y="$b1" 'BEGIN { split(x, p); split(y, q); print (q[1] - p[1]) / 2 }')

echo "## fabric operations and messages per proxied request (b forwards, a serves; one link)"
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- background link operations (probes) per second, idle: a $bg_a, b $bg_b; CPU ms per second, idle: a $((cbg_a / 1000000)), b $((cbg_b / 1000000))"
echo
echo "| case | requests | b: link ops (net) | b: msgs sent / received | b: standalone acks | a: link ops (net) | a: msgs sent / received | a: standalone acks | b: CPU µs | a: CPU µs | b: syscalls / ctx switches | a: syscalls / ctx switches |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for c in $CASES; do
	IFS=- read -r rw bs qd <<<"$c"
	n=$N
	[ "$bs" = 1m ] && n=$((N / 8))
	a0=$(snap a) b0=$(snap b)
	pp=()
	if [ "$PERF" = 1 ]; then
		for x in a b; do
			perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$(cat "$W/pair/$x.pid")" \
				-o "$W/perf-$x.txt" 2>/dev/null &
			pp+=($!)
		done
		sleep 0.5
	fi
	ca0=$(cpu a) cb0=$(cpu b)
	t0=$(date +%s%N)
	fio --name=ops --ioengine=nbd --uri="nbd://127.0.0.1:$((P + 3))/vol-a" --rw="$rw" \
		--bs="$bs" --iodepth="${qd#qd}" --number_ios="$n" --size=256m --norandommap \
		--randrepeat=0 >/dev/null 2>"$W/fio.err" || { cat "$W/fio.err" >&2; exit 1; }
	t1=$(date +%s%N)
	ca1=$(cpu a) cb1=$(cpu b)
	pa=("" "") pb=("" "")
	if [ "$PERF" = 1 ]; then
		kill -INT "${pp[@]}" 2>/dev/null || true
		wait "${pp[@]}" 2>/dev/null || true
		pa=($(awk -F, '{ print $1 }' "$W/perf-a.txt" | grep -E '^[0-9]+$'))
		pb=($(awk -F, '{ print $1 }' "$W/perf-b.txt" | grep -E '^[0-9]+$'))
	fi
	a1=$(snap a) b1=$(snap b)
	awk -v c="$c" -v a0="$a0" -v a1="$a1" -v b0="$b0" -v b1="$b1" -v bga="$bg_a" \
		-v bgb="$bg_b" -v s=$(((t1 - t0) / 1000000)) -v ca=$((ca1 - ca0)) -v cb=$((cb1 - cb0)) \
		-v cbga="$cbg_a" -v cbgb="$cbg_b" -v sa="${pa[0]:-}" -v xa="${pa[1]:-}" \
		-v sb="${pb[0]:-}" -v xb="${pb[1]:-}" 'BEGIN {
		split(a0, p); split(a1, q); split(b0, x); split(b1, y)
		r = y[5] - x[5]
		if (r <= 0) { print "| " c " | 0 | | | | | | | | | | |"; exit }
		pb = sb == "" ? "-" : sprintf("%.1f / %.2f", sb / r, xb / r)
		pa = sa == "" ? "-" : sprintf("%.1f / %.2f", sa / r, xa / r)
		printf "| %s | %d | %.2f | %.2f / %.2f | %.2f | %.2f | %.2f / %.2f | %.2f | %.1f | %.1f | %s | %s |\n", c, r,
			(y[1] - x[1] - bgb * s / 1000) / r, (y[2] - x[2]) / r, (y[3] - x[3]) / r,
			(y[4] - x[4]) / r, (q[1] - p[1] - bga * s / 1000) / r, (q[2] - p[2]) / r,
			(q[3] - p[3]) / r, (q[4] - p[4]) / r, (cb - cbgb * s / 1000) / r / 1000,
			(ca - cbga * s / 1000) / r / 1000, pb, pa }'
done
