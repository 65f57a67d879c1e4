#!/usr/bin/env bash
# Issue 12, finding 1: an NVRAM header with a valid CRC and impossible
# geometry (half_size = 2^63, which wrapped hdr_size + 2 * half_size back
# into range) is refused with one line, never read past:
#   1. duet-nvram dump and replay on such an image exit 1 (they died of SIGSEGV);
#   2. the survivor's copy of the partner's log forged so (the partner can
#      RDMA-write the whole image, header included): the takeover says why
#      and does not replay or serve; the survivor stays up;
#   3. a node's own log forged so: duetd exits with one clear line (was a
#      crash at every start).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"
NVRAM=$BUILD/tools/duet-nvram
[ -x "$NVRAM" ] || fail "no duet-nvram in $BUILD/tools"
FORGE="$PY $TEST_DIR/craft_nvram.py"
HALF=0x8000000000000000

step "a pair, vol-a on a, mirror in sync, b may take over"
pair_with_vol_a --no-watch

step "1. duet-nvram on a forged copy of the image exits 1 with one line"
cp "$T/b-shelf.partner" "$T/forged.img"
$FORGE "$T/forged.img" half-size $HALF
mkdir -p "$T/scratch-shelf"
rc=0
"$NVRAM" dump "$T/forged.img" >"$T/dump.out" 2>&1 || rc=$?
cat "$T/dump.out" >&2
[ $rc -eq 1 ] || fail "duet-nvram dump exited $rc (want 1)"
grep -q "impossible geometry" "$T/dump.out" || fail "dump does not say why"
rc=0
"$NVRAM" replay "$T/forged.img" "$(shelf_of a)" >"$T/replay.out" 2>&1 || rc=$?
cat "$T/replay.out" >&2
[ $rc -ge 1 ] && [ $rc -lt 128 ] || fail "duet-nvram replay exited $rc (want an error, not a signal)"

step "2. the partner forges b's copy of its log, then dies: b refuses the takeover"
log_mark b
$FORGE "$T/b-shelf.partner" half-size $HALF
kill_node a
# No automatic takeover (the copy is not current); a forced one judges the
# copy, says why in one line and does not replay or serve it.
wait_for partner_is b dead || fail "b does not see a dead a: $(ha b .partner)"
echo "b: $(ha b .reason)" >&2
copy_says() { status b | jq -r '.mirror.partner_copy.reason' | grep -q "impossible geometry"; }
wait_for copy_says || fail "mirror.partner_copy does not say why: $(status b | jq -c .mirror.partner_copy)"
ctl b takeover --force >"$T/force.out" 2>&1 || true
refused() { log_since b | grep "takeover refused" | grep "impossible geometry" >/dev/null; }
wait_for refused || fail "b did not refuse the takeover with the reason: $(ha b .reason)"
log_since b | grep "takeover refused" >&2
[ "$(log_since b | grep -c "takeover refused")" -eq 1 ] || fail "more than one line"
echo "b: $(ha b .reason)" >&2
ctl b status >/dev/null || fail "b does not answer after the refused takeover"
[ "$(served_by b vol-a)" != b ] || fail "b serves vol-a from a forged log"
nbdinfo --list "nbd://127.0.0.1:$B_NBD" >/dev/null || fail "b's NBD port does not answer"

step "3. b's own log forged: duetd exits with one clear line"
stop_node b
$FORGE "$T/b-shelf.nvram" half-size $HALF
rc=0
timeout $((20 * TIMEOUT_SCALE)) "$DUETD" --config "$T/b.conf" >"$T/b-boot.log" 2>&1 || rc=$?
grep -E "ERROR" "$T/b-boot.log" >&2 || true
[ $rc -ge 1 ] && [ $rc -lt 124 ] || fail "duetd exited $rc on a damaged own log (want an error)"
grep -q "header is damaged" "$T/b-boot.log" || fail "no clear line about the damaged log"
! grep -q "ERROR: AddressSanitizer\|runtime error" "$T/b-boot.log" || fail "sanitizer report"
