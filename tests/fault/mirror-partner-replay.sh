#!/usr/bin/env bash
# The partner's mirror holds every acknowledged write: SIGKILL the owner (a)
# in the middle of a write load with many requests in flight, then, with a
# stopped, replay b's image of a's log (b's <shelf>.partner file) with
# `duet-nvram replay` onto
#   1. a copy of a's shelf as the kill left it, and
#   2. a copy of a's shelf taken before the load began (so every write the
#      client saw acknowledged must come from the image alone; without the
#      replay that copy fails the check, which proves the point),
# and check every acknowledged write in the volume files.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/mirror.inc"
NVRAM=$BUILD/tools/duet-nvram
[ -x "$NVRAM" ] || fail "no duet-nvram in $BUILD/tools"

N=${DUET_MIRROR_WRITES:-4000}
[ "$QUICK" = 1 ] && N=1500

step "start a pair, mirror in sync"
# A log large enough for the whole load, and no timer consistency points:
# nothing of it is checkpointed, so the image holds every write.
start_a "cp_interval_ms = 600000" "log_size = 256M"
start_b "[mirror]" "log_size = 256M"
ctl a volume create vol-a 128M >/dev/null
wait_for is_state a in_sync
cp -r --sparse=always "$(shelf_of a)" "$T/early-shelf"

step "write load, SIGKILL a with writes in flight"
writer load --port $A_NBD --export vol-a --blocks 16384 --qd 64 --zero-pct 10 --until-dead
wait_for acked_at_least "$T/load.acks" "$N"
writer_running || fail "the writer stopped early: $(cat "$T/load.out")"
stop_node a KILL
writer_wait
inflight=$(sed -n 's/.*inflight_at_end=\([0-9]*\).*/\1/p' "$T/load.out")
echo "acknowledged $(acked "$T/load.acks"), in flight at the kill: $inflight" >&2
[ "$inflight" -gt 0 ] || fail "no write was in flight at the kill"
IMG=$T/b-shelf.partner
[ -s "$IMG" ] || fail "no partner image at $IMG"
"$NVRAM" dump "$IMG" --summary >"$T/dump.txt" || fail "duet-nvram dump failed"
head -20 "$T/dump.txt" >&2

step "1. replay the image onto a copy of a's shelf as the kill left it"
cp -r --sparse=always "$(shelf_of a)" "$T/kill-shelf"
"$NVRAM" replay "$IMG" "$T/kill-shelf" >&2 || fail "replay onto the copy failed"
check_acks "$T/load.acks" --file "$T/kill-shelf/volumes/vol-a.img" --min-acked "$N"

step "2. replay the image onto the copy taken before the load"
if python3 "$ACKW" check --log "$T/load.acks" --file "$T/early-shelf/volumes/vol-a.img" >/dev/null; then
	fail "the early copy passes the check without the replay: the test proves nothing"
fi
"$NVRAM" replay "$IMG" "$T/early-shelf" >"$T/replay.txt" || fail "replay onto the early copy failed"
cat "$T/replay.txt" >&2
records=$(sed -n 's/^replayed \([0-9]*\) records.*/\1/p' "$T/replay.txt")
[ "${records:-0}" -ge "$N" ] || fail "only ${records:-0} records replayed"
check_acks "$T/load.acks" --file "$T/early-shelf/volumes/vol-a.img" --min-acked "$N"

step "a restarts on its own log too"
start_a
check_acks "$T/load.acks" --port $A_NBD --export vol-a
wait_for is_state a in_sync
stop_node a
stop_node b
