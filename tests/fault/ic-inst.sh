#!/usr/bin/env bash
# normal build only: link timing in namespaces; instance failover is unit-tested (test_ccm) under the sanitizers
# Interconnect device failure (issue 14 part 5, claim 26): with two CCM
# instances (`[ic] instances = 2`: ic0 is instance 0, ic1 instance 1), the
# links of one instance all fail and the other still has live links: the
# failed instance's client ports move to the live one (docs/CCM.md,
# "Instances") and the traffic goes on. Nodes a and b are
# tests/ccm/ccm-client (verified RDMA writes, read-backs and ordered
# messages on 4 ports) in two network namespaces joined by two veth pairs.
#   1. both instances carry ports and both links carry traffic;
#   2. a's veth of ic1 set down (instance 1 has no link left, on both
#      sides): instance 1 carries no port on either node, instance 0 all of
#      them, the load goes on over ic0 with no client error;
#   3. the veth set up again: ic1 comes back up, after a second with a
#      link up instance 1 gets its ports back, the session and the load go
#      on with no client error.
# Needs root, ip and jq (exit 77 otherwise). Namespaces and processes are
# always removed. The provider is tcp;ofi_rxm (IC_INST_PROVIDER overrides).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
need ip jq

PROVIDER=${IC_INST_PROVIDER:-tcp;ofi_rxm}
IC_EXTRA=("instances = 2")
. "$TEST_DIR/ic-pair.inc"

step "namespaces"
ic_pair_up ic-inst 10.83 n

inst_list() { q "$1" '[.ccm_instances[] | {id, links_up, ports}] | tostring'; }
inst_ports() { q "$1" ".ccm_instances[] | select(.id == $2) | .ports"; }
ports_total() { q "$1" '[.ccm_instances[].ports] | add'; }
both_carry() { [ "$(inst_ports "$1" 0)" -gt 0 ] && [ "$(inst_ports "$1" 1)" -gt 0 ]; }
all_on_0() { # NODE
	local t
	t=$(ports_total "$1")
	[ -n "$t" ] && [ "$t" -gt 0 ] && [ "$(inst_ports "$1" 1)" = 0 ] && [ "$(inst_ports "$1" 0)" = "$t" ]
}
# on_both SECS WHAT FN: until_ok FN a, then FN b (WHAT with the node's instances).
on_both() {
	local n
	for n in a b; do until_ok "$1" "$n: $2: $(inst_list "$n")" "$3" "$n"; done
}

step "a session over two links, one per instance, both instances carrying ports"
start_client a "$NSA" --ports 4 --inflight 8 --size 16K
start_client b "$NSB" --ports 4 --inflight 8 --size 16K
session_up
on_both 10 "ports not on both instances" both_carry
links_carry a
no_errors
echo "   a: $(inst_list a), both links carrying verified traffic"

step "instance 1's only link (ic1) set down"
ip netns exec "$NSA" ip link set "na1-$$" down
until_ok 20 "a never took ic1 out" is_state a ic1 down
until_ok 20 "b never took ic1 out" is_state b ic1 down
on_both 10 "instance 1 still carries ports" all_on_0
load_goes_on "the load stopped after ic1 went down" 2000
link_carries 20 "ic0 does not carry the load alone" a ic0 $((4 * 1048576))
no_errors
[ "$(sessions a)" = 1 ] || fail "a: the session was re-formed ($(sessions a) sessions)"
grep -h "has no link up" "$T/a.log" "$T/b.log" | sed 's/^/   /' >&2 || true
echo "   a: $(inst_list a), the load goes on over ic0 with no client error"

step "ic1 set up again"
ip netns exec "$NSA" ip link set "na1-$$" up
until_ok 30 "ic1 never came back" is_state a ic1 up
on_both 10 "the ports did not come back to instance 1" both_carry
link_carries 20 "ic1 carries no traffic after its return" a ic1 1048576
load_goes_on "the load stopped after ic1 returned" 2000
no_errors
[ "$(sessions a)" = 1 ] || fail "a: the session was re-formed ($(sessions a) sessions)"

step "clean stop"
stop_clients
exit 0
