#!/usr/bin/env bash
# normal build only: address moves in namespaces; netaddr is unit-tested and fuzzed under the sanitizers
# Issue 13: planned takeover and giveback under load move the address too,
# with no error. `duet-pair up --netns`; a writer on a's service address
# (reconnecting to the same address) and one on b's; `duetctl takeover` on
# b: a stops serving, b takes vol-a and SVC_A (a drops it first); then the
# giveback: b drops SVC_A, a adds it back before it serves. Neither writer
# gets an error reply; every acknowledged write reads back. ROUNDS rounds
# (default 2).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/addr.inc"

ROUNDS=${ROUNDS:-2}
N=200

step "duet-pair up --netns; writers on $SVC_A (vol-a) and $SVC_B (vol-b)"
addr_pair_up
watch_holders "$SVC_A"
writer w --blocks 1024 --qd 16
$PY "$ACKW" write --host "$SVC_B" --port "$B_NBD" --failover-port "$B_NBD" --export vol-b \
	--log "$T/wb.acks" --stop-file "$T/wb.stop" --blocks 1024 --qd 16 --keepalive 1 >"$T/wb.out" 2>&1 &
WPID[wb]=$!
wait_acks w $N
wait_acks wb $N
for r in $(seq 1 "$ROUNDS"); do
	step "round $r/$ROUNDS: planned takeover of a by b"
	takeover_ready
	pair takeover b >/dev/null
	wait_ha b takeover/serving
	wait_for on_iface b "$SVC_A" || fail "b does not hold $SVC_A after the planned takeover"
	on_iface a "$SVC_A" && fail "a kept $SVC_A after the planned takeover"
	wait_acks w $N
	wait_acks wb $N
	step "round $r/$ROUNDS: giveback"
	giveback_a
	wait_for on_iface a "$SVC_A" || fail "a does not hold $SVC_A after the giveback"
	wait_acks w $N
	wait_acks wb $N
done
step "no error, no two holders; every acknowledged write reads back"
writer_stop w
writer_stop wb
grep -q " errors=0 " "$T/w.out" || fail "writer on $SVC_A: $(tail -n 1 "$T/w.out")"
grep -q " errors=0 " "$T/wb.out" || fail "writer on $SVC_B: $(tail -n 1 "$T/wb.out")"
holders_ok "$SVC_A"
check_acks "$T/w.acks"
$PY "$ACKW" check --log "$T/wb.acks" --host "$SVC_B" --port "$B_NBD" --export vol-b >"$T/checkb.out" 2>&1 ||
	{ cat "$T/checkb.out" >&2; fail "acknowledged writes on vol-b lost"; }
echo "a: $(tail -n 1 "$T/w.out"); b: $(tail -n 1 "$T/wb.out")" >&2
