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
# Then volume move (issue 14 part 3) of vol-m (BENCH_MOVE_SIZE, filled
# with fio first so that every byte is copied):
#   move vs cp   the move's throughput (size / duetd's "after N ms", the
#                cut-over included) while a client writes vol-m at 25% of
#                its unloaded rate, against `cp` of the same file to the
#                other shelf in the same run (target >= 0.7x)
#   client IOPS  an unlimited client's IOPS on vol-m during a move back
#                (through the owner's port, b's), against its IOPS right
#                before on the same port without a move (target >= 0.7x);
#                the unloaded figure on a's port is printed too (a client
#                of a's port reaches vol-m on b forwarded, at about half
#                the IOPS: that path, not the move, made the 0.50x of the
#                first measurement)
#
#   bench/relocate.sh [BUILD_DIR]                 (BUILD_DIR: build)
#
# Env: BENCH_TRIALS (20), BENCH_PORT_BASE (26900: P..P+3, P+100..P+101),
# BENCH_RATE (2000), BENCH_MOVE_SIZE (1G), BENCH_SECONDS (unloaded client
# run, 5), BENCH_DIR ($TMPDIR or /tmp), BENCH_KEEP=1.
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
export DUET_BUILD=$build # tools/duet-pair's duetd
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

# ---- volume move ----
MSIZE=${BENCH_MOVE_SIZE:-1G}
MSECS=${BENCH_SECONDS:-5}
[ "$(owner_on a)" = a ] || { ctl b volume relocate vol-a >/dev/null && bench_wait 30 idle b; }
ctl a volume create vol-m "$MSIZE" >/dev/null
bench_wait 30 eval '[ "$(st b | jq -r '"'"'[.volumes[] | select(.name == "vol-m")] | length'"'"')" -ge 1 ]'
bench_need fio
bench_need_fio_nbd
bench_prefill vol-m "nbd://127.0.0.1:$P/vol-m" "$MSIZE"
bytes=$(stat -c %s "$W/shelf-a/volumes/vol-m.img")
mv_state() { st "$1" | jq -r .move.state; }
mv_ms() { grep -h "move of vol-m to $1's shelf: done" "$W/$2.log" | tail -1 |
	sed 's/.* after \([0-9]*\) ms.*/\1/'; }
# client NAME SECONDS|0 RATE [PORT]: ackwriter on vol-m through a's port
# (or PORT).
client() {
	local extra=()
	[ "$2" != 0 ] && extra=(--seconds "$2")
	python3 "$ACKW" write --port "${4:-$P}" --export vol-m --log "$W/$1.acks" \
		--stop-file "$W/$1.stop" --blocks 4096 --qd 16 --rate "$3" --timestamps \
		"${extra[@]}" >"$W/$1.out" 2>&1
}
acks_in() { awk -v t0="$2" -v t1="$3" '$1 == "A" && $4 >= t0 && $4 <= t1 {n++} END {print n + 0}' "$W/$1.acks"; }

t0=$(now)
client base "$MSECS" 0 || rc=1
t1=$(now)
iops0=$(awk -v n="$(acks_in base "$t0" "$t1")" -v s="$(echo "$t1 - $t0" | bc -l)" 'BEGIN {printf "%.0f", n / s}')

# cp of the same file to the other shelf (written and synced, then removed).
sync
c0=$(now)
cp --sparse=never "$W/shelf-a/volumes/vol-m.img" "$W/shelf-b/.bench-cp.img"
sync "$W/shelf-b/.bench-cp.img" # fsync of that file only (sync -f: the others' too)
c1=$(now)
rm -f "$W/shelf-b/.bench-cp.img"
cp_mibs=$(awk -v b="$bytes" -v s="$(echo "$c1 - $c0" | bc -l)" 'BEGIN {printf "%.1f", b / s / 1048576}')

# A move while the client writes at 25% of its unloaded rate.
rate=$((iops0 / 4))
[ "$rate" -ge 1 ] || rate=1
client light 0 "$rate" &
PIDS+=($!)
sleep 0.5
ctl a volume move vol-m --shelf b >/dev/null
bench_wait 600 eval '[ "$(mv_state a)" = idle ]'
touch "$W/light.stop"
wait "${PIDS[-1]}" || rc=1
unset 'PIDS[-1]'
ms=$(mv_ms b a)
[ -n "$ms" ] || bench_die "the move of vol-m to b failed: $(st a | jq -c .move)"
mv_mibs=$(awk -v b="$bytes" -v ms="$ms" 'BEGIN {printf "%.1f", b / (ms / 1000) / 1048576}')

# A move back while the client writes as fast as it can: its IOPS.
vm_owner() { st "$1" | jq -r '[.volumes[] | select(.name == "vol-m") | .owner] | first'; }
bench_wait 30 eval '[ "$(vm_owner a)" = b ] && [ "$(vm_owner b)" = b ]'
# The client on the owner's port (b's: vol-m is served there until the
# cut-over), first without a move, right before it.
t0=$(now)
client fwd "$MSECS" 0 $((P + 2)) || rc=1
t1=$(now)
iops0f=$(awk -v n="$(acks_in fwd "$t0" "$t1")" -v s="$(echo "$t1 - $t0" | bc -l)" 'BEGIN {printf "%.0f", n / s}')
client full 0 0 $((P + 2)) &
PIDS+=($!)
sleep 0.5
m0=$(now)
ctl b volume move vol-m --shelf a >/dev/null
bench_wait 600 eval '[ "$(mv_state b)" = idle ]'
m1=$(now)
touch "$W/full.stop"
wait "${PIDS[-1]}" || rc=1
unset 'PIDS[-1]'
[ -n "$(mv_ms a b)" ] || bench_die "the move of vol-m back to a failed: $(st b | jq -c .move)"
iops1=$(awk -v n="$(acks_in full "$m0" "$m1")" -v s="$(echo "$m1 - $m0" | bc -l)" 'BEGIN {printf "%.0f", n / s}')
python3 "$ACKW" check --log "$W/base.acks,$W/light.acks,$W/fwd.acks,$W/full.acks" --port "$P" \
	--export vol-m || { rc=1; lost=1; }
grep -h "move of vol-m" "$W/a.log" "$W/b.log" | sed 's/^[^ ]* /  duetd: /' || true
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
echo "volume move of $MSIZE: move $mv_mibs MiB/s (client at $rate writes/s) vs cp $cp_mibs MiB/s:" \
	"$(ratio "$mv_mibs" "$cp_mibs")x (target >= 0.7)"
echo "client IOPS during a move $iops1 vs without $iops0f right before: $(ratio "$iops1" "$iops0f")x" \
	"(target >= 0.7); vs the first unloaded run (vol-m on a) $iops0: $(ratio "$iops1" "$iops0")x"
echo "client errors: $([ $rc = 0 ] && echo 0 || echo yes), lost writes: $lost"
exit $rc
