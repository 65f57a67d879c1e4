#!/usr/bin/env bash
# SIGKILL of the owner in the middle of a write load with many requests in
# flight: after a restart every acknowledged write reads back, the NVRAM log
# was replayed before the listener opened, and the mirror is in sync again.
# The client (ackwriter.py) keeps 64 writes in flight, each with a unique
# pattern (one in ten a WRITE_ZEROES), and logs each acknowledgement. Then
# the same with durability = local-sync.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/mirror.inc"

N=${DUET_MIRROR_WRITES:-4000}
[ "$QUICK" = 1 ] && N=1500

step "start a pair, mirror in sync"
# No timer consistency points: the records since the last half switch stay
# live, so the restart has something to replay.
start_a "cp_interval_ms = 600000"
start_b
ctl a volume create vol-a 256M >/dev/null
wait_for is_state a in_sync

step "write load, SIGKILL a with writes in flight"
writer load --port $A_NBD --export vol-a --blocks 16384 --qd 64 --zero-pct 10 --until-dead
wait_for acked_at_least "$T/load.acks" "$N"
writer_running || fail "the writer stopped early: $(cat "$T/load.out")"
log_mark a
stop_node a KILL
writer_wait
grep -q "dead" "$T/load.out" || fail "the writer did not see a die"
inflight=$(sed -n 's/.*inflight_at_end=\([0-9]*\).*/\1/p' "$T/load.out")
echo "acknowledged $(acked "$T/load.acks"), in flight at the kill: $inflight" >&2
[ "$inflight" -gt 0 ] || fail "no write was in flight at the kill"

step "restart a: the log is replayed before the listener opens"
start_a
log_since a | grep "NVRAM log replayed: [1-9][0-9]* records" >/dev/null ||
	fail "no replay at start: $(log_since a | grep -i nvram)"
# The replay comes before the listener in the log.
replay_line=$(log_since a | grep -n "NVRAM log replayed" | head -1 | cut -d: -f1)
listen_line=$(log_since a | grep -n "listening" | head -1 | cut -d: -f1)
[ -z "$listen_line" ] || [ "$replay_line" -lt "$listen_line" ] || fail "listener opened before the replay"

step "every acknowledged write reads back"
check_acks "$T/load.acks" --port $A_NBD --export vol-a --min-acked "$N"
wait_for is_state a in_sync

step "a second round after the restart, then a clean stop and start"
writer load2 --port $A_NBD --export vol-a --blocks 16384 --qd 32 --seconds 1
writer_wait
log_mark a
stop_node a
start_a
log_since a | grep "NVRAM log replayed" >/dev/null && fail "a clean stop left records to replay"
check_acks "$T/load.acks,$T/load2.acks" --port $A_NBD --export vol-a

step "durability = local-sync: SIGKILL under load, restart, everything reads back"
stop_node a
start_a "durability = local-sync" "cp_interval_ms = 600000"
wait_for is_state a in_sync
writer load3 --port $A_NBD --export vol-a --blocks 16384 --qd 64 --zero-pct 10 --until-dead
wait_for acked_at_least "$T/load3.acks" $((N / 2))
log_mark a
stop_node a KILL
writer_wait
start_a
log_since a | grep "NVRAM log replayed: [1-9][0-9]* records" >/dev/null || fail "no replay at start"
check_acks "$T/load.acks,$T/load2.acks,$T/load3.acks" --port $A_NBD --export vol-a
mfield a .durability | grep -qx local-sync || fail "durability $(mfield a .durability)"
stop_node a
stop_node b
