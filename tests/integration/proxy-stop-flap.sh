#!/usr/bin/env bash
# normal build only: stop/flap timing; the proxy runs under the sanitizers in proxy-links, proxy-restart and failover-kill-proxy
# The interconnect flaps without the session ending, under a write load
# through b's proxy port (forwarded to a, which owns vol-a): no operation
# and no message of the CCM may be lost (src/ccm/ccm.h: messages are
# delivered once, in order, while the session lives; port operations are
# re-issued, never lost, while it lives).
#
#  1. One link. Rounds of: SIGSTOP a; wait until b sees the link down or,
#     as the last link, stale (its probes miss ic.link_deadline_ms) while
#     the session still lives;
#     keep a stopped for 200, 500 or 800 ms in all; SIGCONT a; wait until
#     the link is up again on both sides. The session must survive every
#     round (same session count), and afterwards the load keeps going.
#  2. Two links, only ic0 cut with an nftables drop rule for the same times
#     (root and nft only; skipped otherwise): ic0 goes down, its traffic
#     moves to ic1, ic0 returns.
#
# After each part: the writer's acknowledgements kept growing, it drains
# and ends with no client error, the CCM's in-flight counts of both nodes
# (.links[].inflight) and the proxy's (.proxy.inflight on b,
# .proxy.served.inflight on a) drain to 0, no proxy error or timeout, and
# every acknowledged write reads back (on a's own port and through b).
#
# No failover monitor (no [monitor] partner_shelf): this tests the CCM, not
# a takeover. The session deadline is 2 s (x DUET_TIMEOUT_SCALE) so that an
# 800 ms stop plus the test's own polling stays well inside it on a loaded
# host (DUET_FLAP_SESSION_MS=1000 tests the default: the link is back 5-60
# ms after the SIGCONT here, so that passes too).
#
# DUET_FLAP_PARTS=1 or 2 runs one part only (default both).
#
# Ports (PORT_BASE + n): a NBD 0, a proxy 1, b NBD 2, b proxy 3, ic0 a 4 /
# b 5, ic1 a 6 / b 7.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need python3 jq

ACKW=$REPO_ROOT/tests/fault/ackwriter.py
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
P=$PORT_BASE
A_NBD=$P A_PROXY=$((P + 1)) B_NBD=$((P + 2)) B_PROXY=$((P + 3))
IC0_A=$((P + 4)) IC0_B=$((P + 5)) IC1_A=$((P + 6)) IC1_B=$((P + 7))
SESSION_MS=$((${DUET_FLAP_SESSION_MS:-2000} * TIMEOUT_SCALE))
STOP_TIMES=(200 500 800 200 500 800 300 700)
PARTS=${DUET_FLAP_PARTS:-12} # which parts run (debugging one: DUET_FLAP_PARTS=2)
[ "$QUICK" = 1 ] && STOP_TIMES=(200 500 800)

umask 077
write_cluster_key "$T/cluster.key"

STOPPED="" # the node we sent SIGSTOP and not yet SIGCONT
NFT=""     # our nftables table, while it exists
WPID=""
# Continue a stopped node (it ignores TERM otherwise) and remove the drop
# rule before lib.sh's cleanup; on a failure, print what both nodes say.
_flap_exit() {
	local rc=$? n
	set +e
	if [ -n "$STOPPED" ]; then
		kill -s CONT "${NODE_PID[$STOPPED]}" 2>/dev/null
		STOPPED=""
	fi
	[ -n "$NFT" ] && nft delete table inet "$NFT" 2>/dev/null
	if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
		for n in a b; do
			[ -n "${NODE_PID[$n]:-}" ] || continue
			echo "--- status of $n at the failure ---" >&2
			timeout 5 "$DUETCTL" --socket "$T/$n.sock" status --json 2>&1 |
				jq -c '{session: (.session | {state, sessions}), proxy, links}' >&2
		done
	fi
	(exit $rc)
	_cleanup
}
trap _flap_exit EXIT

node_lines() { # node_lines ME PEER PROXY_PORT N_LINKS
	local me=$1 l0 r0 l1 r1
	if [ "$me" = a ]; then
		l0=$IC0_A r0=$IC0_B l1=$IC1_A r1=$IC1_B
	else
		l0=$IC0_B r0=$IC0_A l1=$IC1_B r1=$IC1_A
	fi
	printf '%s\n' "proxy_listen = 127.0.0.1:$3" "[ic]" "partner = $2" \
		"cluster_id = stop-flap" "secret_file = $T/cluster.key" \
		"session_deadline_ms = $SESSION_MS" "link = ic0 127.0.0.1:$l0 127.0.0.1:$r0"
	[ "$4" -lt 2 ] || echo "link = ic1 127.0.0.1:$l1 127.0.0.1:$r1"
	printf '%s\n' "[proxy]" "timeout_ms = $((60000 * TIMEOUT_SCALE))"
}
start_pair() { # start_pair N_LINKS
	local la lb
	mapfile -t la < <(node_lines a b $A_PROXY "$1")
	mapfile -t lb < <(node_lines b a $B_PROXY "$1")
	start_node a $A_NBD "${la[@]}"
	start_node b $B_NBD "${lb[@]}"
}

status() { ctl "$1" status --json; }
j() { status "$1" | jq -r "$2"; }
serves_proxy() { status b | jq -e 'any(.volumes[]; .name == "vol-a" and .port == "proxy")'; }
link_is() { # NODE LINK STATE, the session up
	status "$1" | jq -e --argjson i "$2" --arg s "$3" \
		'.session.state == "up" and .links[$i].state == $s'
}
# NODE LINK: the link was taken out, or kept as the last one with no sign
# of life (docs/CCM.md, "Liveness under load"), the session up.
link_out() {
	status "$1" | jq -e --argjson i "$2" \
		'.session.state == "up" and (.links[$i].state == "down" or .links[$i].stale)'
}
link_alive() { # NODE LINK: up and not stale, the session up
	status "$1" | jq -e --argjson i "$2" \
		'.session.state == "up" and .links[$i].state == "up" and (.links[$i].stale | not)'
}
all_links_up() { status "$1" | jq -e '.session.state == "up" and all(.links[]; .state == "up")'; }
drained() { # NODE: nothing in flight in the CCM or the proxy
	status "$1" | jq -e '(all(.links[]; .inflight == 0)) and .proxy.inflight == 0 and
		.proxy.served.inflight == 0'
}
now_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	echo $((t / 1000))
}
sleep_ms() { [ "$1" -le 0 ] || sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

writer_start() { # NAME FIRST_BLOCK
	rm -f "$T/$1.stop"
	"$PY" "$ACKW" write --port $B_PROXY --export vol-a --log "$T/$1.acks" \
		--stop-file "$T/$1.stop" --flush-each --blocks 512 --first-block "$2" --qd 8 \
		>"$T/$1.out" 2>&1 &
	WPID=$!
	track_pid $WPID
}
writer_alive() { _alive "$WPID"; }
acked() { grep -c '^A' "$T/$1.acks" 2>/dev/null || true; }
_acks_past() { ! writer_alive || [ "$(acked "$1")" -ge "$2" ]; }
wait_acks() { # NAME N: N more acknowledgements
	local want=$(($(acked "$1") + $2))
	wait_for _acks_past "$1" "$want" ||
		fail "writer $1: no $2 more acks ($(acked "$1") acked): requests stuck"
	writer_alive || fail "writer $1 ended early: $(tail -n 3 "$T/$1.out")"
}
# writer_end NAME: stop it; every request it has in flight must be answered
# (a lost CCM message or operation leaves one hanging until the proxy's
# 60 s timeout), and none with an error.
writer_end() {
	local rc=0
	touch "$T/$1.stop"
	wait_for -t 20 not writer_alive ||
		fail "writer $1 does not drain: requests never answered ($(j b .proxy.inflight) in flight at b's proxy, b's links $(j b '[.links[].inflight]' | tr -d ' \n'))"
	wait "$WPID" || rc=$?
	sed "s/^/   $1: /" "$T/$1.out" >&2
	[ $rc -eq 0 ] || fail "writer $1 failed (status $rc): $(tail -n 3 "$T/$1.out")"
}
not() { ! "$@"; }
check_acks() { # NAME PORT
	"$PY" "$ACKW" check --log "$T/$1.acks" --port "$2" --export vol-a >"$T/check.out" 2>&1 ||
		{ sed "s/^/   check: /" "$T/check.out" >&2; fail "acknowledged writes of $1 missing (port $2)"; }
}

# part_end NAME SESSIONS: the checks after a part (see the top).
part_end() {
	local name=$1 sessions=$2 n
	step "$name: the load goes on after the flaps"
	wait_acks "$name" 300
	step "$name: the writer drains, no client error"
	writer_end "$name"
	step "$name: nothing left in flight in the CCM or the proxy"
	for n in a b; do
		wait_for -t 10 drained $n || fail "$n does not drain: $(status $n | jq -c '{links: [.links[] |
			{name, inflight, errors, resets}], proxy: (.proxy | {inflight, served})}')"
	done
	[ "$(j b .session.sessions)" = "$sessions" ] || fail "the session ended (b: $(j b .session.sessions) sessions, was $sessions)"
	status b | jq -e '.proxy.errors == 0 and .proxy.timeouts == 0 and .proxy.bad_replies == 0' \
		>/dev/null || fail "b's proxy: $(j b -c .proxy)"
	status a | jq -e '.proxy.served.bad_requests == 0' >/dev/null || fail "a's proxy: $(j a -c .proxy)"
	step "$name: every acknowledged write reads back"
	check_acks "$name" $A_NBD
	check_acks "$name" $B_PROXY
	echo "   $name: $(acked "$name") acks; b: $(status b | jq -c '{links: [.links[] | {name,
		errors, resets}], retries: .proxy.retries}')" >&2
}

step "start a pair with one link, vol-a on a, forwarded by b"
start_pair 1
ctl a volume create vol-a 64M >/dev/null
wait_for serves_proxy || fail "b does not forward vol-a"
wait_for proxy_up b || fail "b's proxy is not up"
sessions=$(j b .session.sessions)

if [[ $PARTS == *1* ]]; then
step "1. one link: load through b's proxy port"
writer_start S 0
wait_acks S 200
round=0
for ms in "${STOP_TIMES[@]}"; do
	round=$((round + 1))
	step "1. round $round: a stopped for $ms ms"
	wait_acks S 50
	t0=$(now_ms)
	kill -s STOP "$(node_pid a)"
	STOPPED=a
	wait_for -t 10 link_out b 0 || fail "b does not see ic0 down or stale, or the session ended"
	sleep_ms $((ms - ($(now_ms) - t0)))
	kill -s CONT "$(node_pid a)"
	STOPPED=""
	echo "   round $round: a stopped for $(($(now_ms) - t0)) ms" >&2
	wait_for -t 20 link_alive b 0 || fail "ic0 does not come back on b (or the session ended)"
	wait_for -t 20 all_links_up a || fail "ic0 does not come back on a (or the session ended)"
	[ "$(j b .session.sessions)" = "$sessions" ] || fail "the session ended in round $round"
done
part_end S "$sessions"
fi

if [[ $PARTS != *2* ]]; then
	:
elif [ "$(id -u)" -ne 0 ] || ! command -v nft >/dev/null; then
	echo "   part 2 (nftables) skipped: needs root and nft" >&2
else
	step "2. two links: restart the pair"
	stop_node b
	stop_node a
	start_pair 2
	wait_for serves_proxy || fail "b does not forward vol-a"
	wait_for proxy_up b || fail "b's proxy is not up"
	wait_for all_links_up b || fail "not every link up on b"
	sessions=$(j b .session.sessions)
	writer_start C 512
	wait_acks C 200
	round=0
	NAME=duetflap_$$
	for ms in "${STOP_TIMES[@]}"; do
		round=$((round + 1))
		step "2. round $round: ic0 cut for $ms ms"
		wait_acks C 50
		t0=$(now_ms)
		NFT=$NAME
		nft -f - <<NFT || skip "cannot add an nftables table"
table inet $NAME {
	chain in {
		type filter hook input priority -10; policy accept;
		iifname "lo" tcp dport { $IC0_A, $IC0_B } drop
		iifname "lo" tcp sport { $IC0_A, $IC0_B } drop
	}
	chain out {
		type filter hook output priority -10; policy accept;
		oifname "lo" tcp dport { $IC0_A, $IC0_B } drop
		oifname "lo" tcp sport { $IC0_A, $IC0_B } drop
	}
}
NFT
		wait_for -t 10 link_out b 0 || fail "b does not see ic0 down or stale, or the session ended"
		sleep_ms $((ms - ($(now_ms) - t0)))
		nft delete table inet "$NAME"
		NFT=""
		echo "   round $round: ic0 cut for $(($(now_ms) - t0)) ms" >&2
		wait_for -t 30 all_links_up b || fail "ic0 does not come back on b (or the session ended)"
		wait_for -t 30 all_links_up a || fail "ic0 does not come back on a (or the session ended)"
		[ "$(j b .session.sessions)" = "$sessions" ] || fail "the session ended in round $round"
	done
	part_end C "$sessions"
fi

stop_node b
stop_node a
