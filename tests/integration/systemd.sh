#!/usr/bin/env bash
# duetd under systemd, without systemd: the notify protocol against a
# datagram socket this test listens on (NOTIFY_SOCKET, as systemd sets it
# for Type=notify): READY=1 once the node serves, STATUS= with the HA and
# mirror states, WATCHDOG=1 every WATCHDOG_USEC / 2 (WATCHDOG_PID naming
# duetd), STOPPING=1 at SIGTERM. Then the journal's priority prefixes
# (JOURNAL_STREAM = the dev:ino of stderr), none when it names another
# stream, and `systemd-analyze verify` of the unit duetd@.service.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need python3

P=$PORT_BASE
NOTIFY=$T/notify.sock
MSGS=$T/notify.txt

step "listen on a notify socket"
# One line per datagram, its lines joined with '|'.
python3 - "$NOTIFY" "$MSGS" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as out:
    while True:
        d = s.recv(4096)
        out.write(d.decode(errors="replace").replace("\n", "|") + "\n")
        out.flush()
PY
track_pid $!
wait_for test -S "$NOTIFY"
: >"$MSGS"

# systemd names the main process in WATCHDOG_PID; a wrapper execs duetd
# with its own PID there, as systemd would.
REAL_DUETD=$DUETD
DUETD=$T/duetd-wrapped
cat >"$DUETD" <<EOF
#!/bin/sh
WATCHDOG_PID=\$\$ exec "$REAL_DUETD" "\$@"
EOF
chmod +x "$DUETD"

step "start duetd with NOTIFY_SOCKET, WATCHDOG_USEC and JOURNAL_STREAM"
touch "$T/a.log"
export NOTIFY_SOCKET=$NOTIFY WATCHDOG_USEC=200000
JOURNAL_STREAM=$(stat -c '%d:%i' "$T/a.log")
export JOURNAL_STREAM
start_node a "$P"
pid=$(node_pid a)
got() { grep -q -- "$1" "$MSGS"; }
wait_for got '^READY=1|MAINPID='"$pid"
wait_for got '^STATUS=ha up/none, partner none, mirror '
# 100 ms apart: three within a few seconds even on a loaded machine.
watchdogs() { [ "$(grep -c '^WATCHDOG=1$' "$MSGS")" -ge "$1" ]; }
wait_for -t 10 watchdogs 3
grep -q 'service watchdog every 100 ms' "$T/a.log" || fail "duetd did not log its watchdog period"
# READY=1 comes after the first STATUS=, and only once.
[ "$(grep -c 'READY=1' "$MSGS")" = 1 ] || fail "READY=1 sent $(grep -c 'READY=1' "$MSGS") times"

step "a stopped reactor sends no WATCHDOG=1"
kill -STOP "$pid"
n0=$(grep -c '^WATCHDOG=1$' "$MSGS")
sleep 0.5 # a stopped process must stay silent for a while: nothing to poll for
n1=$(grep -c '^WATCHDOG=1$' "$MSGS")
kill -CONT "$pid"
[ "$n1" -le $((n0 + 1)) ] || fail "WATCHDOG=1 sent while the process was stopped ($n0 -> $n1)"
wait_for -t 10 watchdogs $((n1 + 2))

step "journal priority prefixes"
# A malformed control request logs a warning.
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"junk\n"); s.recv(4096)' "$T/a.sock"
wait_for grep -q '^<4>.*WARN.*malformed control request' "$T/a.log"
grep -q '^<6>.*INFO .*node a ready' "$T/a.log" || fail "no <6> info line: $(head -5 "$T/a.log")"
# Every line duetd wrote carries a prefix (start_node's own "===" lines aside).
bad=$(grep -v '^===' "$T/a.log" | grep -cv '^<[0-7]>' || true)
[ "$bad" = 0 ] || fail "$bad lines without a priority prefix: $(grep -v '^===' "$T/a.log" | grep -v '^<[0-7]>' | head -3)"

step "SIGTERM: STOPPING=1"
stop_node a
got '^STOPPING=1' || fail "no STOPPING=1: $(tail -3 "$MSGS")"

step "JOURNAL_STREAM naming another stream: no prefix"
JOURNAL_STREAM=1:1
unset NOTIFY_SOCKET WATCHDOG_USEC
mv "$T/a.log" "$T/a-journal.log"
start_node a "$P"
stop_node a
grep -q '^[0-9:.]* \[a\] INFO' "$T/a.log" || fail "no plain line: $(head -3 "$T/a.log")"
if grep -q '^<[0-7]>' "$T/a.log"; then fail "a prefix without the journal"; fi
unset JOURNAL_STREAM

step "systemd-analyze verify duetd@.service"
unit=$BUILD/dist/duetd@.service
[ -f "$unit" ] || fail "no $unit in the build"
if command -v systemd-analyze >/dev/null 2>&1; then
	# The unit as installed names installed paths; point them at the build.
	mkdir -p "$T/units"
	sed -e "s|^ExecStart=[^ ]*|ExecStart=$REAL_DUETD|" "$unit" >"$T/units/duetd@.service"
	ln -s duetd@.service "$T/units/duetd@a.service"
	out=$(systemd-analyze verify --man=no "$T/units/duetd@a.service" 2>&1) ||
		fail "systemd-analyze verify: $out"
	[ -z "$out" ] || fail "systemd-analyze verify complains: $out"
	grep -q '^Type=notify$' "$unit" || fail "the unit is not Type=notify"
	grep -q '^WatchdogSec=' "$unit" || fail "the unit has no WatchdogSec"
else
	echo "systemd-analyze not installed: the unit is not verified" >&2
fi
