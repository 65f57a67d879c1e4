#!/usr/bin/env bash
# normal build only: link cut timing; the CCM's lane code runs under the sanitizers in its unit tests
# Issue 6: one interconnect link of two down (an nftables rule drops every
# packet to and from its ports on loopback), first ic1, then ic0: the
# heartbeats of the cut link stop, the other link's go on, so the partner
# stays alive on both sides: no takeover, and no client error for a writer
# on a's own port (mirrored over the links) and one on b's proxy port
# (forwarded over them). The mirror stays in_sync throughout. Each link
# comes back when the rule is removed; every acknowledged write reads back.
# Needs root and nft (skipped otherwise).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
[ "$(id -u)" -eq 0 ] || skip "needs root for nftables"
need nft
FO_LINKS=2
. "$TEST_DIR/failover.inc"

N=300
WINDOW_MS=$((2 * 2 * FO_DEADLINE_MS))

link_is() { status "$1" | jq -e --arg l "$2" --arg s "$3" 'any(.links[]; .name == $l and .state == $s)'; }
links_up() { status "$1" | jq -e '[.links[] | select(.state == "up")] | length == 2'; }
hb_age() { status "$1" | jq -r --arg l "$2" '.ha.heartbeats[] | select(.name == $l) | .hb_age_ms'; }
hb_silent() { local v; v=$(hb_age "$1" "$2"); [ -n "$v" ] && [ "$v" -gt "$FO_DEADLINE_MS" ]; }
hb_fresh() { local v; v=$(hb_age "$1" "$2"); [ -n "$v" ] && [ "$v" -lt "$FO_DEADLINE_MS" ]; }
changes() { status "$1" | jq -r .mirror.state_changes; }
# While one link is cut: both up, the partner alive, the mirror in sync.
holds() {
	local n j
	for n in a b; do
		j=$(status $n) || { echo "no status from $n" >&2; return 1; }
		jq -e '.ha.state == "up" and .ha.partner.state == "alive" and
			.mirror.state == "in_sync"' <<<"$j" >/dev/null ||
			{ echo "$n: $(jq -c '{ha: .ha | {state, phase, reason, partner, heartbeats}, mirror: .mirror.state}' <<<"$j")" >&2; return 1; }
	done
	writer_alive wa && writer_alive wp
}

step "start a pair with two links, vol-a on a, mirror in sync"
start_a
start_b
ctl a volume create vol-a 64M >/dev/null
wait_for links_up a || fail "a: links not both up"
wait_for links_up b || fail "b: links not both up"
wait_for m_is a in_sync || fail "mirror of a: $(mstate a)"
wait_for served_is b vol-a a || fail "b does not forward vol-a to a"
wait_for ha_is a up && wait_for partner_is a alive && wait_for partner_is b alive ||
	fail "pair not up: $(partner_state a) / $(partner_state b)"

step "a writer on a's own port, one on b's proxy port"
writer wa --port $A_NBD --export vol-a --blocks 1024 --qd 16 --timestamps
writer wp --port $B_PROXY --export vol-a --first-block 1024 --blocks 1024 --qd 16 --timestamps
wait_acks wa $N
wait_acks wp $N
ca=$(changes a)
cb=$(changes b)

for link in ic1 ic0; do
	if [ $link = ic0 ]; then ports=("$IC0_A" "$IC0_B") keep=ic1; else ports=("$IC1_A" "$IC1_B") keep=ic0; fi
	step "$link cut: the partner stays alive, no takeover, no client error"
	t0=$(mono)
	nft_cut "$link" "${ports[@]}"
	wait_for link_is a $link down || fail "a never took $link down"
	wait_for link_is b $link down || fail "b never took $link down"
	wait_for hb_silent a $link || fail "a: heartbeats still arrive on $link ($(hb_age a $link) ms)"
	wait_for hb_silent b $link || fail "b: heartbeats still arrive on $link ($(hb_age b $link) ms)"
	hb_fresh a $keep || fail "a: no heartbeat on $keep for $(hb_age a $keep) ms"
	hb_fresh b $keep || fail "b: no heartbeat on $keep for $(hb_age b $keep) ms"
	hold $WINDOW_MS holds || fail "something moved while $link was cut (see above)"
	wait_acks wa $N
	wait_acks wp $N
	stall_report wa "$t0"
	stall_report wp "$t0"

	step "$link back"
	nft_restore "$link"
	wait_for -t 60 links_up a || fail "a: $link did not come back"
	wait_for -t 60 links_up b || fail "b: $link did not come back"
	wait_for hb_fresh a $link || fail "a: no heartbeat on $link after its return"
	wait_for hb_fresh b $link || fail "b: no heartbeat on $link after its return"
	wait_acks wa $N
	wait_acks wp $N
done

step "no state change anywhere, every acknowledged write reads back"
writer_stop wa
writer_stop wp
[ "$(changes a)" = "$ca" ] || fail "mirror of a changed state while a link was cut: $(status a | jq -c .mirror.history)"
[ "$(changes b)" = "$cb" ] || fail "mirror of b changed state while a link was cut: $(status b | jq -c .mirror.history)"
no_mark_written a
no_mark_written b
ha_is a up none || fail "a: $(ha_state a)/$(ha_phase a)"
ha_is b up none || fail "b: $(ha_state b)/$(ha_phase b)"
check_acks "$T/wa.acks,$T/wp.acks" --port $A_NBD --export vol-a

step "clean stop"
stop_node a
stop_node b
