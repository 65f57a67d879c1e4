#!/usr/bin/env bash
# Issue 6: automatic giveback ([monitor] auto_giveback = on). SIGKILL of
# node a under a write load through b's proxy port; b takes over; a
# restarts and waits; b gives vol-a back on its own once a has waited
# giveback_delay_ms, with the load still running: no client error, and
# every acknowledged write reads back through a's own port.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

FO_MONITOR=("auto_giveback = on" "giveback_delay_ms = $((500 * TIMEOUT_SCALE))")
W=(--export vol-a --blocks 1024 --qd 16)
N=300

step "start a pair with auto_giveback, vol-a on a, mirror in sync"
pair_with_vol_a

step "load through b's proxy port, SIGKILL a: b takes over"
writer w --port $B_PROXY "${W[@]}"
wait_acks w $N
kill_node a
wait_takeover b
wait_acks w $N

step "a restarts taken over; b gives back by itself after the delay"
start_taken_over a
wait_ha b up none
wait_ha a up none
wait_for port_listening $A_NBD || fail "a does not listen after the automatic giveback"
grep -q "automatic giveback" "$T/b.log" || fail "b did not log an automatic giveback"
[ "$(served_by b vol-a)" = a ] || fail "b serves vol-a after the giveback: $(served_by b vol-a)"
wait_acks w $N
writer_stop w
one_server

step "every acknowledged write reads back through a's own port"
check_acks "$T/w.acks" --port $A_NBD --export vol-a
