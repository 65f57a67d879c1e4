#!/usr/bin/env bash
# normal build only: page-cache timing on the stand-in; the takeover path runs under the sanitizers elsewhere
# Issue 16, finding 1 (the held-out check), on the two-host stand-in
# (own mounts only: each node sees the shelves through a FUSE mount of its
# own, tests/lib.sh), with both I/O engines ([store] io_engine = uring, then
# threads; env DUET_IO_ENGINE runs one). Needs root (drop_caches).
#
#   1. a pair, vol-a (BLOCKS blocks of 4 KiB, 65536; 16384 with --quick) on
#      a; writer A on a's own port writes every block in order, round and
#      round (a pattern per write);
#   2. SIGSTOP a mid-stream: whatever a wrote since its last consistency
#      point may sit dirty in the page cache of a's mount, as on a host;
#   3. b takes over (ha takeover/serving); writer B on b's proxy port
#      writes every block once more, every write acknowledged;
#   4. time passes as it would on real hosts: sync and drop_caches (a's
#      host flushes its cache although its process hangs), SIGKILL a, sync
#      and drop_caches again;
#   5. every block read back through b: a block B acknowledged that holds
#      an older write (A's) is a lost acknowledged write. There must be none.
# Today's store writes volume files buffered: this loses data, and with the
# uring engine the takeover itself fails on such a shelf (finding 2: the
# replay's write gets EOPNOTSUPP for RWF_NOWAIT).
set -euo pipefail

if [ -z "${DUET_IO_ENGINE:-}" ]; then
	# One run per engine, each with its own pair and mounts.
	rc=0 skipped=0
	for e in uring threads; do
		st=0
		DUET_IO_ENGINE=$e bash "$0" || st=$?
		case $st in
		0) ;;
		77) skipped=$((skipped + 1)) ;;
		*) rc=1 ;;
		esac
	done
	[ $rc -ne 0 ] || [ $skipped -lt 2 ] || exit 77
	exit $rc
fi

export DUET_OWN_MOUNTS=${DUET_OWN_MOUNTS:-1} # 0: the plain layout, as a control
. "$(dirname "$0")/../lib.sh"
TEST_NAME+="[$DUET_IO_ENGINE]"
[ "$(id -u)" -eq 0 ] || skip "needs root (drop_caches)"
. "$TEST_DIR/failover.inc"

BLOCKS=65536
[ "$QUICK" = 1 ] && BLOCKS=16384
BLOCKS=${DUET_HUNG_BLOCKS:-$BLOCKS}
W=(--export vol-a --blocks "$BLOCKS" --sequential --qd 16)

step "start a pair ($DUET_IO_ENGINE engine), vol-a on a, mirror in sync, takeover possible on b"
start_a
start_b
ctl a volume create vol-a $((BLOCKS * 4))K >/dev/null
wait_for m_is a in_sync || fail "mirror of a not in_sync: $(mstate a)"
wait_for takeover_possible b || fail "takeover not possible on b: $(ha b .reason)"

step "writer A on a's own port, then SIGSTOP a mid-stream"
writer A --port $A_NBD "${W[@]}" --until-dead --allow-errors
# Past a consistency point or two (cp_interval_ms 1000), still writing.
wait_acks A $((BLOCKS / 4))
stop_sig a
a_acked=$(acked "$T/A.acks")

step "b takes over vol-a"
wait_takeover b
[ "$(served_by b vol-a)" = b ] || fail "b in takeover but vol-a served by $(served_by b vol-a)"

step "writer B on b's proxy port writes every block once, every write acknowledged"
writer B --port $B_PROXY "${W[@]}" --count "$BLOCKS"
writer_wait B
[ "$(acked "$T/B.acks")" -eq "$BLOCKS" ] || fail "B: $(acked "$T/B.acks") of $BLOCKS writes acknowledged"
[ "$(acked "$T/A.acks")" -eq "$a_acked" ] || fail "A got acknowledgements from a stopped a"

step "time passes: sync and drop_caches, SIGKILL a, sync and drop_caches"
drop_caches
kill_node a
unset "FO_STOPPED[a]"
drop_caches
writer_wait A

step "every block B acknowledged reads back through b with B's data"
out=$("$PY" "$ACKW" check --log "$T/B.acks" --port $B_PROXY --export vol-a --older "$T/A.acks" 2>&1) || true
sed 's/^/   check B: /' <<<"$out" >&2
summary=$(tail -n 1 <<<"$out")
[[ $summary =~ :\ ([0-9]+)\ bad\ \(([0-9]+)\ hold\ an\ older\ write\) ]] || fail "no summary from the check: $summary"
bad=${BASH_REMATCH[1]} older=${BASH_REMATCH[2]}
echo "   $DUET_IO_ENGINE: $older of $BLOCKS blocks that b acknowledged hold a's older data ($bad bad in all)" >&2
[ "$older" -eq 0 ] || fail "$older of $BLOCKS blocks that b acknowledged hold a's older data (a hung owner's cached writes reached the shelf after the takeover)"
[ "$bad" -eq 0 ] || fail "$bad of $BLOCKS blocks that b acknowledged do not read back"
ha_is b takeover serving || fail "b left takeover/serving: $(ha_state b)/$(ha_phase b)"

step "clean stop"
stop_node b
