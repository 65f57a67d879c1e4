#!/usr/bin/env bash
# normal build only: a real client's reconnect timing; netaddr is unit-tested and fuzzed under the sanitizers
# Issue 13: a real client rides through the kill. qemu-io on a's service
# address with `reconnect-delay=20` (QEMU's NBD driver waits up to 20 s for
# the server to come back, retrying the same address and port, instead of
# failing the request) writes a pattern over vol-a, slice by slice, while a
# is killed and b takes over a's address. No I/O error; the pattern reads
# back through b (same URI), and again after a's restart and the giveback.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/addr.inc"
need qemu-io

MB=${MB:-32}
OPTS="driver=nbd,server.type=inet,server.host=$SVC_A,server.port=$A_NBD,export=vol-a,reconnect-delay=20"

step "duet-pair up --netns"
addr_pair_up

step "qemu-io writes 0x5a over ${MB} MiB of vol-a at $SVC_A, 256 KiB at a time, paced"
cmds=()
for ((i = 0; i < MB * 4; i++)); do
	cmds+=(-c "write -P 0x5a $((i * 256))k 256k" -c "sleep 15")
done
stdbuf -oL qemu-io --image-opts "$OPTS" "${cmds[@]}" >"$T/qemu.out" 2>&1 &
QPID=$!
track_pid $QPID
wait_for grep -q "wrote" "$T/qemu.out" || fail "qemu-io wrote nothing: $(tail -n 3 "$T/qemu.out")"
sleep 0.5 # some slices written through a

step "SIGKILL of a mid-stream; b takes over $SVC_A"
pair kill a
wait_ha b takeover/serving
wait_for on_iface b "$SVC_A" || fail "b does not hold $SVC_A"
kill -0 $QPID 2>/dev/null || fail "qemu-io ended before the takeover (make it write longer: MB=)"

step "qemu-io finishes without an I/O error"
rc=0
wait $QPID || rc=$?
untrack_pids
[ $rc = 0 ] || fail "qemu-io exit status $rc: $(grep -v wrote "$T/qemu.out" | tail -n 5)"
grep -qi "fail\|error" "$T/qemu.out" && fail "qemu-io: $(grep -i 'fail\|error' "$T/qemu.out" | head -n 3)"
[ "$(grep -c '^wrote' "$T/qemu.out")" = $((MB * 4)) ] || fail "qemu-io wrote $(grep -c '^wrote' "$T/qemu.out") of $((MB * 4)) slices"

step "the pattern reads back through b at $SVC_A"
qemu-io --image-opts "$OPTS" -c "read -P 0x5a 0 ${MB}M" >"$T/verify.out" 2>&1 ||
	fail "verify through b: $(tail -n 3 "$T/verify.out")"

step "a restarts, giveback; the pattern reads back through a"
pair start a >/dev/null
giveback_a
wait_for on_iface a "$SVC_A" || fail "a does not hold $SVC_A after the giveback"
qemu-io --image-opts "$OPTS" -c "read -P 0x5a 0 ${MB}M" >"$T/verify2.out" 2>&1 ||
	fail "verify through a: $(tail -n 3 "$T/verify2.out")"
grep -h "moved here" "$T/b.log" | tail -n 1 >&2
