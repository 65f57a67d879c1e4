#!/usr/bin/env bash
# normal build only: random timing on the stand-in, run 8 rounds on the normal build; its faults each have a sanitizer-run test
# Issue 16: chaos on the two-host stand-in (own mounts only: each node sees
# both shelves through a FUSE mount of its own, tests/lib.sh). vol-a on a,
# vol-b on b; rounds alternate the victim (a, b, a, b, ...) and the fault
# (SIGKILL in rounds 1-2, SIGSTOP past the deadline in rounds 3-4, and so
# on). 8 rounds (4 on a sanitizer build or with --quick;
# DUET_FAILOVER_ROUNDS overrides). Each round, victim V, survivor S:
#   1. writer X on S's proxy port for V's volume (forwarded to V), writer Y
#      on S's own port for S's volume;
#   2. the fault: SIGKILL V, or SIGSTOP V; S takes over (takeover/serving),
#      X goes on with no error (S serves V's volume itself);
#   3. V comes back taken over: restarted after a SIGKILL, or SIGCONT after
#      S ended the session (a hang longer than the session grace); it finds
#      the mark and does not listen on its NBD port;
#   4. giveback to V under X's load; X is forwarded to V again;
#   5. every acknowledged write of every round so far reads back on each
#      volume's owner's own port.
# At the end, every acknowledged write of the whole run reads back: 0 lost.
# env DUET_IO_ENGINE=uring|threads picks the engine of both nodes.
set -euo pipefail
export DUET_OWN_MOUNTS=${DUET_OWN_MOUNTS:-1} # 0: the plain layout, as a control
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

ROUNDS=8
{ [ "$QUICK" = 1 ] || [ "$TIMEOUT_SCALE" -gt 1 ]; } && ROUNDS=4
ROUNDS=${DUET_FAILOVER_ROUNDS:-$ROUNDS}
N=200 # acknowledgements per phase
W=(--blocks 1024 --qd 16 --timestamps)

proxy_of() { if [ "$1" = a ]; then echo $A_PROXY; else echo $B_PROXY; fi; }
session_down() { [ "$(ctl "$1" status --json | jq -r .session.state)" != up ]; }
# ready V S: V's mirror in sync, S may take over and forwards V's volume.
ready() {
	wait_for m_is "$1" in_sync || fail "mirror of $1 not in_sync: $(mstate "$1")"
	wait_for takeover_possible "$2" || fail "takeover not possible on $2: $(ha "$2" .reason)"
	wait_for served_is "$2" "vol-$1" "$1" || fail "$2 does not forward vol-$1 to $1"
}
declare -A LOGS=() # volume -> its writers' logs, comma-separated
check_volume() { # VOLUME OWNER
	check_acks "${LOGS[$1]}" --port "$(_fo_port "$2")" --export "$1"
}

step "start a pair, vol-a on a, vol-b on b, both mirrors in sync"
start_a
start_b
ctl a volume create vol-a 64M >/dev/null
ctl b volume create vol-b 64M >/dev/null
ready a b
ready b a

stalls=()
for r in $(seq 1 "$ROUNDS"); do
	v=a
	[ $((r % 2)) -eq 1 ] || v=b
	s=$(other $v)
	fault=KILL
	[ $(((r - 1) / 2 % 2)) -eq 0 ] || fault=STOP
	R="round $r/$ROUNDS ($fault $v)"

	step "$R: load on $s's proxy port for vol-$v and on $s's own port for vol-$s"
	ready $v $s
	writer X$r --port "$(proxy_of $s)" --export vol-$v "${W[@]}"
	writer Y$r --port "$(_fo_port $s)" --export vol-$s "${W[@]}"
	LOGS[vol-$v]+=${LOGS[vol-$v]:+,}$T/X$r.acks
	LOGS[vol-$s]+=${LOGS[vol-$s]:+,}$T/Y$r.acks
	wait_acks X$r $N
	wait_acks Y$r $N

	step "$R: the fault, $s takes over vol-$v, the load goes on"
	t0=$(mono)
	if [ $fault = KILL ]; then
		kill_node $v
	else
		stop_sig $v
	fi
	wait_takeover $s
	wait_acks X$r $N
	[ "$(served_by $s vol-$v)" = $s ] || fail "$s in takeover but vol-$v served by $(served_by $s vol-$v)"
	stall_report X$r "$t0"
	[ -n "$RESUMED_MS" ] && stalls+=("$RESUMED_MS")

	step "$R: $v comes back taken over"
	if [ $fault = KILL ]; then
		start_taken_over $v
	else
		wait_for session_down $s || fail "$s did not end the session with the stopped $v"
		cont_sig $v
		wait_for ha_is $v waiting_for_giveback || wait_for ha_is $v taken_over ||
			fail "$v is in ha state $(ha_state $v) after waking, not taken_over"
		wait_for -t 10 not port_listening "$(_fo_port $v)" || fail "$v still listens on its NBD port"
	fi
	refuses "$(_fo_port $v)" || fail "$v accepts connections on its NBD port while taken over"

	step "$R: giveback to $v under load"
	giveback_to $v
	[ "$(served_by $s vol-$v)" = $v ] || fail "$s serves vol-$v after the giveback: $(served_by $s vol-$v)"
	wait_acks X$r $N
	wait_acks Y$r $N
	writer_stop X$r
	writer_stop Y$r

	step "$R: every acknowledged write so far reads back on the owners' own ports"
	check_volume vol-$v $v
	check_volume vol-$s $s
done

step "the end: every acknowledged write of the run reads back, 0 lost"
check_volume vol-a a
check_volume vol-b b
echo "$(stats_line "fault to writes completing again" "${stalls[@]}") over $ROUNDS rounds" >&2

step "clean stop"
stop_node a
stop_node b
