#!/usr/bin/env bash
# The proxy port with real clients: node a's proxy port serves node b's
# volume over the interconnect. nbdinfo shows the same features as b's own
# port; qemu-img, nbdcopy and fio (crc32c verify, 4 KiB - 1 MiB, and
# 1 MiB requests) round trips through it;
# data written through the proxy reads back through b's direct port and the
# other way; the allocation map is the same both ways.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need nbdinfo nbdcopy qemu-img fio jq
need_fio_nbd

proxy_pair_setup
PROXY_URI=$(nbd_uri $A_PROXY vol-b)
DIRECT_URI=$(nbd_uri $B_NBD vol-b)

step "start a pair: a serves b's volume on its proxy port"
mapfile -t la < <(proxy_pair_lines a b $A_PROXY $((P + 4)) $((P + 5)))
mapfile -t lb < <(proxy_pair_lines b a $B_PROXY $((P + 5)) $((P + 4)))
start_node a $A_NBD "${la[@]}"
start_node b $B_NBD "${lb[@]}"
ctl a volume create vol-a 256M >/dev/null
ctl b volume create vol-b 256M >/dev/null
wait_for proxy_up a
wait_for proxy_serves a vol-b
wait_for proxy_serves b vol-a

step "nbdinfo: the proxy port offers what the direct port does"
norm() { jq -S 'del(.exports[].description, .exports[].uri, .exports[].content)'; }
nbdinfo --json "$DIRECT_URI" | norm >"$T/direct.json"
nbdinfo --json "$PROXY_URI" | norm >"$T/proxy.json"
diff -u "$T/direct.json" "$T/proxy.json" >&2 || fail "nbdinfo differs between the ports"
jq -e '.structured and (.exports[0].contexts | index("base:allocation")) and
	([.exports[0] | to_entries[] | select(.key | startswith("can_")) | .value] | all)' \
	"$T/proxy.json" >/dev/null || fail "the proxy port lacks a feature"
nbdinfo --list "nbd://127.0.0.1:$A_PROXY" >"$T/list.txt"
grep -q 'export="vol-b"' "$T/list.txt" || fail "vol-b not listed on the proxy port"
! grep -q 'export="vol-a"' "$T/list.txt" || fail "a's own volume on its proxy port"
nbdinfo "nbd://127.0.0.1:$A_PROXY/nope" >/dev/null 2>&1 && fail "unknown export opened"

step "qemu-img: write through the proxy, compare on both ports"
head -c ${MB}M /dev/urandom >"$T/data1.img"
qemu-img convert -n -f raw -O raw "$T/data1.img" "$PROXY_URI"
qemu-img compare -f raw -F raw "$T/data1.img" "$DIRECT_URI" >/dev/null 2>&1 ||
	fail "data written through the proxy differs on b's port"
qemu-img compare -f raw -F raw "$T/data1.img" "$PROXY_URI" >/dev/null 2>&1 ||
	fail "data written through the proxy differs read back through it"

step "nbdcopy: write on b's port, read through the proxy (multi-conn)"
head -c ${MB}M /dev/urandom >"$T/data2.img"
nbdcopy "$T/data2.img" "$DIRECT_URI"
nbdcopy "$PROXY_URI" "$T/out2.img"
cmp -n $((MB << 20)) "$T/data2.img" "$T/out2.img" || fail "proxy read differs from b's data"
nbdcopy "$T/data1.img" "$PROXY_URI"
nbdcopy "$DIRECT_URI" "$T/out1.img"
cmp -n $((MB << 20)) "$T/data1.img" "$T/out1.img" || fail "b's data differs from the proxy write"

step "allocation map: the same through both ports"
nbdinfo --map "$DIRECT_URI" >"$T/map-direct.txt"
nbdinfo --map "$PROXY_URI" >"$T/map-proxy.txt"
diff -u "$T/map-direct.txt" "$T/map-proxy.txt" >&2 || fail "block status differs"
grep -q data "$T/map-proxy.txt" && grep -q hole "$T/map-proxy.txt" ||
	fail "the map shows no data and hole"

run_fio() { # run_fio URI NAME [fio args]: write+verify, or --verify_only
	local uri=$1 name=$2
	shift 2
	if ! fio --output-format=json --output="$T/fio-$name.json" --name=v --ioengine=nbd \
		--uri="$uri" --verify=crc32c --verify_fatal=1 --exitall_on_error=1 \
		--randrepeat=1 "$@" >"$T/fio-$name.log" 2>&1; then
		cat "$T/fio-$name.log" >&2
		fail "fio $name failed"
	fi
	[ "$(jq '[.jobs[].error] | add' "$T/fio-$name.json")" = 0 ] || fail "fio $name: error"
	jq -e '[.jobs[].read.io_bytes] | add > 0' "$T/fio-$name.json" >/dev/null ||
		fail "fio $name verified nothing"
}
job=(--rw=randwrite --bsrange=4k-1m --bs_unaligned=0 --iodepth=16 --size=${MB}M --offset=128M)

step "fio: random writes of 4 KiB - 1 MiB through the proxy, crc32c verify"
run_fio "$PROXY_URI" proxy "${job[@]}" --do_verify=1
step "fio: the same blocks verified on b's direct port"
run_fio "$DIRECT_URI" proxy-check "${job[@]}" --verify_only
step "fio: written on b's port, verified through the proxy"
run_fio "$DIRECT_URI" direct "${job[@]}" --do_verify=1 --randseed=7
run_fio "$PROXY_URI" direct-check "${job[@]}" --verify_only --randseed=7
step "fio: 1 MiB writes and reads through the proxy (one chunk each: read replies leave from the slot)"
mib=(--rw=randwrite --bs=1m --iodepth=8 --size=32M --offset=200M)
run_fio "$PROXY_URI" mib "${mib[@]}" --do_verify=1
run_fio "$DIRECT_URI" mib-check "${mib[@]}" --verify_only
step "fio: 4 KiB random read/write at iodepth 32 through the proxy"
run_fio "$PROXY_URI" mix --rw=randrw --bs=4k --iodepth=32 --size=$((MB / 2))M --verify_backlog=512

step "the other way: b's proxy port serves a's volume"
qemu-img convert -n -f raw -O raw "$T/data2.img" "$(nbd_uri $B_PROXY vol-a)"
nbdcopy "$(nbd_uri $A_NBD vol-a)" "$T/out3.img"
cmp -n $((MB << 20)) "$T/data2.img" "$T/out3.img" || fail "a's volume through b's proxy differs"

step "counters"
ctl a status --json >"$T/a.json"
ctl b status --json >"$T/b.json"
jq -e '.proxy.commands > 0 and .proxy.bytes_written > 0 and .proxy.bytes_read > 0 and
	.proxy.errors == 0 and .proxy.bad_replies == 0 and .proxy.timeouts == 0' "$T/a.json" >/dev/null ||
	fail "a's proxy counters: $(jq -c .proxy "$T/a.json")"
jq -e '.proxy.served.requests > 0 and .proxy.served.bad_requests == 0' "$T/b.json" >/dev/null ||
	fail "b's served counters: $(jq -c .proxy.served "$T/b.json")"
jq -e 'any(.volumes[]; .name == "vol-b" and .owner == "b" and .served_by == "b" and
	.port == "proxy") and any(.volumes[]; .name == "vol-a" and .port == "direct")' \
	"$T/a.json" >/dev/null || fail "a's volume list: $(jq -c .volumes "$T/a.json")"

stop_node a
stop_node b
