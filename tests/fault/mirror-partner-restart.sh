#!/usr/bin/env bash
# The partner (b) is killed and restarted during a write load on a: a's
# mirror goes degraded (writes go on locally), then resyncing when b is
# back, then in_sync; the client sees no error and every acknowledged write
# reads back. The state sequence is taken from a's status history (a
# resync can be over between two polls).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/mirror.inc"

step "start a pair, mirror in sync"
start_a
start_b
ctl a volume create vol-a 128M >/dev/null
wait_for is_state a in_sync

step "write load; SIGKILL b"
writer load --port $A_NBD --export vol-a --blocks 8192 --qd 16 --stop-file "$T/stop"
wait_for acked_at_least "$T/load.acks" 1000
stop_node b KILL
wait_for is_state a degraded
n=$(acked "$T/load.acks")
# Writes go on while the partner is away.
wait_for acked_at_least "$T/load.acks" $((n + 1000))
writer_running || fail "the writer stopped: $(cat "$T/load.out")"
mfield a .takeover_safe | grep -qx false || fail "takeover_safe while degraded"

step "b back: resyncing, then in_sync, under the load"
start_b
wait_for is_state a in_sync
n=$(acked "$T/load.acks")
wait_for acked_at_least "$T/load.acks" $((n + 1000))
touch "$T/stop"
writer_wait
seq=$(history a)
echo "a's mirror states: $seq" >&2
case " $seq " in
*" in_sync degraded resyncing in_sync ") ;;
*) fail "state sequence '$seq' does not end with in_sync degraded resyncing in_sync" ;;
esac
[ "$(mfield a .lag_bytes)" = 0 ] || fail "lag $(mfield a .lag_bytes) bytes when in sync"
mfield a .takeover_safe | grep -qx true || fail "not takeover_safe when in sync"
[ "$(mfield a .resyncs)" -ge 2 ] || fail "resyncs $(mfield a .resyncs)"

step "every acknowledged write reads back"
check_acks "$T/load.acks" --port $A_NBD --export vol-a --min-acked 3000
stop_node a
stop_node b
