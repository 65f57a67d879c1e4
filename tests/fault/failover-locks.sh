#!/usr/bin/env bash
# Issue 12, finding 7 at takeover (docs/SECURITY.md "One instance per set
# of files"): each node holds the instance locks of its shelf and log for
# its whole life and the serving lock of its shelf while it serves it; at
# takeover the survivor takes the partner's serving lock, the partner
# restarted while taken over takes its instance locks (not the serving
# one), and at the giveback the serving lock goes back to the owner. A
# second duetd of a taken-over node is refused like any other.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"
[ "$OWN_MOUNTS" = 1 ] && skip "flock is per mount on the own-mounts layout: nothing to see"

# holder FILE: pids holding a flock on FILE (from /proc/locks).
holder() {
	local ino
	ino=$(stat -c %i "$1")
	awk -v i="$ino" '$2 == "FLOCK" { split($6, a, ":"); if (a[3] == i) print $5 }' /proc/locks |
		sort -u | tr '\n' ' ' | sed 's/ $//'
}
# holds PID FILE: PID (alone) holds FILE's flock.
holds() { [ "$(holder "$2")" = "$1" ]; }

step "a pair: each holds its own locks"
pair_with_vol_a --no-watch
A=$(node_pid a) B=$(node_pid b)
holds "$A" "$T/a-shelf" || fail "a-shelf held by '$(holder "$T/a-shelf")', want a ($A)"
holds "$A" "$T/a-shelf/volumes" || fail "a's serving lock held by '$(holder "$T/a-shelf/volumes")'"
holds "$A" "$T/a-shelf.nvram" || fail "a's log held by '$(holder "$T/a-shelf.nvram")'"
# Made by the mirror on this first start, locked then.
holds "$A" "$T/a-shelf.partner" || fail "a's partner image held by '$(holder "$T/a-shelf.partner")'"
holds "$B" "$T/b-shelf/volumes" || fail "b's serving lock held by '$(holder "$T/b-shelf/volumes")'"

step "kill a: b takes a's serving lock"
kill_node a
wait_takeover b
wait_for -t 10 holds "$B" "$T/a-shelf/volumes"
[ -z "$(holder "$T/a-shelf")" ] || fail "a-shelf still held by $(holder "$T/a-shelf")"

step "a restarts taken over: its instance locks, not the serving one"
start_taken_over a
A=$(node_pid a)
holds "$A" "$T/a-shelf" || fail "a-shelf held by '$(holder "$T/a-shelf")', want a ($A)"
holds "$A" "$T/a-shelf.nvram" || fail "a's log held by '$(holder "$T/a-shelf.nvram")'"
holds "$B" "$T/a-shelf/volumes" || fail "a's serving lock held by '$(holder "$T/a-shelf/volumes")', want b"

step "a second duetd of a is refused"
rc=0
"$DUETD" --config "$T/a.conf" 2>"$T/second.err" || rc=$?
[ $rc -eq 2 ] || fail "exit $rc, want 2: $(cat "$T/second.err")"
grep -q "locked by pid $A" "$T/second.err" || fail "the line does not name a ($A): $(cat "$T/second.err")"

step "giveback: the serving lock goes back to a"
giveback_to a
wait_for -t 10 holds "$A" "$T/a-shelf/volumes"
holds "$B" "$T/b-shelf/volumes" || fail "b's serving lock held by '$(holder "$T/b-shelf/volumes")'"
