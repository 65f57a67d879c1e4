#!/usr/bin/env bash
# nbdinfo against duetd: export list, structured replies, base:allocation,
# block sizes, every --can feature, and --map before and after a write.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need nbdinfo qemu-io jq

P=$PORT_BASE
URI=$(nbd_uri "$P" vol-a)

step "start"
start_node a "$P"
ctl a volume create vol-a 64M >/dev/null
ctl a volume create vol-b 1G >/dev/null

step "nbdinfo --list"
list=$(nbdinfo --list --json "nbd://127.0.0.1:$P") || fail "nbdinfo --list failed"
names=$(jq -r '.exports[]."export-name"' <<<"$list" | sort | tr '\n' ' ')
[ "$names" = "vol-a vol-b " ] || fail "export list is '$names', want 'vol-a vol-b'"
jq -e '.exports[] | select(."export-name"=="vol-b") | ."export-size" == 1073741824' <<<"$list" >/dev/null ||
	fail "vol-b is not 1 GiB in the list: $list"

step "nbdinfo URI"
info=$(nbdinfo --json --no-content "$URI") || fail "nbdinfo $URI failed"
e() { jq -e "$1" <<<"$info" >/dev/null || fail "nbdinfo: want $1 in: $info"; }
e '.protocol == "newstyle-fixed"'
e '.structured == true'
e '.exports[0]."export-size" == 67108864'
e '.exports[0].contexts | index("base:allocation") != null'
e '.exports[0].is_read_only == false'
e '.exports[0].block_size_minimum >= 1 and .exports[0].block_size_minimum <= 4096'
e '.exports[0].block_size_preferred >= .exports[0].block_size_minimum'
e '.exports[0].block_size_maximum >= 33554432'
e '.exports[0].block_size_maximum >= .exports[0].block_size_preferred'
text=$(nbdinfo --no-content "$URI")
grep -q 'using structured packets' <<<"$text" || fail "no structured replies: $text"

step "nbdinfo --can"
for f in fua flush trim zero fast-zero cache df multi-conn; do
	nbdinfo --can "$f" "$URI" || fail "nbdinfo --can $f: exit $? (want 0, true)"
	key=can_${f//-/_}
	jq -e ".exports[0].$key == true" <<<"$info" >/dev/null || fail "$key is not true"
done
nbdinfo --can connect "$URI" || fail "nbdinfo --can connect"
if nbdinfo --is read-only "$URI"; then fail "vol-a says it is read-only"; fi
if nbdinfo --can connect "$(nbd_uri "$P" no-such-volume)" 2>/dev/null; then
	fail "an unknown export name was accepted"
fi

step "nbdinfo --map on a sparse volume"
map=$(nbdinfo --map --json "$URI") || fail "nbdinfo --map failed"
jq -e 'length >= 1 and .[0].offset == 0 and (.[0].type == 3)' <<<"$map" >/dev/null ||
	fail "a fresh volume does not start with a hole: $map"
jq -e '[.[] | select(.type != 3)] | length == 0' <<<"$map" >/dev/null ||
	fail "a fresh volume has data extents: $map"
jq -e '(map(.length) | add) == 67108864' <<<"$map" >/dev/null || fail "--map does not cover the volume: $map"

step "write 1 MiB at 4 MiB, map again"
qemu-io -f raw -c 'write -P 0xa5 4M 1M' "$URI" >/dev/null || fail "qemu-io write failed"
map=$(nbdinfo --map --json "$URI") || fail "nbdinfo --map failed"
# Data (type 0) overlaps [4M, 5M); the start is still a hole; the extents tile the volume.
jq -e '[.[] | select((.type % 2) == 0 and .offset < 5242880 and .offset + .length > 4194304)] | length >= 1' \
	<<<"$map" >/dev/null || fail "no data extent over the written range: $map"
jq -e '[.[] | select((.type % 2) == 0 and (.offset + .length <= 4194304 or .offset >= 5242880))] | map(.length) | add // 0 | . <= 2097152' \
	<<<"$map" >/dev/null || fail "data reported far from the write: $map"
jq -e '.[0].offset == 0 and .[0].type == 3' <<<"$map" >/dev/null || fail "the start is no longer a hole: $map"
jq -e '(map(.length) | add) == 67108864' <<<"$map" >/dev/null || fail "--map does not cover the volume: $map"
jq -e '[range(1; length) as $i | .[$i - 1].offset + .[$i - 1].length == .[$i].offset] | all' \
	<<<"$map" >/dev/null || fail "extents do not tile: $map"
qemu-io -f raw -c 'read -P 0xa5 4M 1M' -c 'read -P 0 0 4M' "$URI" >/dev/null || fail "read back differs"

step "trim makes a hole again"
qemu-io -f raw -c 'discard 4M 1M' "$URI" >/dev/null || fail "qemu-io discard failed"
qemu-io -f raw -c 'read -P 0 4M 1M' "$URI" >/dev/null || fail "trimmed range does not read as zeros"
map=$(nbdinfo --map --json "$URI")
jq -e '[.[] | select((.type % 2) == 0 and .offset < 5242880 and .offset + .length > 4194304)] | length == 0' \
	<<<"$map" >/dev/null || fail "trimmed range still shows data: $map"

step "map of the rest"
nbdinfo --map --totals "$URI" >/dev/null || fail "nbdinfo --map --totals"
stop_node a
