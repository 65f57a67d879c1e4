#!/usr/bin/env bash
# Issue 16, finding 4 (a regression of the first fix): a taker killed in
# the middle of its takeover resumes it after a restart and replays its
# image: a crash of its process keeps the image (a MAP_SHARED file: the
# page cache holds it), only a restart of the host loses it.
#   1. a pair in sync, durability = local-sync, no timer consistency points
#      (every record stays live in a's log and in b's image of it), a write
#      load on a's NBD port;
#   2. SIGKILL of a under the load; b takes over (mark, fence wait) and
#      reaches the replay, which DUET_TEST_REPLAY_DELAY_MS holds before it
#      looks at the image (the window); SIGKILL of b there: its mark stands
#      in a's mailbox, not yet saying "replayed";
#   3. b restarts (same host, same boot): it finds its mark, resumes the
#      takeover, believes its image (seen in sync by its earlier run in this
#      boot: the boot note) and replays it, then serves vol-a;
#   4. every acknowledged write reads back through b; a restarts taken over,
#      giveback, a drops its log (the mark says b replayed it) and serves:
#      every acknowledged write reads back on a's own port.
# On the i16image branch as merged (with the delay hook added), b refused
# its image at step 3 (an earlier run's: takeover/failed), and a would
# then have skipped its log at boot and dropped it at giveback.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
FO_MIRROR=("durability = local-sync" "cp_interval_ms = 600000")
. "$TEST_DIR/failover.inc"

DELAY_MS=$((4000 * TIMEOUT_SCALE))

step "a pair in sync (durability = local-sync), vol-a on a; b holds its replays $DELAY_MS ms"
export DUET_TEST_REPLAY_DELAY_MS=$DELAY_MS
pair_with_vol_a --no-watch
unset DUET_TEST_REPLAY_DELAY_MS

step "a write load on a's NBD port, SIGKILL a"
writer w1 --port $A_NBD --export vol-a --blocks 2048 --qd 16 --until-dead
wait_acks w1 3000
log_mark b
kill_node a
writer_wait w1

step "b takes over and reaches the replay (held); SIGKILL b there"
wait_ha -t $((20 * TIMEOUT_SCALE)) b takeover replaying
log_since b | grep "writing takeover mark" >/dev/null || fail "b wrote no takeover mark"
log_since b | grep "DUET_TEST_REPLAY_DELAY_MS" >/dev/null || fail "b's replay was not held"
! log_since b | grep "partner's log replayed" >/dev/null || fail "b replayed before the kill"
kill_node b

step "b restarts: it resumes the takeover and replays its image (same boot)"
log_mark b
start_b
wait_takeover b
log_since b | grep "seen in sync by an earlier run in this boot" >&2 ||
	fail "b did not believe its image: $(log_since b | grep "mirror:")"
log_since b | grep "partner's log replayed" >&2 || fail "b did not replay its image"
n=$(log_since b | sed -n "s/.*partner's log replayed in [0-9]* ms: \([0-9]*\) records.*/\1/p" | tail -n 1)
[ "${n:-0}" -gt 0 ] || fail "b's replay applied no record"
[ "$(status b | jq -r .mirror.partner_copy.last_takeover)" != null ] &&
	status b | jq -r .mirror.partner_copy.last_takeover | grep -q '^replayed' ||
	fail "b's last takeover: $(status b | jq -c .mirror.partner_copy)"

step "every acknowledged write reads back through b"
check_acks "$T/w1.acks" --port $B_PROXY --export vol-a --min-acked 3000

step "a restarts taken over; giveback; a drops its log (b replayed it) and serves"
log_mark a
start_taken_over a
giveback_to a
log_since a | grep "own NVRAM log dropped (the partner replayed it)" >/dev/null ||
	fail "a did not drop its log at giveback: $(log_since a | grep -i "nvram")"
check_acks "$T/w1.acks" --port $A_NBD --export vol-a --min-acked 3000
stop_node a
stop_node b
