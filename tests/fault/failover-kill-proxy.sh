#!/usr/bin/env bash
# Issue 6: SIGKILL of node a under a write load on vol-a through node b's
# proxy port, then giveback, 10 rounds in a row (5 on a sanitizer build or
# with --quick; DUET_FAILOVER_ROUNDS overrides). Each round:
#   1. a writer (ackwriter.py, 16 writes in flight, a unique pattern per
#      write) on b's proxy port, forwarded to a; SIGKILL a;
#   2. b takes over (ha takeover/serving), the same connection goes on with
#      no error (b serves vol-a itself); every acknowledged write of every
#      round so far reads back through b;
#   3. a new writer on b's proxy port; a restarts, finds the mark, does not
#      listen on its NBD port (taken_over, then waiting_for_giveback);
#      `duetctl giveback` on b; both up; the load goes on, forwarded to a
#      again; every acknowledged write so far reads back on a's own port.
# Never two nodes serve vol-a: a is dead or does not listen while b serves
# it, and b forwards it again only once a serves. Prints the stall each
# round's writer saw after the kill (min, median, max).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

fo_rounds 10 5
W=(--export vol-a --blocks 1024 --qd 16 --timestamps)
N=300 # acknowledgements per phase

step "start a pair, vol-a on a, mirror in sync, takeover possible on b"
pair_with_vol_a

logs=""
stalls=()
for r in $(seq 1 "$ROUNDS"); do
	step "round $r/$ROUNDS: load on b's proxy port, SIGKILL a"
	writer k$r --port $B_PROXY "${W[@]}"
	logs+=${logs:+,}$T/k$r.acks
	# After a giveback: the mirror back in sync, a takeover possible again.
	ready_for_takeover
	wait_acks k$r $N
	[ "$(served_by b vol-a)" = a ] || fail "b serves vol-a before the kill: $(served_by b vol-a)"
	t0=$(mono)
	log_mark b
	kill_node a

	step "round $r/$ROUNDS: b takes over, the load goes on"
	wait_takeover b
	wait_acks k$r $N
	[ "$(served_by b vol-a)" = b ] || fail "b in takeover but vol-a served by $(served_by b vol-a)"
	writer_stop k$r
	stall_report k$r "$t0"
	[ -n "$RESUMED_MS" ] && stalls+=("$RESUMED_MS")
	log_since b | grep "writing takeover mark" >/dev/null || fail "b wrote no takeover mark"

	step "round $r/$ROUNDS: every acknowledged write reads back through b, while a restarts"
	log_mark a
	launch_node a # it boots taken over, and must not touch its shelf meanwhile
	check_acks "$logs" --port $B_PROXY --export vol-a

	step "round $r/$ROUNDS: a restarts taken over, giveback under load"
	writer_on_b g$r
	wait_taken_over a
	log_since a | grep "takeover mark gen .* in own mailbox" >/dev/null ||
		fail "a did not log the takeover mark at boot"
	wait_ha a waiting_for_giveback
	refuses $A_NBD || fail "a accepts connections on its NBD port while taken over"
	[ "$(served_by b vol-a)" = b ] || fail "vol-a served by $(served_by b vol-a) before the giveback"
	wait_acks g$r $N
	giveback_under_load g$r "$r/$ROUNDS"
done

echo "$(stats_line "kill to writes completing again" "${stalls[@]}") over $ROUNDS rounds" >&2
step "clean stop"
stop_node a
stop_node b
