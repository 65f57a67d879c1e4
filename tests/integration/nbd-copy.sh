#!/usr/bin/env bash
# nbdcopy round trips through duetd with checksum compares: one connection,
# then many connections and many requests in flight, with holes (zeroing
# and block status) and with the largest requests the server allows.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need nbdcopy fallocate

P=$PORT_BASE
MB=64
[ "$QUICK" = 1 ] && MB=16

step "start"
start_node a "$P"
for v in v1 v2 v3 v4; do ctl a volume create "$v" "${MB}M" >/dev/null; done

step "make a random ${MB} MiB file with a hole"
head -c "${MB}M" /dev/urandom >"$T/in"
# A hole in the middle: nbdcopy turns it into zero requests.
fallocate -p -o $((MB / 4))M -l $((MB / 8))M "$T/in"
want=$(sha "$T/in")

roundtrip() { # roundtrip VOLUME NBDCOPY-OPTIONS...
	local v=$1
	shift
	rm -f "$T/out"
	nbdcopy "$@" "$T/in" "$(nbd_uri "$P" "$v")" || fail "nbdcopy $* in -> $v failed"
	nbdcopy "$@" "$(nbd_uri "$P" "$v")" "$T/out" || fail "nbdcopy $* $v -> out failed"
	[ "$(sha "$T/out")" = "$want" ] || fail "nbdcopy $*: $v read back differs"
}

step "one connection, synchronous"
roundtrip v1 --synchronous --connections=1

step "4 connections x 16 requests"
roundtrip v2 --connections=4 --requests=16

step "2 connections x 4 requests of 32 MiB (the advertised maximum)"
roundtrip v3 --connections=2 --requests=4 --request-size=$((32 << 20))

step "small requests, many in flight, no extents"
roundtrip v4 --connections=2 --requests=64 --request-size=4096 --no-extents --flush

step "volume to volume"
nbdcopy --connections=4 "$(nbd_uri "$P" v2)" "$(nbd_uri "$P" v1)" || fail "volume to volume copy failed"
nbdcopy "$(nbd_uri "$P" v1)" "$T/out"
[ "$(sha "$T/out")" = "$want" ] || fail "volume-to-volume copy differs"

step "the hole reads as zeros and the rest is data"
cmp -s <(head -c $((MB / 8))M /dev/zero) <(dd if="$T/out" bs=1M skip=$((MB / 4)) count=$((MB / 8)) status=none) ||
	fail "the hole does not read as zeros"

step "overwrite with zeros"
truncate -s "${MB}M" "$T/zero"
nbdcopy "$T/zero" "$(nbd_uri "$P" v3)" || fail "zeroing v3 failed"
nbdcopy "$(nbd_uri "$P" v3)" "$T/out"
cmp -s "$T/out" <(head -c "${MB}M" /dev/zero) || fail "v3 is not zero after zeroing"

stop_node a
