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

echo "PASS-SO-FAR"
