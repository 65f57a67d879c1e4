#!/usr/bin/env bash
# Issue 14 part 5 (claim 26): a's shelf gone from under a (own mounts only:
# a's own FUSE mount of the shelves loses its server, so every access of a
# to its shelf, its mailbox and b's shelf ends with ENOTCONN) while b's
# mount still reaches it: a sees the shelf directory fail, hands the shelf
# over (docs/RELOCATION.md, "On a failed path"), b replays a's log image
# onto it and serves a's volume; writers on a's NBD port and b's go on with
# no client error; every acknowledged write reads back through both ports.
set -euo pipefail
export DUET_OWN_MOUNTS=${DUET_OWN_MOUNTS:-1}
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"
[ "$OWN_MOUNTS" = 1 ] || skip "needs own mounts (the shelf gone from one node's mount)"

N=200
handed_over() {
	[ "$(status a | jq -r .shelf_handover.give)" = done ] &&
		[ "$(status b | jq -r .shelf_handover.take)" = done ]
}
b_serves_on() { # NODE: its status says so (a cannot read the owner field any more)
	status "$1" | jq -e '[.volumes[] | select(.name == "vol-a" and .owner == "b" and .served_by == "b" and .shelf == "a")] | length == 1' >/dev/null
}
b_serves() { b_serves_on a && b_serves_on b; }

step "start a pair, vol-a on a; writers on a's NBD port and b's"
pair_with_vol_a --no-watch
writer wa --port $A_NBD --export vol-a --blocks 512 --qd 16
writer wb --port $B_NBD --export vol-a --blocks 512 --first-block 512 --qd 16
wait_acks wa $N
wait_acks wb $N

step "a's mount of the shelves loses its server: a's shelf is gone for a alone"
kill -s KILL "${MOUNT_PID[$T/mnt-a]}"
wait_for handed_over || fail "no handover: a $(status a | jq -c .shelf_handover) b $(status b | jq -c .shelf_handover)"
wait_for b_serves || fail "b does not serve vol-a: a $(status a | jq -c .volumes) b $(status b | jq -c .volumes)"
status a | jq -r '"   a: " + .shelf_handover.why' >&2
wait_acks wa $N
wait_acks wb $N

step "stop the writers: no error, every acknowledged write reads back on both ports"
writer_stop wa
writer_stop wb
check_both_ports "$T/wa.acks,$T/wb.acks" vol-a

step "stop"
stop_node b
# a cannot reach its shelf, its mailbox nor b's shelf any more: it is
# killed, not asked to stop cleanly.
stop_node a KILL
