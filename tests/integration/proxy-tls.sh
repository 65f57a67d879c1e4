#!/usr/bin/env bash
# TLS on the proxy port and the own port of a pair (tls = require, x509),
# with qemu-img (tls-creds-x509 object), nbdcopy and fio's nbd engine over
# nbds:// URIs: data written through a's proxy port over TLS reads back on
# b's own port over TLS. A plain client sees nothing on either port. A
# volume with an allow list is served on its owner's own port to a client
# on the list, and never on the partner's proxy port (fail closed).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/tls.inc"
need nbdinfo nbdcopy qemu-img jq

proxy_pair_setup
PKI=$T/pki
make_pki "$PKI"
make_psk "$T/keys.psk" alice
X509="tls-certificates=$PKI"
TLS_LINES=("tls = require" "tls_certificates = $PKI" "tls_psk = $T/keys.psk")

step "start a pair with tls = require on both ports"
mapfile -t la < <(proxy_pair_lines a b $A_PROXY $((P + 4)) $((P + 5)))
mapfile -t lb < <(proxy_pair_lines b a $B_PROXY $((P + 5)) $((P + 4)))
start_node a $A_NBD "${TLS_LINES[@]}" "${la[@]}"
start_node b $B_NBD "${TLS_LINES[@]}" "${lb[@]}"
ctl b volume create vol-b 64M >/dev/null
ctl b volume create vol-secret 16M --allow alice >/dev/null
wait_for proxy_up a
wait_for proxy_serves a vol-b

step "the proxy port over TLS: nbdinfo; plain refused"
nbdinfo --no-content "$(nbds_uri $A_PROXY vol-b "$X509")" >/dev/null ||
	fail "nbdinfo over TLS on the proxy port failed"
if out=$(nbdinfo --list "nbd://127.0.0.1:$A_PROXY" 2>&1); then
	fail "plain client listed the proxy port under tls = require: $out"
fi
grep -q vol-b <<<"$out" && fail "plain client saw vol-b on the proxy port"

step "qemu-img over TLS (tls-creds-x509) through the proxy port"
head -c 16M /dev/urandom >"$T/data.img"
QOBJ="tls-creds-x509,id=tls0,endpoint=client,dir=$PKI"
qopts() { echo "driver=nbd,host=127.0.0.1,port=$1,export=$2,tls-creds=tls0"; }
qemu-img info --object "$QOBJ" --image-opts "$(qopts $A_PROXY vol-b)" >"$T/qinfo.txt" 2>&1 ||
	fail "qemu-img info over TLS failed: $(cat "$T/qinfo.txt")"
grep -q "virtual size: 64 MiB" "$T/qinfo.txt" || fail "qemu-img info: $(cat "$T/qinfo.txt")"
qemu-img convert -n -f raw --object "$QOBJ" --target-image-opts "$T/data.img" \
	"$(qopts $A_PROXY vol-b)" || fail "qemu-img convert over TLS through the proxy failed"
nbdcopy "$(nbds_uri $B_NBD vol-b "$X509")" "$T/back.img" || fail "nbdcopy over TLS from b failed"
head -c 16M "$T/back.img" | cmp -s - "$T/data.img" || fail "data through the proxy over TLS differs on b"
qemu-img compare --object "$QOBJ" --image-opts "driver=raw,file.driver=file,file.filename=$T/back.img" \
	"$(qopts $B_NBD vol-b)" >/dev/null || fail "qemu-img compare over TLS on b's port differs"
# 1 MiB reads through the proxy: one chunk each, sent from the slot over TLS.
nbdcopy --request-size=1048576 "$(nbds_uri $A_PROXY vol-b "$X509")" "$T/back-proxy.img" ||
	fail "nbdcopy over TLS through the proxy failed"
head -c 16M "$T/back-proxy.img" | cmp -s - "$T/data.img" ||
	fail "data read through the proxy over TLS differs"

step "fio's nbd engine over TLS (nbds:// URI, libnbd's default certificate dir)"
# fio's engine does not let a URI name local files (tls-certificates=,
# tls-psk-file=); libnbd then reads $HOME/.pki/libnbd, so point HOME there.
if fio --enghelp 2>/dev/null | grep -qw nbd; then
	mkdir -p "$T/home/.pki"
	ln -s "$PKI" "$T/home/.pki/libnbd"
	HOME=$T/home fio --name=tls --ioengine=nbd --uri="nbds://127.0.0.1:$A_PROXY/vol-b" --rw=randwrite \
		--bs=64k --size=8M --iodepth=8 --verify=crc32c --do_verify=1 --randrepeat=1 \
		>"$T/fio.log" 2>&1 || fail "fio over TLS failed: $(tail -5 "$T/fio.log")"
else
	echo "fio has no nbd engine: fio step skipped" >&2
fi

step "a volume with an allow list: owner's port only, and only to alice"
nbdinfo --no-content "nbds://alice@127.0.0.1:$B_NBD/vol-secret?tls-psk-file=$T/keys.psk" >/dev/null ||
	fail "alice cannot open vol-secret on b's own port"
wait_for bash -c "nbdinfo --list --json 'nbds://alice@127.0.0.1:$A_PROXY?tls-psk-file=$T/keys.psk' |
	jq -e 'any(.exports[]; .\"export-name\" == \"vol-b\")'"
nbdinfo --list --json "nbds://alice@127.0.0.1:$A_PROXY?tls-psk-file=$T/keys.psk" >"$T/plist.json"
jq -e 'any(.exports[]; ."export-name" == "vol-secret") | not' "$T/plist.json" >/dev/null ||
	fail "vol-secret listed on the partner's proxy port: $(cat "$T/plist.json")"
if out=$(nbdinfo --no-content "nbds://alice@127.0.0.1:$A_PROXY/vol-secret?tls-psk-file=$T/keys.psk" 2>&1); then
	fail "vol-secret served on the partner's proxy port: $out"
fi
