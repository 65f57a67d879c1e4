#!/usr/bin/env bash
# normal build only: address behaviour in namespaces; netaddr is unit-tested and fuzzed under the sanitizers
# Issue 13: an interconnect cut between two live nodes is no takeover, and
# the service addresses do not move. `duet-pair up --netns`; every
# interconnect link is set down inside the namespaces for CUT_S seconds
# (default 3, ten times the takeover deadline of the test's timings) under
# a write load on SVC_A; both nodes stay up, a keeps SVC_A and b SVC_B the
# whole time (a watcher samples both namespaces), the writer gets no error;
# the links come back, the mirror resyncs, every acknowledged write reads
# back.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$TEST_DIR/addr.inc"

CUT_S=${CUT_S:-3}

step "duet-pair up --netns, a writer on $SVC_A"
addr_pair_up
writer w --blocks 1024 --qd 16
wait_acks w 200
watch_holders "$SVC_A"
tag=$(cut -d' ' -f1 "$T/netns")

step "cut the interconnect (link down in both namespaces) for ${CUT_S}s"
ip -n "$(ns_of a)" link set "i${tag}0-a" down
ip -n "$(ns_of b)" link set "i${tag}0-b" down
wait_for bash -c "[ \"\$($DUETCTL --socket $T/b.sock status --json | jq -r .ha.partner.state)\" = cut_off ]" ||
	fail "b does not see a cut off: $(hajq b .ha.partner.state)"
end=$((SECONDS + CUT_S))
while [ $SECONDS -lt $end ]; do
	[ "$(hajq b .ha.state)" = up ] || fail "b left up during the cut: $(ha_state b)"
	[ "$(hajq a .ha.state)" = up ] || fail "a left up during the cut: $(ha_state a)"
	on_iface a "$SVC_A" || fail "$SVC_A left a during the cut"
	on_iface b "$SVC_B" || fail "$SVC_B left b during the cut"
	on_iface b "$SVC_A" && fail "$SVC_A appeared on b during the cut"
	on_iface a "$SVC_B" && fail "$SVC_B appeared on a during the cut"
	sleep 0.2
done
wait_acks w 200

step "links back; no move happened; every acknowledged write reads back"
ip -n "$(ns_of a)" link set "i${tag}0-a" up
ip -n "$(ns_of b)" link set "i${tag}0-b" up
wait_for bash -c "[ \"\$($DUETCTL --socket $T/b.sock status --json | jq -r .ha.partner.state)\" = alive ]" ||
	fail "b does not see a again"
writer_stop w
holders_ok "$SVC_A"
[ "$(held_by a "$SVC_A")" = a ] && [ "$(held_by b "$SVC_B")" = b ] || fail "addresses: $(st a | jq -c .addresses)"
grep -q "moved here" "$T/a.log" "$T/b.log" && fail "an address moved: $(grep -h 'moved here' "$T/a.log" "$T/b.log")"
grep -q "reconnects=0 " "$T/w.out" || fail "the writer lost its connection: $(tail -n 1 "$T/w.out")"
check_acks "$T/w.acks"
echo "$(tail -n 1 "$T/w.out")" >&2
