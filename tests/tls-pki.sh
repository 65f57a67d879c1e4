# shellcheck shell=bash
# TLS material for duetd's NBD ports, made with GnuTLS's own tools (as
# nbdkit's tests do), for the shell tests and the benchmarks. Sourced, not
# run; it needs only certtool and psktool.
#
#   tls_make_pki DIR      a CA, a server certificate for localhost and
#                         127.0.0.1, and a client certificate (CN alice, SAN
#                         alice.example): DIR/ca-cert.pem, server-{cert,key}.pem,
#                         client-{cert,key}.pem, the layout both duetd
#                         (tls_certificates) and libnbd/qemu (tls-certificates,
#                         dir=) read; DIR/nocert holds only ca-cert.pem (a client
#                         that trusts the server but has no certificate).
#                         certtool's output goes to DIR/certtool.log; returns
#                         non-zero when certtool fails
#   tls_make_psk FILE USER...   a psktool key file, a random key per user

tls_make_pki() {
	local d=$1
	mkdir -p "$d/nocert" || return 1
	(
		set -e
		cd "$d"
		certtool --generate-privkey --key-type=ecdsa --outfile ca-key.pem
		printf '%s\n' "cn = duet test CA" ca cert_signing_key "expiration_days = 2" >ca.info
		certtool --generate-self-signed --load-privkey ca-key.pem --template ca.info \
			--outfile ca-cert.pem
		certtool --generate-privkey --key-type=ecdsa --outfile server-key.pem
		printf '%s\n' "organization = duet" "cn = localhost" "dns_name = localhost" \
			"ip_address = 127.0.0.1" tls_www_server encryption_key signing_key \
			"expiration_days = 2" >server.info
		certtool --generate-certificate --load-ca-certificate ca-cert.pem \
			--load-ca-privkey ca-key.pem --load-privkey server-key.pem \
			--template server.info --outfile server-cert.pem
		certtool --generate-privkey --key-type=ecdsa --outfile client-key.pem
		printf '%s\n' "organization = duet" "cn = alice" "dns_name = alice.example" \
			tls_www_client encryption_key signing_key "expiration_days = 2" >client.info
		certtool --generate-certificate --load-ca-certificate ca-cert.pem \
			--load-ca-privkey ca-key.pem --load-privkey client-key.pem \
			--template client.info --outfile client-cert.pem
		cp ca-cert.pem nocert/
	) >"$d/certtool.log" 2>&1
}

tls_make_psk() {
	local f=$1 u
	shift
	for u in "$@"; do
		psktool -u "$u" -p "$f" >/dev/null 2>&1 || return 1
	done
}
