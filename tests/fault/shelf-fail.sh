#!/usr/bin/env bash
# Issue 14 part 5 (claim 26): a's own shelf fails under a alone (every I/O
# of it ends with EIO in a's process, DUET_TEST_SHELF_EIO) while b still
# reaches it: a hands the shelf over (docs/RELOCATION.md, "On a failed
# path"), b replays a's log image onto it and serves a's volumes; a goes
# on serving them on its NBD port by forwarding.
#   1. writers (ackwriter.py, 16 in flight, a unique pattern per write) on
#      vol-a and vol-a2 through a's NBD port and on vol-a through b's;
#   2. a's shelf fails: both volumes end up owned and served by b (status
#      of both nodes), the writers go on with no client error;
#   3. every acknowledged write reads back through both ports;
#   4. SIGKILL of a, its shelf healthy again: b takes over a, a restarts,
#      giveback: a replays nothing over b's writes (its log was dropped),
#      the volumes stay b's, every acknowledged write reads back.
# also on own mounts: b replays onto a's shelf and serves it through its own
# mount (tests/run.sh runs it a second time that way).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

N=200
export DUET_TEST_SHELF_EIO="a:$T/a-shelf.fail"
vol_is() { # NODE VOL OWNER SERVED_BY SHELF
	status "$1" | jq -e --arg v "$2" --arg o "$3" --arg s "$4" --arg h "$5" \
		'[.volumes[] | select(.name == $v and .owner == $o and .served_by == $s and .shelf == $h)]
		 | length == 1' >/dev/null
}
handed_over() {
	[ "$(status a | jq -r .shelf_handover.give)" = done ] &&
		[ "$(status b | jq -r .shelf_handover.take)" = done ]
}
b_owns() { # VOL: both nodes agree
	vol_is a "$1" b b a && vol_is b "$1" b b a
}

step "start a pair, vol-a and vol-a2 on a"
pair_with_vol_a --no-watch
ctl a volume create vol-a2 16M >/dev/null
wait_for served_is b vol-a2 a || fail "b does not forward vol-a2 to a"

step "writers on vol-a and vol-a2 through a's NBD port, on vol-a through b's"
writer wa --port $A_NBD --export vol-a --blocks 512 --qd 16
writer wb --port $B_NBD --export vol-a --blocks 512 --first-block 512 --qd 16
writer w2 --port $A_NBD --export vol-a2 --blocks 256 --qd 16
wait_acks wa $N
wait_acks wb $N
wait_acks w2 $N

step "a's shelf fails under a: b takes it, the writers go on"
t0=$(mono)
touch "$T/a-shelf.fail"
wait_for handed_over || fail "no handover: a $(status a | jq -c .shelf_handover) b $(status b | jq -c .shelf_handover)"
t1=$(mono)
for v in vol-a vol-a2; do
	wait_for b_owns $v || fail "$v not b's on both: a $(status a | jq -c .volumes) b $(status b | jq -c .volumes)"
done
wait_acks wa $N
wait_acks wb $N
wait_acks w2 $N
echo "   handover: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f ms (failure to both done, polled)", (b - a) * 1000 }')" >&2
grep -h "handed over\|took .* of a's shelf\|log replayed onto its shelf" "$T/a.log" "$T/b.log" | sed 's/^/   /' >&2 || true
for n in a b; do
	ctl $n status | grep '^shelf:' | sed "s/^/   $n: /" >&2 || fail "no shelf line in $n's status"
done

step "stop the writers: no error, every acknowledged write reads back on both ports"
writer_stop wa
writer_stop wb
writer_stop w2
for port in $A_NBD $B_NBD; do
	check_acks "$T/wa.acks,$T/wb.acks" --port $port --export vol-a
	check_acks "$T/w2.acks" --port $port --export vol-a2
done

step "SIGKILL a, its shelf healthy again: b takes over, a comes back, nothing replayed over b's writes"
writer k --port $B_NBD --export vol-a --blocks 1024 --qd 16
wait_acks k $N
wait_for takeover_possible b || fail "b may not take over a: $(ha b .reason)"
kill_node a
rm -f "$T/a-shelf.fail"
wait_takeover b
wait_acks k $N
start_taken_over a
giveback_to a
wait_acks k $N
writer_stop k
for v in vol-a vol-a2; do
	wait_for b_owns $v || fail "$v not b's after the giveback: a $(status a | jq -c .volumes) b $(status b | jq -c .volumes)"
done
for port in $A_NBD $B_NBD; do
	check_acks "$T/wa.acks,$T/wb.acks,$T/k.acks" --port $port --export vol-a
	check_acks "$T/w2.acks" --port $port --export vol-a2
done

step "clean stop"
stop_node a
stop_node b
