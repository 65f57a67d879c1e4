#!/usr/bin/env bash
# Issue 16, finding 4: a partner image is used only when it is known
# current. Both nodes lose power, only b comes back:
#   1. a pair in sync, durability = local-sync, no timer consistency points
#      (every record stays live in the log and in b's image of it);
#   2. writes w1 (one per block), acknowledged and in b's image; b's image
#      file as its disk then held it is kept aside;
#   3. writes w2 over the same blocks, acknowledged (in a's synced log and
#      in b's image in memory);
#   4. SIGKILL of both at once (the stand-in for a power loss), and b's
#      image file reverted to the copy of step 2 (what its disk held: the
#      pages of a memory-mapped file that were never written back are lost
#      with the power, and the file's header still says "complete");
#   5. b restarts alone; a's mailbox is silent, its last record says
#      "in sync". b must not take a over with that image: its copy is not
#      current (marked complete by an earlier run of b), so no takeover mark,
#      no replay, and a planned takeover is refused saying why;
#   6. a restarts, finds no mark, replays its own log: every acknowledged
#      write (w1 then w2) reads back on a's own port.
# On main, b believed the old complete flag at step 5: it took a over,
# replayed w1 over w2, and a then skipped its log ("not replayed").
# a's volume file reverts too (w2 was in its page cache only) and b's boot
# note goes (a new boot: see docs/MIRROR.md, "Which image is current").
# STALE_FORCED=1: step 6 is instead `takeover --force` on b (mark written,
# the stale copy refused: takeover/failed, the reason says "stale"), a
# restarts taken over, giveback: the mark has no "replayed" proof, so a
# replays its own log instead of dropping it (on the i16image branch as
# merged, a dropped it and w2 was lost).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
FO_MIRROR=("durability = local-sync" "cp_interval_ms = 600000")
. "$TEST_DIR/failover.inc"

W=(--export vol-a --blocks 256 --sequential --count 256 --qd 8)

a_idle() {
	status a | jq -e '.mirror | .state == "in_sync" and .idle and .replicated_seq == .last_seq' >/dev/null
}

step "a pair in sync (durability = local-sync), vol-a on a"
pair_with_vol_a --no-watch

step "w1 on a: acknowledged and in b's image; keep b's image file as its disk held it"
writer w1 --port $A_NBD "${W[@]}"
writer_wait w1
wait_for a_idle || fail "a's mirror not idle: $(status a | jq -c .mirror)"
# (A build without mirror.partner_copy, main before the fix: no check.)
[ "$(status b | jq -r '.mirror.partner_copy.state // "current"')" = current ] ||
	fail "b's copy of a's log is not current: $(status b | jq -c .mirror.partner_copy)"
cp --sparse=always "$T/b-shelf.partner" "$T/b-image-on-disk"
cp --sparse=always "$T/a-shelf/volumes/vol-a.img" "$T/a-vol-on-disk"

step "w2 over the same blocks: acknowledged (a's synced log, b's image in memory)"
writer w2 --port $A_NBD "${W[@]}"
writer_wait w2
wait_for a_idle || fail "a's mirror not idle: $(status a | jq -c .mirror)"

step "power loss of both (SIGKILL at once); b's image file reverts to what its disk held"
pa=$(node_pid a) pb=$(node_pid b)
kill -s KILL "$pa" "$pb"
stop_node a KILL
stop_node b KILL
cp --sparse=always "$T/b-image-on-disk" "$T/b-shelf.partner"
# Also a's volume file (w2 was in its page cache only: the power took it;
# a's synced log has it), and the host's boot: b's boot note (its earlier
# run saw the image in sync) is of the boot before, i.e. none of this one.
cp --sparse=always "$T/a-vol-on-disk" "$T/a-shelf/volumes/vol-a.img"
rm -f "$T/b-shelf.partner.insync"

step "b restarts alone: a is dead, b's copy of its log is stale: no takeover"
log_mark b
start_b
wait_for -t $((20 * TIMEOUT_SCALE)) partner_is b dead ||
	fail "b does not see a dead: $(status b | jq -c .ha.partner)"
# The decision is taken in the step that finds the partner dead.
ha_is b up || fail "b took a over with a stale image: $(status b | jq -c .ha)"
status b | jq -c '{ha: (.ha | {state, phase, reason}), partner_copy: .mirror.partner_copy}' >&2
[ "$(status b | jq -r .mirror.partner_copy.state)" = stale ] ||
	fail "b's copy not reported stale: $(status b | jq -c .mirror.partner_copy)"
[ "$(ha b .takeover_possible)" = false ] || fail "b says a takeover is possible"
out=$(ctl b takeover 2>&1) && fail "b accepted a planned takeover with a stale copy: $out"
echo "   duetctl takeover on b: $out" >&2
hold 300 ha_is b up || fail "b left ha up: $(status b | jq -c .ha)"
no_mark_written b
! log_since b | grep "replaying the partner's log\|partner's log replayed" >/dev/null ||
	fail "b replayed its image: $(log_since b | grep "partner's log")"

if [ "${STALE_FORCED:-0}" = 1 ]; then
	# Issue 16, finding 4, the owner's proof: a forced takeover writes the
	# mark, then refuses the stale copy (takeover/failed, the reason says
	# why); a comes back taken over, giveback; a's mark has no "replayed"
	# proof, so a replays its own log instead of dropping it.
	step "takeover --force on b: mark written, the stale copy refused (takeover/failed)"
	ctl b takeover --force >/dev/null || fail "b refused takeover --force"
	wait_ha -t $((20 * TIMEOUT_SCALE)) b takeover failed
	reason=$(ha b .last_change.reason)
	echo "   b: $reason" >&2
	case $reason in *"copy of its log is stale"*) ;; *) fail "b's reason does not say stale: $reason" ;; esac

	step "a restarts taken over; giveback from failed: a replays its own log (no proof)"
	log_mark a
	start_taken_over a
	giveback_to a
	check_acks "$T/w1.acks,$T/w2.acks" --port $A_NBD --export vol-a --min-acked 512
	log_since a | grep "own NVRAM log replayed (the partner did not replay it)" >&2 ||
		fail "a did not replay its own log at giveback: $(log_since a | grep -i "nvram")"
else
	step "a restarts: no mark, it replays its own log; every acknowledged write reads back"
	log_mark a
	start_a
	log_since a | grep "NVRAM log replayed" >&2 || fail "a did not replay its own log"
	! log_since a | grep "NVRAM log .* not replayed" >/dev/null || fail "a skipped its log: $(log_since a | grep "NVRAM log .* not replayed")"
	check_acks "$T/w1.acks,$T/w2.acks" --port $A_NBD --export vol-a --min-acked 512
fi

step "a resyncs into b's new run: b's copy is current again"
wait_for m_is a in_sync || fail "a's mirror not in sync: $(mstate a)"
wait_for takeover_possible b || fail "takeover not possible on b: $(ha b .reason)"
[ "$(status b | jq -r .mirror.partner_copy.state)" = current ] ||
	fail "b's copy not current after the resync: $(status b | jq -c .mirror.partner_copy)"
stop_node a
stop_node b
