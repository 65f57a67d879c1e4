#!/usr/bin/env bash
# Issue 6: SIGSTOP of node a for longer than the deadline. b takes over; on
# SIGCONT a finds the takeover mark, stops serving and writes nothing more:
# no block written by a after b's takeover.
#
# Four writers on vol-a, each on its own range of blocks (ackwriter.py):
#   P  blocks   0..255 on b's proxy port (forwarded to a until the stop)
#   D  blocks 256..511 on a's own port
#   Q  blocks 256..511 on b's proxy port, after the takeover and before the
#      SIGCONT: writes every block of D's range once more (the probe)
#   P2 blocks 512..767 on b's proxy port, from the SIGCONT through the
#      giveback
# While a is stopped, some of P's and D's writes sit unexecuted in a's
# sockets. P's are executed by b when it takes over (the proxy completes
# waiting commands locally); P and Q then write their blocks again through
# b. Nothing writes P's or D's range after the SIGCONT, so a write that a
# executed after waking (an old P or D write) would overwrite a newer
# acknowledged write of P or Q and show in the check; a's lease and mark
# must prevent it. The checks run after the giveback, on a's own port and on
# b's proxy port. Also: a logs the mark, its NBD port refuses connections,
# its client connection ends (its held requests fail, or it is closed), and
# nothing serves vol-a but b until the giveback.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

W=(--export vol-a --blocks 256 --qd 8 --timestamps)
N=300

step "start a pair, vol-a on a, mirror in sync, takeover possible on b"
pair_with_vol_a --no-watch # a stopped a still listens: see watch_servers

step "load on b's proxy port (P) and on a's own port (D)"
writer P --port $B_PROXY "${W[@]}" --first-block 0
writer D --port $A_NBD "${W[@]}" --first-block 256 --until-dead --allow-errors
wait_acks P $N
wait_acks D $N

step "SIGSTOP a: b takes over"
log_mark a
log_mark b
t0=$(mono)
stop_sig a
wait_takeover b
d_acked=$(acked "$T/D.acks")
wait_acks P $N
[ "$(served_by b vol-a)" = b ] || fail "b in takeover but vol-a served by $(served_by b vol-a)"
writer_stop P
stall_report P "$t0"

step "probe: Q writes every block of D's range through b"
writer Q --port $B_PROXY "${W[@]}" --first-block 256 --sequential --count 512
writer_wait Q
[ "$(acked "$T/Q.acks")" -eq 512 ] || fail "Q: $(acked "$T/Q.acks") of 512 writes acknowledged"
writer_alive D || fail "D ended while a was stopped: $(tail -n 2 "$T/D.out")"
[ "$(acked "$T/D.acks")" -eq "$d_acked" ] || fail "D got acknowledgements from a stopped a"
ha_is b takeover serving || fail "b left takeover/serving: $(ha_state b)/$(ha_phase b)"

step "before SIGCONT: every acknowledged write reads back through b"
# The reference for the same check after a woke: what differs then was
# written while a was awake again.
check_acks "$T/P.acks" --port $B_PROXY --export vol-a
check_acks "$T/D.acks,$T/Q.acks" --port $B_PROXY --export vol-a

step "SIGCONT a: it finds the mark and stops serving"
writer P2 --port $B_PROXY "${W[@]}" --first-block 512
wait_acks P2 100
# a wakes after b ended the session (a stop longer than the session grace,
# as a real hang is), so that a wakes into a new session every time; a link
# that returns within the grace is tests/integration/proxy-stop-flap.sh.
session_is_down() { [ "$(ctl b status --json | jq -r .session.state)" != up ]; }
wait_for session_is_down
cont_sig a
touch "$T/D.stop" # no new writes from D; it waits for what a holds
wait_for grep -q "takeover mark gen .* in own mailbox" "$T/a.log" ||
	fail "a did not log the takeover mark after SIGCONT: $(log_since a | tail -n 5)"
log_since a | grep "process was stopped" >/dev/null || fail "a's watchdog did not see the stop"
wait_for -t 10 not port_listening $A_NBD || fail "a still listens on its NBD port"
refuses $A_NBD || fail "a accepts connections on its NBD port after waking"
watch_servers
case $(ha_state a) in
taken_over | waiting_for_giveback) ;;
*) fail "a is in ha state $(ha_state a) after waking, not taken_over" ;;
esac
[ "$(ha a .io_allowed)" = false ] || fail "a still has its I/O lease after waking"
wait_for -t 20 not writer_alive D ||
	fail "a neither answered nor closed D's connection after waking: D still waits"
writer_wait D
# Replies a sends on waking for writes done before the stop (completed in
# the kernel while a was stopped) are no harm; a write done after waking is,
# and the checks below find it: Q wrote every block of D's range after a
# stopped, so a later write of D's (or P's) would replace Q's (P's).
late_acks=$(($(acked "$T/D.acks") - d_acked))
echo "   D: $late_acks replies after the takeover, $(grep -c '^E' "$T/D.acks" || true) error replies, $(grep -c '^D' "$T/D.acks" || true) breaks after waking" >&2
ha_is b takeover serving || fail "b left takeover/serving after a woke: $(ha_state b)/$(ha_phase b)"

step "after a woke, before the giveback: every acknowledged write reads back through b"
# Nothing writes P's or D's range any more; b serves them. A block that
# changed since the same check before SIGCONT was written by a after waking.
woke_bad=()
for logs in P D,Q; do
	check_acks_soft "$T/${logs/,/.acks,$T/}.acks" --port $B_PROXY --export vol-a || woke_bad+=("$logs")
done
wait_acks P2 $N

step "giveback under load"
giveback_to a
[ "$(served_by b vol-a)" = a ] || fail "b serves vol-a after the giveback: $(served_by b vol-a)"
wait_acks P2 $N
writer_stop P2

step "no block written by a after the takeover: every acknowledged write reads back"
bad=()
for logs in P D,Q P2; do
	check_acks_soft "$T/${logs/,/.acks,$T/}.acks" --port $A_NBD --export vol-a || bad+=("$logs")
done
[ ${#woke_bad[@]} -eq 0 ] ||
	fail "a wrote after waking: acknowledged writes overwritten in the ranges of ${woke_bad[*]} before the giveback (seen through b), after it in ${bad[*]:-none}"
[ ${#bad[@]} -eq 0 ] || fail "acknowledged writes overwritten or lost in the ranges of ${bad[*]} (after the giveback)"
check_acks "$T/P.acks,$T/D.acks,$T/Q.acks,$T/P2.acks" --port $B_PROXY --export vol-a
one_server

step "clean stop"
stop_node a
stop_node b
