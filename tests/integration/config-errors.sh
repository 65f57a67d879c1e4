#!/usr/bin/env bash
# Bad configurations: duetd exits with status 2 and one stderr line that
# names the file, the line and the key. Also (issue 12) a config file with a
# path longer than the error buffer, and secret files that are not private
# to the daemon's user.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
# Line numbers below count the [node] defaults of write_node_config, without
# a realtime line.
export DUET_REALTIME=

P=$PORT_BASE

# base: a good config, six lines ([node] id shelf control, [nbd] listen; no
# log_level), on stdout; the cases below break it on purpose.
base() {
	write_node_config - a "$T" "shelf = $T/shelf" log_level= "[nbd]" "listen = 127.0.0.1:$P"
}

# expect_bad NAME WANT... : run duetd on $T/NAME.conf; status 2, one line,
# containing every WANT.
expect_bad() {
	local name=$1 conf=$T/$1.conf rc=0
	shift
	step "$name"
	timeout $((10 * TIMEOUT_SCALE)) "$DUETD" --config "$conf" >"$T/$name.out" 2>"$T/$name.err" || rc=$?
	[ $rc -eq 2 ] || fail "$name: exit status $rc, want 2 (stderr: $(cat "$T/$name.err"))"
	local lines
	lines=$(wc -l <"$T/$name.err")
	[ "$lines" -eq 1 ] || fail "$name: $lines lines on stderr, want 1: $(cat "$T/$name.err")"
	[ ! -s "$T/$name.out" ] || fail "$name: wrote to stdout: $(cat "$T/$name.out")"
	local w
	for w in "$@"; do
		grep -qF -- "$w" "$T/$name.err" || fail "$name: stderr does not name '$w': $(cat "$T/$name.err")"
	done
	[ ! -e "$T/a.sock" ] || fail "$name: the control socket was created"
}

# missing file: names the file
expect_bad missing "$T/missing.conf"

# unknown section: reported at its first key, line 8
{ base; printf '[bogus]\nx = 1\n'; } >"$T/section.conf"
expect_bad section "$T/section.conf:8" bogus " x"

# unknown key at line 7 of [nbd]
{ base; echo "colour = blue"; } >"$T/key.conf"
expect_bad key "$T/key.conf:7" colour

# bad listen address at line 6
base | sed 's/^listen = .*/listen = nowhere/' >"$T/listen.conf"
expect_bad listen "$T/listen.conf:6" listen nowhere

# io_depth out of range at line 8
{ base; printf '[store]\nio_depth = 2\n'; } >"$T/depth.conf"
expect_bad depth "$T/depth.conf:8" io_depth

# bad enum value
{ base; printf '[store]\nio_engine = carrier-pigeon\n'; } >"$T/engine.conf"
expect_bad engine "$T/engine.conf:8" io_engine

# bad log level, bad size, a port out of range
base | sed 's/^id = a/id = a\nlog_level = loud/' >"$T/level.conf"
expect_bad level "$T/level.conf:3" log_level
{ base; echo "max_payload = 1K"; } >"$T/payload.conf"
expect_bad payload "$T/payload.conf:7" max_payload
base | sed "s/^listen = .*/listen = 127.0.0.1:99999/" >"$T/port.conf"
expect_bad port "$T/port.conf:6" listen

# a key given twice
{ base; echo "listen = 127.0.0.1:$((P + 1))"; } >"$T/twice.conf"
expect_bad twice "$T/twice.conf:7" listen

# a required key missing
base | grep -v '^control' >"$T/required.conf"
expect_bad required "$T/required.conf" control

# not INI at all
printf 'this is not [an ini file\n' >"$T/garbage.conf"
expect_bad garbage "$T/garbage.conf:1"

# Issue 12, finding 9: an error in a file whose path is longer than duetd's
# 768-byte message buffer (the message was parsed back out of the truncated
# buffer, reading past it: an AddressSanitizer report)
long=$T
while [ ${#long} -lt 900 ]; do long=$long/$(printf 'd%.0s' {1..120}); done
mkdir -p "$long"
{ base; echo "colour = blue"; } >"$long/long.conf"
ln -s "$long/long.conf" "$T/longpath.conf"
expect_bad longpath "$T/longpath.conf:7" colour
name=longpath-direct
step "$name"
rc=0
timeout $((10 * TIMEOUT_SCALE)) "$DUETD" --config "$long/long.conf" >"$T/$name.out" 2>"$T/$name.err" || rc=$?
[ $rc -eq 2 ] || fail "$name: exit status $rc, want 2 (stderr: $(head -c 300 "$T/$name.err"))"
[ "$(wc -l <"$T/$name.err")" -eq 1 ] || fail "$name: more than one line: $(head -c 2000 "$T/$name.err")"
grep -q "^duetd: config error: $T/d" "$T/$name.err" || fail "$name: the error does not start with the path"

# Issue 12, finding 10: the secret file must be ours and private
ic() {
	base
	printf '%s\n' "[ic]" "partner = b" "secret_file = $T/secret" \
		"link = ic0 127.0.0.1:$((P + 2)) 127.0.0.1:$((P + 3))"
}
write_cluster_key "$T/secret"
ic >"$T/secret-mode.conf"
chmod 644 "$T/secret"
expect_bad secret-mode "[ic] secret_file $T/secret" "mode 0644" "chmod 600"
chmod 640 "$T/secret"
cp "$T/secret-mode.conf" "$T/secret-group.conf"
expect_bad secret-group "[ic] secret_file $T/secret" "mode 0640"
chmod 600 "$T/secret"
if [ "$(id -u)" -eq 0 ] && id nobody >/dev/null 2>&1; then
	chown nobody "$T/secret"
	cp "$T/secret-mode.conf" "$T/secret-owner.conf"
	expect_bad secret-owner "[ic] secret_file $T/secret" "owned by uid $(id -u nobody)"
	chown 0 "$T/secret"
fi
printf 'short\n' >"$T/short"
chmod 600 "$T/short"
ic | sed "s#secret_file = .*#secret_file = $T/short#" >"$T/secret-short.conf"
expect_bad secret-short "[ic] secret_file $T/short" "at least 16 bytes"

# usage errors: no --config, unknown option
step "usage"
rc=0
"$DUETD" >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "duetd without arguments: exit $rc, want 2"
rc=0
"$DUETD" --config "$T/x.conf" --bogus >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "duetd --bogus: exit $rc, want 2"

# a good config starts (the base is right), and a port in use is a clear error
step "good config, then the same port again"
base >"$T/good.conf"
start_node a "$P"
base | sed "s#$T/a.sock#$T/a2.sock#; s#$T/shelf#$T/shelf2#" >"$T/busy.conf"
rc=0
timeout $((10 * TIMEOUT_SCALE)) "$DUETD" --config "$T/busy.conf" >/dev/null 2>"$T/busy.err" || rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "a second duetd on a busy port: exit $rc"
grep -q "127.0.0.1:$P" "$T/busy.err" || fail "the busy-port error does not name the address: $(cat "$T/busy.err")"
stop_node a
