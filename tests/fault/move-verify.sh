#!/usr/bin/env bash
# normal build only: fio rounds around two moves; move.sh runs the same move code (copier, sink, cut-over) under the sanitizers
# Issue 14 part 3: a volume move under fio verify, the data checked while it
# moves. fio's nbd engine, verify=pattern with a pattern of its own for each
# job and the block's offset in it (crc32c would pass a block left from an
# earlier round: it checks a block against its own header only).
#   1. vol-a on a; region C (16 MiB) written sequentially through a's port,
#      then left alone (the copier's data);
#   2. two fio loops, one through a's NBD port (region A), one through b's
#      (region B): each round writes its region (8 MiB) at random 4 KiB offsets
#      with a new pattern and verifies it (A: the last 256 writes as it
#      goes, verify_backlog; B: the whole region at the round's end); they
#      run from before the move starts until a round after its cut-over;
#   3. move vol-a to b's shelf (slowed by a test hook): once the copier is
#      past region D, D is written through the mover's port (only the
#      writes that reach both copies can bring it to the new shelf); the
#      files end on b's shelf only (as the disk has them); then the same
#      back to a's shelf;
#   4. every fio job exits 0 with no verify error; each loop's last round,
#      region D and region C verified again through the other node's port,
#      C and D through both.
# also on own mounts: the mover writes the copy through its own cache of
# the other shelf, the target serves it through its own (tests/lib.sh).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/failover.inc"
need fio
need_fio_nbd

export DUET_TEST_MOVE_CHUNK_DELAY_MS=$((40 * TIMEOUT_SCALE))
MB=8                         # regions A, B: [0,8M) [8M,16M)
C_OFF=16 C_MB=16             # region C: [16M,32M)
D_OFF=48 D_MB=4              # region D: [48M,52M)
C_PAT=0x43000001             # region C's pattern
vol_is() { # NODE OWNER SHELF: vol-a's, seen by NODE
	status "$1" | jq -e --arg o "$2" --arg h "$3" \
		'[.volumes[] | select(.name == "vol-a" and .owner == $o and .served_by == $o and .shelf == $h)]
		 | length == 1' >/dev/null
}
owned_by() { vol_is a "$1" "$1" && vol_is b "$1" "$1"; }
move_state() { status "$1" | jq -r .move.state; }
move_idle() { [ "$(move_state "$1")" = idle ]; }
copying() { [ "$(move_state "$1")" = copying ]; }
past_d() { # NODE: its copier is past region D (or no longer copying)
	status "$1" | jq -e --argjson b $(((D_OFF + D_MB) << 20)) \
		'.move.state != "copying" or .move.done_bytes >= $b' >/dev/null
}
# disk NODE: NODE's shelf as the disk has it (on own mounts the backing
# directory: either node's mount may still cache names the other changed).
disk() { if [ "$OWN_MOUNTS" = 1 ]; then echo "$SHELVES/$1-shelf"; else shelf_of "$1"; fi; }
only_on() { # NODE: vol-a's files on NODE's shelf only
	local h g
	h="$(disk "$1")/volumes" g="$(disk "$(other "$1")")/volumes"
	[ -f "$h/vol-a.img" ] && [ -f "$h/vol-a.meta" ] || fail "vol-a not on $1's shelf: $(ls -a "$h")"
	[ ! -e "$g/vol-a.img" ] && [ ! -e "$g/vol-a.meta" ] || fail "vol-a left on $(other "$1")'s shelf: $(ls -a "$g")"
	[ ! -e "$h/.vol-a.move.img" ] && [ ! -e "$g/.vol-a.move.img" ] || fail "a copy of vol-a is left"
	! grep -q '"move"' "$h/vol-a.meta" || fail "vol-a keeps its move record"
}

# fio_run NAME PORT PATTERN FIO-ARGS...: one fio job on vol-a verifying
# PATTERN plus each block's offset; fails the test (with fio's output)
# unless it exits 0 with no error and read something back. Each round is
# a new connection: one opened in the moments after a cut-over, before the
# new owner lists the volume, must get the export and wait, never "no
# export" (docs/RELOCATION.md).
fio_run() {
	local name=$1 port=$2 pat=$3 out
	shift 3
	out=$T/fio-$name.json
	(cd "$T" && fio --output-format=json --output="$out" --name="$name" --ioengine=nbd \
		--uri="$(nbd_uri "$port" vol-a)" --verify=pattern --verify_pattern="$pat%o" \
		--verify_fatal=1 --verify_state_save=0 --exitall_on_error=1 "$@") >"$T/fio-$name.log" 2>&1 || {
		cat "$T/fio-$name.log" >&2 || true
		fail "fio $name through port $port failed"
	}
	[ "$(jq '[.jobs[].error] | add' "$out")" = 0 ] || fail "fio $name: error $(jq -c '[.jobs[].error]' "$out")"
	jq -e '[.jobs[].read.io_bytes] | add > 0' "$out" >/dev/null || fail "fio $name verified nothing"
}
# A loop's round: its region at OFFSET MiB, in an order of its own.
round_args() { echo "--rw=randwrite --bs=4k --iodepth=8 --size=${MB}M --offset=$1M --randseed=$2"; }

# fio_loop NAME PORT OFFSET TAG VERIFY-ARGS...: rounds until $T/NAME.stop
# exists, round i with pattern 0xTAG00000i; the last pattern that passed in
# $T/NAME.pat, the rounds' count in $T/NAME.rounds, a failure in
# $T/NAME.failed.
fio_loop() {
	local name=$1 port=$2 off=$3 tag=$4 i=0 pat
	shift 4
	while [ ! -e "$T/$name.stop" ]; do
		i=$((i + 1))
		pat=$(printf '0x%s%06x' "$tag" "$i")
		# shellcheck disable=SC2046 # round_args's words
		(fio_run "$name" "$port" "$pat" $(round_args "$off" "$i") --do_verify=1 "$@") \
			2>"$T/$name.failed" || return 1
		rm -f "$T/$name.failed"
		echo "$pat" >"$T/$name.pat"
		echo "$i" >"$T/$name.rounds"
	done
}
LOOP_PID=()
loops_start() {
	rm -f "$T"/la.stop "$T"/lb.stop "$T"/la.rounds "$T"/lb.rounds
	fio_loop la "$A_NBD" 0 4a0 --verify_backlog=256 &
	LOOP_PID[0]=$!
	fio_loop lb "$B_NBD" "$MB" 4b0 &
	LOOP_PID[1]=$!
}
rounds() { cat "$T/$1.rounds" 2>/dev/null || echo 0; }
# rounds_past LA LB: each loop passed more rounds than given (or one failed:
# loops_ok says).
rounds_past() {
	[ -s "$T/la.failed" ] || [ -s "$T/lb.failed" ] ||
		{ [ "$(rounds la)" -gt "$1" ] && [ "$(rounds lb)" -gt "$2" ]; }
}
loops_ok() { # no loop failed so far
	local l
	for l in la lb; do
		[ ! -s "$T/$l.failed" ] || fail "fio loop $l: $(cat "$T/$l.failed")"
	done
}
loops_stop() {
	local i rc=0
	touch "$T/la.stop" "$T/lb.stop"
	for i in 0 1; do wait "${LOOP_PID[$i]}" || rc=1; done
	loops_ok
	[ $rc = 0 ] || fail "a fio loop failed"
}
c_args() { echo "--rw=write --bs=64k --iodepth=4 --size=${C_MB}M --offset=${C_OFF}M"; }
d_args() { echo "--rw=write --bs=64k --iodepth=4 --size=${D_MB}M --offset=${D_OFF}M"; }
# move_under_load FROM TO DPAT: move vol-a from FROM's shelf to TO's while
# both loops run; region D written with DPAT once the copier passed it.
move_under_load() {
	local ra rb port
	port=$A_NBD
	[ "$1" = a ] || port=$B_NBD
	loops_start
	wait_for -t 60 rounds_past 0 0 || fail "the fio loops do not run"
	loops_ok
	ctl "$1" volume move vol-a --shelf "$2" >/dev/null
	wait_for copying "$1" || fail "no move: $(status "$1" | jq -c .move)"
	ra=$(rounds la) rb=$(rounds lb)
	wait_for -t 60 past_d "$1" || fail "the copier does not get past region D: $(status "$1" | jq -c .move)"
	copying "$1" || echo "   (the copy ended before region D was written)" >&2
	# shellcheck disable=SC2046 # d_args's words
	fio_run "d-$2" "$port" "$3" $(d_args) --do_verify=1
	wait_for -t 120 move_idle "$1" || fail "move did not end: $(status "$1" | jq -c .move)"
	status "$1" | jq -r '"\(.move.last); \(.move.client_writes_copied) client writes to both copies"' |
		sed 's/^/   /' >&2
	status "$1" | jq -r .move.last | grep -q ": done," || fail "the move did not complete: $(status "$1" | jq -r .move.last)"
	wait_for owned_by "$2" || fail "vol-a not $2's: a $(status a | jq -c .volumes) b $(status b | jq -c .volumes)"
	# A round that passes from here began before the cut-over.
	wait_for -t 60 rounds_past "$ra" "$rb" || fail "the fio loops stalled"
	loops_stop
	echo "   fio rounds: la $(rounds la), lb $(rounds lb), all verified" >&2
	only_on "$2"
}
# verify_again NAME PORT PATTERN ARGS...: data written before read back
# through PORT (fio --verify_only replays the writes as reads).
verify_again() {
	local name=$1 port=$2 pat=$3
	shift 3
	fio_run "$name-check-$port" "$port" "$pat" "$@" --verify_only --do_verify=1
}
# shellcheck disable=SC2046 # the args' words
check_all() { # after a move: every region read back
	verify_again la "$B_NBD" "$(cat "$T/la.pat")" $(round_args 0 1)
	verify_again lb "$A_NBD" "$(cat "$T/lb.pat")" $(round_args "$MB" 1)
	for port in $A_NBD $B_NBD; do
		verify_again c "$port" $C_PAT $(c_args)
		verify_again d "$port" "$1" $(d_args)
	done
}

step "start a pair, vol-a on a; region C written through a's port"
pair_with_vol_a --no-watch
# shellcheck disable=SC2046 # c_args's words
fio_run c "$A_NBD" $C_PAT $(c_args) --do_verify=1

step "move vol-a to b's shelf under fio verify through a's and b's ports"
move_under_load a b 0x44000001
check_all 0x44000001

step "move vol-a back to a's shelf under fio verify through both ports"
move_under_load b a 0x44000002
check_all 0x44000002

step "clean stop"
stop_node a
stop_node b
