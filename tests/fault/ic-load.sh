#!/usr/bin/env bash
# normal build only: link liveness under load is a timing scenario; the CCM runs under the sanitizers in its unit tests
# Links that stay up under load (issue 11, part B; docs/BENCHMARKS.md,
# "Problems found" 1-3). Nodes a and b (tests/ccm/ccm-client: verified RDMA
# writes of 64 KiB, read-backs and ordered messages, plus per-link heartbeat
# writes) in two network namespaces joined by two veth pairs, ic0 and ic1.
#   1. full links: both limited with tc tbf to 200 Mbit/s (both directions,
#      as bench/ic.sh), 2 ports x 64 x 64 KiB writes and 4 KiB read-backs in flight on a (about 2 MiB
#      queued per link, 84 ms of queue, near the 100 ms link deadline): no
#      link is taken out on either node over IC_LOAD_SECS (8) seconds, no
#      client error (problem 1: a probe queued behind data);
#   2. a partner stall on the surviving link: ic1 cut (nftables drop in a's
#      namespace) and taken out; then b stopped (SIGSTOP) for 400 ms, longer
#      than the link deadline: a keeps ic0 (never "no link left"), the
#      session lives, the load goes on (problem 3);
#   3. both lanes out at once: with ic1 still cut, a's ic0 connections
#      killed (ss -K): ic0 is taken out by the error, no lane is left; ic0
#      comes back and carries the load; ic1's cut lifted, ic1 comes back and
#      carries traffic too, in the same session (problem 2: a lane stuck out
#      for good, the other flapping, after both were out).
# Every step polls for its condition with a deadline. Needs root, tc, nft
# and jq (exit 77 otherwise). Namespaces and processes are always removed.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
need ip tc nft jq ss

PROVIDER=${IC_LOAD_PROVIDER:-tcp;ofi_rxm}
LOAD_SECS=${IC_LOAD_SECS:-8}
RATE=${IC_LOAD_RATE:-200mbit}

TAG=$$
. "$TEST_DIR/ic-pair.inc"

step "namespaces"
ic_pair_up ic-load 10.81 l

# Take-outs logged by node $1 (any link, or link $2).
downs() { grep -c "link ${2:-ic[0-9]} down" "$T/$1.log" || true; }
no_link_left() { grep -c "no link left" "$T/$1.log" || true; }

step "both links limited to $RATE with tc tbf, session under load (2 ports x 64 x 64 KiB writes and 4 KiB read-backs in flight)"
for i in 0 1; do
	ip netns exec "$NSA" tc qdisc add dev "la$i-$TAG" root tbf rate "$RATE" burst 128kb latency 20ms
	ip netns exec "$NSB" tc qdisc add dev "lb$i-$TAG" root tbf rate "$RATE" burst 128kb latency 20ms
done
start_client a "$NSA" --ports 2 --inflight 64 --size 64K --read-size 4K
start_client b "$NSB" --ports 2 --inflight 64 --size 64K --no-load
session_up
no_errors

step "$LOAD_SECS s on the full links: no take-out"
da=$(downs a) db=$(downs b)
b0=$(($(link_bytes a ic0) + $(link_bytes a ic1)))
end=$((SECONDS + LOAD_SECS))
while [ $SECONDS -lt "$end" ]; do
	alive
	sleep 0.2
done
b1=$(($(link_bytes a ic0) + $(link_bytes a ic1)))
outs=$(($(downs a) - da + $(downs b) - db))
mbit=$(((b1 - b0) * 8 / LOAD_SECS / 1000000))
echo "   $LOAD_SECS s at $RATE per link: $mbit Mbit/s over both links (limit 2 x $RATE)," \
	"links taken out: $outs (a $(($(downs a) - da)), b $(($(downs b) - db)));" \
	"the client keeps about 4 MiB outstanding, the CCM admits" \
	"$(q a '[.links[].inflight_cap / 1024 | floor | tostring + " KiB"] | join(" / ")') per link"
no_errors
[ "$outs" -eq 0 ] || fail "links taken out $outs times on full links (a: $(grep 'down' "$T/a.log" | tail -n 3))"
[ "$mbit" -gt 100 ] || fail "only $mbit Mbit/s over two $RATE links"
# The limit stays: the next steps run on the full links too (deleting or
# changing the qdisc would drop what it holds: a real stall of TCP).

cat >"$T/cut1.nft" <<'NFT'
table inet iclcut1 {
	chain in { type filter hook input priority 0; ip saddr 10.81.1.2 drop; }
	chain out { type filter hook output priority 0; ip daddr 10.81.1.2 drop; }
}
NFT
step "ic1 cut, then b stopped for 400 ms (> the link deadline): a keeps ic0"
sess_a=$(sessions a)
ip netns exec "$NSA" nft -f "$T/cut1.nft"
until_ok 20 "a never took ic1 out after the drop rule" is_state a ic1 down
nl=$(no_link_left a)
kill -s STOP "${CPID[b]}"
sleep 0.4
kill -s CONT "${CPID[b]}"
load_goes_on "the load stopped after b's stall" 500
is_state a ic0 up || fail "ic0 not up on a after b's stall"
[ "$(no_link_left a)" -eq "$nl" ] || fail "a took its last link out during b's stall: $(grep 'no link left' "$T/a.log" | tail -n 1)"
[ "$(sessions a)" = "$sess_a" ] || fail "the session ended during b's stall"
no_errors
echo "   ic0 kept through a 400 ms stall of b with ic1 cut, the load goes on"

step "both lanes out: ic0's connections killed (ss -K) while ic1 is cut, then both return in turn"
dn=$(downs a ic0)
ip netns exec "$NSA" ss -K dst 10.81.0.2 >/dev/null 2>&1
until_ok 20 "a never took ic0 out after its connections were killed" \
	eval '[ "$(downs a ic0)" -gt "$dn" ]'
until_ok 20 "ic0 never came back after its connections were killed" is_state a ic0 up
link_carries 20 "ic0 carries no traffic after its return" a ic0 $((4 * 1048576))
ip netns exec "$NSA" nft delete table inet iclcut1
c1=$(link_bytes a ic1)
until_ok 20 "ic1 never came back after the cut was lifted" is_state a ic1 up
until_ok 20 "ic1 carries no traffic after its return" bytes_past a ic1 "$((c1 + 4 * 1048576))"
until_ok 10 "b: both links not up at the end" both_up b
no_errors
[ "$(sessions a)" = "$sess_a" ] || fail "the session ended (sessions on a: $sess_a before, $(sessions a) after)"
# Its own failure and at most one answer of the partner's: a fence carried
# by ic0 itself used to break it again and again (4-5 take-outs here).
[ $(($(downs a ic0) - dn)) -le 3 ] || fail "ic0 taken out $(($(downs a ic0) - dn)) times: a fence loop"
echo "   both lanes back and carrying traffic in the same session;" \
	"ic0 taken out $(($(downs a ic0) - dn)) time(s) on a meanwhile"

step "clean stop"
stop_clients
exit 0
