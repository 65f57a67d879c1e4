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

step "a session over two links, one per instance, both instances carrying ports"
start_client a "$NSA" --ports 4 --inflight 8 --size 16K
start_client b "$NSB" --ports 4 --inflight 8 --size 16K
until_ok 30 "no session with both links up on a" both_up a
until_ok 10 "b: both links not up" both_up b
until_ok 10 "a: ports not on both instances: $(inst_list a)" both_carry a
until_ok 10 "b: ports not on both instances: $(inst_list b)" both_carry b
b0=$(link_bytes a ic0) b1=$(link_bytes a ic1)
until_ok 20 "ic0 carries no traffic" bytes_past a ic0 "$((b0 + 4 * 1048576))"
until_ok 20 "ic1 carries no traffic" bytes_past a ic1 "$((b1 + 4 * 1048576))"
no_errors
echo "   a: $(inst_list a), both links carrying verified traffic"

step "instance 1's only link (ic1) set down"
ip netns exec "$NSA" ip link set "na1-$$" down
until_ok 20 "a never took ic1 out" is_state a ic1 down
until_ok 20 "b never took ic1 out" is_state b ic1 down
until_ok 10 "a: instance 1 still carries ports: $(inst_list a)" all_on_0 a
until_ok 10 "b: instance 1 still carries ports: $(inst_list b)" all_on_0 b
w=$(client a writes)
until_ok 20 "the load stopped after ic1 went down" writes_past a "$((w + 2000))"
c0=$(link_bytes a ic0)
until_ok 20 "ic0 does not carry the load alone" bytes_past a ic0 "$((c0 + 4 * 1048576))"
no_errors
[ "$(sessions a)" = 1 ] || fail "a: the session was re-formed ($(sessions a) sessions)"
grep -h "has no link up" "$T/a.log" "$T/b.log" | sed 's/^/   /' >&2 || true
echo "   a: $(inst_list a), the load goes on over ic0 with no client error"

step "ic1 set up again"
ip netns exec "$NSA" ip link set "na1-$$" up
until_ok 30 "ic1 never came back" is_state a ic1 up
until_ok 10 "a: the ports did not come back to instance 1: $(inst_list a)" both_carry a
until_ok 10 "b: the ports did not come back to instance 1: $(inst_list b)" both_carry b
c1=$(link_bytes a ic1)
until_ok 20 "ic1 carries no traffic after its return" bytes_past a ic1 "$((c1 + 1048576))"
w=$(client a writes)
until_ok 20 "the load stopped after ic1 returned" writes_past a "$((w + 2000))"
no_errors
[ "$(sessions a)" = 1 ] || fail "a: the session was re-formed ($(sessions a) sessions)"

step "clean stop"
for n in a b; do
	kill -s TERM "${CPID[$n]}"
	rc=0
	wait "${CPID[$n]}" || rc=$?
	unset "CPID[$n]"
	[ $rc -eq 0 ] || fail "ccm-client $n exited with status $rc"
done
exit 0
