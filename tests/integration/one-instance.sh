#!/usr/bin/env bash
# One instance per set of files (issue 12, finding 7; docs/SECURITY.md):
# a second duetd on the shelf, the NVRAM log or the partner image of a
# running one exits 2 with one line naming the holder's pid, having touched
# nothing (the log, the volumes and the image are byte for byte the same),
# and the first keeps serving.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need qemu-io

P=$PORT_BASE

# files: checksums of what a second instance must not touch (not the
# mailbox: the running node writes it all along).
files() {
	(cd "$T" && find a-shelf/volumes a-shelf.nvram a-shelf.partner -type f 2>/dev/null |
		sort | xargs sha256sum)
}

# second CONF WHAT: duetd --config CONF exits 2 with one line naming the
# first node's pid and WHAT, and changes nothing.
second() {
	local conf=$1 what=$2 before rc=0
	before=$(files)
	"$DUETD" --config "$conf" 2>"$T/second.err" || rc=$?
	[ $rc -eq 2 ] || fail "second duetd ($conf): exit $rc, want 2: $(cat "$T/second.err")"
	[ "$(wc -l <"$T/second.err")" -eq 1 ] || fail "not one line: $(cat "$T/second.err")"
	grep -q "$what .*locked by pid $(node_pid a)" "$T/second.err" ||
		fail "the line does not name $what and pid $(node_pid a): $(cat "$T/second.err")"
	[ "$(files)" = "$before" ] || fail "the second duetd touched the files"
}

step "start a, write (records stay live in the log)"
# A partner image to protect too (as the node would hold with a partner).
head -c 1M /dev/urandom >"$T/a-shelf.partner"
start_node a "$P" "[mirror]" "cp_interval_ms = 600000" "log_size = 4M"
ctl a volume create v 16M >/dev/null
qemu-io -f raw -c 'write -P 0x5a 0 1M' "$(nbd_uri "$P" v)" >/dev/null || fail "write failed"
ctl a status --json | grep -q '"records":0' && fail "no live record in the log"

step "the same config again: exit 2, nothing touched"
second "$T/a.conf" "shelf"

step "another port and socket, the same shelf"
write_node_config "$T/a2.conf" a "$T" "control = $T/a2.sock" "[nbd]" "listen = 127.0.0.1:$((P + 1))"
second "$T/a2.conf" "shelf"

step "another shelf, the same NVRAM log"
write_node_config "$T/a3.conf" a "$T" "shelf = $T/other-shelf" "control = $T/a3.sock" \
	"[nbd]" "listen = 127.0.0.1:$((P + 2))" "[mirror]" "log = $T/a-shelf.nvram" \
	"partner_image = $T/other.partner"
second "$T/a3.conf" "NVRAM log"

step "another shelf and log, the same partner image"
write_node_config "$T/a4.conf" a "$T" "shelf = $T/other-shelf" "control = $T/a4.sock" \
	"[nbd]" "listen = 127.0.0.1:$((P + 3))" "[mirror]" "log = $T/other.nvram" \
	"partner_image = $T/a-shelf.partner"
second "$T/a4.conf" "partner image"

step "the first node still serves"
ctl a status >/dev/null || fail "a no longer answers"
qemu-io -f raw -c 'read -P 0x5a 0 1M' "$(nbd_uri "$P" v)" >/dev/null || fail "read back failed"
stop_node a

step "after a clean stop, the files are free again"
start_node a "$P"
qemu-io -f raw -c 'read -P 0x5a 0 1M' "$(nbd_uri "$P" v)" >/dev/null || fail "read back failed"
