#!/usr/bin/env bash
# duetctl: volume create/list and status, with and without --json; errors
# and exit statuses (0 done, 1 refused by duetd, 2 usage or unreachable).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need jq python3

P=$PORT_BASE

# st WANT CMD...: CMD exits with status WANT.
st() {
	local want=$1 rc=0
	shift
	"$@" >"$T/st.out" 2>"$T/st.err" || rc=$?
	[ $rc -eq "$want" ] || fail "$*: exit $rc, want $want (stdout: $(cat "$T/st.out"), stderr: $(cat "$T/st.err"))"
}

step "start"
start_node a "$P"

step "status"
ctl a status >"$T/status.txt" || fail "duetctl status failed"
grep -q 'node a' "$T/status.txt" || fail "status does not name the node: $(cat "$T/status.txt")"
s=$(ctl a status --json)
jq -e '.node == "a"' <<<"$s" >/dev/null || fail "status --json: $s"
jq -e '.volumes == []' <<<"$s" >/dev/null || fail "a new node has volumes: $s"
jq -e ".nbd.listen == \"127.0.0.1:$P\" and .nbd.connections == 0" <<<"$s" >/dev/null ||
	fail "status --json .nbd: $s"
jq -e '.ha.state and .session.state and (.links | type == "array") and .mirror.state' <<<"$s" >/dev/null ||
	fail "status --json lacks ha/session/links/mirror: $s"
# --json before the command works too.
"$DUETCTL" --socket "$T/a.sock" --json status | jq -e '.node == "a"' >/dev/null ||
	fail "duetctl --json status"

step "volume create"
ctl a volume create vol-a 1G >"$T/create.txt" || fail "volume create failed"
grep -q vol-a "$T/create.txt" || fail "volume create prints nothing about vol-a"
c=$(ctl a volume create vol-b 512M --json) || fail "volume create --json failed"
jq -e '.volume.name == "vol-b" and .volume.size == 536870912 and .volume.owner == "a"' <<<"$c" >/dev/null ||
	fail "volume create --json: $c"
ctl a volume create tiny 4K >/dev/null || fail "volume create 4K failed"

step "volume list"
l=$(ctl a volume list --json)
jq -e '.volumes | length == 3' <<<"$l" >/dev/null || fail "volume list --json: $l"
jq -e '.volumes[] | select(.name == "vol-a") | .size == 1073741824 and .owner == "a" and .served_by == "a"' \
	<<<"$l" >/dev/null || fail "vol-a in the list: $l"
jq -e '.volumes[] | select(.name == "tiny") | .size == 4096' <<<"$l" >/dev/null || fail "tiny in the list: $l"
ctl a volume list >"$T/list.txt"
for v in vol-a vol-b tiny; do grep -qw -- "$v" "$T/list.txt" || fail "volume list does not show $v"; done
s=$(ctl a status --json)
jq -e '[.volumes[].name] | sort == ["tiny", "vol-a", "vol-b"]' <<<"$s" >/dev/null || fail "status volumes: $s"
jq -e '.volumes[] | select(.name == "vol-a") | .owner == "a" and .served_by == "a" and .size == 1073741824' \
	<<<"$s" >/dev/null || fail "status vol-a: $s"

step "refused by duetd: exit 1"
st 1 ctl a volume create vol-a 1G
grep -qi 'exist' "$T/st.err" || fail "duplicate volume: no clear message: $(cat "$T/st.err")"
st 1 ctl a volume create 'bad/name' 1G
st 1 ctl a volume create '' 1G
st 1 ctl a volume create "$(printf 'n%.0s' $(seq 100))" 1G
[ "$(ctl a volume list --json | jq '.volumes | length')" = 3 ] || fail "a refused create left a volume behind"

step "bad sizes: exit 1 or 2"
for sz in 0 -1 1X abc 1.5G 99999999999999999999 ''; do
	rc=0
	ctl a volume create "v$RANDOM" "$sz" >/dev/null 2>&1 || rc=$?
	[ $rc -eq 1 ] || [ $rc -eq 2 ] || fail "volume create with size '$sz': exit $rc, want 1 or 2"
done
[ "$(ctl a volume list --json | jq '.volumes | length')" = 3 ] || fail "a bad size created a volume"

step "usage errors: exit 2"
st 2 ctl a
st 2 ctl a frobnicate
st 2 ctl a volume
st 2 ctl a volume create onlyname
st 2 "$DUETCTL" status
st 2 "$DUETCTL" --socket "$T/a.sock" --bogus status

step "unreachable socket: exit 2"
st 2 "$DUETCTL" --socket "$T/nothing.sock" status
grep -q "$T/nothing.sock" "$T/st.err" || fail "unreachable: the message does not name the socket"
st 2 "$DUETCTL" --socket "$T/nothing.sock" volume list --json
: >"$T/not-a-socket"
st 2 "$DUETCTL" --socket "$T/not-a-socket" status

step "the node is unharmed by garbage on its control socket"
python3 - "$T/a.sock" <<'PY' || fail "control socket garbage test failed"
import socket, sys
for msg in [b"not json\n", b"{\"cmd\": 42}\n", b"{\"cmd\": \"nope\"}\n", b"[1,2,3]\n", b"{" * 10000 + b"\n", b"\n", b""]:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sys.argv[1])
    s.sendall(msg)
    s.shutdown(socket.SHUT_WR)
    while s.recv(4096):
        pass
    s.close()
PY
ctl a status >/dev/null || fail "status fails after garbage on the control socket"

step "stopped node: exit 2"
stop_node a
st 2 ctl a status
