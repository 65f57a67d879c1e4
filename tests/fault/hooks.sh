#!/usr/bin/env bash
# Issue 15, hooks ([hooks] dir): a hook that appends its environment to a
# file sees the events of a takeover on b (ha-state takeover, its steps,
# link-down) and of a volume's life (created, resized, deleted); a hook
# that sleeps forever (and started a child) is killed with its process
# group at [hooks] timeout_ms, its end is logged, and the node answers
# duetctl all the while. The example hook (dist/hooks/50-syslog) runs
# without error.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need logger
HOOKS=$T/hooks
TIMEOUT_MS=$((1000 * TIMEOUT_SCALE))
FO_EXTRA=("[hooks]" "dir = $HOOKS" "timeout_ms = $TIMEOUT_MS" "max_running = 8")
. "$TEST_DIR/failover.inc"

mkdir -p "$HOOKS"
cat >"$HOOKS/10-record" <<EOF
#!/bin/sh
# One line per event: the DUET_ variables, sorted.
line=\$(env | grep '^DUET_' | sort | tr '\n' ' ')
printf '%s\n' "\$line" >>"$T/events-\$DUET_NODE"
EOF
cat >"$HOOKS/20-sleep" <<EOF
#!/bin/sh
# Hangs on volume-created: a child that sleeps, then waits for it.
[ "\$DUET_EVENT" = volume-created ] || exit 0
sleep 1000 &
echo \$! >"$T/sleeper.pid"
echo \$\$ >"$T/hook.pid"
wait
EOF
cp "$REPO_ROOT/dist/hooks/50-syslog" "$HOOKS/"
printf '#!/bin/sh\nexit 3\n' >"$HOOKS/30-fails"
echo "not executable" >"$HOOKS/README"
chmod +x "$HOOKS/10-record" "$HOOKS/20-sleep" "$HOOKS/30-fails"
has_event() { # NODE PATTERN...: a line of NODE's events matches every pattern
	local node=$1 line
	shift
	[ -f "$T/events-$node" ] || return 1
	while IFS= read -r line; do
		local ok=1 p
		for p in "$@"; do [[ $line == *"$p"* ]] || ok=0; done
		[ $ok = 1 ] && return 0
	done <"$T/events-$node"
	return 1
}
pid_gone() { ! kill -0 "$1" 2>/dev/null; }

step "a pair with hooks; vol-a created on a: its hook hangs"
pair_with_vol_a --no-watch
wait_for has_event a "DUET_EVENT=volume-created" "DUET_VOLUME=vol-a" "DUET_NODE=a" "DUET_PARTNER=b"
wait_for [ -s "$T/hook.pid" ] # written after sleeper.pid
hook_pid=$(cat "$T/hook.pid")
sleeper=$(cat "$T/sleeper.pid")

step "the node answers while the hook hangs; the timeout kills its group"
t0=$(now_ms)
for _ in 1 2 3 4 5; do
	timeout $((5 * TIMEOUT_SCALE)) "$DUETCTL" --socket "$T/a.sock" status >/dev/null || fail "a does not answer while a hook hangs"
done
ctl a volume resize vol-a 128M >/dev/null
wait_for has_event a "DUET_EVENT=volume-resized" "DUET_SIZE=134217728" "DUET_VOLUME=vol-a"
wait_for pid_gone "$hook_pid"
wait_for pid_gone "$sleeper"
[ $(($(now_ms) - t0)) -lt $((TIMEOUT_MS + 5000)) ] || fail "the hung hook lived far past its timeout"
wait_for grep -q "hook $HOOKS/20-sleep (volume-created): killed by signal 9.*timeout" "$T/a.log"
wait_for grep -q "hook $HOOKS/30-fails (.*): exit 3" "$T/a.log"
grep -q "hook $HOOKS/50-syslog (.*): exit 0" "$T/a.log" || fail "the example hook failed: $(grep 50-syslog "$T/a.log" | tail -3)"
! grep -q "README" "$T/a.log" || fail "a file that is not executable ran"

step "SIGKILL a: b's hooks see the link go down and every takeover step"
kill_node a
wait_takeover b
wait_for has_event b "DUET_EVENT=link-down" "DUET_LINK=ic0"
wait_for has_event b "DUET_EVENT=ha-state" "DUET_STATE=takeover" "DUET_PREV_STATE=up"
for ph in fence_wait replaying serving; do
	wait_for has_event b "DUET_EVENT=takeover-step" "DUET_PHASE=$ph" "DUET_STATE=takeover" ||
		fail "no takeover-step $ph on b"
done
status b | jq -e '.hooks.started > 0 and .hooks.dropped == 0' >/dev/null ||
	fail "b's hooks status: $(status b | jq -c .hooks)"

step "a restarts taken over; the giveback is seen on both"
start_taken_over a
giveback_to a
wait_for has_event b "DUET_EVENT=giveback-step" "DUET_PHASE=clearing"
wait_for has_event b "DUET_EVENT=ha-state" "DUET_STATE=up" "DUET_PREV_STATE=giving_back"
wait_for has_event a "DUET_EVENT=giveback-step" "DUET_PHASE=starting"
wait_for has_event a "DUET_EVENT=ha-state" "DUET_STATE=up"

step "volume delete is an event too"
ctl a volume delete vol-a --force >/dev/null
wait_for has_event a "DUET_EVENT=volume-deleted" "DUET_VOLUME=vol-a"

step "clean stop"
stop_node a
stop_node b
