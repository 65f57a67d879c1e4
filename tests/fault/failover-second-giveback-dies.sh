#!/usr/bin/env bash
# normal build only: a timing variant of the giveback; giveback runs under the sanitizers in failover-kill-proxy and relocate
# Issue 16, finding 6: the owner dies during a giveback's drain. SIGKILL of
# a under a write load through b's proxy port; b takes over; a restarts and
# waits; a giveback starts under load, and a is killed while b drains
# (DUET_TEST_DRAIN_HOLD_MS keeps b's drain open long enough). b does not
# clear its mark: it serves vol-a again, the load goes on, and no
# acknowledged write is lost. a then restarts taken over and is given back.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

W=(--export vol-a --blocks 1024 --qd 16)
N=300
export DUET_TEST_DRAIN_HOLD_MS=$((3000 * TIMEOUT_SCALE))

step "start a pair, vol-a on a, mirror in sync"
pair_with_vol_a

step "load through b's proxy port, SIGKILL a: b takes over"
writer w --port $B_PROXY "${W[@]}"
wait_acks w $N
kill_node a
wait_takeover b
wait_acks w $N

step "a restarts and waits; giveback under load; a killed during the drain"
start_taken_over a
wait_ha a waiting_for_giveback
log_mark b
# b hears that a waits from a's next heartbeat; until then it refuses.
wait_for -t 10 ctl b giveback || fail "duetctl giveback on b failed"
wait_ha b giving_back draining
kill_node a

step "b serves vol-a again instead of clearing its mark"
wait_ha -t $((20 * TIMEOUT_SCALE)) b takeover serving
log_since b | grep "died during the drain" >/dev/null || fail "b did not see a die during the drain"
! log_since b | grep "clearing takeover mark\|gave back" >/dev/null || fail "b went on with the giveback"
served_is b vol-a b || fail "vol-a served by $(served_by b vol-a) on b"
wait_acks w $N
writer_stop w
check_acks "$T/w.acks" --port $B_PROXY --export vol-a

step "a restarts taken over (the mark stayed) and is given back"
unset DUET_TEST_DRAIN_HOLD_MS
start_taken_over a
giveback_to a
check_acks "$T/w.acks" --port $A_NBD --export vol-a
one_server
