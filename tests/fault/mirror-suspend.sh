#!/usr/bin/env bash
# mirror_down = suspend: while the partner is away, writes are held (none is
# acknowledged without the partner's copy) and flow again when it returns;
# held past mirror_suspend_timeout_ms they fail with EIO; a node stopped
# while it holds writes fails them at once and exits cleanly.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/mirror.inc"

unlogged_at_least() { [ "$(mfield a .writes_unlogged)" -ge "$1" ]; }

step "start a pair (a: mirror_down = suspend), mirror in sync"
start_a "mirror_down = suspend"
start_b
ctl a volume create vol-a 64M >/dev/null
wait_for is_state a in_sync
writer warm --port $A_NBD --export vol-a --blocks 4096 --qd 8 --count 500
writer_wait

step "b away: writes are held"
stop_node b KILL
wait_for is_state a degraded
writer held --port $A_NBD --export vol-a --blocks 4096 --qd 8 --stop-file "$T/stop" --flush-each
wait_for unlogged_at_least 8
writer_running || fail "the writer ended: $(cat "$T/held.out")"
[ "$(acked "$T/held.acks")" = 0 ] || fail "$(acked "$T/held.acks") writes acknowledged without the partner"
[ "$(mfield a .suspend_timeouts)" = 0 ] || fail "writes timed out"

step "b back: the held writes complete, new ones flow"
start_b
wait_for is_state a in_sync
wait_for acked_at_least "$T/held.acks" 500
touch "$T/stop"
writer_wait
check_acks "$T/warm.acks,$T/held.acks" --port $A_NBD --export vol-a --min-acked 500

step "held past mirror_suspend_timeout_ms: EIO"
stop_node a
start_a "mirror_down = suspend" "mirror_suspend_timeout_ms = 1500"
wait_for is_state a in_sync
stop_node b KILL
wait_for is_state a degraded
writer eio --port $A_NBD --export vol-a --blocks 4096 --qd 4 --count 4 --allow-errors
writer_wait
grep -q "acked=0 errors=4" "$T/eio.out" || fail "want 4 errors: $(cat "$T/eio.out")"
[ "$(grep -c '^E .* 5$' "$T/eio.acks")" = 4 ] || fail "the errors are not EIO: $(cat "$T/eio.acks")"
ms=$(sed -n 's/.*elapsed_ms=\([0-9]*\).*/\1/p' "$T/eio.out")
[ "$ms" -ge 1500 ] || fail "writes failed after $ms ms, before the 1500 ms deadline"
[ "$(mfield a .suspend_timeouts)" -ge 4 ] || fail "suspend_timeouts $(mfield a .suspend_timeouts)"

step "stopped while holding writes: they fail at once, clean exit"
writer stop --port $A_NBD --export vol-a --blocks 4096 --qd 4 --until-dead --allow-errors --flush-each
wait_for unlogged_at_least 4
t0=$(date +%s%N)
stop_node a
ms=$((($(date +%s%N) - t0) / 1000000))
writer_wait
[ "$(acked "$T/stop.acks")" = 0 ] || fail "writes acknowledged without the partner"
[ $ms -lt 1500 ] || fail "the stop took $ms ms: it waited for the held writes' deadline"

step "both back: writes flow, everything acknowledged reads back"
start_b
start_a
wait_for is_state a in_sync
writer last --port $A_NBD --export vol-a --blocks 4096 --qd 8 --count 500
writer_wait
# Failed and unacknowledged writes stay candidates for their blocks.
check_acks "$T/warm.acks,$T/held.acks,$T/eio.acks,$T/stop.acks,$T/last.acks" --port $A_NBD --export vol-a
stop_node a
stop_node b
