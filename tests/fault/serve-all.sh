#!/usr/bin/env bash
# Issue 14 part 1: every node serves every volume of the pair on its own NBD
# port (the partner's forwarded over the interconnect, exactly-once).
#   1. nbdinfo --list on a's and on b's NBD port lists vol-a and vol-b, the
#      description naming each one's owner;
#   2. nbdcopy writes vol-a through b's NBD port, reads it back through a's
#      (and vol-b the other way round);
#   3. a writer (ackwriter.py) on b's NBD port for vol-a, SIGKILL of a: b
#      takes over, the writer goes on with no error, every acknowledged write
#      reads back through b's port; a restarts, giveback, and every
#      acknowledged write reads back on a's port.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"
need nbdinfo nbdcopy

W=(--export vol-a --blocks 1024 --qd 16)
N=200

step "start a pair, vol-a on a, vol-b on b"
pair_with_vol_a
ctl b volume create vol-b 32M >/dev/null
wait_for served_is a vol-b b || fail "a does not forward vol-b to b"

step "nbdinfo --list on both NBD ports lists both volumes and their owners"
for port in $A_NBD $B_NBD; do
	nbdinfo --list --json "nbd://127.0.0.1:$port" >"$T/list-$port.json"
	for v in a b; do
		jq -e --arg n vol-$v --arg d "duet volume, owner $v" \
			'[.exports[] | select(."export-name" == $n and .description == $d)] | length == 1' \
			"$T/list-$port.json" >/dev/null ||
			fail "port $port: vol-$v not listed with owner $v: $(cat "$T/list-$port.json")"
	done
done
nbdinfo "nbd://127.0.0.1:$A_NBD/nope" >/dev/null 2>&1 && fail "unknown export opened"

step "a volume with an allow list is hidden on both ports from a client without the identity"
ctl a volume create vol-c 4M --allow someone >/dev/null
wait_for served_is b vol-c a || fail "b does not forward vol-c"
for port in $A_NBD $B_NBD; do
	nbdinfo --list "nbd://127.0.0.1:$port" | grep -q 'export="vol-c"' &&
		fail "port $port lists vol-c to a client not on its allow list"
	nbdinfo "nbd://127.0.0.1:$port/vol-c" >/dev/null 2>&1 &&
		fail "port $port opens vol-c for a client not on its allow list"
done

step "status: owner, served_by and shelf of every volume on both nodes"
vol_is() { # NODE VOL OWNER SERVED_BY SHELF
	status "$1" | jq -e --arg v "$2" --arg o "$3" --arg s "$4" --arg h "$5" \
		'[.volumes[] | select(.name == $v and .owner == $o and .served_by == $s and .shelf == $h)]
		 | length == 1' >/dev/null
}
for node in a b; do
	vol_is $node vol-a a a a || fail "$node: vol-a: $(status $node | jq -c .volumes)"
	vol_is $node vol-b b b b || fail "$node: vol-b: $(status $node | jq -c .volumes)"
done

step "nbdcopy: vol-a written through b's port reads back through a's, vol-b the other way"
head -c 16M /dev/urandom >"$T/d1"
head -c 16M /dev/urandom >"$T/d2"
nbdcopy "$T/d1" "$(nbd_uri $B_NBD vol-a)"
nbdcopy "$(nbd_uri $A_NBD vol-a)" "$T/o1"
cmp -n $((16 << 20)) "$T/d1" "$T/o1" || fail "vol-a through b's port differs on a's"
nbdcopy "$T/d2" "$(nbd_uri $A_NBD vol-b)"
nbdcopy "$(nbd_uri $B_NBD vol-b)" "$T/o2"
cmp -n $((16 << 20)) "$T/d2" "$T/o2" || fail "vol-b through a's port differs on b's"

step "a writer on b's NBD port for vol-a, SIGKILL a, b takes over"
writer k --port $B_NBD "${W[@]}"
wait_acks k $N
kill_node a
wait_takeover b
wait_acks k $N
writer_stop k
vol_is b vol-a a b a || fail "b in takeover: vol-a: $(status b | jq -c .volumes)"
check_acks "$T/k.acks" --port $B_NBD --export vol-a

step "a restarts taken over, giveback, every acknowledged write on a's port"
writer g --port $B_NBD "${W[@]}"
start_taken_over a
wait_acks g $N
giveback_to a
wait_acks g $N
writer_stop g
check_acks "$T/k.acks,$T/g.acks" --port $A_NBD --export vol-a
one_server

step "clean stop"
stop_node a
stop_node b
