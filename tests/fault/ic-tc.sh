#!/usr/bin/env bash
# normal build only: link timing under tc; the CCM's code runs under the sanitizers in ccm unit tests and ic-pair users
# Interconnect under a slowed and a cut link (issue 3, tc part): nodes a and
# b (tests/ccm/ccm-client: the CCM with a client streaming verified RDMA
# writes, read-backs and ordered messages) in two network namespaces joined
# by two veth pairs, ic0 and ic1, traffic balanced by least outstanding
# bytes.
#   1. both links carry the load;
#   2. ic1 slowed with tc (tbf, both directions): over a window of traffic,
#      ic1's share of a's bytes drops well below half (< 25%), no client
#      error; the limit is removed;
#   3. ic1 cut with an nftables drop rule in a's namespace: the CCM takes it
#      out, the load goes on over ic0 with no client error;
#   4. the rule removed: ic1 comes back and carries traffic again.
# Every step polls for its condition with a deadline. Needs root, tc, nft
# and jq (exit 77 otherwise). Namespaces and processes are always removed.
# The provider is the default, tcp;ofi_rxm (IC_TC_PROVIDER overrides), the
# slow rate 40mbit (IC_TC_RATE).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
need ip tc nft jq

PROVIDER=${IC_TC_PROVIDER:-tcp;ofi_rxm}
SLOW_RATE=${IC_TC_RATE:-40mbit}

TAG=$$
. "$TEST_DIR/ic-pair.inc"

step "namespaces"
ic_pair_up ic-tc 10.79 t

downs() { grep -c "link $1 down" "$T/a.log" || true; }

step "session over two links, both carrying the load"
start_client a "$NSA" --inflight 8 --size 16K
start_client b "$NSB" --inflight 8 --size 16K
session_up
links_carry a
no_errors
echo "   both links up and carrying verified writes and reads"

# share_window MIN_BYTES: ic1's share of a's bytes over the traffic since
# the last call (sets SHARE, TOTAL once at least MIN_BYTES moved).
W0=0 W1=0
window_start() { W0=$(link_bytes a ic0) W1=$(link_bytes a ic1); }
slow_share_low() { # min-bytes max-share
	local c0 c1 d0 d1
	c0=$(link_bytes a ic0) c1=$(link_bytes a ic1)
	d0=$((c0 - W0)) d1=$((c1 - W1))
	[ $((d0 + d1)) -ge "$1" ] || return 1
	SHARE=$(awk -v a="$d1" -v t="$((d0 + d1))" 'BEGIN {printf "%.3f", a / t}')
	if awk -v s="$SHARE" -v m="$2" 'BEGIN {exit !(s < m)}'; then
		return 0
	fi
	W0=$c0 W1=$c1 # not yet: start a new window
	return 1
}

step "ic1 slowed to $SLOW_RATE with tc tbf"
window_start
until_ok 20 "no baseline window" slow_share_low 8388608 2
base_share=$SHARE
ip netns exec "$NSA" tc qdisc add dev "ta1-$TAG" root tbf rate "$SLOW_RATE" burst 32kb latency 20ms
ip netns exec "$NSB" tc qdisc add dev "tb1-$TAG" root tbf rate "$SLOW_RATE" burst 32kb latency 20ms
downs0=$(downs ic1)
window_start
until_ok 60 "ic1's share of the traffic never dropped below 25% while slowed (last window: ${SHARE:-none})" \
	slow_share_low 8388608 0.25
no_errors
slow_share=$SHARE
# It is slow, not dead: it still carries some of the load.
link_carries 30 "slowed ic1 carries nothing at all" a ic1 0
echo "   ic1's share of a's bytes: $base_share before, $slow_share while slowed to $SLOW_RATE" \
	"(taken out $(($(downs ic1) - downs0)) times meanwhile), no client error"
ip netns exec "$NSA" tc qdisc del dev "ta1-$TAG" root
ip netns exec "$NSB" tc qdisc del dev "tb1-$TAG" root
until_ok 20 "both links not up after removing the limit" both_up a

step "ic1 cut with an nftables drop rule"
cat >"$T/cut.nft" <<'NFT'
table inet ictccut {
	chain in { type filter hook input priority 0; ip saddr 10.79.1.2 drop; }
	chain out { type filter hook output priority 0; ip daddr 10.79.1.2 drop; }
}
NFT
ip netns exec "$NSA" nft -f "$T/cut.nft"
until_ok 20 "a never took ic1 out after the drop rule" is_state a ic1 down
load_goes_on "the load stopped after ic1 was cut" 2000
link_carries 20 "ic0 does not carry the load alone" a ic0 $((4 * 1048576))
no_errors
echo "   ic1 out, the load goes on over ic0 with no client error"

step "drop rule removed"
c1=$(link_bytes a ic1)
ip netns exec "$NSA" nft delete table inet ictccut
until_ok 30 "ic1 never came back after the rule was removed" is_state a ic1 up
until_ok 20 "ic1 carries no traffic after its return" bytes_past a ic1 "$((c1 + 1048576))"
no_errors
echo "   ic1 back and carrying traffic"

step "clean stop"
stop_clients
exit 0
