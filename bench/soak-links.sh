#!/usr/bin/env bash
# Links that stay up under load (issue 11): a local pair (tools/duet-pair,
# nodes a and b on loopback, two interconnect links ic0 127.0.0.1 and ic1
# 127.0.0.2, mirror on, failover monitor on) under
#   - a saturating 1 MiB mirrored write stream on each node (fio, nbd
#     engine, sequential 1 MiB writes, SOAK_DEPTH in flight, time-based) to
#     its own volume: every write logged and RDMA-written into the partner;
#   - SOAK_BUSY busy loops (default 4: two per core on this 2-core machine)
#     at normal priority, for the whole run;
# for SOAK_SECONDS (default 300). Then it counts, from both nodes' logs:
#   take-outs   "link icN down" lines (the CCM took a link out), and the
#               lines where the last link was kept with no sign of life
#   no link     "no link left" lines
#   takeovers   "writing takeover mark" lines (a false takeover: nobody died)
#   sessions    CCM session ends
# and fio's errors and MiB/s per node. Target: 0 take-outs, 0 takeovers,
# no client error. Exit 1 when one is missed.
#
#   bench/soak-links.sh [BUILD_DIR]            (BUILD_DIR default: build)
#
# Env: SOAK_SECONDS (300), SOAK_BUSY (4), SOAK_DEPTH (8), SOAK_SIZE (volume,
#      1G), SOAK_PORT_BASE (first of the ports, 44500; the pair uses base
#      .. base+3 and base+100, +101), SOAK_REALTIME (auto | on | off: [node]
#      realtime of both nodes, default auto, duetd's), SOAK_LEVEL (log level, info),
#      BENCH_DIR (work directory parent), KEEP=1 keeps the work directory.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
SECS=${SOAK_SECONDS:-300}
BUSY=${SOAK_BUSY:-4}
DEPTH=${SOAK_DEPTH:-8}
SIZE=${SOAK_SIZE:-1G}
P=${SOAK_PORT_BASE:-44500}
RT=${SOAK_REALTIME:-auto}
LEVEL=${SOAK_LEVEL:-info}
PAIR=$ROOT/tools/duet-pair
export DUET_BUILD=$BUILD

for t in fio jq; do
	command -v "$t" >/dev/null || { echo "soak-links.sh: needs $t" >&2; exit 2; }
done
fio --enghelp=nbd >/dev/null 2>&1 || { echo "soak-links.sh: fio has no nbd engine" >&2; exit 2; }
[ -x "$BUILD/src/node/duetd" ] || { echo "soak-links.sh: no $BUILD/src/node/duetd" >&2; exit 2; }

W=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/duet-soak.XXXXXX")
BUSY_PIDS=()
FIO_PIDS=()
cleanup() {
	local p
	set +e
	for p in ${BUSY_PIDS[@]+"${BUSY_PIDS[@]}"} ${FIO_PIDS[@]+"${FIO_PIDS[@]}"}; do
		kill -s TERM "$p" 2>/dev/null
	done
	for p in ${BUSY_PIDS[@]+"${BUSY_PIDS[@]}"} ${FIO_PIDS[@]+"${FIO_PIDS[@]}"}; do
		wait "$p" 2>/dev/null
	done
	"$PAIR" down "$W/pair" >/dev/null 2>&1
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$PAIR" up "$W/pair" --base-port "$P" --links 2 --size "$SIZE" --log-level "$LEVEL" \
	--realtime "$RT" >/dev/null || { echo "soak-links.sh: the pair did not start" >&2; exit 1; }
ctl() { "$BUILD/tools/duetctl" --socket "$W/pair/$1.sock" "${@:2}"; }
msync() { [ "$(ctl "$1" status --json | jq -r .mirror.state)" = in_sync ]; }
for i in $(seq 1 300); do
	msync a && msync b && break
	sleep 0.1
done
msync a && msync b || { echo "soak-links.sh: the mirrors are not in sync" >&2; exit 1; }

mark() { wc -l <"$W/pair/$1.log"; }
ma=$(mark a) mb=$(mark b)
uptime >"$W/load-before"

for ((i = 0; i < BUSY; i++)); do
	bash -c 'while :; do :; done' &
	BUSY_PIDS+=($!)
done
port_a=$P port_b=$((P + 2))
for n in a b; do
	pv=port_$n
	fio --name="soak-$n" --ioengine=nbd --uri="nbd://127.0.0.1:${!pv}/vol-$n" --rw=write \
		--bs=1m --iodepth="$DEPTH" --size="$SIZE" --time_based --runtime="$SECS" \
		--output-format=json --output="$W/fio-$n.json" >/dev/null 2>"$W/fio-$n.err" &
	FIO_PIDS+=($!)
done
rc_a=0 rc_b=0
wait "${FIO_PIDS[0]}" || rc_a=$?
wait "${FIO_PIDS[1]}" || rc_b=$?
FIO_PIDS=()
uptime >"$W/load-after"
for p in "${BUSY_PIDS[@]}"; do kill -s TERM "$p" 2>/dev/null || true; done
for p in "${BUSY_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
BUSY_PIDS=()

since() { tail -n +"$(($2 + 1))" "$W/pair/$1.log"; }
cnt() { since "$1" "$2" | grep -c -- "$3" || true; }
fail=0
echo "## soak: 2 links, a 1 MiB mirrored write stream (iodepth $DEPTH) on each node, $BUSY busy loops, ${SECS} s, [node] realtime = $RT"
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD), build $BUILD"
echo "- load before: $(sed 's/.*load average: //' "$W/load-before"), after: $(sed 's/.*load average: //' "$W/load-after")"
echo
echo "| node | MiB/s written | fio errors | links taken out | last link kept stale | no link left | takeover marks | CCM sessions ended | SCHED_RR |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
for n in a b; do
	m=m$n rcv=rc_$n
	mibs=$(jq -r '.jobs[0].write.bw_bytes / 1048576 | floor' "$W/fio-$n.json" 2>/dev/null || echo "?")
	ferr=$(jq -r '.jobs[0].error' "$W/fio-$n.json" 2>/dev/null || echo "?")
	[ "${!rcv}" = 0 ] || ferr="exit ${!rcv}"
	outs=$(cnt "$n" "${!m}" "link ic[0-9] down")
	stale=$(cnt "$n" "${!m}" "but it is the last link up")
	nll=$(cnt "$n" "${!m}" "no link left")
	tko=$(cnt "$n" "${!m}" "writing takeover mark")
	sess=$(cnt "$n" "${!m}" "ccm: session with .* ended")
	rr=$(ctl "$n" status --json | jq -r '.realtime | if .active then "yes" +
		(if .late_ms then " (switched \(.late_ms) ms late)" else "" end) else "no" end')
	echo "| $n | $mibs | $ferr | $outs | $stale | $nll | $tko | $sess | $rr |"
	[ "$ferr" = 0 ] && [ "$outs" = 0 ] && [ "$tko" = 0 ] && [ "$sess" = 0 ] || fail=1
done
for n in a b; do
	m=m$n
	since "$n" "${!m}" | { grep -E "link ic[0-9] down|no link left|takeover|session with .* ended|ms late" || true; } |
		head -n 5 | sed "s/^/   $n: /"
done
echo
if [ $fail = 0 ]; then
	echo "target met: 0 link take-outs, 0 takeovers, no client error"
else
	echo "target MISSED (see the lines above; KEEP=1 keeps $W)"
	[ -s "$W/fio-a.err" ] && sed 's/^/   fio a: /' "$W/fio-a.err" | head -n 5
	[ -s "$W/fio-b.err" ] && sed 's/^/   fio b: /' "$W/fio-b.err" | head -n 5
fi
exit $fail
