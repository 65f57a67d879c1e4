#!/usr/bin/env bash
# Volumes and their data survive a restart of duetd: after SIGTERM (clean
# shutdown, exit status 0) and after SIGKILL (acknowledged writes are in the
# volume files, so a crash of the process loses nothing).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need nbdcopy nbdinfo qemu-io jq

P=$PORT_BASE
MB=32
[ "$QUICK" = 1 ] && MB=8

volumes() { ctl a volume list --json | jq -c '[.volumes[] | {name, size, owner}] | sort_by(.name)'; }
readback() { # readback VOLUME FILE: the volume's content equals FILE
	rm -f "$T/out"
	nbdcopy "$(nbd_uri "$P" "$1")" "$T/out" || fail "nbdcopy $1 out failed"
	[ "$(sha "$T/out")" = "$(sha "$2")" ] || fail "$1 differs from what was written"
}

step "start, create, write"
start_node a "$P"
ctl a volume create data ${MB}M >/dev/null
ctl a volume create empty 1G >/dev/null
ctl a volume create "name.with-odd_chars" 1M >/dev/null
head -c ${MB}M /dev/urandom >"$T/d1"
nbdcopy --connections=4 "$T/d1" "$(nbd_uri "$P" data)" || fail "nbdcopy in failed"
before=$(volumes)
uuid=$(ctl a volume list --json | jq -r '.volumes[] | select(.name=="data") | .uuid // empty')

step "SIGTERM, start again"
stop_node a TERM
start_node a "$P"
[ "$(volumes)" = "$before" ] || fail "volumes changed over a restart: $before -> $(volumes)"
if [ -n "$uuid" ]; then
	[ "$(ctl a volume list --json | jq -r '.volumes[] | select(.name=="data") | .uuid')" = "$uuid" ] ||
		fail "the uuid of data changed over a restart"
fi
readback data "$T/d1"
nbdinfo --map --json "$(nbd_uri "$P" empty)" | jq -e 'all(.[]; .type == 3)' >/dev/null ||
	fail "the empty volume gained data over a restart"

step "write again (with FUA and without), SIGKILL, start again"
head -c ${MB}M /dev/urandom >"$T/d2"
nbdcopy --connections=2 --requests=16 "$T/d2" "$(nbd_uri "$P" data)" || fail "nbdcopy in failed"
# One more write acknowledged just before the kill, with and without FUA.
qemu-io -f raw -c 'write -P 0x3c 0 64k' -c 'write -f -P 0x3d 64k 64k' "$(nbd_uri "$P" data)" >/dev/null ||
	fail "qemu-io write failed"
head -c 65536 /dev/zero | tr '\0' '\074' | dd of="$T/d2" conv=notrunc status=none
head -c 65536 /dev/zero | tr '\0' '\075' | dd of="$T/d2" bs=64k seek=1 conv=notrunc status=none
stop_node a KILL
start_node a "$P"
[ "$(volumes)" = "$before" ] || fail "volumes changed over a SIGKILL: $before -> $(volumes)"
readback data "$T/d2"

step "SIGTERM while clients have I/O in flight: clean exit, then data intact"
if command -v fio >/dev/null && fio --enghelp 2>/dev/null | grep -qw nbd; then
	ctl a volume create busy 64M >/dev/null
	fio --name=busy --ioengine=nbd --uri="$(nbd_uri "$P" busy)" --rw=randrw --bs=64k --iodepth=32 \
		--numjobs=2 --time_based --runtime=60 --size=64M >"$T/fio-busy.log" 2>&1 &
	fio_pid=$!
	track_pid $fio_pid
	# Wait until both jobs are connected and I/O flows, then stop duetd.
	wait_for bash -c "[ \$(ss -Htn state established 'sport = :$P' | wc -l) -ge 2 ]"
	b0=$(ctl a status --json | jq '.nbd.requests')
	wait_for bash -c "[ \$($DUETCTL --socket $T/a.sock status --json | jq '.nbd.requests') -gt $((b0 + 1000)) ]"
	stop_node a TERM
	wait "$fio_pid" 2>/dev/null || true
	untrack_pids
	start_node a "$P"
	readback data "$T/d2"
fi

step "create after a crash, restart twice"
ctl a volume create late 4M >/dev/null
stop_node a KILL
start_node a "$P"
ctl a volume list --json | jq -e '.volumes | map(.name) | index("late") != null' >/dev/null ||
	fail "a volume created before SIGKILL is gone"
stop_node a TERM
start_node a "$P"
readback data "$T/d2"
stop_node a
