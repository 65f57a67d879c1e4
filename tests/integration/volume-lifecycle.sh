#!/usr/bin/env bash
# Volume lifecycle on a proxy pair (issue 15): volume show (size, allocated,
# owner, clients, counters), resize (grow online: a connected client keeps
# its size, new connections on b's port and on a's proxy port see the new
# one, the data stays; shrink refused without --force and while a client
# is connected), delete (refused while a client is connected, --force
# disconnects it; the volume leaves nbdinfo --list on b's port and on a's
# proxy port; after a SIGKILL of b, whose log still holds its records, it
# is not back, and a new volume of the same name reads as zeros).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need nbdinfo nbdcopy jq python3

proxy_pair_setup
M=$((1 << 20))

# hold NAME PORT EXPORT: keep one NBD connection open in the background;
# $T/NAME.out gets "size N" once connected and "closed" when the server
# closes it; $T/NAME.stop ends it cleanly.
hold() {
	python3 - "$2" "$3" "$T/$1.stop" >"$T/$1.out" 2>&1 <<'PY' &
import os, select, sys, duet_nbd
sock, size = duet_nbd.connect(int(sys.argv[1]), sys.argv[2])
print("size", size, flush=True)
while not os.path.exists(sys.argv[3]):
    r, _, _ = select.select([sock], [], [], 0.05)
    if r and not sock.recv(1, 0):
        print("closed", flush=True)
        sys.exit(0)
duet_nbd.disconnect(sock)
PY
	HOLD_PID[$1]=$!
	track_pid "${HOLD_PID[$1]}"
	wait_for grep -q '^size' "$T/$1.out"
}
declare -A HOLD_PID=()
release() {
	touch "$T/$1.stop"
	wait "${HOLD_PID[$1]}" || fail "client $1 failed: $(cat "$T/$1.out")"
}
show() { ctl b volume show vol-b --json | jq -r ".volume$1"; }
size_on() { nbdinfo --size "$(nbd_uri "$1" vol-b)"; }
# For wait_for, which runs its words again at each poll (a $(...) among
# them would be read once, before the first).
clients_are() { [ "$(show .clients)" = "$1" ]; }
proxy_size_is() { [ "$(size_on $A_PROXY)" = "$1" ]; }
listed() { nbdinfo --list "nbd://127.0.0.1:$1" >"$T/list.out" && grep -q "export=\"$2\"" "$T/list.out"; }
not() { ! "$@"; }

step "a proxy pair; vol-b on b"
mapfile -t la < <(proxy_pair_lines a b $A_PROXY $((P + 4)) $((P + 5)))
mapfile -t lb < <(proxy_pair_lines b a $B_PROXY $((P + 5)) $((P + 4)))
start_node a $A_NBD "${la[@]}"
start_node b $B_NBD "${lb[@]}"
ctl b volume create vol-b 64M >/dev/null
wait_for proxy_serves a vol-b

step "volume show: size, owner, no client, nothing allocated yet"
[ "$(show .size)" = $((64 * M)) ] || fail "size $(show .size)"
[ "$(show .owner)" = b ] || fail "owner $(show .owner)"
[ "$(show .clients)" = 0 ] || fail "clients $(show .clients)"
ctl b volume show vol-b | grep "clients 0" >/dev/null || fail "volume show (text) lacks clients"
head -c $((4 * M)) /dev/urandom >"$T/d1"
nbdcopy "$T/d1" "$(nbd_uri $B_NBD vol-b)"
[ "$(show .allocated)" -ge $((4 * M)) ] || fail "allocated $(show .allocated) after 4M written"
[ "$(show .counters.bytes_written)" -ge $((4 * M)) ] ||
	fail "bytes_written $(show .counters.bytes_written)"
hold c1 $B_NBD vol-b
wait_for clients_are 1

step "resize: grow online, new connections see the new size on both ports"
ctl b volume resize vol-b 128M >/dev/null
[ "$(size_on $B_NBD)" = $((128 * M)) ] || fail "b's port: size $(size_on $B_NBD)"
wait_for proxy_size_is $((128 * M)) ||
	fail "a's proxy port: $(size_on $A_PROXY 2>&1); a: $(ctl a status --json | jq -c '{session, proxy}')"
nbdcopy "$(nbd_uri $A_PROXY vol-b)" "$T/r1"
cmp -n $((4 * M)) "$T/d1" "$T/r1" || fail "data changed by the resize"
grep -q "^size $((64 * M))" "$T/c1.out" || fail "the connected client's size changed"
ctl b volume resize vol-b 32M >/dev/null 2>&1 && fail "shrink without --force accepted"
ctl b volume resize vol-b 32M --force >/dev/null 2>&1 && fail "shrink with a client connected"
[ "$(show .size)" = $((128 * M)) ] || fail "size $(show .size) after refused shrinks"
release c1
wait_for clients_are 0
ctl b volume resize vol-b 32M --force >/dev/null
[ "$(size_on $B_NBD)" = $((32 * M)) ] || fail "b's port after shrink: $(size_on $B_NBD)"
wait_for proxy_size_is $((32 * M)) ||
	fail "a's proxy port: $(size_on $A_PROXY 2>&1); a: $(ctl a status --json | jq -c '{session, proxy}')"

step "delete: refused with a client, --force disconnects it"
hold c2 $B_NBD vol-b
ctl b volume delete vol-b >/dev/null 2>&1 && fail "delete with a client connected accepted"
listed $B_NBD vol-b || fail "vol-b gone after a refused delete"
ctl b volume delete vol-b --force >/dev/null
wait_for grep -q '^closed' "$T/c2.out"
wait "${HOLD_PID[c2]}" || true
listed $B_NBD vol-b && fail "vol-b still listed on b's port"
wait_for not listed $A_PROXY vol-b
ctl b volume show vol-b >/dev/null 2>&1 && fail "volume show of a deleted volume"
[ ! -e "$T/b-shelf/volumes/vol-b.img" ] || fail "data file left behind"

step "SIGKILL b (its log holds vol-b's records): vol-b stays deleted"
stop_node b KILL
start_node b $B_NBD
ctl b volume list --json | jq -e 'all(.volumes[]; .name != "vol-b")' >/dev/null ||
	fail "vol-b is back after a restart"
listed $B_NBD vol-b && fail "vol-b listed after a restart"

step "a new vol-b reads as zeros: nothing of the old one is replayed into it"
ctl b volume create vol-b 32M >/dev/null
nbdcopy "$(nbd_uri $B_NBD vol-b)" "$T/r2"
cmp -n $((4 * M)) /dev/zero "$T/r2" || fail "the new vol-b holds old data"
wait_for listed $A_PROXY vol-b
stop_node b KILL
start_node b $B_NBD
nbdcopy "$(nbd_uri $B_NBD vol-b)" "$T/r3"
cmp -n $((4 * M)) /dev/zero "$T/r3" || fail "old records replayed into the new vol-b"

step "clean stop"
stop_node a
stop_node b
