#!/usr/bin/env bash
# normal build only: cut timing; the monitor's fence runs under the sanitizers in test_monitor_fence
# Issue 6: the interconnect cut while both nodes live (an nftables rule
# drops every packet to and from the interconnect ports on loopback, both
# directions). Heartbeats stop, the mailboxes go on: no takeover on either
# side, both serve their own volumes to their clients with no error, the
# mirror says degraded on both (each takes writes its partner cannot get)
# and ha.partner.state says cut_off. The rule removed: the partner is alive
# again, the mirrors resync to in_sync, every acknowledged write reads back
# on its owner's port, and nobody wrote a takeover mark. Needs root and nft
# (skipped otherwise).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
[ "$(id -u)" -eq 0 ] || skip "needs root for nftables"
need nft
. "$TEST_DIR/failover.inc"

N=300
# Deadlines: heartbeats, then the mailbox; "several" of them for the window
# in which nothing may happen.
WINDOW_MS=$((4 * 2 * FO_DEADLINE_MS))

both_up_alive() {
	local n
	for n in a b; do
		ha_is $n up || return 1
		partner_is $n alive || return 1
	done
}
# Nothing moves while cut: both up, the partner cut off, each serving its own.
cut_holds() {
	local n j
	for n in a b; do
		j=$(status $n) || { echo "no status from $n" >&2; return 1; }
		jq -e --arg n $n '.ha.state == "up" and .ha.partner.state == "cut_off" and
			all(.volumes[]; (.port == "direct") == (.served_by == $n))' <<<"$j" >/dev/null ||
			{ echo "$n: $(jq -c '{ha: .ha | {state, phase, reason, partner}, volumes: [.volumes[] | {name, port, served_by}]}' <<<"$j")" >&2; return 1; }
	done
	writer_alive wa && writer_alive wb
}

step "start a pair, vol-a on a, vol-b on b, mirrors in sync"
start_a
start_b
ctl a volume create vol-a 64M >/dev/null
ctl b volume create vol-b 64M >/dev/null
wait_for m_is a in_sync || fail "mirror of a: $(mstate a)"
wait_for m_is b in_sync || fail "mirror of b: $(mstate b)"
wait_for both_up_alive || fail "pair not up: $(ha a .partner.state) / $(ha b .partner.state)"

step "a load on each node's own port"
writer wa --port $A_NBD --export vol-a --blocks 2048 --qd 16
writer wb --port $B_NBD --export vol-b --blocks 2048 --qd 16
wait_acks wa $N
wait_acks wb $N

step "cut the interconnect (both directions)"
nft_cut ic $IC0_A $IC0_B
wait_for partner_is a cut_off || fail "a: partner $(partner_state a), not cut_off ($(ha a .partner.detail))"
wait_for partner_is b cut_off || fail "b: partner $(partner_state b), not cut_off ($(ha b .partner.detail))"

step "no takeover; both serve their own volumes; mirrors degraded"
wait_acks wa $N
wait_acks wb $N
wait_for m_is a degraded || fail "mirror of a: $(mstate a), not degraded"
wait_for m_is b degraded || fail "mirror of b: $(mstate b), not degraded"
hold $WINDOW_MS cut_holds || fail "something moved while the interconnect was cut (see above)"
wait_acks wa $N
wait_acks wb $N
[ "$(ha a .takeover_possible)" = false ] || fail "a says takeover is possible while cut"
[ "$(ha b .takeover_possible)" = false ] || fail "b says takeover is possible while cut"
no_mark_written a
no_mark_written b

step "restore the interconnect: partner alive, mirrors in sync"
nft_restore ic
wait_for -t 60 both_up_alive || fail "pair not back: $(partner_state a) / $(partner_state b)"
wait_for -t 60 m_is a in_sync || fail "mirror of a: $(mstate a)"
wait_for -t 60 m_is b in_sync || fail "mirror of b: $(mstate b)"
wait_acks wa $N
wait_acks wb $N
writer_stop wa
writer_stop wb

step "every acknowledged write reads back on its owner's port"
check_acks "$T/wa.acks" --port $A_NBD --export vol-a
check_acks "$T/wb.acks" --port $B_NBD --export vol-b
ha_is a up none || fail "a: $(ha_state a)/$(ha_phase a)"
ha_is b up none || fail "b: $(ha_state b)/$(ha_phase b)"
no_mark_written a
no_mark_written b

step "clean stop"
stop_node a
stop_node b
