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

step "per-volume allow by PSK identity"
ctl a volume create vol-alice 16M --allow alice carol >/dev/null
ctl a volume create vol-bob 16M --allow bob >/dev/null
ctl a volume list | grep -E '^vol-alice .* alice,carol$' >/dev/null ||
	fail "volume list does not show vol-alice's allow list: $(ctl a volume list)"
ctl a volume list --json | jq -e '.volumes[] | select(.name=="vol-a") | .allow == []' >/dev/null ||
	fail "vol-a should have an empty allow list"
psk_list() { nbdinfo --list --json "nbds://$1@127.0.0.1:$P?tls-psk-file=$T/keys.psk" |
	jq -r '.exports[]."export-name"' | sort | tr '\n' ' '; }
[ "$(psk_list alice)" = "vol-a vol-alice " ] || fail "alice lists '$(psk_list alice)'"
[ "$(psk_list bob)" = "vol-a vol-bob " ] || fail "bob lists '$(psk_list bob)'"
nbdinfo --no-content "nbds://alice@127.0.0.1:$P/vol-alice?tls-psk-file=$T/keys.psk" >/dev/null ||
	fail "alice cannot open vol-alice"
if out=$(nbdinfo --no-content "nbds://alice@127.0.0.1:$P/vol-bob?tls-psk-file=$T/keys.psk" 2>&1); then
	fail "alice opened vol-bob: $out"
fi
# An x509 client without tls_verify_peer has no identity: only vol-a.
x_list=$(nbdinfo --list --json "nbds://127.0.0.1:$P?$X509" | jq -r '.exports[]."export-name"' | sort | tr '\n' ' ')
[ "$x_list" = "vol-a " ] || fail "an x509 client without verified identity lists '$x_list'"

step "tls = on: plain and TLS clients both served"
stop_node a
start_node a "$P" "tls = on" "tls_certificates = $PKI"
nbdinfo --no-content "nbd://127.0.0.1:$P/vol-a" >/dev/null || fail "plain client refused under tls = on"
p_list=$(nbdinfo --list --json "nbd://127.0.0.1:$P" | jq -r '.exports[]."export-name"' | sort | tr '\n' ' ')
[ "$p_list" = "vol-a " ] || fail "a plain client lists '$p_list' (volumes with an allow list must not show)"
nbdinfo --no-content "$(nbds_uri "$P" vol-a "$X509")" >/dev/null || fail "TLS client refused under tls = on"

step "tls_verify_peer: a client certificate is required"
stop_node a
start_node a "$P" "tls = require" "tls_certificates = $PKI" "tls_verify_peer = on"
nbdinfo --no-content "$(nbds_uri "$P" vol-a "$X509")" >/dev/null ||
	fail "a client with a certificate was refused"
if out=$(nbdinfo --no-content "$(nbds_uri "$P" vol-a "tls-certificates=$PKI/nocert")" 2>&1); then
	fail "a client without a certificate was served: $out"
fi
# The verified certificate's CN (alice) opens vol-alice, not vol-bob.
nbdinfo --no-content "$(nbds_uri "$P" vol-alice "$X509")" >/dev/null ||
	fail "certificate CN alice cannot open vol-alice"
if out=$(nbdinfo --no-content "$(nbds_uri "$P" vol-bob "$X509")" 2>&1); then
	fail "certificate CN alice opened vol-bob: $out"
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
ctl a status --json | jq -e '.nbd.refused >= 4' >/dev/null ||
	fail "status does not count the refusals: $(ctl a status --json | jq -c .nbd)"

step "allow = 127.0.0.0/8 serves 127.0.0.1"
stop_node a
start_node a "$P" "allow = 127.0.0.0/8"
nbdinfo --no-content "nbd://127.0.0.1:$P/vol-a" >/dev/null || fail "127.0.0.1 refused with allow = 127.0.0.0/8"
