#!/usr/bin/env bash
# Issue 14 part 3: `duetctl volume move NAME --shelf NODE` copies a volume
# to the other shelf while clients write it, then hands it to that node.
#   1. writers (ackwriter.py, a unique pattern per write) on vol-a through
#      a's and b's NBD ports; move vol-a to b's shelf (copied slowly: a test
#      hook pauses after each chunk): progress in status and volume list,
#      then vol-a is b's, on b's shelf, the file on a's shelf gone; no client
#      error, every acknowledged write reads back through both ports;
#   2. SIGKILL of the new owner b after the move: a takes over and serves
#      vol-a from b's shelf; b restarts, giveback;
#   3. --abort of a move back to a: rolled back, one copy;
#   4. SIGKILL of the mover (b) while it copies: a takes over, rolls back
#      (logged), serves vol-a from b's shelf; b restarts, giveback;
#   5. SIGKILL of the target (a) while b copies: b rolls back (takeover);
#      a restarts, giveback;
#   6. SIGKILL of the mover (b) between the commit and the source's delete
#      (a test hook): a takes over and rolls forward (logged): vol-a is a's,
#      on a's shelf only;
#   7. SIGKILL of the mover (a) after the source's delete, before b heard
#      of it: b takes over and serves vol-a, its own now;
#   after each: one live copy, every acknowledged write reads back.
# also on own mounts: the mover makes the copy on the partner's shelf through
# its own cache of that shelf, the target loads and serves it through its
# own, and after a crash the settler reads the other's files through its own
# (tests/lib.sh): names one node's cache kept from an earlier stay of vol-a
# on a shelf must not answer for the files the other node made since.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

export DUET_TEST_MOVE_CHUNK_DELAY_MS=$((25 * TIMEOUT_SCALE))
export DUET_TEST_MOVE_CRASH_FILE="$T/crash-after-commit"
N=200
vol_is() { # NODE VOL OWNER SERVED_BY SHELF
	status "$1" | jq -e --arg v "$2" --arg o "$3" --arg s "$4" --arg h "$5" \
		'[.volumes[] | select(.name == $v and .owner == $o and .served_by == $s and .shelf == $h)]
		 | length == 1' >/dev/null
}
owned_by() { vol_is a vol-a "$1" "$1" "$1" && vol_is b vol-a "$1" "$1" "$1"; }
move_state() { status "$1" | jq -r .move.state; }
move_idle() { [ "$(move_state "$1")" = idle ]; }
copying_past() { # NODE BYTES: its move copies and has done more than BYTES
	status "$1" | jq -e --argjson b "$2" \
		'.move.state == "copying" and .move.done_bytes > $b' >/dev/null
}
# disk NODE: NODE's shelf as the disk has it (on own mounts the backing
# directory: either node's mount may still cache names the other changed).
disk() { if [ "$OWN_MOUNTS" = 1 ]; then echo "$SHELVES/$1-shelf"; else shelf_of "$1"; fi; }
# one_copy NODE: vol-a's files are on NODE's shelf only, no copy in progress.
one_copy() {
	local o h g
	o=$(other "$1")
	h="$(disk "$1")/volumes" g="$(disk "$o")/volumes"
	[ -f "$h/vol-a.img" ] && [ -f "$h/vol-a.meta" ] || fail "vol-a not on $1's shelf: $(ls -a "$h")"
	[ ! -e "$g/vol-a.img" ] && [ ! -e "$g/vol-a.meta" ] || fail "vol-a also on $o's shelf: $(ls -a "$g")"
	[ ! -e "$h/.vol-a.move.img" ] && [ ! -e "$g/.vol-a.move.img" ] || fail "a copy of vol-a is left"
	! grep -q '"move"' "$h/vol-a.meta" || fail "vol-a keeps its move record"
}
ALL=""
acks() { ALL="${ALL:+$ALL,}$T/$1.acks"; }

step "start a pair, vol-a on a; writers through a's and b's NBD ports"
pair_with_vol_a --no-watch
writer wa --port $A_NBD --export vol-a --blocks 512 --qd 8 --zero-pct 20
writer wb --port $B_NBD --export vol-a --blocks 512 --first-block 512 --qd 8
acks wa
acks wb
wait_acks wa $N
wait_acks wb $N

step "move vol-a to b's shelf under load: progress, then b's on b's shelf"
ctl a volume move vol-a --shelf b >/dev/null
wait_for copying_past a $((4 << 20)) || fail "no progress: $(status a | jq -c .move)"
status a | jq -e '.volumes[] | select(.name == "vol-a" and .port == "direct") | .move.total_bytes == 67108864' >/dev/null ||
	fail "no move in volumes[]: $(status a | jq -c .volumes)"
ctl a volume list | grep -q "moving to b" || fail "volume list shows no move: $(ctl a volume list)"
wait_for move_idle a || fail "move did not end: $(status a | jq -c .move)"
wait_for owned_by b || fail "vol-a not b's: a $(status a | jq -c .volumes) b $(status b | jq -c .volumes)"
status a | jq -r .move.last | sed 's/^/   /' >&2
wait_acks wa $N
wait_acks wb $N
one_copy b
writer_stop wa
writer_stop wb
check_both_ports "$ALL" vol-a

step "SIGKILL of the new owner b after the move: a takes over, serves vol-a from b's shelf"
writer w2 --port $A_NBD --export vol-a --blocks 1024 --qd 8 --zero-pct 20
acks w2
wait_acks w2 $N
wait_for takeover_possible a || fail "a may not take over b: $(ha a .reason)"
kill_node b
wait_takeover a
wait_acks w2 $N
start_taken_over b
giveback_to b
wait_for owned_by b || fail "vol-a not b's after the giveback"
wait_acks w2 $N

step "move vol-a back to a, --abort: rolled back, one copy"
ctl b volume move vol-a --shelf a >/dev/null
wait_for copying_past b $((2 << 20)) || fail "no progress: $(status b | jq -c .move)"
ctl b volume move vol-a --abort >/dev/null
wait_for move_idle b
status b | jq -r .move.last | grep -q "rolled back (aborted)" || fail "not aborted: $(status b | jq -c .move)"
wait_acks w2 $N
owned_by b || fail "vol-a not b's after the abort"
one_copy b

step "SIGKILL of the mover b while it copies: a takes over, rolls back"
wait_for takeover_possible a || fail "a may not take over b: $(ha a .reason)"
ctl b volume move vol-a --shelf a >/dev/null
wait_for copying_past b $((2 << 20)) || fail "no progress: $(status b | jq -c .move)"
kill_node b
wait_takeover a
grep -q "interrupted move of vol-a to a's shelf had not committed: rolled back" "$T/a.log" ||
	fail "a did not roll back: $(grep -i move "$T/a.log" | tail -5)"
wait_acks w2 $N
one_copy b
start_taken_over b
giveback_to b
wait_for owned_by b || fail "vol-a not b's after the giveback"
wait_acks w2 $N
writer_stop w2
check_acks "$ALL" --port $A_NBD --export vol-a

step "SIGKILL of the target a while b copies: b rolls back at its takeover"
writer w3 --port $B_NBD --export vol-a --blocks 1024 --qd 8
acks w3
wait_acks w3 $N
wait_for takeover_possible b || fail "b may not take over a: $(ha b .reason)"
ctl b volume move vol-a --shelf a >/dev/null
wait_for copying_past b $((2 << 20)) || fail "no progress: $(status b | jq -c .move)"
kill_node a
wait_takeover b
wait_for move_idle b
status b | jq -r .move.last | grep -q "rolled back (the partner is taken over)" ||
	fail "b did not roll back: $(status b | jq -c .move)"
wait_acks w3 $N
one_copy b
start_taken_over a
giveback_to a
wait_for owned_by b || fail "vol-a not b's after the giveback"
wait_acks w3 $N
writer_stop w3
check_acks "$ALL" --port $B_NBD --export vol-a

step "SIGKILL of the mover b between the commit and the source's delete: a rolls forward"
writer w4 --port $A_NBD --export vol-a --blocks 1024 --qd 8
acks w4
wait_acks w4 $N
wait_for takeover_possible a || fail "a may not take over b: $(ha a .reason)"
echo commit >"$DUET_TEST_MOVE_CRASH_FILE"
ctl b volume move vol-a --shelf a >/dev/null
wait_for -t 60 not _alive "$(node_pid b)" || fail "b did not die at the commit"
rm -f "$DUET_TEST_MOVE_CRASH_FILE"
kill_node b
wait_takeover a
grep -q "interrupted move of vol-a to a's shelf had committed: rolled forward" "$T/a.log" ||
	fail "a did not roll forward: $(grep -i move "$T/a.log" | tail -5)"
wait_acks w4 $N
one_copy a
start_taken_over b
giveback_to b
wait_for owned_by a || fail "vol-a not a's after the giveback: a $(status a | jq -c .volumes) b $(status b | jq -c .volumes)"
wait_acks w4 $N
writer_stop w4
check_both_ports "$ALL" vol-a

step "SIGKILL of the mover a after the source's delete, before b adopts: b takes over, serves it"
writer w5 --port $B_NBD --export vol-a --blocks 1024 --qd 8
acks w5
wait_acks w5 $N
wait_for takeover_possible b || fail "b may not take over a: $(ha b .reason)"
echo delete >"$DUET_TEST_MOVE_CRASH_FILE"
ctl a volume move vol-a --shelf b >/dev/null
wait_for -t 60 not _alive "$(node_pid a)" || fail "a did not die after the source's delete"
rm -f "$DUET_TEST_MOVE_CRASH_FILE"
kill_node a
wait_takeover b
wait_acks w5 $N
one_copy b
start_taken_over a
giveback_to a
wait_for owned_by b || fail "vol-a not b's after the giveback: a $(status a | jq -c .volumes) b $(status b | jq -c .volumes)"
wait_acks w5 $N
writer_stop w5
check_both_ports "$ALL" vol-a

step "clean stop"
stop_node a
stop_node b
