#!/usr/bin/env bash
# Raw protocol abuse (nbd_abuse.py) against a live duetd: every bad input
# gets an error reply or a clean disconnect, a log line, no crash, no
# unbounded memory, no stall of other clients; after each case a normal
# client still works.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need python3 nbdinfo

P=$PORT_BASE
ABUSE=$TEST_DIR/nbd_abuse.py

step "start"
start_node a "$P"
ctl a volume create vol-a 64M >/dev/null
ctl a volume create other 1M >/dev/null

# Lines of the nbd module's log about clients (not the listener); errors
# answered by the protocol may be INFO, dropped connections WARN.
problem_lines() { log_since a | grep -E '^[0-9:.]+ (\[a\] )?[A-Z]+ +nbd: ' | grep -v 'listening on' || true; }

for c in bad-magic out-of-range too-long unknown-command unknown-flags \
	disconnect-mid-request stall slow-reader bad-options; do
	step "$c"
	log_mark a
	out=$(python3 "$ABUSE" --port "$P" --export vol-a --pid "$(node_pid a)" "$c" 2>&1) ||
		fail "$c: $out"
	events=$(sed -n 's/^events=//p' <<<"$out")
	_alive "$(node_pid a)" || fail "duetd died during $c"
	# A normal client after each case.
	python3 "$ABUSE" --port "$P" --export vol-a good >/dev/null || fail "normal client fails after $c"
	nbdinfo --size "$(nbd_uri "$P" vol-a)" >/dev/null || fail "nbdinfo fails after $c"
	ctl a status >/dev/null || fail "control socket does not answer after $c"
	# Every bad input is logged, once: at least one line for the case and
	# not more than one per bad input (+1 for slack: a case whose inputs
	# are all legal, like slow-reader, may still see one line).
	n=$(problem_lines | wc -l)
	if [ "$events" -gt 0 ] && [ "$n" -lt 1 ]; then
		fail "$c: $events bad inputs, but no warning in the log"
	fi
	if [ "$n" -gt $((events + 1)) ]; then
		problem_lines | head -20 >&2
		fail "$c: $events bad inputs logged $n problem lines (log flood)"
	fi
	[ "${DUET_VERBOSE:-0}" = 1 ] && { echo "$c: events=$events lines=$n"; problem_lines; } >&2
done

step "status counts protocol errors"
ctl a status --json | jq -e '.nbd.protocol_errors > 0' >/dev/null ||
	fail "status .nbd.protocol_errors stayed 0: $(ctl a status --json | jq -c .nbd)"

step "no connections left open"
wait_for -t 20 bash -c "[ \"\$($DUETCTL --socket $T/a.sock status --json | jq .nbd.connections)\" = 0 ]" ||
	fail "duetd still counts connections: $(ctl a status --json | jq -c .nbd)"

step "clean shutdown"
stop_node a
