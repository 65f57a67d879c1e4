#!/usr/bin/env bash
# Issue 16, finding 5: the taker dies for good. SIGKILL of a under a write
# load through b's proxy port; b takes over; a restarts and waits for
# giveback while b acknowledges more writes for vol-a; then b is killed and
# never comes back. a takes its volumes back by itself: it fences b (its
# mark in b's mailbox, the fence wait), drops its own old log (b replayed
# it and wrote past it, straight into a's shelf), and serves vol-a on its
# own port. Every acknowledged write, b's included, reads back there.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

W=(--export vol-a --blocks 1024 --qd 16)
N=300

step "start a pair, vol-a on a, mirror in sync"
pair_with_vol_a

step "load through b's proxy port, SIGKILL a: b takes over"
writer w1 --port $B_PROXY "${W[@]}"
wait_acks w1 $N
kill_node a
wait_takeover b
wait_acks w1 $N

step "a restarts and waits for giveback; b acknowledges more writes for vol-a"
start_taken_over a
wait_ha a waiting_for_giveback
wait_acks w1 $N
writer_stop w1
check_acks "$T/w1.acks" --port $B_PROXY --export vol-a

step "b killed for good: a takes its volumes back by itself"
log_mark a
kill_node b
wait_for port_listening $A_NBD || fail "a does not listen: $(status a | jq -c '.ha | {state, phase, reason}')"
log_since a | grep "automatic takeback" >/dev/null || fail "a logged no automatic takeback"
log_since a | grep "writing takeover mark" >/dev/null || fail "a did not fence b with a mark"
log_since a | grep "own volumes taken back" >/dev/null || fail "a did not log the takeback"
ha_is a takeover || fail "a not in takeover (b fenced): $(ha a .state)"
takeback_reason=$(ha a .last_change.reason)
echo "   a: $takeback_reason" >&2

step "every acknowledged write, b's for vol-a included, reads back on a's own port"
check_acks "$T/w1.acks" --port $A_NBD --export vol-a

step "a serves vol-a on its own port: new writes are acknowledged and read back"
writer w2 --port $A_NBD "${W[@]}"
wait_acks w2 $N
writer_stop w2
check_acks "$T/w1.acks,$T/w2.acks" --port $A_NBD --export vol-a
one_server
