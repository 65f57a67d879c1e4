#!/usr/bin/env bash
# Issue 14 (RELOCATION.md, "Booting alone"): a node that boots without its
# partner serves the volumes of the partner's shelf relocated to it.
#   1. a pair, vol-a on a; a writer on a's port; vol-a relocated to b under
#      it; more writes (now b's, written through to a's shelf);
#   2. both stopped (SIGTERM to both at once), b started alone: within
#      [monitor] boot_grace_ms (no takeover of a) b serves vol-a on its
#      NBD port, adopted at boot from its owner record on a's shelf; every
#      acknowledged write reads back there, and a writer goes on there;
#   3. a starts: the pair agrees (vol-a is b's, served by b, in both
#      statuses; no takeover either way); every acknowledged write reads
#      back through both ports.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
FO_BOOT_GRACE_MS=$((60000 * TIMEOUT_SCALE)) # b alone never takes a over here
. "$TEST_DIR/failover.inc"

N=200
vol_is() { # NODE VOL OWNER SERVED_BY
	status "$1" | jq -e --arg v "$2" --arg o "$3" --arg s "$4" \
		'[.volumes[] | select(.name == $v and .owner == $o and .served_by == $s and .shelf == "a")]
		 | length == 1' >/dev/null
}
owned_by_b() { vol_is a vol-a b b && vol_is b vol-a b b; }
heard() { [ "$(ha "$1" .partner_seen_since_boot)" = true ]; }

step "a pair, vol-a on a, relocated to b under a writer on a's port"
pair_with_vol_a --no-watch
writer w1 --port $A_NBD --export vol-a --blocks 1024 --qd 16
wait_acks w1 $N
ctl a volume relocate vol-a >/dev/null || fail "relocate refused"
wait_for owned_by_b || fail "vol-a not b's: a $(status a | jq -c .volumes) b $(status b | jq -c .volumes)"
wait_acks w1 $N
writer_stop w1

step "stop both, start b alone: it serves vol-a (adopted at boot)"
kill -s TERM "${NODE_PID[a]}" "${NODE_PID[b]}"
stop_node a
stop_node b
start_b
grep -q "adopting them at boot" "$T/b.log" || fail "b did not adopt at boot"
ha_is b up none || fail "b: $(ha b '| {state, phase, reason}')"
wait_for vol_is b vol-a b b || fail "b alone does not serve vol-a: $(status b | jq -c .volumes)"
check_acks "$T/w1.acks" --port $B_NBD --export vol-a
writer w2 --port $B_NBD --export vol-a --blocks 1024 --qd 16
wait_acks w2 $N

step "a starts: the pair agrees, vol-a is b's"
start_a
wait_for heard a
wait_for heard b
wait_for owned_by_b || fail "the pair disagrees: a $(status a | jq -c .volumes) b $(status b | jq -c .volumes)"
ha_is a up none || fail "a: $(ha a '| {state, phase, reason}')"
ha_is b up none || fail "b: $(ha b '| {state, phase, reason}')"
no_mark_written a
no_mark_written b
wait_acks w2 $N
writer_stop w2
check_both_ports "$T/w1.acks,$T/w2.acks" vol-a

step "clean stop"
stop_node a
stop_node b
