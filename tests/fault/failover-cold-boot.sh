#!/usr/bin/env bash
# normal build only: boot timing; takeover and giveback run under the sanitizers in the other failover tests
# Issue 15, cold boot of the pair: both nodes SIGKILLed under a write load
# on their own volumes (a power cut of both), then started one after the
# other, b some seconds after a but well within [monitor] boot_grace_ms:
# neither takes the other over (no takeover mark written), each serves its
# own volume, and every acknowledged write reads back on its own port.
# Then both die again and only a comes back (b truly gone): a waits the
# grace, then takes b over, and b's acknowledged writes read back through
# a's proxy port.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
GRACE_MS=$((8000 * TIMEOUT_SCALE))
FO_BOOT_GRACE_MS=$GRACE_MS
. "$TEST_DIR/failover.inc"

W=(--blocks 1024 --qd 16 --until-dead)
N=200
grace_waits() { ha "$1" .reason | grep boot_grace_ms >/dev/null; }
heard() { [ "$(ha "$1" .partner_seen_since_boot)" = true ]; }

step "start a pair, vol-a on a and vol-b on b, mirrors in sync"
start_a
start_b
ctl a volume create vol-a 64M >/dev/null
ctl b volume create vol-b 64M >/dev/null
wait_for m_is a in_sync || fail "mirror of a not in_sync: $(mstate a)"
wait_for m_is b in_sync || fail "mirror of b not in_sync: $(mstate b)"
wait_for takeover_possible b || fail "takeover not possible on b: $(ha b .reason)"
wait_for takeover_possible a || fail "takeover not possible on a: $(ha a .reason)"

step "a write load on each node's own port; SIGKILL both"
writer wa --port $A_NBD --export vol-a "${W[@]}"
writer wb --port $B_NBD --export vol-b "${W[@]}"
wait_acks wa $N
wait_acks wb $N
kill -s KILL "${NODE_PID[a]}" "${NODE_PID[b]}"
kill_node a
kill_node b
writer_wait wa
writer_wait wb

step "a starts alone: it sees b dead but waits the boot grace"
start_a
wait_for grace_waits a || fail "a does not wait the boot grace: $(ha a .reason)"
ha_is a up none || fail "a left up/none: $(ha a .reason)"

step "b starts a few seconds later, within the grace: both up, no takeover"
t0=$SECONDS
start_b
wait_for heard a
wait_for heard b
[ $((SECONDS - t0)) -lt $((GRACE_MS / 1000)) ] || fail "b took too long to start (the grace may have passed)"
ha_is a up none || fail "a: $(ha a '| {state, phase, reason}')"
ha_is b up none || fail "b: $(ha b '| {state, phase, reason}')"
no_mark_written a
no_mark_written b
served_is a vol-a a || fail "a does not serve vol-a: $(served_by a vol-a)"
served_is b vol-b b || fail "b does not serve vol-b: $(served_by b vol-b)"

step "every acknowledged write reads back on its owner's port"
check_acks "$T/wa.acks" --port $A_NBD --export vol-a
check_acks "$T/wb.acks" --port $B_NBD --export vol-b

step "both die again, only a comes back: it takes b over after the grace"
wait_for m_is b in_sync || fail "mirror of b not in_sync: $(mstate b)"
wait_for takeover_possible a || fail "takeover not possible on a: $(ha a .reason)"
kill -s KILL "${NODE_PID[a]}" "${NODE_PID[b]}"
kill_node a
kill_node b
t0=$(now_ms)
start_a
wait_for grace_waits a || fail "a does not wait the boot grace: $(ha a .reason)"
wait_takeover a
took=$(($(now_ms) - t0))
[ "$took" -ge "$GRACE_MS" ] || fail "a took over after $took ms, before the grace ($GRACE_MS ms)"
echo "alone at boot: takeover $took ms after the start (boot_grace_ms $GRACE_MS)" >&2
check_acks "$T/wb.acks" --port $A_PROXY --export vol-b

step "clean stop"
stop_node a
