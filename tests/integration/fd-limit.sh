#!/usr/bin/env bash
# Descriptors (issue 12, finding 3; docs/SECURITY.md "Resource limits"):
# under a 64-descriptor limit, 80 idle NBD connections take no descriptor
# the node needs: the control socket still answers within seconds, a
# volume can be created, the process does not spin (its CPU time stays low),
# and once the idle clients go a real client is served.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need prlimit python3 nbdinfo

P=$PORT_BASE
REAL_DUETD=$DUETD
cat >"$T/duetd-64" <<EOS
#!/bin/sh
exec prlimit --nofile=64:64 "$REAL_DUETD" "\$@"
EOS
chmod +x "$T/duetd-64"

# cpu_ticks PID: user + system time of PID, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

step "start a under a 64-descriptor limit"
DUETD=$T/duetd-64 start_node a "$P"
ctl a volume create v 16M >/dev/null

step "80 idle NBD connections"
python3 - "$P" >"$T/holder.out" 2>&1 <<'EOS' &
import socket, sys, time
port = int(sys.argv[1])
held = []
for _ in range(80):
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect(("127.0.0.1", port))
        held.append(s)
    except OSError:
        s.close()
print("connected", len(held), flush=True)
time.sleep(120)
EOS
holder=$!
track_pid $holder
wait_for -t 20 grep -q connected "$T/holder.out"

step "the control socket answers, a volume can be created"
t0=$SECONDS
timeout 5 "$DUETCTL" --socket "$T/a.sock" status >/dev/null || fail "duetctl status did not answer in 5 s"
timeout 5 "$DUETCTL" --socket "$T/a.sock" volume create w 16M >/dev/null || fail "volume create failed"
[ $((SECONDS - t0)) -le 5 ] || fail "control took $((SECONDS - t0)) s"

step "no spin"
pid=$(node_pid a)
c0=$(cpu_ticks "$pid")
sleep 1 # the measure: CPU time over one second of wall time
c1=$(cpu_ticks "$pid")
tck=$(getconf CLK_TCK)
[ $((c1 - c0)) -lt $((tck / 5)) ] || fail "duetd used $((c1 - c0)) of $tck ticks in 1 s: spinning"

step "the idle clients go: a real client is served"
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
untrack_pids
wait_for -t 10 nbdinfo --size "$(nbd_uri "$P" v)"
ctl a status >/dev/null || fail "status after the clients left"
grep -q 'descriptors: limit 64,' "$T/a.log" || fail "the client limit is not logged"
