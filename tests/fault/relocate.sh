#!/usr/bin/env bash
# Issue 14 part 2: `duetctl volume relocate` moves a volume's ownership to the
# partner without copying, under a write load on both nodes' NBD ports.
#   1. writers (ackwriter.py, 16 in flight, a unique pattern per write) on
#      vol-a through a's NBD port (blocks 0..511) and b's (512..1023);
#   2. relocate vol-a to b, then back to a, ROUNDS times: the owner changes
#      in both nodes' status (owner, served_by, shelf), the writers go on;
#   3. no client error, every acknowledged write reads back through both
#      ports; the pause each relocation caused is printed (p50, max);
#   4. relocate to b under load, SIGKILL b right after: a takes over and
#      serves vol-a (b's, on a's shelf; b's writes to it were write-through),
#      the writer goes on with no error; b restarts, giveback: vol-a is b's
#      again on both nodes; every acknowledged write reads back;
#   5. SIGKILL of the old owner a: b takes over a and goes on serving vol-a
#      (on a's shelf); a restarts, giveback; every acknowledged write reads
#      back on both ports.
# also on own mounts: each node reads the owner record through its own cache
# of the shelf (tests/lib.sh), as on two hosts.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

fo_rounds 5 2
N=200
vol_is() { # NODE VOL OWNER SERVED_BY SHELF
	status "$1" | jq -e --arg v "$2" --arg o "$3" --arg s "$4" --arg h "$5" \
		'[.volumes[] | select(.name == $v and .owner == $o and .served_by == $s and .shelf == $h)]
		 | length == 1' >/dev/null
}
reloc_idle() { [ "$(status "$1" | jq -r .relocation.state)" = idle ]; }
owned_by() { # OWNER: both nodes agree
	vol_is a vol-a "$1" "$1" a && vol_is b vol-a "$1" "$1" a
}
pauses=()
relocate() { # FROM TO
	local t0 t1
	t0=$(mono)
	ctl "$1" volume relocate vol-a >/dev/null || fail "relocate on $1 refused"
	wait_for reloc_idle "$1"
	t1=$(mono)
	wait_for owned_by "$2" || fail "vol-a not owned by $2 on both: a $(status a | jq -c .volumes) b $(status b | jq -c .volumes)"
	RELOC_T0=$t0 RELOC_T1=$t1
}
# pause_ms NAME: the longest gap between two acknowledgements of writer NAME
# around the last relocation (from its start to its end, the longer gap
# that straddles either edge included).
pause_ms() {
	awk -v t0="$RELOC_T0" -v t1="$RELOC_T1" '$1 == "A" && NF >= 4 {
		t = $4 + 0
		if (n++ && t > t0 && p < t1 && t - p > g) g = t - p
		p = t
	} END { printf "%.1f\n", g * 1000 }' "$T/$1.acks"
}

step "start a pair, vol-a on a"
pair_with_vol_a --no-watch
vol_is a vol-a a a a || fail "a: $(status a | jq -c .volumes)"

step "writers on vol-a through a's and b's NBD ports"
writer wa --port $A_NBD --export vol-a --blocks 512 --qd 16 --timestamps
writer wb --port $B_NBD --export vol-a --blocks 512 --first-block 512 --qd 16 --timestamps
wait_acks wa $N
wait_acks wb $N

for r in $(seq 1 "$ROUNDS"); do
	step "round $r/$ROUNDS: relocate vol-a to b under load"
	relocate a b
	wait_acks wa $N
	wait_acks wb $N
	pauses+=("$(pause_ms wa)" "$(pause_ms wb)")
	step "round $r/$ROUNDS: relocate vol-a back to a under load"
	relocate b a
	wait_acks wa $N
	wait_acks wb $N
	pauses+=("$(pause_ms wa)" "$(pause_ms wb)")
done
echo "   $(stats_line "client pause around a relocation (both writers)" "${pauses[@]}")" >&2
grep -h "relocated vol-a" "$T/a.log" "$T/b.log" | sed 's/^/   /' >&2 || true

step "stop the writers: no error, every acknowledged write reads back on both ports"
writer_stop wa
writer_stop wb
for port in $A_NBD $B_NBD; do
	check_acks "$T/wa.acks" --port $port --export vol-a
	check_acks "$T/wb.acks" --port $port --export vol-a
done

step "relocate vol-a to b under load on a's port, SIGKILL b right after: a takes over"
writer k --port $A_NBD --export vol-a --blocks 1024 --qd 16
wait_acks k $N
wait_for takeover_possible a || fail "a may not take over b: $(ha a .reason)"
relocate a b
wait_acks k 50
kill_node b
wait_takeover a
wait_acks k $N
vol_is a vol-a b a a || fail "a in takeover: vol-a: $(status a | jq -c .volumes)"
writer_stop k
check_acks "$T/wa.acks,$T/wb.acks,$T/k.acks" --port $A_NBD --export vol-a

step "b restarts taken over, giveback under load: vol-a is b's again"
writer g --port $A_NBD --export vol-a --blocks 1024 --qd 16
wait_acks g $N
start_taken_over b
giveback_to b
wait_for owned_by b || fail "vol-a not b's after the giveback: a $(status a | jq -c .volumes) b $(status b | jq -c .volumes)"
wait_acks g $N
writer_stop g
check_acks "$T/wa.acks,$T/wb.acks,$T/k.acks,$T/g.acks" --port $B_NBD --export vol-a

step "SIGKILL of the old owner a (vol-a on a's shelf, b's): b takes over, vol-a goes on"
writer k2 --port $B_NBD --export vol-a --blocks 1024 --qd 16
wait_acks k2 $N
wait_for takeover_possible b || fail "b may not take over a: $(ha b .reason)"
kill_node a
wait_takeover b
wait_acks k2 $N
writer_stop k2
L="$T/wa.acks,$T/wb.acks,$T/k.acks,$T/g.acks,$T/k2.acks"
check_acks "$L" --port $B_NBD --export vol-a
start_taken_over a
giveback_to a
wait_for owned_by b || fail "vol-a not b's after the giveback to a"
check_acks "$L" --port $A_NBD --export vol-a
check_acks "$L" --port $B_NBD --export vol-a

step "clean stop"
stop_node a
stop_node b
