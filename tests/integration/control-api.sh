#!/usr/bin/env bash
# The control API (docs/CONTROL.md) against the code: the commands listed
# there (### `name` under "## Commands") are exactly those of the node's
# dispatch table (src/node/commands.c); every read-only command's
# `duetctl --json` output parses with jq, and `--raw` shows the whole reply
# with its version; the other commands' --json output parses too (success
# or refusal); a client without duetctl (a raw socket) works, with and
# without a version; a version the node does not speak is refused.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need jq python3

DOC=$REPO_ROOT/docs/CONTROL.md
CODE=$REPO_ROOT/src/node/commands.c

step "the commands of CONTROL.md are those of the dispatch table"
doc_cmds=$(sed -n '/^## Commands/,$p' "$DOC" | sed -n 's/^### `\([a-z_]*\)`$/\1/p' | sort)
code_cmds=$(sed -n 's/^[[:space:]]*{"\([a-z_]*\)", [a-z_]*},$/\1/p' "$CODE" | sort)
[ -n "$doc_cmds" ] || fail "no command headings found in $DOC"
[ -n "$code_cmds" ] || fail "no dispatch table found in $CODE"
diff <(echo "$doc_cmds") <(echo "$code_cmds") >&2 ||
	fail "docs/CONTROL.md and the dispatch table differ (< doc, > code)"
readonly_cmds=$(sed -n 's/^Read-only: \(.*\)\. The others.*/\1/p' "$DOC" | tr -d '`,')
[ -n "$readonly_cmds" ] || fail "no Read-only: line in $DOC"
for c in $readonly_cmds; do
	grep -qx "$c" <<<"$code_cmds" || fail "read-only command $c is not in the dispatch table"
done

step "a node with a volume"
start_node a "$PORT_BASE"
ctl a volume create vol 16M >/dev/null

# words COMMAND: the duetctl words of a command of the API.
words() {
	case $1 in
	ic_reset) echo ic reset ;;
	volume_show) echo volume show vol ;;
	volume_delete) echo volume delete vol2 ;; # made by volume_create (sorted before)
	volume_resize) echo volume resize vol 32M ;;
	volume_create) echo volume create vol2 1M ;;
	volume_relocate) echo volume relocate nope ;; # refused: no such volume
	volume_move) echo volume move nope --shelf b ;;  # refused: no partner
	*) echo "${1//_/ }" ;;
	esac
}

step "duetctl --json and --raw of every read-only command parse"
for c in $readonly_cmds; do
	# shellcheck disable=SC2046 # the words of the command
	ctl a --json $(words "$c") >"$T/$c.json" || fail "duetctl --json $c failed"
	jq -e 'type == "object"' "$T/$c.json" >/dev/null || fail "duetctl --json $c: not one JSON object"
	# shellcheck disable=SC2046
	ctl a --raw $(words "$c") >"$T/$c.raw" || fail "duetctl --raw $c failed"
	jq -e '.ok == true and .version == 1 and (.result | type == "object")' "$T/$c.raw" >/dev/null ||
		fail "duetctl --raw $c: $(head -c 300 "$T/$c.raw")"
	# Two calls: the same members (values such as counters move).
	cmp -s <(jq -S '.result | keys' "$T/$c.raw") <(jq -S keys "$T/$c.json") ||
		fail "duetctl --json $c is not the reply's result"
done
jq -e '.node == "a" and (.ha | type == "object") and (.volumes | length == 1) and
	(.hooks | type == "object")' "$T/status.json" >/dev/null || fail "status lacks members"
jq -e '.volume.counters.requests == 0 and .volume.clients == 0' "$T/volume_show.json" >/dev/null ||
	fail "volume_show: $(cat "$T/volume_show.json")"

step "every other command's --json output parses (done or refused)"
for c in $code_cmds; do
	grep -qx "$c" <<<"$readonly_cmds" && continue
	rc=0
	# shellcheck disable=SC2046
	ctl a --json $(words "$c") >"$T/$c.json" 2>/dev/null || rc=$?
	[ $rc -le 1 ] || fail "duetctl --json $c: usage error or unreachable (status $rc)"
	jq -e 'type == "object"' "$T/$c.json" >/dev/null || fail "duetctl --json $c: $(cat "$T/$c.json")"
done

step "without duetctl: a raw socket, with and without a version"
python3 - "$T/a.sock" <<'PY' || fail "raw socket client"
import json, socket, sys
def call(req):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    s.sendall((req if isinstance(req, bytes) else json.dumps(req).encode()) + b"\n")
    data = b"".join(iter(lambda: s.recv(65536), b""))
    s.close()
    return json.loads(data)
r = call({"cmd": "volume_list"})                      # the duetctl of before
assert r["ok"] and r["version"] == 1 and r["result"]["volumes"][0]["name"] == "vol", r
r = call({"cmd": "volume_show", "version": 1, "name": "vol"})
assert r["ok"] and r["result"]["volume"]["size"] == 32 << 20, r
r = call({"cmd": "status", "version": 99})
assert not r["ok"] and r["version"] == 1 and "speaks 1" in r["error"], r
r = call({"cmd": "status", "version": "1"})
assert not r["ok"] and "version" in r["error"], r
r = call({"cmd": "nope", "version": 1})
assert not r["ok"] and r["version"] == 1 and "unknown command" in r["error"], r
r = call(b"not json")
assert not r["ok"] and r["version"] == 1 and "malformed" in r["error"], r
r = call({"cmd": "volume_show", "version": 1})
assert not r["ok"] and "name" in r["error"], r
PY

step "clean stop"
stop_node a
