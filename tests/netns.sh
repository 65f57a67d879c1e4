# shellcheck shell=bash
# Network namespaces and veth pairs for the tests and benchmarks that run
# nodes on real links (tests/ccm/failover-netns.sh, tests/fault/ic-tc.sh,
# tests/integration/proxy-links.sh, bench/ic.sh). Needs root. Sourced, not
# run; tests/lib.sh and bench/lib.sh source it.
#
#   netns_pair NS_A NS_B        create two namespaces, loopback up in each;
#                               remembered for netns_cleanup. Returns 1 (and
#                               removes what it made) when one cannot be made
#   veth_link NS_A IF_A ADDR_A NS_B IF_B ADDR_B
#                               a veth pair IF_A (in NS_A, address ADDR_A, e.g.
#                               10.77.0.1/24) <-> IF_B (in NS_B, ADDR_B), both up;
#                               returns 1 on the first command that fails. The
#                               pair goes away with its namespaces
#   netns_cleanup               delete every namespace netns_pair made (and so
#                               their veths); safe to call more than once, and
#                               from an exit trap (never fails)
#
# A script calls netns_cleanup from its own exit trap, after it has ended the
# processes it runs inside the namespaces.

declare -a NETNS_MADE=()

netns_pair() {
	local ns
	for ns in "$1" "$2"; do
		ip netns add "$ns" || { netns_cleanup; return 1; }
		NETNS_MADE+=("$ns")
		ip -n "$ns" link set lo up || { netns_cleanup; return 1; }
	done
}

veth_link() {
	local nsa=$1 ifa=$2 addra=$3 nsb=$4 ifb=$5 addrb=$6
	ip link add "$ifa" type veth peer name "$ifb" &&
		ip link set "$ifa" netns "$nsa" &&
		ip link set "$ifb" netns "$nsb" &&
		ip -n "$nsa" addr add "$addra" dev "$ifa" &&
		ip -n "$nsb" addr add "$addrb" dev "$ifb" &&
		ip -n "$nsa" link set "$ifa" up &&
		ip -n "$nsb" link set "$ifb" up
}

netns_cleanup() {
	local ns
	for ns in ${NETNS_MADE[@]+"${NETNS_MADE[@]}"}; do
		ip netns del "$ns" 2>/dev/null || true
	done
	NETNS_MADE=()
}
