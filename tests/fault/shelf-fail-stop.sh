#!/usr/bin/env bash
# normal build only: a stopped giver on a 3 s hold; the same handover and takeover code runs under the sanitizers in shelf-fail-kill.sh
# Issue 14 part 5 (docs/RELOCATION.md, "On a failed path"): the giver of a
# shelf handover stops (SIGSTOP: a stall, a paused VM) between GIVE and
# DROPPED, with its shelf still failing. b takes it over although a's
# mirror is held (b's copy of a's log was complete for the handover) and
# serves vol-a; on SIGCONT a finds the takeover mark and is fenced;
# giveback: the handover goes on from where it stopped and vol-a ends b's
# (a's shelf still fails under a). A writer on b's port goes on through it
# all with no error; every acknowledged write reads back through both
# ports. (shelf-fail-kill.sh kills the giver in the same window.)
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

N=200
HOLD=$((3000 * TIMEOUT_SCALE))
export DUET_TEST_SHELF_EIO="a:$T/a-shelf.fail"
export DUET_TEST_SHELF_HOLD="a:$HOLD,b:$HOLD"
give_is() { [ "$(status a | jq -r .shelf_handover.give)" = "$1" ]; }
take_is() { [ "$(status b | jq -r .shelf_handover.take)" = "$1" ]; }
owner_is() { # NODE VOL OWNER
	status "$1" | jq -e --arg v "$2" --arg o "$3" \
		'[.volumes[] | select(.name == $v and .owner == $o and .served_by == $o)] | length == 1' >/dev/null
}

step "start a pair, vol-a on a; a writer on vol-a through b's port"
pair_with_vol_a --no-watch
writer w1 --port $B_NBD --export vol-a --blocks 1024 --qd 16
wait_acks w1 $N

step "a's shelf fails, b replays a's log; SIGSTOP a before it drops its log"
touch "$T/a-shelf.fail"
wait_for take_is replayed || fail "b did not replay: $(status b | jq -c .shelf_handover)"
give_is given || fail "a is not holding before the drop: $(status a | jq -c .shelf_handover)"
stop_sig a
wait_takeover b
wait_for served_is b vol-a b || fail "b does not serve vol-a: $(status b | jq -c .volumes)"
wait_acks w1 $N

step "SIGCONT a: fenced; giveback: the handover completes, vol-a is b's"
cont_sig a
giveback_to a
wait_for owner_is b vol-a b ||
	fail "vol-a not b's: $(status b | jq -c '.volumes, .shelf_handover') a: $(status a | jq -c .shelf_handover)"
wait_for give_is done || fail "a's handover did not end: $(status a | jq -c .shelf_handover)"
wait_acks w1 $N
writer_stop w1
check_both_ports "$T/w1.acks" vol-a

step "clean stop"
stop_node a
stop_node b
