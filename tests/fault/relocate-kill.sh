#!/usr/bin/env bash
# Issue 14 part 2: SIGKILL of either node in the middle of a relocation.
# The relocating node a stops itself (test hook DUET_TEST_RELOC_STOP,
# src/node/relocate.c) at each point of a relocation of vol-a to b:
#   leaving  new commands forwarded, nothing drained yet
#   durable  the consistency point taken, the owner record not yet written
#   owner    the owner record names b, the volume list not yet sent
# and for each point, under a writer (ackwriter.py, 8 in flight):
#   1. victim b: SIGKILL b while a is stopped there, SIGCONT a; a finishes
#      or abandons the relocation and takes over b; the writer on a's port
#      goes on; b restarts taken over, giveback;
#   2. victim a: SIGKILL a while stopped there; b takes over and serves
#      vol-a, whatever the owner record says; the writer on b's port goes
#      on; a restarts taken over, giveback.
# The periodic owner re-read is off (DUET_TEST_RELOC_NO_RECHECK), so that at
# "owner" with a killed, b adopts vol-a in its takeover (the owner record
# names b, the list never came), not by the timer before it.
# Last, b is killed while a's relocation is held before its consistency
# point (DUET_TEST_RELOC_HOLD_MS): a takes b over first, the relocation
# fails (a cut-over never names a partner whose takeover began), a serves
# vol-a, and the commands its route forwarded meanwhile run on a, once.
# After each: no client error, every acknowledged write reads back through
# both ports, both nodes name the same owner and exactly one serves vol-a;
# vol-a is relocated back to a where it ended on b.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

export DUET_TEST_RELOC_NO_RECHECK=1
N=100
POINTS=(leaving durable owner)
# Under a sanitizer (3x the time): the two points where the record's state differs.
[ "$TIMEOUT_SCALE" = 1 ] || POINTS=(durable owner)
W=(--export vol-a --blocks 512 --qd 8)
L="" # every writer's log, comma-separated

owner_on() { status "$1" | jq -r '.volumes[] | select(.name == "vol-a") | .owner'; }
server_on() { status "$1" | jq -r '.volumes[] | select(.name == "vol-a") | .served_by'; }
stopped() { [ "$(awk '/^State:/ {print $2}' "/proc/${NODE_PID[a]}/status" 2>/dev/null)" = T ]; }
# agreed: both nodes name one owner, and one server (the owner, or the taker).
agreed() {
	local oa ob sa sb
	oa=$(owner_on a) ob=$(owner_on b) sa=$(server_on a) sb=$(server_on b)
	[ -n "$oa" ] && [ "$oa" = "$ob" ] && [ -n "$sa" ] && [ "$sa" = "$sb" ]
}
check_all() { # every acknowledged write so far, through both ports
	check_acks "$L" --port $A_NBD --export vol-a
	check_acks "$L" --port $B_NBD --export vol-a
	wait_for agreed || fail "owner or server differ: a $(status a | jq -c .volumes) b $(status b | jq -c .volumes)"
}
# start_writer NAME PORT
start_writer() {
	writer "$1" --port "$2" "${W[@]}"
	L+=${L:+,}$T/$1.acks
	wait_acks "$1" $N
}
# relocate_stopping: a relocates vol-a and stops itself at its point. The
# control call returns only once a runs again (or dies): in the background.
relocate_stopping() {
	ctl a volume relocate vol-a >/dev/null 2>&1 &
	wait_for stopped || fail "a did not stop at its relocation point"
	FO_STOPPED[a]=1
}
home_to_a() { # vol-a back on a where it ended on b
	[ "$(owner_on a)" = b ] || return 0
	ctl b volume relocate vol-a >/dev/null || fail "relocation back to a refused"
	wait_for -t 30 eval '[ "$(owner_on a)" = a ] && [ "$(owner_on b)" = a ]' ||
		fail "vol-a not back on a: a $(status a | jq -c .volumes) b $(status b | jq -c .volumes)"
}

step "a pair, vol-a on a; a stops at relocation point ${POINTS[0]}"
DUET_TEST_RELOC_STOP=${POINTS[0]} start_a
start_b
ctl a volume create vol-a 64M >/dev/null
ready_for_takeover
wait_for served_is b vol-a a || fail "b does not forward vol-a to a"

for i in "${!POINTS[@]}"; do
	p=${POINTS[$i]}
	next=${POINTS[$((i + 1))]:-none}

	step "$p, victim b: a stops at $p relocating vol-a to b, SIGKILL b, SIGCONT a"
	wait_for takeover_possible a || fail "a may not take over b: $(ha a .reason)"
	start_writer "b$i" $A_NBD
	relocate_stopping
	kill_node b
	cont_sig a
	wait_takeover a
	wait_acks "b$i" $N
	echo "   after the takeover: owner $(owner_on a), served by $(server_on a)" >&2
	step "$p, victim b: b restarts taken over, giveback under load"
	start_taken_over b
	giveback_to b
	wait_acks "b$i" $N
	writer_stop "b$i"
	check_all
	echo "   after the giveback: owner $(owner_on a)" >&2
	home_to_a
	ready_for_takeover

	step "$p, victim a: a stops at $p relocating vol-a to b, SIGKILL a: b takes over"
	start_writer "a$i" $B_NBD
	relocate_stopping
	kill_node a
	unset "FO_STOPPED[a]"
	wait_takeover b
	wait_acks "a$i" $N
	echo "   after the takeover: owner $(owner_on b), served by $(server_on b)" >&2
	step "$p, victim a: a restarts taken over (next point: $next), giveback under load"
	# The last start holds a's relocations before their consistency
	# point instead (the last step below).
	hold=""
	[ "$next" != none ] || hold=$((1500 * TIMEOUT_SCALE))
	DUET_TEST_RELOC_STOP=$next DUET_TEST_RELOC_HOLD_MS=$hold launch_node a
	wait_taken_over a
	giveback_to a
	wait_acks "a$i" $N
	writer_stop "a$i"
	check_all
	echo "   after the giveback: owner $(owner_on a)" >&2
	home_to_a
	ready_for_takeover
done

step "b killed while a's relocation of vol-a is held before its consistency point: a takes b over first"
wait_for takeover_possible a || fail "a may not take over b: $(ha a .reason)"
start_writer h $A_NBD
ctl a volume relocate vol-a >/dev/null || fail "relocation refused"
kill_node b
wait_takeover a
reloc_failed() { status a | jq -e '.relocation.state == "idle" and (.relocation.last | test("failed"))' >/dev/null; }
wait_for reloc_failed || fail "the relocation did not fail: $(status a | jq -c .relocation)"
wait_acks h $N
[ "$(owner_on a)" = a ] || fail "vol-a's owner: $(owner_on a)"
step "b restarts taken over, giveback under load"
start_taken_over b
giveback_to b
wait_acks h $N
writer_stop h
check_all

step "clean stop"
stop_node a
stop_node b
