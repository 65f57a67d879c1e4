#!/usr/bin/env bash
# qemu-img against duetd: convert raw and qcow2 images onto a volume,
# compare them, info shows the right size; a changed byte is noticed.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need qemu-img qemu-io

P=$PORT_BASE
URI=$(nbd_uri "$P" disk)

step "start"
start_node a "$P"
ctl a volume create disk 256M >/dev/null
ctl a volume create small 8M >/dev/null

step "a raw image with data and holes"
truncate -s 256M "$T/img.raw"
for off in 0 3 17 64 128 200 255; do
	head -c 1M /dev/urandom | dd of="$T/img.raw" bs=1M seek=$off conv=notrunc status=none
done

step "qemu-img info"
info=$(qemu-img info --output=json "$URI") || fail "qemu-img info failed"
jq -e '."virtual-size" == 268435456' <<<"$info" >/dev/null || fail "qemu-img info: $info"
jq -e '."virtual-size" == 8388608' <<<"$(qemu-img info --output=json "$(nbd_uri "$P" small)")" >/dev/null ||
	fail "qemu-img info of small is wrong"

step "qemu-img convert -n raw -> nbd"
qemu-img convert -p -n -f raw -O raw "$T/img.raw" "$URI" >/dev/null || fail "qemu-img convert failed"
qemu-img compare -q -f raw -F raw "$T/img.raw" "$URI" || fail "qemu-img compare: images differ"

step "qemu-img convert with 8 coroutines, out of order"
qemu-img convert -n -m 8 -W -f raw -O raw "$T/img.raw" "$URI" || fail "qemu-img convert -m 8 -W failed"
qemu-img compare -q -f raw -F raw "$T/img.raw" "$URI" || fail "qemu-img compare after -W: images differ"

step "back out of duetd into a file"
qemu-img convert -f raw -O raw "$URI" "$T/back.raw" || fail "qemu-img convert nbd -> file failed"
cmp "$T/img.raw" "$T/back.raw" || fail "image read back differs"

step "a changed byte is noticed"
qemu-io -f raw -c 'write -P 0x01 100M 512' "$URI" >/dev/null || fail "qemu-io write failed"
if qemu-img compare -q -f raw -F raw "$T/img.raw" "$URI"; then
	fail "qemu-img compare did not notice a changed sector"
fi

step "qcow2 source"
qemu-img convert -f raw -O qcow2 "$T/img.raw" "$T/img.qcow2"
qemu-img convert -n -f qcow2 -O raw "$T/img.qcow2" "$URI" || fail "qcow2 -> nbd failed"
qemu-img compare -q -f qcow2 -F raw "$T/img.qcow2" "$URI" || fail "qemu-img compare qcow2 vs nbd differs"

step "image larger than the volume is refused"
if qemu-img convert -n -f raw -O raw "$T/img.raw" "$(nbd_uri "$P" small)" 2>/dev/null; then
	fail "a 256M image went into an 8M volume"
fi

stop_node a
