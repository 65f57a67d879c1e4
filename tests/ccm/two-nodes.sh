#!/bin/bash
# Two CCM processes (ccm-client) on loopback over the real fabric, two links
# each (127.0.0.1 and 127.0.0.2): the session comes up in both start orders
# and at the same instant, carries verified RDMA traffic and messages, ends
# when one side is SIGKILLed and comes back when it restarts, and follows an
# operator reset. Ports: CCM_TEST_PORT (default 22100) .. +3.
#
# usage: two-nodes.sh [path/to/ccm-client]
set -euo pipefail

CLIENT=${1:-build/tests/ccm/ccm-client}
BASE=${CCM_TEST_PORT:-22100}
# shellcheck source=tests/ccm/ccm.inc
. "$(dirname "$(readlink -f "$0")")/ccm.inc"
CCM_TAIL_OUT=5 CCM_TAIL_ERR=25
ccm_setup ccm-two-nodes

write_cfg() { # node partner my-port-offset peer-port-offset
	local n=$1 p=$2 me=$3 peer=$4
	ccm_write_cfg "$n" "$p" "[node]" "log_level = info" "[ic]" "cluster_id = ccm-test" \
		"link = ic0 127.0.0.1:$((BASE + me)) 127.0.0.1:$((BASE + peer))" \
		"link = ic1 127.0.0.2:$((BASE + 2 + me)) 127.0.0.2:$((BASE + 2 + peer))" \
		"probe_ms = 20" "link_deadline_ms = 200" "session_deadline_ms = 1000"
}
write_cfg a b 0 1
write_cfg b a 1 0

start() { # node
	"$CLIENT" --config "$DIR/$1.conf" --stats-ms 200 --inflight 16 --size 4096 \
		>>"$DIR/$1.out" 2>>"$DIR/$1.err" &
	PID[$1]=$!
}

count() { # node pattern
	grep -c -- "$2" "$DIR/$1.out" 2>/dev/null || true
}

wait_for() { # node pattern count [seconds]
	local n=$1 pat=$2 want=$3 secs=${4:-30} i
	for ((i = 0; i < secs * 20; i++)); do
		[ "$(count "$n" "$pat")" -ge "$want" ] && return 0
		kill -0 "${PID[$n]}" 2>/dev/null || fail "$n exited while waiting for '$pat'"
		sleep 0.05
	done
	stacks "$n"
	fail "$n: no '$pat' x$want within ${secs}s"
}

last_stat() { # node field-regex
	{ ccm_last_stats "$1" | grep -o "\"$2\":[^,}]*" | head -n 1 | cut -d: -f2; } 2>/dev/null || true
}

stacks() { # node: where is it stuck?
	if command -v gdb >/dev/null && [ -n "${PID[$1]:-}" ]; then
		gdb -p "${PID[$1]}" -batch -ex "thread apply all bt" >"$DIR/$1.stack" 2>&1 || true
		echo "---- $1 stacks" >&2
		grep -E '^#|^Thread' "$DIR/$1.stack" | head -n 40 >&2 || true
	fi
}

wait_traffic() { # node min-writes
	local n=$1 min=$2 i w
	for ((i = 0; i < 600; i++)); do
		w=$(last_stat "$n" writes)
		[ -n "$w" ] && [ "$w" -ge "$min" ] && return 0
		kill -0 "${PID[$n]}" 2>/dev/null || fail "$n exited while waiting for traffic"
		sleep 0.05
	done
	stacks "$n"
	fail "$n: fewer than $min verified writes"
}

stop() { # node: SIGTERM, expect exit 0 (no failed op, no bad read-back)
	local n=$1 rc=0
	kill -TERM "${PID[$n]}"
	wait "${PID[$n]}" || rc=$?
	unset "PID[$n]"
	[ "$rc" -eq 0 ] || fail "$n exited with $rc (client errors)"
}

report() {
	for n in a b; do
		echo "  $n: $(ccm_last_stats "$n" |
			grep -o '"state":"[a-z]*"\|"handshake_us":[0-9]*\|"sessions":[0-9]*\|"writes":[0-9]*\|"verify_errors":[0-9]*' |
			tr '\n' ' ')"
	done
}

reset_logs() { : >"$DIR/a.out"; : >"$DIR/b.out"; : >"$DIR/a.err"; : >"$DIR/b.err"; }

echo "1. a first, then b"
start a
wait_for a "event started" 1
grep -q "boot region published" "$DIR/a.err" || fail "a did not publish its boot region first"
start b
wait_for a "event partner_ready" 1
wait_for b "event partner_ready" 1
wait_traffic a 200
wait_traffic b 200
report

echo "2. SIGKILL b: a sees the session end; b restarts: the session returns"
kill -9 "${PID[b]}"
wait "${PID[b]}" 2>/dev/null || true
unset "PID[b]"
wait_for a "event terminating" 1
start b
wait_for a "event partner_ready" 2
wait_for b "event partner_ready" 2
w=$(last_stat a writes)
wait_traffic a $((w + 200))
report

echo "3. operator reset on a: both sides end the session and form a new one"
kill -USR1 "${PID[a]}"
wait_for a "event terminating reason=\"operator reset\"" 1
wait_for b "event terminating reason=\"partner ended the session\"" 1
wait_for a "event partner_ready" 3
wait_for b "event partner_ready" 3
report
stop a
stop b

echo "4. b first, then a"
reset_logs
start b
wait_for b "event started" 1
start a
wait_for a "event partner_ready" 1
wait_for b "event partner_ready" 1
wait_traffic a 200
wait_traffic b 200
report
stop a
wait_for b "event terminating" 1
stop b

echo "5. both at the same instant"
reset_logs
start a
start b
wait_for a "event partner_ready" 1
wait_for b "event partner_ready" 1
wait_traffic a 200
report
stop a
stop b
echo "PASS"
