#!/usr/bin/env bash
# Issue 14 part 5 (claim 26): either node dies in the middle of a shelf
# handover (docs/RELOCATION.md, "On a failed path"); no acknowledged write
# is lost. DUET_TEST_SHELF_HOLD holds each node HOLD ms after the replay
# (b before it says REPLAYED, a before it drops its log): the windows.
#   1. the giver dies between GIVE and DROPPED: a's shelf fails, b replays
#      a's log image and says so; SIGKILL a before it drops its log. b
#      takes a over although a published its mirror degraded (the hold of
#      GIVE: b's copy was complete) and serves vol-a with every
#      acknowledged write; a restarts taken over with its shelf healthy,
#      giveback: a drops its log (b's proof), never replays it over b's
#      writes; a writer on b's port for vol-a waited through it all with no
#      error; every acknowledged write reads back on both ports;
#   2. the taker dies: a's shelf fails again, b replays, SIGKILL b before
#      it says REPLAYED. a (its log kept, its volumes parked) takes over b;
#      b restarts, giveback: b takes the shelf again and serves vol-a; a
#      writer on a's port waited through it with no error; every
#      acknowledged write reads back on both ports.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

N=200
HOLD=$((3000 * TIMEOUT_SCALE))
export DUET_TEST_SHELF_EIO="a:$T/a-shelf.fail"
export DUET_TEST_SHELF_HOLD="a:$HOLD,b:$HOLD"
give_is() { [ "$(status a | jq -r .shelf_handover.give)" = "$1" ]; }
take_is() { [ "$(status b | jq -r .shelf_handover.take)" = "$1" ]; }
replays() { grep -c "log replayed onto its shelf" "$T/b.log" || true; }
replayed_n() { [ "$(replays)" -ge "$1" ]; }
owner_is() { # NODE VOL OWNER
	status "$1" | jq -e --arg v "$2" --arg o "$3" \
		'[.volumes[] | select(.name == $v and .owner == $o and .served_by == $o)] | length == 1' >/dev/null
}

step "start a pair, vol-a on a; a writer on vol-a through b's port"
pair_with_vol_a --no-watch
writer wb --port $B_NBD --export vol-a --blocks 1024 --qd 16
wait_acks wb $N

step "1. a's shelf fails, b replays a's log; SIGKILL a before it drops its log"
touch "$T/a-shelf.fail"
wait_for take_is replayed || fail "b did not replay: $(status b | jq -c .shelf_handover)"
give_is given || fail "a is not holding before the drop: $(status a | jq -c .shelf_handover)"
kill_node a
wait_takeover b
wait_for served_is b vol-a b || fail "b does not serve vol-a: $(status b | jq -c .volumes)"
wait_acks wb $N
writer_stop wb
check_acks "$T/wb.acks" --port $B_NBD --export vol-a
writer wb2 --port $B_NBD --export vol-a --blocks 1024 --qd 16
wait_acks wb2 $N
rm -f "$T/a-shelf.fail"
start_taken_over a
giveback_to a
! grep -q "own NVRAM log replayed" "$T/a.log" || fail "a replayed its own log at the giveback"
wait_for owner_is a vol-a a || fail "vol-a not a's: $(status a | jq -c .volumes)"
wait_acks wb2 $N
writer_stop wb2
check_both_ports "$T/wb.acks,$T/wb2.acks" vol-a

step "2. a's shelf fails again, b replays; SIGKILL b before it says so"
ready_for_takeover
writer wa --port $A_NBD --export vol-a --blocks 1024 --qd 16
wait_acks wa $N
n=$(replays)
touch "$T/a-shelf.fail"
wait_for replayed_n $((n + 1)) || fail "b did not replay: $(status b | jq -c .shelf_handover)"
take_is replaying || fail "b is not holding after its replay: $(status b | jq -c .shelf_handover)"
kill_node b
wait_takeover a
start_taken_over b
giveback_to b
wait_for take_is done || fail "b did not take a's shelf after the giveback: $(status b | jq -c .shelf_handover)"
wait_for owner_is b vol-a b || fail "vol-a not b's: $(status b | jq -c .volumes)"
wait_acks wa $N
writer_stop wa
check_both_ports "$T/wb.acks,$T/wb2.acks,$T/wa.acks" vol-a

step "clean stop"
stop_node a
stop_node b
