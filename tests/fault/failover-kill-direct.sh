#!/usr/bin/env bash
# Issue 6: SIGKILL of node a under a write load on vol-a on a's own NBD
# port. The writer (ackwriter.py --failover-port) loses its connection with
# writes in flight (logged as unacknowledged), reconnects to b's proxy port
# and goes on: its writes wait there until b has taken over, then complete.
# Nothing acknowledged is lost: every acknowledged write reads back through
# b, and after a's restart and the giveback (under load on b's proxy port)
# on a's own port. 3 rounds (2 on a sanitizer build or with --quick;
# DUET_FAILOVER_ROUNDS overrides). Prints the time from the kill to the
# first write completing again.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

fo_rounds 3 2
W=(--export vol-a --blocks 1024 --qd 32 --timestamps)
N=300

step "start a pair, vol-a on a, mirror in sync, takeover possible on b"
pair_with_vol_a

logs=""
stalls=()
lost_total=0
for r in $(seq 1 "$ROUNDS"); do
	step "round $r/$ROUNDS: load on a's own port, SIGKILL a"
	writer d$r --port $A_NBD --failover-port $B_PROXY "${W[@]}"
	logs+=${logs:+,}$T/d$r.acks
	# After a giveback: the mirror back in sync, a takeover possible again.
	ready_for_takeover
	wait_acks d$r $N
	t0=$(mono)
	kill_node a

	step "round $r/$ROUNDS: the writer reconnects to b's proxy port, b takes over"
	wait_for grep -q "^R .* $B_PROXY\$" "$T/d$r.acks" || fail "writer d$r did not reconnect to b's proxy port"
	wait_takeover b
	wait_acks d$r $N
	[ "$(served_by b vol-a)" = b ] || fail "b in takeover but vol-a served by $(served_by b vol-a)"
	writer_stop d$r
	grep -q "reconnects=1 " "$T/d$r.out" || fail "writer d$r: $(tail -n 1 "$T/d$r.out")"
	lost=$(sed -n 's/.* lost=\([0-9]*\).*/\1/p' "$T/d$r.out")
	lost_total=$((lost_total + ${lost:-0}))
	stall_report d$r "$t0"
	[ -n "$RESUMED_MS" ] && stalls+=("$RESUMED_MS")

	step "round $r/$ROUNDS: every acknowledged write reads back through b, while a restarts"
	launch_node a
	check_acks "$logs" --port $B_PROXY --export vol-a

	step "round $r/$ROUNDS: a restarts taken over, giveback under load on b's proxy port"
	writer_on_b g$r
	wait_taken_over a
	refuses $A_NBD || fail "a accepts connections on its NBD port while taken over"
	giveback_under_load g$r "$r/$ROUNDS"
done

echo "writes in flight at the kills (unacknowledged, lost or not): $lost_total" >&2
echo "$(stats_line "kill to writes completing again" "${stalls[@]}") over $ROUNDS rounds" >&2
step "clean stop"
stop_node a
stop_node b
