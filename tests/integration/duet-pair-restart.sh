#!/usr/bin/env bash
# duet-pair start right after duet-pair kill: the killed node may linger as
# a zombie until whoever inherited it reaps it, and `kill -0` still finds a
# zombie. duet-pair runs here under a subreaper that never reaps (so the
# zombie is certain): `kill` must return and `start` must start the node
# again, not say "already runs".
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need python3 jq

D=$T/pair
PAIR=$REPO_ROOT/tools/duet-pair
export DUET_BUILD=$BUILD
rm -f "$T/reaper.go"
# The subreaper: runs duet-pair commands read from a fifo, never waits for
# the orphans that land on it (the started nodes).
mkfifo "$T/cmds"
python3 - "$T/cmds" "$PAIR" >"$T/reaper.out" 2>&1 <<'PY' &
import ctypes, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
fifo, pair = sys.argv[1], sys.argv[2]
with open(fifo) as f:
    for line in f:
        args = line.split()
        if not args:
            continue
        if args[0] == "quit":
            break
        r = subprocess.run([pair] + args, stdout=subprocess.DEVNULL)
        with open(args[1] + "/rc", "w") as o:
            o.write("%d %s\n" % (r.returncode, args[0]))
PY
track_pid $!
exec 7>"$T/cmds"
pair() { # CMD DIR [ARGS]: run it under the subreaper, its exit status
	rm -f "$D/rc"
	echo "$*" >&7
	wait_for -t 20 [ -s "$D/rc" ] || return 99
	read -r rc _ <"$D/rc" || return 99
	return "$rc"
}
mkdir -p "$D"

step "duet-pair up under a subreaper that never reaps"
pair up "$D" --base-port "$PORT_BASE" --size 16M --monitor boot_grace_ms=0 ||
	fail "duet-pair up failed: $(tail -5 "$D"/a.log)"
pid=$(cat "$D/a.pid")
track_pid "$pid"
track_pid "$(cat "$D/b.pid")"

step "kill a: its process stays a zombie, duet-pair sees it gone"
pair kill "$D" a || fail "duet-pair kill failed"
st=$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f1)
[ "$st" = Z ] || fail "expected a zombie, pid $pid is in state $st"

step "start a right away: it starts"
pair start "$D" a || fail "duet-pair start took the zombie for a live node"
[ "$(cat "$D/a.pid")" != "$pid" ] || fail "a.pid still names the old process"
track_pid "$(cat "$D/a.pid")"
"$DUETCTL" --socket "$D/a.sock" status --json | jq -e '.node == "a"' >/dev/null

step "down"
pair down "$D" || fail "duet-pair down failed"
echo quit >&7
exec 7>&-
