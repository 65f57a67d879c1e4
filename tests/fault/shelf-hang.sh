#!/usr/bin/env bash
# Issue 14 (RELOCATION.md, "A hung shelf"): a's own shelf hangs under a
# alone: every I/O of it parks for good in a's process
# (DUET_TEST_SHELF_HANG), while b still reaches the shelf.
#   1. a writer on vol-a through b's port (forwarded to a); the shelf
#      hangs: a sees no I/O of its shelf finish for DUET_TEST_SHELF_HUNG_MS
#      and ends itself with the watchdog's status (86), as for a hung
#      reactor; b takes a over (a's log image was in sync) and the writer
#      goes on with no error; every acknowledged write reads back on b;
#   2. a restarts taken over with its shelf healthy, giveback under the
#      writer; every acknowledged write reads back through both ports.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"

N=200
export DUET_TEST_SHELF_HANG="a:$T/a-shelf.hang"
export DUET_TEST_SHELF_HUNG_MS=$((2000 * TIMEOUT_SCALE))
a_gone() { ! _alive "${NODE_PID[a]}"; }

step "a pair, vol-a on a; a writer on vol-a through b's port"
pair_with_vol_a --no-watch
writer w1 --port $B_NBD --export vol-a --blocks 1024 --qd 16
wait_acks w1 $N

step "a's shelf hangs: a ends itself, b takes over, the writer goes on"
touch "$T/a-shelf.hang"
wait_for a_gone || fail "a still runs on a hung shelf"
rc=0
wait "${NODE_PID[a]}" || rc=$?
unset "NODE_PID[a]"
[ $rc -eq 86 ] || fail "a exited with status $rc, not the watchdog's 86"
grep -q "is hung" "$T/a.log" || fail "a did not log the hung shelf"
wait_takeover b
wait_acks w1 $N
writer_stop w1
check_acks "$T/w1.acks" --port $B_NBD --export vol-a

step "a restarts taken over, shelf healthy; giveback under a writer"
writer w2 --port $B_NBD --export vol-a --blocks 1024 --qd 16
wait_acks w2 $N
rm -f "$T/a-shelf.hang"
start_taken_over a
giveback_to a
wait_for served_is b vol-a a || fail "b does not forward vol-a to a: $(served_by b vol-a)"
wait_acks w2 $N
writer_stop w2
check_both_ports "$T/w1.acks,$T/w2.acks" vol-a

step "clean stop"
stop_node a
stop_node b
