#!/usr/bin/env bash
# Relocation benchmark (issue 14): the client pause around a relocation of
# vol-a between the two nodes of a local pair (tools/duet-pair), TRIALS
# times (20), back and forth, while a client (tests/fault/ackwriter.py, 16
# writes of 4 KiB in flight, BENCH_RATE writes per second, 0 = no limit)
# writes vol-a through a's NBD port and another through b's. Prints, over
# the trials, p50 and max of
#   relocation   `duetctl volume relocate` to the cut-over (duetd's own
#                figure, "relocated vol-a to X in N ms")
#   pause        the longest gap between two acknowledgements of each
#                client around the relocation
# and the client errors (must be 0) and acknowledged writes lost (0).
# Volume move (throughput against cp, IOPS during a move) is not measured:
# `volume move` does not exist yet (docs/RELOCATION.md).
#
#   bench/relocate.sh [BUILD_DIR]                 (BUILD_DIR: build)
#
# Env: BENCH_TRIALS (20), BENCH_PORT_BASE (26900: P..P+3, P+100..P+101),
# BENCH_RATE (2000), BENCH_DIR ($TMPDIR or /tmp), BENCH_KEEP=1.
# Timings need a quiet machine; the exit status is 1 only on a client error
# or a lost write.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_NAME=relocate.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_args "$@"
bench_need jq python3
bench_need_build "$build"
bench_sanitizer_warn "$build"

TRIALS=${BENCH_TRIALS:-20}
P=${BENCH_PORT_BASE:-26900}
RATE=${BENCH_RATE:-2000}
PAIR=$ROOT/tools/duet-pair
ACKW=$ROOT/tests/fault/ackwriter.py
bench_workdir relocate
[ "${BENCH_KEEP:-0}" = 1 ] && trap 'echo "kept $W" >&2' EXIT
export PATH="$build/src/node:$build/tools:$PATH"
ctl() { "$DUETCTL" --socket "$W/$1.sock" "${@:2}"; }
st() { ctl "$1" status --json; }
owner_on() { st "$1" | jq -r '.volumes[] | select(.name == "vol-a") | .owner'; }
idle() { [ "$(st "$1" | jq -r .relocation.state)" = idle ]; }
now() { python3 "$ACKW" now; }

"$PAIR" up "$W" --base-port "$P" --size 256M >/dev/null
trap '"$PAIR" down "$W" >/dev/null 2>&1 || true; bench_cleanup' EXIT
for n in a b; do
	port=$P first=0
	[ $n = b ] && port=$((P + 2)) first=2048
	python3 "$ACKW" write --port "$port" \
		--export vol-a --log "$W/w$n.acks" --stop-file "$W/stop" --flush-each \
		--blocks 2048 --first-block "$first" --qd 16 \
		--rate "$RATE" --timestamps >"$W/w$n.out" 2>&1 &
	PIDS+=($!)
done
sleep 1
declare -a pauses=() took=()
from=a
for _ in $(seq 1 "$TRIALS"); do
	to=$([ $from = a ] && echo b || echo a)
	t0=$(now)
	ctl $from volume relocate vol-a >/dev/null
	bench_wait 30 idle $from
	bench_wait 30 eval '[ "$(owner_on a)" = $to ] && [ "$(owner_on b)" = $to ]'
	t1=$(now)
	sleep 0.3
	for n in a b; do
		pauses+=("$(awk -v t0="$t0" -v t1="$t1" '$1 == "A" && NF >= 4 {
			t = $4 + 0; if (n++ && t > t0 && p < t1 && t - p > g) g = t - p; p = t
		} END { printf "%.1f\n", g * 1000 }' "$W/w$n.acks")")
	done
	took+=("$(grep -h "relocated vol-a to $to in" "$W/$from.log" | tail -1 | sed 's/.* in \([0-9]*\) ms/\1/')")
	from=$to
done
touch "$W/stop"
rc=0
for p in "${PIDS[@]}"; do wait "$p" || rc=1; done
PIDS=()
lost=0
for n in a b; do
	cat "$W/w$n.out"
	python3 "$ACKW" check --log "$W/w$n.acks" --port "$P" --export vol-a || { rc=1; lost=1; }
done
stats() { printf '%s\n' "${@:2}" | sort -g | awk -v n="$1" '{v[NR]=$1} END {
	printf "%-28s n=%d p50=%.0f ms max=%.0f ms\n", n, NR, v[int((NR+1)/2)], v[NR]}'; }
echo "relocate.sh: $TRIALS relocations, load $(cut -d' ' -f1 /proc/loadavg)"
stats "relocation (cut-over)" "${took[@]}"
stats "client pause (2 clients)" "${pauses[@]}"
echo "client errors: $([ $rc = 0 ] && echo 0 || echo yes), lost writes: $lost"
exit $rc
